"""The admin-login lockout counter (``LOGIN_MAX_ATTEMPTS``, ``LOGIN_LOCKOUT_DURATION``,
``LOGIN_MIN_INTERVAL``).

The caller passes an opaque client key (the gateway passes the client IP); backends that
persist it store only a digest (:func:`cfgstore.model.login_guard.client_digest`). A
shared backend counts across every instance on it; the file backend counts per process
(the Node service keeps the lockout in memory too). Nothing lingers: a count expires
``lockout_ms`` after its last failure. All times are epoch ms passed by the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.model.login_guard import LoginAttempt, LoginGuard


@hookspec
async def cfgstore_login_guard_get(client: str, now_ms: int) -> LoginGuard:
    """The client's failures and lock at ``now_ms``: an expired count reads as
    ``LoginGuard(0, None)``, an expired lock as ``locked_until_ms=None``."""


@hookspec
async def cfgstore_login_failure_add(
    client: str, now_ms: int, max_attempts: int, lockout_ms: int
) -> LoginGuard:
    """Count one failed login, atomically across every instance sharing the storage (no
    lost or doubled increment under any concurrency), and return the state after it
    (:func:`cfgstore.model.login_guard.add_failure`): the count expires ``lockout_ms`` after
    this failure; once it reaches ``max_attempts`` (> 0) the client is locked until
    ``now_ms + lockout_ms``."""


@hookspec
async def cfgstore_login_attempt_reserve(
    client: str, now_ms: int, max_attempts: int, lockout_ms: int, min_interval_ms: int
) -> LoginAttempt:
    """Reserve one login attempt before the password is checked: check and count in one
    atomic step across every instance sharing the storage (no lost or doubled count under
    any concurrency, no client retry of the increment), exactly as
    :func:`cfgstore.model.login_guard.reserve_attempt` computes it. A refusal (locked, or
    within ``min_interval_ms`` of the last reserved attempt) changes nothing. A reserved
    attempt counts as a failure until :func:`cfgstore_login_failures_clear`."""


@hookspec
async def cfgstore_login_failures_clear(client: str) -> None:
    """Forget the client's count and lock (a successful login)."""
