"""Traffic counts on Redis cost no round trip per request: thousands of requests recorded
over many event-loop turns reach a private ``redis-server`` in a handful of ``TRAFFIC_ADD``
calls (``INFO commandstats``), and the minute's hash holds exactly what was recorded, with
its expiry set a day and an hour after the minute starts; the writer's batch mark goes
when the store closes."""

from __future__ import annotations

import asyncio
import shutil
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cfgstore.adapters import Settings, Store
from cfgstore.model.timefmt import now_ms
from cfgstore.model.traffic import KEEP_MS, counts_from_fields, minute_of
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


async def test_requests_are_counted_in_a_few_round_trips(server: RedisServerProcess) -> None:
    prefix = f"t{uuidlib.uuid4().hex[:12]}"
    seed_namespace(server.url, prefix)
    settings = Settings(
        configs_dir=Path("unused"), backends=("redis",), redis_url=server.url, redis_prefix=prefix
    )
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        async with Store.open(settings) as store:
            before = evalsha_calls(client)
            minute = minute_of(now_ms())
            for i in range(REQUESTS):
                store.traffic.record("openai-custom", ok=i % 10 != 0, latency_ms=i % 700)
                if i % 100 == 0:
                    await asyncio.sleep(0)  # requests arrive over many loop turns
            at = now_ms()
            await store.flush()
            calls = evalsha_calls(client) - before
            keys = {minute, minute_of(at)}
            fields: dict[int, dict[str, str]] = {
                m: client.hgetall(f"{{{prefix}}}:traffic:{m}") for m in keys
            }
        assert 1 <= calls <= MAX_ROUND_TRIPS, f"{calls} script calls for {REQUESTS} requests"
        counts = [c for m, f in fields.items() for c in counts_from_fields(m, f)]
        assert sum(c.requests for c in counts) == REQUESTS
        assert sum(c.errors for c in counts) == REQUESTS // 10
        assert sum(c.latency_ms for c in counts) == sum(i % 700 for i in range(REQUESTS))
        for m in keys:
            expiry = client.pexpiretime(f"{{{prefix}}}:traffic:{m}")
            assert expiry == m + KEEP_MS
        marks = client.hkeys(f"{{{prefix}}}:batches")
        assert not [m for m in marks if m.startswith("t")], "the traffic writer's mark stayed"
    finally:
        client.close()
