"""What record batch ids leave in Redis under steady load: keys and memory per batch.

One private ``redis-server``. ``INSTANCES`` writers each apply ``N`` one-record batches,
one after another (a flush each: the most batches a steady load can make), concurrently:

``legacy-ids`` (baseline)
    Random operation ids, as every flush had before batch ids were sequenced (and as a
    journal written then still has): the script records each under its own
    ``{p}:op:<id>`` key for 24 h. Sent through ``cfgstore_replica_apply`` of a Redis-only
    store.
``sequenced``
    ``INSTANCES`` real instances (``memory`` over ``redis``, each with its own state
    directory): ids ``<instance>:<epoch>:<seq>`` against one mark per instance and run in
    ``{p}:batches``.

The note gives the keys each variant added (a ``SCAN`` of the namespace after minus before,
heartbeat keys left out: they go with the instances), per batch, and
``used_memory`` added; for ``legacy-ids`` also what a day at 40 batches a second comes to.
Every account's count must equal the batches applied to it, or the benchmark fails.
The ops/s columns are not a speed comparison: ``sequenced`` goes through whole instances
(a flush each, the confirmed tail fsynced), ``legacy-ids`` straight to the script; the
write path's speed is ``bench_fallback``'s.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis

from bench.harness import BenchFailure, Row, private_redis, quiet_logs, redis_only, scaled
from cfgstore.adapters.settings import Settings
from cfgstore.adapters.store import Store
from cfgstore.model.pools import node_from_json
from cfgstore.model.records import Success
from cfgstore.model.timefmt import now_ms
from tests.support.namespace_seed import seed_namespace

NAME = "batch-keys"
INSTANCES = 3
BATCHES_PER_INSTANCE = 3_000
TYPE = "openai-custom"
BATCHES_PER_DAY = 40 * 86_400
"""Bench load of the gateway (issue 21): about 40 batches a second."""


def run(scale: float) -> list[Row]:
    batches = scaled(BATCHES_PER_INSTANCE, scale, 50)
    server = private_redis(NAME)
    with server, quiet_logs(), tempfile.TemporaryDirectory(prefix="cfgstore-bench-") as root:
        return asyncio.run(_measure(server.url, Path(root), batches))


async def _measure(url: str, root: Path, batches: int) -> list[Row]:
    client = aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=30)
    try:
        legacy = await _variant(client, url, "legacy-ids", batches, _legacy_writer)
        sequenced = await _variant(
            client, url, "sequenced", batches, lambda u, p, n, i: _instance(u, p, n, i, root)
        )
    finally:
        await client.aclose()
    return [legacy, sequenced]


Writer = Callable[[str, str, int, int], Awaitable[None]]
"""``(url, prefix, batches, index)``: apply ``batches`` one-record batches on node ``n<index>``."""


async def _variant(
    client: aioredis.Redis, url: str, variant: str, batches: int, writer: Writer
) -> Row:
    prefix = f"bench-{variant}-{uuidlib.uuid4().hex[:8]}"
    await _seeded(url, prefix)
    keys_before, memory_before = await _keys(client, prefix), await _used_memory(client)
    start = time.perf_counter()
    await asyncio.gather(*(writer(url, prefix, batches, i) for i in range(INSTANCES)))
    seconds = time.perf_counter() - start
    keys = await _keys(client, prefix) - keys_before
    memory = await _used_memory(client) - memory_before
    await _check_counts(url, prefix, batches, variant)
    total = batches * INSTANCES
    marks = await client.hlen(f"{{{prefix}}}:batches")
    note = (
        f"+{keys} keys ({keys / total:.3f} per batch), {marks} marks, "
        f"+{memory / 1024:.0f} KiB ({memory / total:.0f} B per batch)"
    )
    if variant == "legacy-ids":
        per_day = BATCHES_PER_DAY * max(memory, 0) / total / 1e6
        note += f"; a day at 40 batches/s: {BATCHES_PER_DAY / 1e6:.1f} M keys, ~{per_day:.0f} MB"
    return Row(NAME, variant, total, seconds, "legacy-ids", note)


async def _keys(client: aioredis.Redis, prefix: str) -> int:
    """Keys of namespace ``{prefix}`` but the instances' heartbeats (they go with them)."""
    found = 0
    async for key in client.scan_iter(match=f"{{{prefix}}}:*", count=1000):
        found += ":instance" not in key
    return found


async def _used_memory(client: aioredis.Redis) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def _seeded(url: str, prefix: str) -> None:
    await asyncio.to_thread(seed_namespace, url, prefix)
    async with Store.open(redis_only(url, prefix)) as admin:
        for i in range(INSTANCES):
            node = node_from_json({"uuid": f"n{i}", "OPENAI_API_KEY": f"key-{i}"}, "bench")
            await admin.pools.add_node(TYPE, node)


async def _legacy_writer(url: str, prefix: str, batches: int, index: int) -> None:
    async with Store.open(redis_only(url, prefix)) as store:
        namespace_id = (await store.replicas.head()).namespace_id or ""
        apply = store.replicas.operations["cfgstore_replica_apply"]
        for _ in range(batches):
            record = Success(TYPE, f"n{index}", now_ms())
            await apply(records=[record], op_id=uuidlib.uuid4().hex, namespace_id=namespace_id)


async def _instance(url: str, prefix: str, batches: int, index: int, root: Path) -> None:
    settings = Settings(
        backends=("memory", "redis"),
        redis_url=url,
        redis_prefix=prefix,
        state_dir=root / f"{prefix}-{index}",
    )
    async with Store.open(settings) as store:
        for _ in range(batches):
            await store.pools.record_success(TYPE, f"n{index}")
            await store.flush()


async def _check_counts(url: str, prefix: str, batches: int, variant: str) -> None:
    async with Store.open(redis_only(url, prefix)) as admin:
        pools = await admin.pools.list()
    counts = {node.uuid: node.state.usage_count for _, node in pools}
    expected = {f"n{i}": batches for i in range(INSTANCES)}
    if counts != expected:
        raise BenchFailure(f"{NAME}/{variant}: counts {counts}, expected {expected}")
