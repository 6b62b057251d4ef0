"""Refusals that are not outages (DESIGN §3, issue 4 point 3): out of memory under
``noeviction`` keeps the store in normal mode — never degraded, never parked silently.
The caller of ``flush`` and of an admin edit gets the server-error type, status shows it,
and once the operator fixes the server the kept batch lands exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import attrs
import pytest
import redis.asyncio as aioredis

from cfgstore.adapters import Settings, Store
from cfgstore.errors import StorageServerError
from cfgstore.model.versions import ANY_VERSION
from tests.contract.helpers import make_node
from tests.support.namespace_seed import seed_namespace
from tests.support.redis_server import RedisServerProcess

TYPE = "openai-custom"


async def test_out_of_memory_is_reported_not_parked_and_lands_once_fixed(
    redis_server_process: RedisServerProcess, tmp_path: Path
) -> None:
    url = redis_server_process.url
    seed_namespace(url, "oom")
    base = Settings(configs_dir=Path("unused"), redis_url=url, redis_prefix="oom")
    async with Store.open(attrs.evolve(base, backends=("redis",))) as admin:
        await admin.pools.add_node(TYPE, make_node("n"))
    server = aioredis.Redis.from_url(url, decode_responses=True)
    settings = attrs.evolve(
        base, backends=("memory", "redis"), state_dir=tmp_path / "state", probe_max_delay_ms=200
    )
    try:
        async with Store.open(settings) as store:
            await server.config_set("maxmemory-policy", "noeviction")
            await server.config_set("maxmemory", "1")  # every write is now refused: OOM
            for _ in range(10):
                await store.pools.record_success(TYPE, "n")
            with pytest.raises(StorageServerError, match="out of memory"):
                await asyncio.wait_for(store.flush(), 10)
            memory = (await store.status())[0]
            assert memory.mode == "redis"  # not an outage: never degraded
            assert any("out of memory" in w for w in memory.warnings)
            node = await store.pools.get_node(TYPE, "n")
            assert node is not None and node.state.usage_count == 10  # still served
            with pytest.raises(StorageServerError, match="out of memory"):
                await store.config.put({"A": 1}, ANY_VERSION)

            await server.config_set("maxmemory", "0")  # the operator fixes the server
            await asyncio.wait_for(store.flush(), 10)
            assert not (await store.status())[0].warnings
        async with Store.open(attrs.evolve(base, backends=("redis",))) as admin:
            stored = await admin.pools.get_node(TYPE, "n")
            assert stored is not None and stored.state.usage_count == 10  # exactly once
    finally:
        await server.aclose()
