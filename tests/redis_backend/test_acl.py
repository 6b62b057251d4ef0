"""The documented least-privilege ACL is enough for every operation, and no more: every
command it grants is one the store sends (``tests/redis_backend/test_documented_acl.py``
runs the documented line end to end: cfgctl, the gateway, what stays refused)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cfgstore.adapters import Settings, Store
from cfgstore.errors import StorageServerError
from cfgstore.model.credentials import Credential
from cfgstore.model.custom_models import CustomModel
from cfgstore.model.sessions import UiSession
from cfgstore.model.timefmt import now_ms
from cfgstore.model.versions import ABSENT_VERSION, SCHEMA_VERSION
from cfgstore_redis.acl import COMMANDS, acl_rules, acl_setuser_line
from tests.contract.helpers import make_node
from tests.support.namespace_seed import seed_namespace
from tests.support.redis_server import RedisServerProcess

DOC = Path(__file__).resolve().parents[2] / "plugins/redis_backend/redis-keys.md"
CLUSTER_ONLY = frozenset({"cluster|slots", "command", "asking"})
"""Granted for Redis Cluster clients (``test_cluster`` runs the store as the user there)."""
NOT_GRANTED_AND_IGNORED = frozenset({"client|setinfo"})
"""redis-py names itself on Redis 7.2+ and ignores a refusal (see ``redis-keys.md``)."""


def test_the_documented_line_is_the_one_tested() -> None:
    assert acl_setuser_line("cfgstore", "aiclient") in DOC.read_text("utf-8")


async def test_store_runs_as_the_least_privileged_user(
    redis_server_process: RedisServerProcess, tmp_path: Path
) -> None:
    admin = aioredis.Redis.from_url(redis_server_process.url, decode_responses=True)
    await admin.execute_command(
        "ACL", "SETUSER", "cfgstore", "on", ">s3cret-acl-pw", *acl_rules("aclns").split()
    )
    port = redis_server_process.port
    seed_namespace(redis_server_process.url, "aclns")
    await admin.config_resetstat()
    settings = Settings(
        configs_dir=Path("unused"),
        backends=("memory", "redis"),
        redis_url=f"redis://cfgstore:s3cret-acl-pw@127.0.0.1:{port}/0",
        redis_prefix="aclns",
        state_dir=tmp_path / "state",
    )
    kiro = "claude-kiro-oauth"
    async with Store.open(settings) as store:
        await store.pools.add_node(kiro, make_node("a"))
        await store.pools.add_node(kiro, make_node("b"))
        await store.pools.record_success(kiro, "a")
        await store.pools.record_failure(kiro, "b", "x", max_error_count=1)
        await store.flush()
        await store.pools.update_node(kiro, "a", {"customName": "renamed"})
        await store.pools.set_disabled(kiro, "a", True)
        await store.pools.reset_health(kiro)
        await store.credentials.put(Credential(kiro, "a", {"accessToken": "t"}), None)
        token = await store.credentials.lock(kiro, "a", 10_000)
        assert token is not None and await store.credentials.unlock(kiro, "a", token)
        await store.pools.rename_node(kiro, "a", "a2")
        assert (await store.credentials.list())[0].uuid == "a2"
        await store.pools.delete_unhealthy(kiro)
        version = await store.config.put({"MAX_ERROR_COUNT": 3}, ABSENT_VERSION)
        assert (await store.config.get()).version == version
        await store.system_prompt.put("p")
        await store.custom_models.add(CustomModel("m", {"id": "m"}))
        await store.plugin_config.set_enabled("x", True)
        await store.usage_cache.put_type(kiro, {"n": 1}, "2026-05-30T08:00:00.000Z")
        store.traffic.record(kiro, ok=True, latency_ms=12.0)  # the console's charts
        await store.flush()  # the tally, then the batch, reach Redis
        assert (await store.traffic.last_hour())[kiro].requests == 1
        await store.plugin_logs.append("ai-monitor", {"requestId": "r1"}, keep=5)
        assert await store.plugin_logs.recent("ai-monitor", 5) == [{"requestId": "r1"}]
        await store.plugin_logs.clear("ai-monitor")
        await store.password.set("pw-123456789")
        await store.sessions.add("t" * 64, UiSession("admin", now_ms(), now_ms() + 60_000))
        assert await store.sessions.count() == 1
        assert await store.sessions.purge_expired() == 0
        await store.sessions.add("e" * 64, UiSession("admin", now_ms(), now_ms() + 60_000))
        assert await store.sessions.delete("e" * 64)
        await store.meta.update({"schema": str(SCHEMA_VERSION)})
        await store.pools.delete_node(kiro, "a2")
        statuses = {s.name: s for s in await store.status()}
        assert statuses["redis"].counts.sessions == 1
        # The memory fallback's heartbeat and replica reads work under the ACL too.
        assert statuses["memory"].mode == "redis" and not statuses["memory"].warnings
        instance_id = statuses["memory"].details["instance id"]
        assert [i.instance_id for i in await store.replicas.instances()] == [instance_id]
        assert statuses["redis"].details["maxmemory-policy"] == "noeviction"

    # Not one rule too many, and not one refusal (the best-effort reads would hide one).
    stats = await admin.info("commandstats")
    sent = {name.removeprefix("cmdstat_") for name, stat in stats.items() if stat["calls"]}
    assert set(COMMANDS) - CLUSTER_ONLY - sent == set(), "granted but never sent"
    refused = [
        entry["object"]
        for entry in await admin.execute_command("ACL", "LOG")
        if entry["object"] not in NOT_GRANTED_AND_IGNORED
    ]
    assert refused == []

    # Outside its namespace the user can do nothing.
    outsider = aioredis.Redis.from_url(
        f"redis://cfgstore:s3cret-acl-pw@127.0.0.1:{port}/0", decode_responses=True
    )
    with pytest.raises(aioredis.ResponseError, match="no permissions"):
        await outsider.get("{other}:config")
    with pytest.raises(aioredis.ResponseError, match="no permissions"):
        await outsider.flushall()
    await outsider.aclose()
    await admin.aclose()


async def test_a_database_other_than_0_is_selected_with_its_own_rule(
    redis_server_process: RedisServerProcess, tmp_path: Path
) -> None:
    admin = aioredis.Redis.from_url(redis_server_process.url, decode_responses=True)
    await admin.execute_command(
        "ACL", "SETUSER", "cfgstore", "on", ">s3cret-acl-pw", *acl_rules("dbns", db=3).split()
    )
    port = redis_server_process.port
    seed_namespace(f"redis://127.0.0.1:{port}/3", "dbns")
    user = f"redis://cfgstore:s3cret-acl-pw@127.0.0.1:{port}"
    settings = Settings(
        configs_dir=Path("unused"), backends=("redis",), redis_url=f"{user}/3", redis_prefix="dbns"
    )
    async with Store.open(settings) as store:
        await store.system_prompt.put("in database 3")
    database_3 = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/3", decode_responses=True)
    assert await database_3.get("{dbns}:system_prompt") == "in database 3"
    other = aioredis.Redis.from_url(f"{user}/4", decode_responses=True)
    with pytest.raises(aioredis.ResponseError, match="no permissions to run the 'select' command"):
        await other.get("{dbns}:system_prompt")
    for client in (other, database_3, admin):
        await client.aclose()


async def test_a_user_without_the_rules_gets_a_server_error(
    redis_server_process: RedisServerProcess,
) -> None:
    admin = aioredis.Redis.from_url(redis_server_process.url, decode_responses=True)
    await admin.execute_command(
        "ACL",
        "SETUSER",
        "weak",
        "on",
        ">weak-pw-123",
        "~*",
        "+@read",
        "+ping",
        "+hello",
        "+subscribe",
    )
    settings = Settings(
        configs_dir=Path("unused"),
        backends=("redis",),
        redis_url=f"redis://weak:weak-pw-123@127.0.0.1:{redis_server_process.port}/0",
        redis_prefix="weak",
    )
    async with Store.open(settings) as store:
        with pytest.raises(StorageServerError) as info:
            await store.system_prompt.put("nope")
        assert "weak-pw-123" not in str(info.value)
    await admin.aclose()
