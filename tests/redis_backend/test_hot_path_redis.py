"""Hot path on Redis: many processes on one account, lost replies, out of memory."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import textwrap
import uuid as uuidlib
from pathlib import Path

import pytest

from cfgstore.adapters import Settings, Store
from cfgstore.errors import StorageServerError
from cfgstore.model import records as rec
from tests.contract.helpers import make_node
from tests.support.redis_server import RedisServerProcess

SCALE = float(os.environ.get("CFGSTORE_TEST_SCALE", "1"))
PROCESSES = 8
PER_PROCESS = max(200, int(1000 * SCALE))  # the full-size run is CFGSTORE_TEST_SCALE=5
IN_FLIGHT = 200


def redis_settings(url: str, prefix: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "configs_dir": Path("unused"),
        "backends": ("redis",),
        "redis_url": url,
        "redis_prefix": prefix,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from cfgstore.adapters import Settings, Store

    async def main() -> None:
        overrides, count, in_flight, fail_uuid = json.loads(sys.argv[1])
        async with Store.open(Settings.load(overrides, environ={})) as store:
            print("ready", flush=True)
            sys.stdin.readline()
            per_task = count // in_flight

            async def caller(index: int) -> None:
                for n in range(per_task):
                    await store.pools.record_success("openai-custom", "shared")
                    if fail_uuid and index == 0 and n == 0:
                        for _ in range(3):  # three failures within 10 s: unhealthy
                            await store.pools.record_failure(
                                "openai-custom", fail_uuid, "boom", max_error_count=3)

            await asyncio.gather(*(caller(i) for i in range(in_flight)))
            await store.flush()
        print("done", flush=True)

    asyncio.run(main())
    """
)


async def test_eight_processes_on_one_account_are_exact(redis_url: str) -> None:
    """SC-002 and US1-3: every usage record of 8 processes × 200 in flight counts exactly
    once, and a node turning unhealthy meanwhile keeps its health."""
    prefix = f"t{uuidlib.uuid4().hex[:12]}"
    settings = redis_settings(redis_url, prefix)
    async with Store.open(settings) as store:
        await store.pools.add_node("openai-custom", make_node("shared"))
        await store.pools.add_node("openai-custom", make_node("flaky"))
    overrides = {
        "backends": "redis",
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "configs_dir": "unused",
    }
    per_process = PER_PROCESS // IN_FLIGHT * IN_FLIGHT
    procs = []
    for index in range(PROCESSES):
        argument = json.dumps([overrides, per_process, IN_FLIGHT, "flaky" if index == 0 else ""])
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                WORKER,
                argument,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        )
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        for proc in procs:
            assert await asyncio.wait_for(proc.wait(), 300) == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    async with Store.open(settings) as store:
        shared = await store.pools.get_node("openai-custom", "shared")
        flaky = await store.pools.get_node("openai-custom", "flaky")
    assert shared is not None and shared.state.usage_count == PROCESSES * per_process
    assert flaky is not None and not flaky.state.is_healthy and flaky.state.usage_count == 0


async def test_a_batch_sent_twice_counts_once(redis_url: str) -> None:
    """The operation id makes a re-sent batch a no-op on the server."""
    prefix = f"t{uuidlib.uuid4().hex[:12]}"
    async with Store.open(redis_settings(redis_url, prefix)) as store:
        await store.pools.add_node("openai-custom", make_node("n"))
        backend = store._chain.layers[0].instance
        batch = [rec.Success("openai-custom", "n", 1_780_128_000_000 + i) for i in range(7)]
        await backend._send_records(batch, "same-op-id")  # type: ignore[attr-defined]
        await backend._send_records(batch, "same-op-id")  # type: ignore[attr-defined]
        await backend._send_records(batch, "another-op-id")  # type: ignore[attr-defined]
        node = await store.pools.get_node("openai-custom", "n")
        assert node is not None and node.state.usage_count == 14


async def test_one_batch_of_every_record_kind_over_many_nodes(redis_url: str) -> None:
    """A batch travels as one text of fields ended by ``\\x1f``: empty fields (a failure
    without a message), messages and models with separators, quotes and non-ASCII text,
    and names no store accepts (a ``\\x1f`` in a uuid: left out, naming no node) do not
    shift the other nodes' records."""
    prefix = f"t{uuidlib.uuid4().hex[:12]}"
    at = 1_780_128_000_000
    async with Store.open(redis_settings(redis_url, prefix)) as store:
        uuids = [f"n{i}" for i in range(40)]
        for uuid in uuids:
            await store.pools.add_node("openai-custom", make_node(uuid))
        backend = store._chain.layers[0].instance
        batch: list[rec.NodeRecord] = []
        for i, uuid in enumerate(uuids):
            batch += [rec.Success("openai-custom", uuid, at + i)] * (i % 3 + 1)
            batch.append(rec.Success("openai-custom", uuid + "\x1fX", at))
            batch.append(rec.Success("openai\x1f", uuid, at))
        batch += [
            rec.Failure("openai-custom", "n1", at + 100, "", 5),
            rec.Failure("openai-custom", "n2", at + 100, 'bad "\x1f" ünïcode\n', 5),
            rec.HealthCheckResult("openai-custom", "n3", at + 100, False, "m\x1fodel", None, 5),
            rec.Selected("openai-custom", "n4", at + 100, 42),
        ]
        await backend._send_records(batch, "one-op-id")  # type: ignore[attr-defined]
        nodes = {uuid: await store.pools.get_node("openai-custom", uuid) for uuid in uuids}
    counts = {uuid: node.state.usage_count for uuid, node in nodes.items() if node}
    assert counts == {uuid: i % 3 + 1 for i, uuid in enumerate(uuids)}
    n1, n2, n3, n4 = (nodes[f"n{i}"] for i in range(1, 5))
    assert n1 is not None and n1.state.error_count == 1
    assert n2 is not None and n2.state.last_error_message == 'bad "\x1f" ünïcode\n'
    assert n3 is not None and n3.state.last_health_check_model == "m\x1fodel"
    assert n3.state.last_error_message == "Health check failed"
    assert n4 is not None and n4.state.last_selection_seq == 42


async def test_lost_reply_is_resent_and_counted_once(
    redis_server_process: RedisServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """The server stops (SIGSTOP) while a batch is in flight: the client times out without
    a reply, re-sends the same batch after the server resumes, and it counts once."""
    settings = redis_settings(
        redis_server_process.url, "lost", redis_socket_timeout_ms=300, redis_connect_timeout_ms=300
    )
    caplog.set_level(logging.WARNING, logger="cfgstore.redis.writer")
    async with Store.open(settings) as store:
        await store.pools.add_node("openai-custom", make_node("n"))
        for _ in range(10):
            await store.pools.record_success("openai-custom", "n")
        await store.flush()
        redis_server_process.pause()
        try:
            for _ in range(25):
                await store.pools.record_success("openai-custom", "n")
            # The first attempt times out: its reply is lost (the request may sit in the
            # server's socket buffer and run on resume).
            with pytest.raises(Exception) as info:
                await asyncio.wait_for(store.flush(), 10)
            assert "StorageUnavailable" in type(info.value).__name__
        finally:
            redis_server_process.resume()
        await asyncio.wait_for(store.flush(), 30)
        node = await store.pools.get_node("openai-custom", "n")
        assert node is not None and node.state.usage_count == 35
    assert any("re-sending" in r.getMessage() for r in caplog.records)


async def test_out_of_memory_is_a_server_error_and_nothing_else_breaks(
    redis_server_process: RedisServerProcess,
) -> None:
    import redis.asyncio as aioredis

    admin = aioredis.Redis.from_url(redis_server_process.url, decode_responses=True)
    async with Store.open(redis_settings(redis_server_process.url, "oom")) as store:
        await store.pools.add_node("openai-custom", make_node("n"))
        await store.system_prompt.put("small")
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", "1mb")
        try:
            with pytest.raises(StorageServerError) as info:
                await store.system_prompt.put("x" * 2_000_000)
            assert "out of memory" in str(info.value).lower()
            assert await store.system_prompt.get() == "small"  # reads still work
            await store.pools.record_success("openai-custom", "n")
            with pytest.raises(StorageServerError):
                await asyncio.wait_for(store.flush(), 10)
        finally:
            await admin.config_set("maxmemory", "0")
        # Memory back: the queued record is applied exactly once.
        await asyncio.wait_for(store.flush(), 30)
        node = await store.pools.get_node("openai-custom", "n")
        assert node is not None and node.state.usage_count == 1
        await store.system_prompt.put("after")
        assert await store.system_prompt.get() == "after"
    await admin.aclose()
