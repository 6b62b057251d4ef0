"""Recovery without a second fault: a connection reset degrades an instance at most once,
and an instance started while another one writes misses none of its change messages.
Real ``redis-server`` processes; the faults are real (``CLIENT KILL``, a busy writer)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from cfgstore.adapters import Store
from tests.memory_fallback.conftest import (
    DEGRADE_WAIT_S,
    RECOVER_WAIT_S,
    TYPE,
    Load,
    fallback_settings,
    fallback_status,
    new_prefix,
    open_observed,
    redis_settings,
    redis_usage,
    replayed,
    seed_with_nodes,
    usage,
    write_journal,
)
from tests.support.fault_proxy import fault_proxy
from tests.support.redis_server import RedisServerProcess
from tests.support.waiting import until

BURST = 40
"""Concurrent reads that go to Redis: enough to take every pooled connection."""
QUIET_BURSTS = 5
"""Bursts after the recovery, each of which would trip over a stale pooled connection."""


async def _burst(store: Store) -> None:
    """Concurrent reads through the fallback to Redis (credential listings are not cached):
    each one takes a pooled connection, so together they use every connection the pool
    holds."""
    await asyncio.gather(*(store.credentials.list() for _ in range(BURST)))


async def test_connection_reset_degrades_at_most_once(
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    """Under load, with the pool full of idle connections, every connection of the instance
    is reset (``RST`` from a proxy in front of Redis: the pool's checkout cannot tell such a
    connection from a healthy idle one). The instance may degrade once; after it is back,
    bursts that use every pooled connection cause no second degradation, and the counts
    are exact."""
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1", "n2")
    async with fault_proxy("127.0.0.1", aof_server.port) as proxy:
        settings = fallback_settings(proxy.url(), prefix, tmp_path / "state")
        async with open_observed(settings) as (store, observer):
            load = Load(store, ["n1", "n2"], tasks=20, pause_s=0.005)
            await _burst(store)  # the pool now holds many idle connections
            assert proxy.reset_all() > 1
            # The load's next batch meets a reset connection: degraded, then back.
            await observer.wait(True, within=DEGRADE_WAIT_S)
            await observer.wait(False, within=RECOVER_WAIT_S)
            settled = len(observer.transitions)
            for _ in range(QUIET_BURSTS):
                await _burst(store)
                await store.flush()
            assert len(observer.transitions) == settled, observer.transitions
            assert sum(t.degraded for t in observer.transitions) <= 1, observer.transitions
            counts = await load.stop()
            await store.flush()
            assert (await fallback_status(store)).mode == "redis"
    assert await redis_usage(url, prefix, "n1", "n2") == counts


STARTS = 3
"""Instances started one after the other while the other writer keeps writing."""


async def test_instance_started_while_another_writes_misses_no_change(
    aof_server: RedisServerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another writer publishes a change message every few milliseconds while instances
    start: a message that arrives before the fallback is ready is kept for it, never
    dropped (nor does it break the change feed), and each instance ends up with the other
    writer's last count."""
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    caplog.set_level(logging.WARNING)
    async with Store.open(redis_settings(url, prefix)) as writer:
        made = 0
        stop = asyncio.Event()

        async def write() -> None:
            nonlocal made
            while not stop.is_set():
                await writer.pools.record_success(TYPE, "n1")
                await writer.flush()
                made += 1

        writing = asyncio.create_task(write())
        try:
            for index in range(STARTS):
                settings = fallback_settings(url, prefix, tmp_path / f"state-{index}")
                async with Store.open(settings) as store:
                    assert made > 0
                    stop.set()
                    await writing
                    await until(lambda: _usage_is(store, made), "the instance sees the last change")
                stop.clear()
                writing = asyncio.create_task(write())
        finally:
            stop.set()
            await writing
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not problems, problems


async def _usage_is(store: Store, expected: int) -> bool:
    return await usage(store, "n1") == expected


REPLAY_ENTRIES = 400
LATENCY_S = 0.02
"""Added to every request: one round trip per entry would take REPLAY_ENTRIES × 20 ms = 8 s."""


async def test_replay_is_pipelined_not_one_round_trip_per_entry(
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    """An instance starts with a journal of 400 one-record entries on a Redis 20 ms away
    (a proxy delays every request). Sent one entry per round trip the replay would add
    8 s to the start; pipelined, it adds less than a quarter of that to the time the same
    start takes without a journal, and every entry counts exactly once."""
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    state = tmp_path / "state"
    async with fault_proxy("127.0.0.1", aof_server.port) as proxy:
        proxy.latency_s = LATENCY_S
        settings = fallback_settings(proxy.url(), prefix, state)
        started = time.monotonic()
        async with Store.open(settings):  # leaves the state dir: identity and snapshot
            plain_start = time.monotonic() - started
        await write_journal(state / "journal", "n1", REPLAY_ENTRIES)
        started = time.monotonic()
        async with Store.open(settings) as store:
            replaying_start = time.monotonic() - started
            details = (await fallback_status(store)).details
            assert replayed(details) == (REPLAY_ENTRIES, REPLAY_ENTRIES, 0)
            assert details["journal depth"] == "0"
    added = replaying_start - plain_start
    assert added < REPLAY_ENTRIES * LATENCY_S / 4, (plain_start, replaying_start)
    assert await redis_usage(url, prefix, "n1") == {"n1": REPLAY_ENTRIES}
