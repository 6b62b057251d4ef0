"""Usage records per second on one ``provider_pools.json``, 200 concurrent callers.

Every caller is an asyncio task that records a success on a node it picks (seeded, so runs
are comparable) from a realistic 20-node pool (:mod:`bench.pools_data`). Variants:

``naive``
    Per call, in a worker thread: take the cross-process file lock, read and parse the
    file, apply the record, serialise, write atomically with fsync. What a straightforward
    "safe" implementation does; the baseline.
``coalesced``
    The real file backend through :class:`~cfgstore.adapters.Store`, default debounce and
    maximum wait. Callers do not wait for the disk; the time ends when every record is
    durable (the final ``await store.flush()`` is included).
``coalesced-durable``
    The same backend, but every caller awaits durability of its own record
    (``await store.flush()`` after each one): concurrent waiters share one flush (group
    commit). The honest comparison with naive's per-call fsync.

After each variant the file is read back through a fresh Store: the ``usageCount`` sum must
equal the number of records, or the benchmark fails.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench.harness import BenchFailure, Row, fresh_configs_dir, scaled
from bench.pools_data import node_keys, realistic_pools
from cfgstore import hookimpl
from cfgstore.adapters.plugins import make_plugin_manager
from cfgstore.adapters.settings import Settings
from cfgstore.adapters.store import Store
from cfgstore.model import jsjson
from cfgstore.model.events import ChangeEvent
from cfgstore.model.pools import pools_from_json, pools_to_json
from cfgstore.model.records import Success, apply_record
from cfgstore.model.timefmt import now_ms
from cfgstore_file.atomic import LockDir, atomic_write

NAME = "file-usage"
BASELINE = "naive"
CALLERS = 200
NAIVE_OPS = 2000
COALESCED_OPS_PER_CALLER = 500
DURABLE_OPS_PER_CALLER = 100

Pick = tuple[str, str]


def run(scale: float) -> list[Row]:
    naive_ops = scaled(NAIVE_OPS, scale, CALLERS)
    coalesced_ops = scaled(CALLERS * COALESCED_OPS_PER_CALLER, scale, CALLERS)
    durable_ops = scaled(CALLERS * DURABLE_OPS_PER_CALLER, scale, CALLERS)
    return [
        _measure("naive", naive_ops, _run_naive),
        _measure("coalesced", coalesced_ops, _coalesced(durable=False)),
        _measure("coalesced-durable", durable_ops, _coalesced(durable=True)),
    ]


Variant = Callable[[Path, list[list[Pick]]], Coroutine[Any, Any, tuple[float, int, str]]]
"""Runs the callers on a prepared folder; returns (seconds until durable, file writes, note)."""


def _measure(variant: str, ops: int, body: Variant) -> Row:
    with fresh_configs_dir() as configs:
        (configs / "provider_pools.json").write_bytes(jsjson.dump_bytes(realistic_pools()))
        seconds, writes, detail = asyncio.run(body(configs, _picks(ops)))
        counted = asyncio.run(_usage_sum(configs))
    if counted != ops:
        wrong = f"{ops - counted} lost" if counted < ops else f"{counted - ops} extra"
        raise BenchFailure(
            f"{NAME}/{variant}: usageCount sum read back is {counted}, expected {ops} ({wrong})"
        )
    plural = "" if writes == 1 else "s"
    note = f"{writes} file write{plural}, {ops / max(writes, 1):,.0f} rec/write{detail}"
    return Row(NAME, variant, ops, seconds, BASELINE, note)


def _picks(ops: int) -> list[list[Pick]]:
    """Each caller's nodes, chosen up front so that picking costs nothing in the timing."""
    keys = node_keys()
    share, extra = divmod(ops, CALLERS)
    return [
        random.Random(caller).choices(keys, k=share + (caller < extra)) for caller in range(CALLERS)
    ]


# -- naive: one locked read-modify-write with fsync per record -----------------------------


async def _run_naive(configs: Path, picks: list[list[Pick]]) -> tuple[float, int, str]:
    path = configs / "provider_pools.json"
    locks = LockDir(configs / ".cfgstore-locks")

    async def caller(mine: list[Pick]) -> None:
        for provider_type, uuid in mine:
            await asyncio.to_thread(_naive_record, path, locks, provider_type, uuid, now_ms())

    start = time.perf_counter()
    await asyncio.gather(*(caller(mine) for mine in picks))
    return time.perf_counter() - start, sum(len(mine) for mine in picks), ""


def _naive_record(path: Path, locks: LockDir, provider_type: str, uuid: str, at_ms: int) -> None:
    source = str(path)
    with locks.lock_for(path):
        pools = pools_from_json(jsjson.loads(path.read_bytes(), source), source)
        node = pools.find(provider_type, uuid)
        if node is None:
            raise BenchFailure(f"{NAME}/naive: node {provider_type}/{uuid} vanished")
        apply_record(node, Success(provider_type, uuid, at_ms))
        atomic_write(path, jsjson.dump_bytes(pools_to_json(pools)))


# -- coalesced: the real file backend ------------------------------------------------------


class _WriteCounter:
    """Observer counting the backend's own pool flushes (one ``pools`` event per write)."""

    def __init__(self) -> None:
        self.writes = 0

    @hookimpl
    def cfgstore_changed(self, event: ChangeEvent) -> None:
        if event.entity == "pools" and not event.remote and not event.ids:
            self.writes += 1


def _settings(configs: Path) -> Settings:
    return Settings(
        configs_dir=configs,
        backends=("file",),
        reset_counters_on_start=False,
        watch_interval_ms=0,
    )


def _coalesced(durable: bool) -> Variant:
    async def body(configs: Path, picks: list[list[Pick]]) -> tuple[float, int, str]:
        plugins = make_plugin_manager()
        counter = _WriteCounter()
        plugins.manager.register(counter, name="bench-write-counter")
        async with Store.open(_settings(configs), plugins=plugins) as store:
            pools = store.pools

            async def caller(mine: list[Pick]) -> None:
                for provider_type, uuid in mine:
                    await pools.record_success(provider_type, uuid)
                    if durable:
                        await store.flush()
                    else:
                        await asyncio.sleep(0)  # a request awaits other things between records

            start = time.perf_counter()
            await asyncio.gather(*(caller(mine) for mine in picks))
            recorded = time.perf_counter()
            await store.flush()
            done = time.perf_counter()
        detail = "" if durable else f", final flush {done - recorded:.2f} s"
        return done - start, counter.writes, detail

    return body


async def _usage_sum(configs: Path) -> int:
    async with Store.open(_settings(configs)) as store:
        pools = await store.pools.list()
    return sum(node.state.usage_count for _, node in pools)
