"""The admin-login lockout counter on Redis: one string per client, keyed by a digest of
the client key, with a TTL of the lockout (see ``redis-keys.md``)."""

from __future__ import annotations

from cfgstore import hookimpl
from cfgstore.model.login_guard import (
    CLEAR,
    LoginAttempt,
    LoginFailures,
    LoginGuard,
    Refusal,
    client_digest,
)
from cfgstore_redis.base import RedisParts
from cfgstore_redis.translate import translated


class LoginGuardOps(RedisParts):
    @hookimpl
    async def cfgstore_login_guard_get(self, client: str, now_ms: int) -> LoginGuard:
        key = self.keys.login(client_digest(client))
        with translated(self.connection):
            raw = await self.redis.get(key)
        if raw is None:
            return CLEAR
        return LoginFailures.decode(str(raw), f"redis {key}").guard(now_ms)

    @hookimpl
    async def cfgstore_login_failure_add(
        self, client: str, now_ms: int, max_attempts: int, lockout_ms: int
    ) -> LoginGuard:
        failures, locked = await self._run(
            "LOGIN_FAILURE",
            [self.keys.login(client_digest(client))],
            [now_ms, max_attempts, lockout_ms],
        )
        return LoginGuard(int(failures), int(locked) or None)

    @hookimpl
    async def cfgstore_login_attempt_reserve(
        self, client: str, now_ms: int, max_attempts: int, lockout_ms: int, min_interval_ms: int
    ) -> LoginAttempt:
        verdict, failures, when = await self._run(
            "LOGIN_ATTEMPT",
            [self.keys.login(client_digest(client))],
            [now_ms, max_attempts, lockout_ms, min_interval_ms],
        )
        failures, when = int(failures), int(when)
        if verdict == "ok":
            return LoginAttempt(None, failures, when or None)
        refusal = Refusal(verdict)
        locked = when if refusal is Refusal.LOCKED else None
        return LoginAttempt(refusal, failures, locked, when)

    @hookimpl
    async def cfgstore_login_failures_clear(self, client: str) -> None:
        with translated(self.connection):
            await self.redis.delete(self.keys.login(client_digest(client)))
