"""The admin-login lockout counter on the file backend: in this store's memory only.

The Node service keeps its lockout in memory too, so on files the count is per open store,
i.e. per gateway process (several processes on one configs folder each count their own,
and a restart forgets the counts); nothing is written to the folder. Use the Redis backend
to count across instances.
"""

from __future__ import annotations

from cfgstore import hookimpl
from cfgstore.model.login_guard import (
    CLEAR,
    LoginAttempt,
    LoginFailures,
    LoginGuard,
    add_failure,
    client_digest,
    reserve_attempt,
)

PRUNE_AT = 1024
"""Expired counts are dropped when the table grows past this (many clients failing)."""


class LoginGuardOps:
    _logins: dict[str, LoginFailures]

    @hookimpl
    async def cfgstore_login_guard_get(self, client: str, now_ms: int) -> LoginGuard:
        kept = self._logins.get(client_digest(client))
        return CLEAR if kept is None else kept.guard(now_ms)

    @hookimpl
    async def cfgstore_login_failure_add(
        self, client: str, now_ms: int, max_attempts: int, lockout_ms: int
    ) -> LoginGuard:
        # No await between the read and the write: atomic within the event loop.
        digest = client_digest(client)
        kept = add_failure(self._logins.get(digest), now_ms, max_attempts, lockout_ms)
        self._keep_login(digest, kept, now_ms)
        return kept.guard(now_ms)

    @hookimpl
    async def cfgstore_login_attempt_reserve(
        self, client: str, now_ms: int, max_attempts: int, lockout_ms: int, min_interval_ms: int
    ) -> LoginAttempt:
        # No await between the read and the write: atomic within the event loop.
        digest = client_digest(client)
        kept, attempt = reserve_attempt(
            self._logins.get(digest), now_ms, max_attempts, lockout_ms, min_interval_ms
        )
        if kept is not None:
            self._keep_login(digest, kept, now_ms)
        return attempt

    @hookimpl
    async def cfgstore_login_failures_clear(self, client: str) -> None:
        self._logins.pop(client_digest(client), None)

    def _keep_login(self, digest: str, kept: LoginFailures, now_ms: int) -> None:
        self._logins[digest] = kept
        if len(self._logins) > PRUNE_AT:
            self._prune_logins(now_ms)

    def _prune_logins(self, now_ms: int) -> None:
        for digest in [d for d, kept in self._logins.items() if now_ms >= kept.expires_at_ms]:
            del self._logins[digest]
