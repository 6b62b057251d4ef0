"""Traffic counts (the console's charts) through Redis outages, two instances with the
memory fallback on one private ``redis-server`` (AOF: a stop keeps the data).

* A hung server (SIGSTOP) takes a traffic batch and answers nothing: the instance turns
  degraded and journals that batch under its id; after SIGCONT the server applies the
  first send, and the replay of the journal is recognised as a duplicate.
* A stopped server: both instances journal their counts; one of them is even closed and
  opened again before Redis is back, and replays its journal at start-up.

Every total is exact: none lost, none counted twice.
"""

from __future__ import annotations

from pathlib import Path

from cfgstore.adapters import Settings, Store
from cfgstore.model.traffic import TrafficTotals
from tests.memory_fallback.conftest import (
    DEGRADE_WAIT_S,
    RECOVER_WAIT_S,
    TYPE,
    fallback_settings,
    fallback_status,
    journal_depth,
    new_prefix,
    open_observed,
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
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")

    def instance(name: str) -> Settings:
        return fallback_settings(url, prefix, tmp_path / name, redis_socket_timeout_ms=500)

    async def requests_are(expected: int) -> bool:
        got = (await stored(url, prefix)).requests
        assert got <= expected, f"{got} requests stored, {expected} made: counted twice"
        return got == expected

    async with open_observed(instance("b")) as (b, _):
        async with open_observed(instance("a")) as (a, observer):
            requests(a, 100)
            requests(b, 100)
            await a.flush()
            await b.flush()
            assert (await stored(url, prefix)).requests == 200

            aof_server.pause()
            requests(a, 50)
            await a.traffic.flush()  # to the relay, whose send gets no answer
            await observer.wait(True, within=DEGRADE_WAIT_S)
            await a.flush()  # the batch is journaled under its id
            assert await journal_depth(a) >= 1
            aof_server.resume()
            await observer.wait(False, within=RECOVER_WAIT_S, after=1)
            await poll_until(lambda: requests_are(250), within=RECOVER_WAIT_S)
            assert await journal_depth(a) == 0

            aof_server.stop()
            requests(a, 20)
            requests(b, 30)
            await observer.wait(True, within=DEGRADE_WAIT_S, after=2)
            await a.flush()  # journaled: a flush through an outage succeeds
            await b.flush()
            assert await journal_depth(a) >= 1
        # a is closed with its counts in the journal only; Redis comes back, a restarts.
        aof_server.restart()
        async with Store.open(instance("a")) as a:
            assert (await fallback_status(a)).mode == "redis"
            await poll_until(lambda: requests_are(300), within=RECOVER_WAIT_S)
            await a.flush()
        await b.flush()

    totals = await stored(url, prefix)
    assert totals.requests == 300
    assert totals.errors == 2 * failing(100) + failing(50) + failing(20) + failing(30)
    assert sum(totals.bins) == 300
