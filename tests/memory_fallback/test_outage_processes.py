"""Outages with instances in their own OS processes: many writers through a Redis stop, a
writer SIGKILLed during an outage, a replay SIGKILLed halfway. Every count exact."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid as uuidlib
from pathlib import Path

from cfgstore.adapters import Store
from cfgstore.model.records import Success
from cfgstore.model.timefmt import now_ms
from cfgstore_memory.journal import Journal
from cfgstore_memory.replay import CHUNK_ENTRIES, RECORDS, records_data
from tests.memory_fallback.conftest import (
    DEGRADE_WAIT_S,
    PROCESS_WAIT_S,
    RECOVER_WAIT_S,
    SCALE,
    TYPE,
    Worker,
    fallback_settings,
    new_prefix,
    poll_until,
    read_snapshot,
    redis_settings,
    redis_usage,
    replayed,
    scaled,
    seed_with_nodes,
    snapshot_usage,
)
from tests.support.redis_server import RedisServerProcess

WRITERS = 4
TASKS = scaled(200, minimum=20)
"""Concurrent recording tasks per writer process."""
OUTAGE_S = max(1.0, 5.0 * SCALE)
LOAD_S = 0.5
"""Recording before the outage and after the recovery."""
PAUSE_S = 0.05
"""Between two records of one task (200 tasks: ~4000 records/s per writer)."""


async def test_writers_through_a_redis_stop_are_exact(
    aof_server: RedisServerProcess, tmp_path: Path, workers: list[Worker]
) -> None:
    """4 writer processes × 200 concurrent recording tasks keep recording while the server
    is stopped (SIGTERM) for ~5 s and started again on its AOF: every writer notices the
    outage, journals, replays on its own, and each account's usageCount in Redis equals
    exactly the records the writers made."""
    url, prefix = aof_server.url, new_prefix()
    own = [f"w{i}" for i in range(WRITERS)]
    await seed_with_nodes(url, prefix, "shared", *own)
    for index in range(WRITERS):
        settings = fallback_settings(url, prefix, tmp_path / f"state-{index}")
        workers.append(await Worker.spawn(settings, tmp_path / f"worker-{index}.log"))
    for worker in workers:
        opened = await worker.wait_event("open", within=PROCESS_WAIT_S)
        assert opened["mode"] == "redis"
    for index, worker in enumerate(workers):
        await worker.request(
            "load_start", uuids=["shared", own[index]], tasks=TASKS, pause_s=PAUSE_S
        )
    await asyncio.sleep(LOAD_S)  # traffic before the outage

    await aof_server.astop()
    stopped_at = time.monotonic()
    for worker in workers:  # each writer is recording, so each one meets the outage
        await worker.wait_event("degraded", within=DEGRADE_WAIT_S)
    during = [await worker.request("status") for worker in workers]
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped_at)))  # the outage
    await aof_server.arestart()
    for worker in workers:
        await worker.wait_event("recovered", within=RECOVER_WAIT_S)
    await asyncio.sleep(LOAD_S)  # traffic after the recovery

    made = {uuid: 0 for uuid in ["shared", *own]}
    for index, worker in enumerate(workers):
        stopped = await worker.request("load_stop")
        assert stopped["errors"] == [], stopped["errors"]
        assert stopped["counts"][own[index]] > 0
        for uuid, count in stopped["counts"].items():
            made[uuid] += count
        await worker.request("flush")
        status = await worker.request("status")
        assert status["mode"] == "redis"
        assert status["details"]["journal depth"] == "0"
        entries, records, _ = replayed(status["details"])
        assert entries > 0 and records > 0, status["details"]  # it did journal and replay
    for worker in workers:
        await worker.close()

    for status in during:
        assert status["mode"] == "degraded", status
    assert all(worker.saw("degraded") and worker.saw("recovered") for worker in workers)
    assert await redis_usage(url, prefix, *made) == made


async def test_writer_killed_during_an_outage_restarts_from_snapshot_and_journal(
    aof_server: RedisServerProcess, tmp_path: Path, workers: list[Worker]
) -> None:
    """A writer journals through an outage and is SIGKILLed; restarted on the same state
    dir while the server is still down it serves degraded from its snapshot plus its
    journal (its view counts the journaled records), keeps journaling, and replays every
    entry exactly once when the server is back."""
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    state = tmp_path / "state"
    settings = fallback_settings(url, prefix, state)
    before, during, after = scaled(300), scaled(400), scaled(200)

    first = await Worker.spawn(settings, tmp_path / "first.log")
    workers.append(first)
    assert (await first.wait_event("open", within=PROCESS_WAIT_S))["mode"] == "redis"
    await first.request("record", uuid="n1", count=before, concurrency=50)
    await first.request("flush")
    await aof_server.astop()
    await first.request("record", uuid="n1", count=during, concurrency=50)
    await first.request("flush")  # journaled: durable on disk
    status = await first.request("status")
    assert status["mode"] == "degraded"
    depth = int(status["details"]["journal depth"])
    assert depth > 0

    async def snapshot_confirms_before() -> bool:  # saved in the background at the outage
        return snapshot_usage(read_snapshot(state), "n1") == before

    await poll_until(snapshot_confirms_before, within=10)
    await first.kill()
    assert first.proc.returncode == -signal.SIGKILL

    second = await Worker.spawn(settings, tmp_path / "second.log")
    workers.append(second)
    opened = await second.wait_event("open", within=PROCESS_WAIT_S)
    assert opened["mode"] == "degraded"
    assert opened["details"]["journal depth"] == str(depth)
    assert second.saw("degraded")
    assert (await second.request("node", uuid="n1"))["usage_count"] == before + during
    await second.request("record", uuid="n1", count=after, concurrency=20)
    await second.request("flush")
    assert (await second.request("node", uuid="n1"))["usage_count"] == before + during + after

    await aof_server.arestart()
    await second.wait_event("recovered", within=RECOVER_WAIT_S)
    status = await second.request("status")
    assert status["mode"] == "redis"
    assert status["details"]["journal depth"] == "0"
    assert (await second.request("node", uuid="n1"))["usage_count"] == before + during + after
    await second.close()
    assert await redis_usage(url, prefix, "n1") == {"n1": before + during + after}


ENTRIES = scaled(2048, minimum=4 * CHUNK_ENTRIES)
"""Journal entries (one record each) to replay: 8 chunks of 256 at scale 1."""


async def test_replay_killed_halfway_counts_nothing_twice(
    aof_server: RedisServerProcess, tmp_path: Path, workers: list[Worker]
) -> None:
    """An instance starts with a long journal and replays it chunk by chunk, clearing each
    chunk once applied. SIGKILLed a quarter into the second chunk (the first one cleared
    from the file), it leaves entries applied but not cleared. Restarted, it replays what
    is left: exactly the applied-but-uncleared batches are recognised by their operation
    ids, and the total counts every journaled record once."""
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    state = tmp_path / "state"
    settings = fallback_settings(url, prefix, state)
    base = 7

    # A normal run leaves the state dir: identity (remembering the namespace) and snapshot.
    setup = await Worker.spawn(settings, tmp_path / "setup.log")
    workers.append(setup)
    await setup.wait_event("open", within=PROCESS_WAIT_S)
    await setup.request("record", uuid="n1", count=base)
    await setup.close()
    # Then the journal an outage would have left: one entry per batch, as the replicator
    # writes them (kind "records", the batch's own operation id).
    journal = await Journal.open(state / "journal", 1 << 30)
    try:
        at = now_ms()
        await asyncio.gather(
            *(
                journal.append(
                    RECORDS, records_data([Success(TYPE, "n1", at + i)]), uuidlib.uuid4().hex, at
                )
                for i in range(ENTRIES)
            )
        )
    finally:
        await journal.close()
    replaying = await Worker.spawn(settings, tmp_path / "replaying.log")
    workers.append(replaying)
    # Kill it a quarter into the second chunk: the first chunk is cleared (that precedes
    # the second chunk's first entry), the second one is partly applied and not cleared.
    kill_at = base + CHUNK_ENTRIES + CHUNK_ENTRIES // 4
    async with Store.open(redis_settings(url, prefix)) as admin:

        async def second_chunk_partly_applied() -> bool:
            node = await admin.pools.get_node(TYPE, "n1")
            assert node is not None
            return node.state.usage_count >= kill_at

        await poll_until(second_chunk_partly_applied, within=PROCESS_WAIT_S, interval=0.001)
        await replaying.kill()
    assert not replaying.saw("open"), "the replay finished before the kill: grow ENTRIES"

    journal = await Journal.open(state / "journal", 1 << 30)
    try:
        left = journal.depth
    finally:
        await journal.close()
    applied = (await redis_usage(url, prefix, "n1"))["n1"] - base
    assert 0 < left < ENTRIES
    cleared = ENTRIES - left
    applied_not_cleared = applied - cleared
    assert 0 < applied_not_cleared < left, (applied, cleared)  # killed inside a chunk

    restarted = await Worker.spawn(settings, tmp_path / "restarted.log")
    workers.append(restarted)
    opened = await restarted.wait_event("open", within=PROCESS_WAIT_S)
    assert opened["mode"] == "redis"
    assert opened["details"]["journal depth"] == "0"
    assert replayed(opened["details"]) == (left, left, applied_not_cleared)
    assert (await restarted.request("node", uuid="n1"))["usage_count"] == base + ENTRIES
    await restarted.close()
    assert await redis_usage(url, prefix, "n1") == {"n1": base + ENTRIES}
