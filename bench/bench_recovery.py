"""Recovery time: after a Redis stop under load, how long until every instance serves
from Redis again, as a multiple of the outage (issue 21: target ≤ 2×).

One private ``redis-server`` with ``appendfsync always`` (a stop and a start keep every
acknowledged write). ``INSTANCES`` real instances (``memory`` over ``redis``, each with
its own state directory) in this process, each with ``TASKS`` recording tasks on an
account of its own. After ``LOAD_S`` of load the server is stopped (SIGTERM) for
``OUTAGE_S`` × scale seconds (at least 1 s) while the load goes on (the instances journal),
then started again: each instance probes, replays its journal and resyncs.

``outage`` (baseline)
    From the stop to the start, as measured.
``back-to-normal``
    From the stop until the *last* instance announced it was back
    (``cfgstore_storage_degraded(degraded=False)``). The note gives that as a multiple of
    the outage, the time after the start, and the records journaled meanwhile. The ops/s
    ratio column means nothing here: read the note.

After ``LOAD_S`` more of load every account's count in Redis must equal the records its
instance made, or the benchmark fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path

from bench.harness import BenchFailure, Row, private_redis, quiet_logs, redis_only, usage_in_redis
from cfgstore import hookimpl
from cfgstore.adapters.plugins import make_plugin_manager
from cfgstore.adapters.settings import Settings
from cfgstore.adapters.store import Store
from cfgstore.model.pools import node_from_json
from tests.support.namespace_seed import seed_namespace
from tests.support.redis_server import AOF_ALWAYS, RedisServerProcess

NAME = "recovery"
INSTANCES = 3
TASKS = 50
PAUSE_S = 0.01
"""Between two records of one task (about 5000 records/s per instance at most)."""
OUTAGE_S = 5.0
LOAD_S = 1.0
WAIT_S = 60.0
"""Bound on waiting for the instances to notice the outage or come back."""
TYPE = "openai-custom"


def run(scale: float) -> list[Row]:
    outage_s = max(1.0, OUTAGE_S * scale)
    server = private_redis(NAME, AOF_ALWAYS)
    with server, quiet_logs(), tempfile.TemporaryDirectory(prefix="cfgstore-bench-") as root:
        return asyncio.run(_measure(server, Path(root), outage_s))


class _Modes:
    """When the instance announced it was degraded, or back (monotonic seconds)."""

    def __init__(self) -> None:
        self.degraded_at: float | None = None
        self.back_at: float | None = None
        self.changed = asyncio.Event()

    @hookimpl
    def cfgstore_storage_degraded(self, degraded: bool, reason: str) -> None:
        if degraded:
            self.degraded_at = time.monotonic()
        else:
            self.back_at = time.monotonic()
        self.changed.set()


class _Load:
    def __init__(self, store: Store, uuid: str) -> None:
        self.store, self.uuid, self.made = store, uuid, 0
        self.errors: list[BaseException] = []
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._run()) for _ in range(TASKS)]

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.store.pools.record_success(TYPE, self.uuid)
            except Exception as exc:  # counted as refused, reported at the end
                self.errors.append(exc)
            else:
                self.made += 1
            await asyncio.sleep(PAUSE_S)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


@contextlib.asynccontextmanager
async def _instance(url: str, prefix: str, state_dir: Path) -> AsyncIterator[tuple[Store, _Modes]]:
    plugins = make_plugin_manager({})
    modes = _Modes()
    plugins.manager.register(modes, name="bench-recovery-modes")
    settings = Settings(
        backends=("memory", "redis"), redis_url=url, redis_prefix=prefix, state_dir=state_dir
    )
    async with Store.open(settings, plugins=plugins) as store:
        yield store, modes


async def _until(check: list[_Modes], done: str) -> None:
    """Wait until every instance's ``done`` time is set (``TimeoutError`` after WAIT_S)."""
    async with asyncio.timeout(WAIT_S):
        for modes in check:
            while getattr(modes, done) is None:
                modes.changed.clear()
                await modes.changed.wait()


async def _measure(server: RedisServerProcess, root: Path, outage_s: float) -> list[Row]:
    url, prefix = server.url, f"bench-recovery-{uuidlib.uuid4().hex[:8]}"
    await asyncio.to_thread(seed_namespace, url, prefix)
    async with Store.open(redis_only(url, prefix)) as admin:
        for i in range(INSTANCES):
            node = node_from_json({"uuid": f"n{i}", "OPENAI_API_KEY": f"key-{i}"}, "bench")
            await admin.pools.add_node(TYPE, node)
    async with contextlib.AsyncExitStack() as stack:
        opened = [
            await stack.enter_async_context(_instance(url, prefix, root / f"state-{i}"))
            for i in range(INSTANCES)
        ]
        all_modes = [modes for _, modes in opened]
        loads = [_Load(store, f"n{i}") for i, (store, _) in enumerate(opened)]
        await asyncio.sleep(LOAD_S)
        stopped = time.monotonic()
        await server.astop()
        try:
            await _until(all_modes, "degraded_at")
        except TimeoutError:
            raise BenchFailure(f"{NAME}: not every instance noticed the outage") from None
        made_before = sum(load.made for load in loads)
        await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - stopped)))
        made_during = sum(load.made for load in loads) - made_before
        started = time.monotonic()
        await server.arestart()
        try:
            await _until(all_modes, "back_at")
        except TimeoutError:
            raise BenchFailure(f"{NAME}: not every instance came back in {WAIT_S}s") from None
        back = max(modes.back_at or 0.0 for modes in all_modes)
        await asyncio.sleep(LOAD_S)
        for load in loads:
            await load.stop()
        for store, _ in opened:
            await store.flush()
    errors = [e for load in loads for e in load.errors]
    if errors:
        raise BenchFailure(f"{NAME}: {len(errors)} records refused, e.g. {errors[0]!r}")
    counts, _ = await usage_in_redis(url, prefix)
    made = {(TYPE, load.uuid): load.made for load in loads}
    if counts != made:
        raise BenchFailure(f"{NAME}: counts {counts}, records made {made}")
    outage = started - stopped
    total = back - stopped
    note = (
        f"every instance back {back - started:.2f}s after the start: "
        f"{total / outage:.2f}x the outage (target <= 2x); "
        f"{made_during} records journaled meanwhile, counts exact"
    )
    return [
        Row(NAME, "outage", 1, outage, "outage", "Redis stopped under load, then started"),
        Row(NAME, "back-to-normal", 1, total, "outage", note),
    ]
