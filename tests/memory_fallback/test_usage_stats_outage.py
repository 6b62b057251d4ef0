"""Model usage statistics through Redis outages, two instances with the memory fallback on
one private ``redis-server`` (AOF: a stop keeps the data), as the traffic counts are
tested (test_traffic_outage):

* a hung server (SIGSTOP) takes a usage batch and answers nothing: the instance turns
  degraded and journals that batch under its id; after SIGCONT the first send is applied
  and the replay of the journal is recognised as a duplicate;
* a stopped server: both instances journal their counts; one is closed and opened again
  before Redis is back, and replays its journal at start-up.

Every sum is exact: no request or token lost, none counted twice.
"""

from __future__ import annotations

from pathlib import Path

from cfgstore.adapters import Settings, Store
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

MODEL = "gpt-outage"


def requests(store: Store, count: int) -> None:
    for i in range(count):
        store.usage_stats.record(TYPE, MODEL, prompt_tokens=i % 5 + 1, completion_tokens=2)


def tokens(count: int) -> int:
    return sum(i % 5 + 1 + 2 for i in range(count))


async def stored(url: str, prefix: str) -> tuple[int, int]:
    """Requests and total tokens Redis holds (a store of its own, nothing tallied)."""
    async with Store.open(redis_settings(url, prefix)) as reader:
        summary = (await reader.usage_stats.read(live=False))["summary"]
        return summary["requestCount"], summary["totalTokens"]


async def test_usage_counts_through_a_hung_and_a_stopped_redis_land_exactly_once(
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")

    def instance(name: str) -> Settings:
        return fallback_settings(url, prefix, tmp_path / name, redis_socket_timeout_ms=500)

    made: list[int] = [0]  # tokens counted so far

    async def sums_are(expected: int) -> bool:
        got, got_tokens = await stored(url, prefix)
        assert got <= expected, f"{got} requests stored, {expected} made: counted twice"
        return got == expected and got_tokens == made[0]

    async with open_observed(instance("b")) as (b, _):
        async with open_observed(instance("a")) as (a, observer):
            requests(a, 100)
            requests(b, 100)
            made[0] += 2 * tokens(100)
            await a.flush()
            await b.flush()
            assert await stored(url, prefix) == (200, made[0])

            aof_server.pause()
            requests(a, 50)
            made[0] += tokens(50)
            await a.usage_stats.flush()  # to the relay, whose send gets no answer
            await observer.wait(True, within=DEGRADE_WAIT_S)
            await a.flush()  # the batch is journaled under its id
            assert await journal_depth(a) >= 1
            aof_server.resume()
            await observer.wait(False, within=RECOVER_WAIT_S, after=1)
            await poll_until(lambda: sums_are(250), within=RECOVER_WAIT_S)
            assert await journal_depth(a) == 0

            aof_server.stop()
            requests(a, 20)
            requests(b, 30)
            made[0] += tokens(20) + tokens(30)
            await observer.wait(True, within=DEGRADE_WAIT_S, after=2)
            await a.flush()  # journaled: a flush through an outage succeeds
            await b.flush()
            assert await journal_depth(a) >= 1
        # a is closed with its counts in the journal only; Redis comes back, a restarts.
        aof_server.restart()
        async with Store.open(instance("a")) as a:
            assert (await fallback_status(a)).mode == "redis"
            await poll_until(lambda: sums_are(300), within=RECOVER_WAIT_S)
            await a.flush()
        await b.flush()

    assert await stored(url, prefix) == (300, made[0])
