"""Signing in while the storage is degraded: read-only sessions local to this instance.

During an outage the store refuses logins (sessions and the login counter live in the
shared storage), yet that is when the operator most needs the console. So while the
storage is degraded a login is checked here instead:

* **the password** against the last confirmed copy the store serves from memory
  (``store.password.get_stored``); none (this instance never read it): no sign-in;
* **the lockout** (``LOGIN_MAX_ATTEMPTS`` / ``LOGIN_LOCKOUT_DURATION`` /
  ``LOGIN_MIN_INTERVAL``) counted in this instance's memory with the same rules as the
  shared counter (:func:`~cfgstore.model.login_guard.reserve_attempt`): an outage never
  opens the door to unlimited guesses;
* **the session** is kept in this instance's memory only, by the token's digest: valid on
  this instance alone, never stored, never journaled, and **read-only**: the admin API
  refuses it every change (``503 storage_degraded`` with :data:`READ_ONLY_REFUSAL`), the
  console marks it. It ends at its expiry, at its logout, and as soon as this instance
  reaches the storage again (the next request with it gets ``401``, saying so): a full
  session is then one sign-in away, and a password change or a logout elsewhere is no
  longer ignored.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import TypeVar

from cfgstore.model.login_guard import LoginAttempt, LoginFailures, reserve_attempt
from cfgstore.model.sessions import UiSession

READ_ONLY_REFUSAL = (
    "Not saved: this is a read-only session, signed in on this instance while the storage "
    "was degraded (Redis cannot be reached). Changes are refused until the storage is back "
    "and you sign in again. Requests are still served."
)
READ_ONLY_NOTE = (
    "Signed in read-only: the storage is degraded, so this session exists on this instance "
    "only and changes are refused until the storage is back (then sign in again)."
)
ENDED_AT_RECOVERY = (
    "The storage is back: the read-only session of the outage ended. Sign in again for a "
    "full session."
)
NO_CONFIRMED_PASSWORD = (
    "Cannot sign in: the storage is degraded (Redis cannot be reached) and this instance "
    "holds no confirmed copy of the admin password. Requests are still served; sign in "
    "once the storage is back, or on an instance that ran with it."
)

_MAX_ENTRIES = 1024
V = TypeVar("V")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class OutageSignIn:
    """The read-only sessions and the login counter of one instance during outages."""

    def __init__(self) -> None:
        self._sessions: dict[str, UiSession] = {}
        self._failures: dict[str, LoginFailures] = {}

    # -- the lockout, in memory ------------------------------------------------------------

    def reserve(
        self,
        client: str,
        now_ms: int,
        *,
        max_attempts: int,
        lockout_ms: int,
        min_interval_ms: int,
    ) -> LoginAttempt:
        """Reserve one attempt of ``client`` (the shared counter's rules)."""
        key = _digest(client)
        kept, attempt = reserve_attempt(
            self._failures.get(key), now_ms, max_attempts, lockout_ms, min_interval_ms
        )
        if kept is not None:
            _bound(self._failures, lambda f: now_ms >= f.expires_at_ms)
            self._failures[key] = kept
        return attempt

    def clear(self, client: str) -> None:
        self._failures.pop(_digest(client), None)

    # -- the sessions ----------------------------------------------------------------------

    def issue(self, session: UiSession) -> str:
        """A fresh token (32 random bytes, hex) for a read-only ``session``."""
        token = secrets.token_hex(32)
        now = session.login_time
        _bound(self._sessions, lambda s: s.expired(now))
        self._sessions[_digest(token)] = session
        return token

    def holds(self, token: str) -> bool:
        """Whether ``token`` is a read-only session of this instance (expired or not)."""
        return _digest(token) in self._sessions

    def get(self, token: str, now_ms: int) -> UiSession | None:
        """The read-only session of ``token`` unless unknown or expired (then dropped)."""
        digest = _digest(token)
        session = self._sessions.get(digest)
        if session is not None and session.expired(now_ms):
            del self._sessions[digest]
            return None
        return session

    def end(self, token: str) -> bool:
        """End ``token``'s read-only session; whether it was one."""
        return self._sessions.pop(_digest(token), None) is not None

    def end_all_but(self, token: str) -> None:
        keep = _digest(token)
        self._sessions = {d: s for d, s in self._sessions.items() if d == keep}


def _bound(table: dict[str, V], done: Callable[[V], bool]) -> None:
    """Keep ``table`` under its bound: drop the entries ``done`` says are over, then the
    oldest."""
    if len(table) < _MAX_ENTRIES:
        return
    for key in [k for k, v in table.items() if done(v)]:
        del table[key]
    while len(table) >= _MAX_ENTRIES:
        table.pop(next(iter(table)))
