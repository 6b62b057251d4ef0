"""The contract suite's login-counter tests on this repository's backends (see conftest),
and what only this repository's backends promise: on Redis the key has a TTL and no key or
value holds the raw client key, the least-privileged ACL suffices, and behind the memory
fallback the counter is refused while the storage is degraded; on files each store counts
its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cfgstore.adapters import Settings, Store
from cfgstore.errors import StorageDegraded
from cfgstore.model.login_guard import (
    LoginAttempt,
    LoginFailures,
    LoginGuard,
    client_digest,
)
from cfgstore.model.timefmt import now_ms
from cfgstore.testing.deployment import Deployment
from cfgstore.testing.test_login_guard import *  # noqa: F403
from cfgstore.testing.test_login_guard import CLIENT, MINUTE, T0, reserve
from cfgstore_redis.acl import acl_rules
from cfgstore_redis.keys import Keys
from tests.support.namespace_seed import seed_namespace
from tests.support.redis_server import RedisServerProcess


def on_redis(deployment: Deployment) -> bool:
    return "redis" in deployment.settings.chain


async def test_file_counts_logins_per_store(deployment: Deployment) -> None:
    """The file backend keeps the count in the store's memory (per process, as the Node
    service does): two stores on one folder each allow their own attempts."""
    if deployment.settings.chain != ("file",):
        pytest.skip("the file backend's per-store counter")
    now = now_ms()
    async with deployment.open() as one, deployment.open() as two:
        results = await asyncio.wait_for(
            asyncio.gather(*(reserve((one, two)[i % 2], now, max_attempts=5) for i in range(60))),
            timeout=60,
        )
    assert sorted(r.failures for r in results if r.allowed) == sorted([*range(1, 6)] * 2)


async def test_redis_reads_a_count_stored_without_the_last_attempt(
    deployment: Deployment,
) -> None:
    if not on_redis(deployment):
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
    if not on_redis(deployment):
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
