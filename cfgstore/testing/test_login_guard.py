"""The admin-login lockout counter (``cfgstore.hookspecs.login_guard``): counting, locking
at the limit, expiry, clearing, reserving an attempt (check and count in one step, the
minimum interval), and exact counts under concurrency (across instances when the backend
declares ``shared-logins``)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest

from cfgstore.adapters import Store
from cfgstore.errors import InvalidData
from cfgstore.model.login_guard import LoginAttempt, LoginGuard, Refusal
from cfgstore.model.timefmt import now_ms
from cfgstore.testing.deployment import Deployment
from cfgstore.testing.fixtures import deployment_fixture, store_fixture  # noqa: F401
from cfgstore.testing.rules import rule

pytestmark = pytest.mark.asyncio  # every test here is a coroutine

CLIENT = "203.0.113.77"
OTHER = "198.51.100.9"
MINUTE = 60_000
T0 = 1_700_000_000_000


async def test_counts_locks_at_the_limit_and_clears(store: Store) -> None:
    logins = store.logins
    with rule("cfgstore_login_guard_get", "a client never seen reads LoginGuard(0, None)"):
        assert await logins.guard(CLIENT, T0) == LoginGuard(0, None)
    with rule(
        "cfgstore_login_failure_add",
        "counts one failure and returns the state after "
        "it; the max_attempts-th locks until now_ms + lockout_ms",
    ):
        first = await logins.failure(CLIENT, max_attempts=3, lockout_ms=MINUTE, now=T0)
        assert first == LoginGuard(1, None)
        assert await logins.failure(CLIENT, max_attempts=3, lockout_ms=MINUTE, now=T0 + 1) == (
            LoginGuard(2, None)
        )
        assert not (await logins.guard(CLIENT, T0 + 2)).locked(T0 + 2)
        third = await logins.failure(CLIENT, max_attempts=3, lockout_ms=MINUTE, now=T0 + 2)
        assert third == LoginGuard(3, T0 + 2 + MINUTE)
    with rule("cfgstore_login_guard_get", "the client's count and lock, per client"):
        guard = await logins.guard(CLIENT, T0 + 10)
        assert guard == third and guard.locked(T0 + 10)
        assert guard.retry_after_ms(T0 + 10) == MINUTE - 8
        assert await logins.guard(OTHER, T0 + 10) == LoginGuard(0, None)
    with rule(
        "cfgstore_login_guard_get",
        "the lock ends at locked_until with the count (it "
        "expires lockout_ms after the last failure)",
    ):
        assert (await logins.guard(CLIENT, T0 + 2 + MINUTE - 1)).locked(T0 + 2 + MINUTE - 1)
        assert await logins.guard(CLIENT, T0 + 2 + MINUTE) == LoginGuard(0, None)
    with rule(
        "cfgstore_login_failures_clear",
        "forgets count and lock; clearing an unknown client is fine",
    ):
        await logins.failure(OTHER, max_attempts=1, lockout_ms=MINUTE, now=T0)
        assert (await logins.guard(OTHER, T0 + 1)).locked(T0 + 1)
        await logins.clear(OTHER)
        assert await logins.guard(OTHER, T0 + 1) == LoginGuard(0, None)
        await logins.clear("never-seen")


async def test_count_expires_lockout_after_the_last_failure(store: Store) -> None:
    logins = store.logins
    await logins.failure(CLIENT, max_attempts=5, lockout_ms=MINUTE, now=T0)
    await logins.failure(CLIENT, max_attempts=5, lockout_ms=MINUTE, now=T0 + 50_000)
    with rule(
        "cfgstore_login_failure_add",
        "the count expires lockout_ms after the last "
        "failure; a failure after that starts a new count",
    ):
        assert await logins.guard(CLIENT, T0 + MINUTE + 10_000) == LoginGuard(2, None)
        assert await logins.guard(CLIENT, T0 + 50_000 + MINUTE) == LoginGuard(0, None)
        again = await logins.failure(CLIENT, max_attempts=5, lockout_ms=MINUTE, now=T0 + 200_000)
        assert again == LoginGuard(1, None)


async def test_failures_while_locked_extend_the_lock(store: Store) -> None:
    logins = store.logins
    await logins.failure(CLIENT, max_attempts=1, lockout_ms=MINUTE, now=T0)
    with rule("cfgstore_login_failure_add", "a failure while locked extends the lock"):
        later = await logins.failure(CLIENT, max_attempts=1, lockout_ms=MINUTE, now=T0 + 30_000)
        assert later == LoginGuard(2, T0 + 30_000 + MINUTE)


async def test_zero_max_attempts_counts_without_locking(store: Store) -> None:
    with rule("cfgstore_login_failure_add", "max_attempts 0 counts without ever locking"):
        for i in range(4):
            guard = await store.logins.failure(
                CLIENT, max_attempts=0, lockout_ms=MINUTE, now=T0 + i
            )
        assert guard == LoginGuard(4, None)
    with pytest.raises(InvalidData):  # the Store refuses it before any backend sees it
        await store.logins.failure(CLIENT, max_attempts=3, lockout_ms=0, now=T0)


async def test_default_now_is_the_current_time(store: Store) -> None:
    with rule(
        "cfgstore_login_failure_add", "times are the caller's now_ms (the current time by default)"
    ):
        guard = await store.logins.failure(CLIENT, max_attempts=1, lockout_ms=MINUTE)
        assert guard.locked(now_ms()) and (await store.logins.guard(CLIENT)).locked(now_ms())


async def test_concurrent_failures_count_exactly(deployment: Deployment) -> None:
    """50 concurrent failures: they count exactly 50 and every count from 1 to 50 is
    handed out once (no lost and no doubled increment). With ``shared-logins`` half go
    through each of two stores (instances); otherwise each store counts its own, and all
    go through one."""
    now = now_ms()
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(deployment.open())
        two = (
            await stack.enter_async_context(deployment.open()) if deployment.shared_logins else one
        )

        async def fail(store: Store) -> LoginGuard:
            return await store.logins.failure(
                CLIENT, max_attempts=1000, lockout_ms=10 * MINUTE, now=now
            )

        results = await asyncio.wait_for(
            asyncio.gather(*(fail((one, two)[i % 2]) for i in range(50))), timeout=60
        )
        with rule(
            "cfgstore_login_failure_add",
            "atomic across every instance sharing the "
            "storage: no lost or doubled increment under concurrency",
        ):
            assert sorted(r.failures for r in results) == list(range(1, 51))
            for opened in (one, two):
                assert await opened.logins.guard(CLIENT, now) == LoginGuard(50, None)


async def reserve(
    store: Store, now: int, max_attempts: int = 3, min_interval_ms: int = 0
) -> LoginAttempt:
    return await store.logins.reserve(
        CLIENT,
        max_attempts=max_attempts,
        lockout_ms=MINUTE,
        min_interval_ms=min_interval_ms,
        now=now,
    )


async def test_reserving_counts_locks_at_the_limit_and_refuses_while_locked(
    store: Store,
) -> None:
    with rule(
        "cfgstore_login_attempt_reserve",
        "counts each reserved attempt; the last one allowed sets the lock",
    ):
        assert await reserve(store, T0) == LoginAttempt(None, 1)
        assert await reserve(store, T0 + 1) == LoginAttempt(None, 2)
        third = await reserve(store, T0 + 2)
        assert third == LoginAttempt(None, 3, T0 + 2 + MINUTE) and third.locked(T0 + 2)
    with rule("cfgstore_login_attempt_reserve", "refused while locked, changing nothing"):
        refused = await reserve(store, T0 + 3)
        assert refused == LoginAttempt(Refusal.LOCKED, 3, T0 + 2 + MINUTE, T0 + 2 + MINUTE)
        assert await store.logins.guard(CLIENT, T0 + 3) == LoginGuard(3, T0 + 2 + MINUTE)
    with rule(
        "cfgstore_login_attempt_reserve",
        "after the lock, or a clear, the client starts again from zero",
    ):
        assert await reserve(store, T0 + 2 + MINUTE) == LoginAttempt(None, 1)
        await store.logins.clear(CLIENT)
        assert await reserve(store, T0 + 2 + MINUTE) == LoginAttempt(None, 1)


async def test_reserving_refuses_within_the_minimum_interval(store: Store) -> None:
    with rule(
        "cfgstore_login_attempt_reserve",
        "refused within min_interval_ms of the last "
        "reserved attempt; a refusal counts nothing and does not move the interval",
    ):
        assert (await reserve(store, T0, min_interval_ms=1000)).allowed
        too_soon = await reserve(store, T0 + 999, min_interval_ms=1000)
        assert too_soon == LoginAttempt(Refusal.TOO_FREQUENT, 1, None, T0 + 1000)
        assert await reserve(store, T0 + 1000, min_interval_ms=1000) == LoginAttempt(None, 2)
    with rule("cfgstore_login_failures_clear", "clears the last attempt too"):
        await store.logins.clear(CLIENT)
        assert (await reserve(store, T0 + 1001, min_interval_ms=1000)).allowed


async def test_concurrent_reservations_allow_exactly_max_attempts(
    deployment: Deployment,
) -> None:
    """60 concurrent reservations (half through each of two stores with
    ``shared-logins``): exactly 5 are allowed (attempts 1 to 5) and the rest refused as
    locked."""
    now = now_ms()
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(deployment.open())
        two = (
            await stack.enter_async_context(deployment.open()) if deployment.shared_logins else one
        )
        results = await asyncio.wait_for(
            asyncio.gather(*(reserve((one, two)[i % 2], now, max_attempts=5) for i in range(60))),
            timeout=60,
        )
        with rule(
            "cfgstore_login_attempt_reserve",
            "check and count in one atomic step across "
            "every instance: exactly max_attempts allowed, the rest refused as locked",
        ):
            allowed = sorted(r.failures for r in results if r.allowed)
            assert allowed == list(range(1, 6))
            assert all(r.refusal is Refusal.LOCKED for r in results if not r.allowed)
