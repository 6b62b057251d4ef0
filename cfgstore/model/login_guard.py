"""The admin-login lockout counter (``LOGIN_MAX_ATTEMPTS`` / ``LOGIN_LOCKOUT_DURATION`` /
``LOGIN_MIN_INTERVAL``).

Per client key (the gateway passes the client IP) a store keeps how many logins failed,
until when that count lives (``lockout_ms`` after the last failure), once the count
reached ``max_attempts`` until when the client is locked out, and when its last attempt
was. Stores never need the raw client string: they key by :func:`client_digest`.

A login first *reserves* its attempt (:func:`reserve_attempt`): the check and the count
are one atomic step in the store, so concurrent guesses cannot all pass the check before
any of them is counted. A reserved attempt counts as a failure until a success clears
the count.
"""

from __future__ import annotations

import enum
import hashlib

import attrs

from cfgstore.errors import InvalidData


@attrs.frozen
class LoginGuard:
    """What the gateway sees for one client at one moment."""

    failures: int = 0
    locked_until_ms: int | None = None

    def locked(self, now_ms: int) -> bool:
        return self.locked_until_ms is not None and now_ms < self.locked_until_ms

    def retry_after_ms(self, now_ms: int) -> int:
        """How long the client stays locked out from ``now_ms`` (0 when it is not)."""
        return max(0, self.locked_until_ms - now_ms) if self.locked_until_ms is not None else 0


CLEAR = LoginGuard(0, None)


class Refusal(enum.Enum):
    """Why an attempt was not reserved."""

    LOCKED = "locked"
    """``max_attempts`` attempts were counted: locked until ``LoginAttempt.retry_at_ms``."""
    TOO_FREQUENT = "too_frequent"
    """Within ``min_interval_ms`` of the client's last attempt."""


@attrs.frozen
class LoginAttempt:
    """The answer to reserving one login attempt (:func:`reserve_attempt`)."""

    refusal: Refusal | None
    """``None``: reserved (counted as a failure until a success clears the count)."""
    failures: int
    """Attempts counted, this one included when it was reserved."""
    locked_until_ms: int | None = None
    """The lock in force after this reservation (the last allowed attempt sets it)."""
    retry_at_ms: int | None = None
    """A refused attempt: when the client may try again."""

    @property
    def allowed(self) -> bool:
        return self.refusal is None

    def locked(self, now_ms: int) -> bool:
        return self.locked_until_ms is not None and now_ms < self.locked_until_ms


@attrs.frozen
class LoginFailures:
    """What a store keeps per client: the count, when it expires (``lockout_ms`` after the
    last failure), the lock (``None``: never locked in this count) and the last reserved
    attempt (``None``: none, or only counted by :func:`add_failure`)."""

    failures: int
    expires_at_ms: int
    locked_until_ms: int | None = None
    last_attempt_ms: int | None = None

    def guard(self, now_ms: int) -> LoginGuard:
        """The state at ``now_ms``: an expired count reads as no failures, an expired lock
        as no lock."""
        if now_ms >= self.expires_at_ms:
            return CLEAR
        locked = self.locked_until_ms
        return LoginGuard(self.failures, locked if locked is not None and now_ms < locked else None)

    def encode(self) -> str:
        """``failures:expires_at_ms:locked_until_ms:last_attempt_ms`` (0: none), the Redis
        value."""
        return (
            f"{self.failures}:{self.expires_at_ms}:{self.locked_until_ms or 0}"
            f":{self.last_attempt_ms or 0}"
        )

    @classmethod
    def decode(cls, raw: str, source: str) -> LoginFailures:
        """Read :meth:`encode`'s form, or the older one without ``last_attempt_ms``."""
        try:
            parts = [int(part) for part in raw.split(":")]
        except ValueError:
            parts = []
        if len(parts) not in (3, 4):
            raise InvalidData(
                source, "$", "expected failures:expires_ms:locked_until_ms[:last_attempt_ms]"
            )
        last = parts[3] if len(parts) == 4 else 0
        return cls(parts[0], parts[1], parts[2] or None, last or None)


def check_failure_limits(max_attempts: int, lockout_ms: int, min_interval_ms: int = 0) -> None:
    """``lockout_ms`` must be positive; ``max_attempts`` below 1 counts without locking;
    ``min_interval_ms`` must not be negative."""
    if lockout_ms < 1:
        raise InvalidData("login lockout", str(lockout_ms), "lockout_ms must be at least 1")
    if max_attempts < 0:
        raise InvalidData("login lockout", str(max_attempts), "max_attempts must not be < 0")
    if min_interval_ms < 0:
        raise InvalidData("login lockout", str(min_interval_ms), "min_interval_ms must not be < 0")


def add_failure(
    previous: LoginFailures | None, now_ms: int, max_attempts: int, lockout_ms: int
) -> LoginFailures:
    """One more failed login at ``now_ms``: an expired count starts again at 1; the count
    lives ``lockout_ms`` after this failure; at or past ``max_attempts`` (when > 0) the client
    is locked until ``now_ms + lockout_ms`` (a failure while locked extends the lock). The
    Redis backend's ``LOGIN_FAILURE`` script implements exactly this."""
    alive = previous is not None and now_ms < previous.expires_at_ms
    failures = previous.failures + 1 if alive and previous is not None else 1
    locked = previous.locked_until_ms if alive and previous is not None else None
    if max_attempts > 0 and failures >= max_attempts:
        locked = now_ms + lockout_ms
    return LoginFailures(failures, now_ms + lockout_ms, locked)


def reserve_attempt(
    previous: LoginFailures | None,
    now_ms: int,
    max_attempts: int,
    lockout_ms: int,
    min_interval_ms: int,
) -> tuple[LoginFailures | None, LoginAttempt]:
    """Reserve one login attempt at ``now_ms``: the state to store (``None``: unchanged)
    and the answer. Refused while locked, or within ``min_interval_ms`` of the last
    reserved attempt (neither refusal is counted). Otherwise counted as a failure, as by
    :func:`add_failure` (an expired count or an expired lock starts again at 1; the
    ``max_attempts``-th attempt sets the lock), and remembered as the last attempt; the
    state lives ``max(lockout_ms, min_interval_ms)`` after it. The Redis backend's
    ``LOGIN_ATTEMPT`` script implements exactly this."""
    alive = previous if previous is not None and now_ms < previous.expires_at_ms else None
    if alive is not None and alive.locked_until_ms is not None:
        if now_ms < alive.locked_until_ms:
            until = alive.locked_until_ms
            return None, LoginAttempt(Refusal.LOCKED, alive.failures, until, until)
        alive = None  # the lock is over: the client starts again from zero
    last = alive.last_attempt_ms if alive is not None else None
    if alive is not None and last is not None and now_ms - last < min_interval_ms:
        retry_at = last + min_interval_ms
        return None, LoginAttempt(Refusal.TOO_FREQUENT, alive.failures, None, retry_at)
    counted = add_failure(alive, now_ms, max_attempts, lockout_ms)
    kept = attrs.evolve(
        counted,
        expires_at_ms=now_ms + max(lockout_ms, min_interval_ms),
        last_attempt_ms=now_ms,
    )
    return kept, LoginAttempt(None, kept.failures, kept.locked_until_ms)


def client_digest(client: str) -> str:
    """What stores keep instead of the raw client key (SHA-256 hex)."""
    return hashlib.sha256(client.encode("utf-8")).hexdigest()
