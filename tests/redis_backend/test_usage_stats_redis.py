"""Model usage statistics on Redis: thousands of requests recorded over many event-loop
turns reach a private ``redis-server`` in a handful of ``USAGE_STATS_ADD`` calls (``INFO
commandstats``), and a batch sent again under its id (a reply that was lost) is applied
once; the writer's batch mark goes when the store closes."""

from __future__ import annotations

import asyncio
import shutil
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cfgstore.adapters import Settings, Store
from cfgstore.model.batch_ids import BatchSequence
from cfgstore.model.usage_stats import UsageCount
from tests.support.namespace_seed import seed_namespace
from tests.support.redis_server import RedisServerProcess

REQUESTS = 3000
MAX_ROUND_TRIPS = 5
"""Hand-overs are a second apart: a few even on a slow machine, never one per request."""


@pytest.fixture
def server() -> Iterator[RedisServerProcess]:
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server binary on PATH")
    with RedisServerProcess() as started:
        yield started


def evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_requests_are_counted_in_a_few_round_trips_and_a_resent_batch_once(
    server: RedisServerProcess,
) -> None:
    prefix = f"t{uuidlib.uuid4().hex[:12]}"
    seed_namespace(server.url, prefix)
    settings = Settings(
        configs_dir=Path("unused"), backends=("redis",), redis_url=server.url, redis_prefix=prefix
    )
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        async with Store.open(settings) as store:
            before = evalsha_calls(client)
            for i in range(REQUESTS):
                store.usage_stats.record("openai-custom", f"m{i % 3}", prompt_tokens=i % 9)
                if i % 100 == 0:
                    await asyncio.sleep(0)  # requests arrive over many loop turns
            await store.flush()
            assert evalsha_calls(client) - before <= MAX_ROUND_TRIPS
            doc = await store.usage_stats.read(live=False)
            prompt = sum(i % 9 for i in range(REQUESTS))
            assert doc["summary"]["requestCount"] == REQUESTS
            assert doc["summary"]["promptTokens"] == doc["summary"]["totalTokens"] == prompt

            add = store.replicas._ops["cfgstore_replica_add_usage_stats"]  # the replay's path
            batch = [UsageCount("openai-custom", "m0", "2026-01-01", 2, 5, 5, 10)]
            op_id = BatchSequence("writer-x", 1).next()
            assert await add(counts=batch, op_id=op_id) is True
            assert await add(counts=batch, op_id=op_id) is False  # its reply was lost
            doc = await store.usage_stats.read(live=False)
            assert doc["daily"]["2026-01-01"]["requestCount"] == 2
            assert doc["summary"]["requestCount"] == REQUESTS + 2
            marks = client.hkeys("{" + prefix + "}:batches")
            assert any(m.startswith("u") for m in marks)
        marks = client.hkeys("{" + prefix + "}:batches")
        assert not any(m.startswith("u") for m in marks)  # dropped on a clean close
    finally:
        client.close()
