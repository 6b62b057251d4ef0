"""The admin-login lockout counter: counting, locking at the limit, expiry, clearing,
reserving an attempt (check and count in one step, the minimum interval), and exact counts
under concurrency (across instances on a shared backend). On Redis: the key has a TTL and
no key or value holds the raw client key; the least-privileged ACL suffices; behind the
memory fallback the counter is refused while the storage is degraded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cfgstore.adapters import Settings, Store
from cfgstore.errors import InvalidData, StorageDegraded
from cfgstore.model.login_guard import (
    LoginAttempt,
    LoginFailures,
    LoginGuard,
    Refusal,
    add_failure,
    client_digest,
    reserve_attempt,
)
from cfgstore.model.timefmt import now_ms
from cfgstore_redis.acl import acl_rules
from cfgstore_redis.keys import Keys
from tests.contract.conftest import Deployment
from tests.support.namespace_seed import seed_namespace
from tests.support.redis_server import RedisServerProcess

CLIENT = "203.0.113.77"
OTHER = "198.51.100.9"
MINUTE = 60_000
T0 = 1_700_000_000_000


def shared(deployment: Deployment) -> bool:
    return "redis" in deployment.settings.chain


async def test_counts_locks_at_the_limit_and_clears(store: Store) -> None:
    logins = store.logins
    assert await logins.guard(CLIENT, T0) == LoginGuard(0, None)
    first = await logins.failure(CLIENT, max_attempts=3, lockout_ms=MINUTE, now=T0)
    assert first == LoginGuard(1, None)
    assert await logins.failure(CLIENT, max_attempts=3, lockout_ms=MINUTE, now=T0 + 1) == (
        LoginGuard(2, None)
    )
    assert not (await logins.guard(CLIENT, T0 + 2)).locked(T0 + 2)
    third = await logins.failure(CLIENT, max_attempts=3, lockout_ms=MINUTE, now=T0 + 2)
    assert third == LoginGuard(3, T0 + 2 + MINUTE)
    guard = await logins.guard(CLIENT, T0 + 10)
    assert guard == third and guard.locked(T0 + 10)
    assert guard.retry_after_ms(T0 + 10) == MINUTE - 8
    # Another client is not affected.
    assert await logins.guard(OTHER, T0 + 10) == LoginGuard(0, None)
    # The lock ends exactly at locked_until, with the count (it expires lockout_ms after
    # the last failure): the client starts again from zero.
    assert (await logins.guard(CLIENT, T0 + 2 + MINUTE - 1)).locked(T0 + 2 + MINUTE - 1)
    assert await logins.guard(CLIENT, T0 + 2 + MINUTE) == LoginGuard(0, None)
    # A successful login clears count and lock.
    await logins.failure(OTHER, max_attempts=1, lockout_ms=MINUTE, now=T0)
    assert (await logins.guard(OTHER, T0 + 1)).locked(T0 + 1)
    await logins.clear(OTHER)
    assert await logins.guard(OTHER, T0 + 1) == LoginGuard(0, None)
    await logins.clear("never-seen")  # clearing nothing is fine


async def test_count_expires_lockout_after_the_last_failure(store: Store) -> None:
    logins = store.logins
    await logins.failure(CLIENT, max_attempts=5, lockout_ms=MINUTE, now=T0)
    await logins.failure(CLIENT, max_attempts=5, lockout_ms=MINUTE, now=T0 + 50_000)
    assert await logins.guard(CLIENT, T0 + MINUTE + 10_000) == LoginGuard(2, None)
    assert await logins.guard(CLIENT, T0 + 50_000 + MINUTE) == LoginGuard(0, None)
    # After the expiry a failure starts a new count.
    again = await logins.failure(CLIENT, max_attempts=5, lockout_ms=MINUTE, now=T0 + 200_000)
    assert again == LoginGuard(1, None)


async def test_failures_while_locked_extend_the_lock(store: Store) -> None:
    logins = store.logins
    await logins.failure(CLIENT, max_attempts=1, lockout_ms=MINUTE, now=T0)
    later = await logins.failure(CLIENT, max_attempts=1, lockout_ms=MINUTE, now=T0 + 30_000)
    assert later == LoginGuard(2, T0 + 30_000 + MINUTE)


async def test_zero_max_attempts_counts_without_locking(store: Store) -> None:
    for i in range(4):
        guard = await store.logins.failure(CLIENT, max_attempts=0, lockout_ms=MINUTE, now=T0 + i)
    assert guard == LoginGuard(4, None)
    with pytest.raises(InvalidData):
        await store.logins.failure(CLIENT, max_attempts=3, lockout_ms=0, now=T0)


async def test_default_now_is_the_current_time(store: Store) -> None:
    guard = await store.logins.failure(CLIENT, max_attempts=1, lockout_ms=MINUTE)
    assert guard.locked(now_ms()) and (await store.logins.guard(CLIENT)).locked(now_ms())


async def test_concurrent_failures_count_exactly(deployment: Deployment) -> None:
    """50 concurrent failures, half through each of two stores: on a shared backend they
    count exactly 50 and every count from 1 to 50 is handed out once (no lost and no
    doubled increment). The file backend counts per store (per process)."""
    now = now_ms()
    async with deployment.open() as one, deployment.open() as two:
        stores = [one, two] if shared(deployment) else [one, one]

        async def fail(store: Store) -> LoginGuard:
            return await store.logins.failure(
                CLIENT, max_attempts=1000, lockout_ms=10 * MINUTE, now=now
            )

        results = await asyncio.wait_for(
            asyncio.gather(*(fail(stores[i % 2]) for i in range(50))), timeout=60
        )
        assert sorted(r.failures for r in results) == list(range(1, 51))
        for store in stores:
            assert await store.logins.guard(CLIENT, now) == LoginGuard(50, None)


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
    assert await reserve(store, T0) == LoginAttempt(None, 1)
    assert await reserve(store, T0 + 1) == LoginAttempt(None, 2)
    # The last attempt allowed sets the lock; a success would clear it.
    third = await reserve(store, T0 + 2)
    assert third == LoginAttempt(None, 3, T0 + 2 + MINUTE) and third.locked(T0 + 2)
    refused = await reserve(store, T0 + 3)
    assert refused == LoginAttempt(Refusal.LOCKED, 3, T0 + 2 + MINUTE, T0 + 2 + MINUTE)
    assert await store.logins.guard(CLIENT, T0 + 3) == LoginGuard(3, T0 + 2 + MINUTE)
    # After the lock the client starts again from zero; a clear does so at once.
    assert await reserve(store, T0 + 2 + MINUTE) == LoginAttempt(None, 1)
    await store.logins.clear(CLIENT)
    assert await reserve(store, T0 + 2 + MINUTE) == LoginAttempt(None, 1)


async def test_reserving_refuses_within_the_minimum_interval(store: Store) -> None:
    assert (await reserve(store, T0, min_interval_ms=1000)).allowed
    too_soon = await reserve(store, T0 + 999, min_interval_ms=1000)
    assert too_soon == LoginAttempt(Refusal.TOO_FREQUENT, 1, None, T0 + 1000)
    # A refusal counts nothing and does not move the interval.
    assert await reserve(store, T0 + 1000, min_interval_ms=1000) == LoginAttempt(None, 2)
    # A success clears the last attempt too.
    await store.logins.clear(CLIENT)
    assert (await reserve(store, T0 + 1001, min_interval_ms=1000)).allowed


async def test_concurrent_reservations_allow_exactly_max_attempts(
    deployment: Deployment,
) -> None:
    """60 concurrent reservations, half through each of two stores: on a shared backend
    exactly 5 are allowed (attempts 1 to 5) and the rest refused as locked; the file
    backend counts per store (per process), so each store allows its 5."""
    now = now_ms()
    async with deployment.open() as one, deployment.open() as two:
        stores = [one, two]
        results = await asyncio.wait_for(
            asyncio.gather(*(reserve(stores[i % 2], now, max_attempts=5) for i in range(60))),
            timeout=60,
        )
        allowed = sorted(r.failures for r in results if r.allowed)
        expected = list(range(1, 6)) if shared(deployment) else sorted([*range(1, 6)] * 2)
        assert allowed == expected
        assert all(r.refusal is Refusal.LOCKED for r in results if not r.allowed)


def test_reservation_model_matches_the_documented_rule() -> None:
    kept, attempt = reserve_attempt(None, T0, 2, MINUTE, 5 * MINUTE)
    assert attempt == LoginAttempt(None, 1)
    assert kept == LoginFailures(1, T0 + 5 * MINUTE, None, T0)
    assert LoginFailures.decode(kept.encode(), "test") == kept
    assert reserve_attempt(kept, T0 + 1, 2, MINUTE, 5 * MINUTE)[0] is None
    # A count stored before the last attempt was kept reads as never attempted.
    old = LoginFailures.decode("1:9999999999999:0", "test")
    assert old.last_attempt_ms is None
    _, again = reserve_attempt(old, T0, 2, MINUTE, 5 * MINUTE)
    assert again == LoginAttempt(None, 2, T0 + MINUTE)
    with pytest.raises(InvalidData):
        LoginFailures.decode("1:2:3:4:5", "test")


async def test_redis_reads_a_count_stored_without_the_last_attempt(
    deployment: Deployment,
) -> None:
    if not shared(deployment):
        pytest.skip("Redis value format")
    settings = deployment.settings
    key = Keys(settings.redis_prefix).login(client_digest(CLIENT))
    admin = aioredis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    try:
        await admin.set(key, f"1:{T0 + MINUTE}:0", px=MINUTE)
        async with deployment.open() as store:
            assert await reserve(store, T0, max_attempts=2) == LoginAttempt(None, 2, T0 + MINUTE)
            assert LoginFailures.decode(await admin.get(key), key).last_attempt_ms == T0
            assert 0 < await admin.pttl(key) <= MINUTE
    finally:
        await admin.aclose()


async def test_redis_key_has_a_ttl_and_never_holds_the_client(deployment: Deployment) -> None:
    if not shared(deployment):
        pytest.skip("Redis key layout")
    settings = deployment.settings
    key = Keys(settings.redis_prefix).login(client_digest(CLIENT))
    async with deployment.open() as store:
        admin = aioredis.Redis.from_url(str(settings.redis_url), decode_responses=True)
        try:
            await store.logins.failure(CLIENT, max_attempts=2, lockout_ms=MINUTE)
            await store.logins.failure(CLIENT, max_attempts=2, lockout_ms=MINUTE)
            assert 0 < await admin.pttl(key) <= MINUTE
            stored = LoginFailures.decode(await admin.get(key), key)
            assert stored.failures == 2 and stored.locked_until_ms is not None
            await assert_nowhere(admin, f"{{{settings.redis_prefix}}}:*", CLIENT)
            await store.logins.clear(CLIENT)
            assert await admin.exists(key) == 0
        finally:
            await admin.aclose()


async def assert_nowhere(admin: aioredis.Redis, pattern: str, needle: str) -> None:
    """No key name and no value under ``pattern`` contains ``needle`` (SCAN, tests only)."""
    seen = 0
    async for name in admin.scan_iter(match=pattern, count=100):
        seen += 1
        assert needle not in name
        kind = await admin.type(name)
        if kind == "string":
            values = [await admin.get(name) or ""]
        elif kind == "hash":
            values = [f"{k}={v}" for k, v in (await admin.hgetall(name)).items()]
        elif kind == "list":
            values = await admin.lrange(name, 0, -1)
        elif kind == "zset":
            values = await admin.zrange(name, 0, -1)
        elif kind == "set":
            values = list(await admin.smembers(name))
        else:
            values = []
        assert not any(needle in value for value in values), name
    assert seen > 0


def test_model_transition_matches_the_documented_rule() -> None:
    state = None
    for i in range(3):
        state = add_failure(state, T0 + i, 3, MINUTE)
    assert state == LoginFailures(3, T0 + 2 + MINUTE, T0 + 2 + MINUTE)
    assert LoginFailures.decode(state.encode(), "test") == state
    assert LoginFailures.decode("1:5:0", "test").locked_until_ms is None
    with pytest.raises(InvalidData):
        LoginFailures.decode("garbage", "test")


async def test_least_privileged_user_can_count_logins(
    redis_server_process: RedisServerProcess, tmp_path: Path
) -> None:
    admin = aioredis.Redis.from_url(redis_server_process.url, decode_responses=True)
    try:
        await admin.execute_command(
            "ACL", "SETUSER", "cfgstore", "on", ">s3cret-acl-pw", *acl_rules("aclns").split()
        )
    finally:
        await admin.aclose()
    seed_namespace(redis_server_process.url, "aclns")
    settings = Settings(
        configs_dir=Path("unused"),
        backends=("redis",),
        redis_url=f"redis://cfgstore:s3cret-acl-pw@127.0.0.1:{redis_server_process.port}/0",
        redis_prefix="aclns",
    )
    async with Store.open(settings) as store:
        locked = await store.logins.failure(CLIENT, max_attempts=1, lockout_ms=MINUTE)
        assert (await store.logins.guard(CLIENT)) == locked
        await store.logins.clear(CLIENT)
        assert await store.logins.guard(CLIENT) == LoginGuard(0, None)


async def test_memory_fallback_refuses_the_counter_while_degraded(
    redis_server_process: RedisServerProcess, tmp_path: Path
) -> None:
    """Login counts live in the shared storage: with it gone, a failure is refused with
    StorageDegraded (the outage switches the store to degraded), and so is the check."""
    url, prefix = redis_server_process.url, "lgdeg"
    seed_namespace(url, prefix)
    settings = Settings(
        configs_dir=Path("unused"),
        backends=("memory", "redis"),
        redis_url=url,
        redis_prefix=prefix,
        state_dir=tmp_path / "state",
    )
    async with Store.open(settings) as store:
        assert await store.logins.failure(CLIENT, max_attempts=3, lockout_ms=MINUTE) == (
            LoginGuard(1, None)
        )
        await redis_server_process.astop()
        with pytest.raises(StorageDegraded):
            await store.logins.failure(CLIENT, max_attempts=3, lockout_ms=MINUTE)
        with pytest.raises(StorageDegraded):
            await store.logins.guard(CLIENT)
        with pytest.raises(StorageDegraded):
            await store.logins.clear(CLIENT)
        with pytest.raises(StorageDegraded):
            await store.logins.reserve(CLIENT, max_attempts=3, lockout_ms=MINUTE, min_interval_ms=0)
