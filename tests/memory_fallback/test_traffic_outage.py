"""Traffic counts (the console's charts) through Redis outages, two instances with the
memory fallback on one private ``redis-server`` (AOF: a stop keeps the data).

A hung server (SIGSTOP) takes a traffic batch and answers nothing: the writer gives up on
the reply and sends the batch again under its id; after SIGCONT the server applies the
first send, and the second is recognised as a duplicate. A stopped server: counts wait in
each instance's memory and are sent once it is back. Every total is exact: none lost,
none counted twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cfgstore.adapters import Settings, Store
from cfgstore.model.traffic import TrafficTotals
from tests.memory_fallback.conftest import (
    RECOVER_WAIT_S,
    TYPE,
    fallback_settings,
    new_prefix,
    poll_until,
    redis_settings,
    seed_with_nodes,
)
from tests.support.redis_server import RedisServerProcess


def requests(store: Store, count: int, *, failing_every: int = 4) -> None:
    for i in range(count):
        store.traffic.record(TYPE, ok=i % failing_every != 0, latency_ms=50 + i % 300)


def failing(count: int, every: int = 4) -> int:
    return len(range(0, count, every))


async def stored(url: str, prefix: str) -> TrafficTotals:
    """What Redis holds for the last hour (a store of its own, nothing tallied)."""
    async with Store.open(redis_settings(url, prefix)) as reader:
        return (await reader.traffic.last_hour()).get(TYPE, TrafficTotals())


async def test_traffic_counts_through_a_hung_and_a_stopped_redis_land_exactly_once(
    aof_server: RedisServerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cfgstore.redis.writer")
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")

    def instance(name: str) -> Settings:
        return fallback_settings(url, prefix, tmp_path / name, redis_socket_timeout_ms=500)

    async with Store.open(instance("a")) as a, Store.open(instance("b")) as b:
        requests(a, 100)
        requests(b, 100)
        await a.flush()
        await b.flush()
        assert (await stored(url, prefix)).requests == 200

        aof_server.pause()
        requests(a, 50)
        await a.traffic.flush()  # handed to the writer, whose send gets no answer

        async def gave_up() -> bool:
            return any("traffic batch" in r.getMessage() for r in caplog.records)

        await poll_until(gave_up, within=10)
        aof_server.resume()
        await poll_until(lambda: _requests_are(url, prefix, 250), within=RECOVER_WAIT_S)

        aof_server.stop()
        requests(a, 20)
        requests(b, 30)
        await a.flush()  # through the outage: kept in memory, not an error
        await b.flush()
        aof_server.restart()
        await poll_until(lambda: _requests_are(url, prefix, 300), within=RECOVER_WAIT_S)
        await a.flush()
        await b.flush()

    totals = await stored(url, prefix)
    assert totals.requests == 300
    assert totals.errors == 2 * failing(100) + failing(50) + failing(20) + failing(30)
    assert sum(totals.bins) == 300
    assert any("applied after" in r.getMessage() for r in caplog.records), "no batch re-sent"


async def _requests_are(url: str, prefix: str, expected: int) -> bool:
    got = (await stored(url, prefix)).requests
    assert got <= expected, f"{got} requests stored, {expected} made: counted twice"
    return got == expected
