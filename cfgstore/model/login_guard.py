"""The admin-login lockout counter (``LOGIN_MAX_ATTEMPTS`` / ``LOGIN_LOCKOUT_DURATION``).

Per client key (the gateway passes the client IP) a store keeps how many logins failed,
until when that count lives (``lockout_ms`` after the last failure) and, once the count
reached ``max_attempts``, until when the client is locked out. Stores never need the raw
client string: they key by :func:`client_digest`.
"""

from __future__ import annotations

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


@attrs.frozen
class LoginFailures:
    """What a store keeps per client: the count, when it expires (``lockout_ms`` after the
    last failure) and the lock (``None``: never locked in this count)."""

    failures: int
    expires_at_ms: int
    locked_until_ms: int | None = None

    def guard(self, now_ms: int) -> LoginGuard:
        """The state at ``now_ms``: an expired count reads as no failures, an expired lock
        as no lock."""
        if now_ms >= self.expires_at_ms:
            return CLEAR
        locked = self.locked_until_ms
        return LoginGuard(self.failures, locked if locked is not None and now_ms < locked else None)

    def encode(self) -> str:
        """``failures:expires_at_ms:locked_until_ms`` (0: no lock), the Redis value."""
        return f"{self.failures}:{self.expires_at_ms}:{self.locked_until_ms or 0}"

    @classmethod
    def decode(cls, raw: str, source: str) -> LoginFailures:
        try:
            failures, expires, locked = (int(part) for part in raw.split(":"))
        except ValueError:
            raise InvalidData(source, "$", "expected failures:expires_ms:locked_until_ms") from None
        return cls(failures, expires, locked or None)


def check_failure_limits(max_attempts: int, lockout_ms: int) -> None:
    """``lockout_ms`` must be positive; ``max_attempts`` below 1 counts without locking."""
    if lockout_ms < 1:
        raise InvalidData("login lockout", str(lockout_ms), "lockout_ms must be at least 1")
    if max_attempts < 0:
        raise InvalidData("login lockout", str(max_attempts), "max_attempts must not be < 0")


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


def client_digest(client: str) -> str:
    """What stores keep instead of the raw client key (SHA-256 hex)."""
    return hashlib.sha256(client.encode("utf-8")).hexdigest()
