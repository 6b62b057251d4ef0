"""A one-node change of a large ``provider_pools.json``: what it costs provider selection.

``file-chain`` — 5,000 nodes (:func:`bench.bench_scale._large_pools`, 10 types) in
``provider_pools.json``, the file backend's live view followed by the gateway's
:class:`~cfgstore_gateway.selection_index.IndexedSelector` (one pick per type builds the
indexes first). Then, per round, one node changes and one pick per type follows:

* ``own-write`` — ``store.pools.update_node`` of one node through the file chain (its
  flush re-reads and rewrites the file);
* ``outside-write`` — another process's write (a second file store on the same folder
  updates one node), picked up by the first one's re-read of the file
  (``PoolsFile.reload_if_changed``, what its watcher calls).

``seconds`` is the time of the picks after the changes (the index work a change causes);
``ops`` = rounds. The note gives the index rebuilds per round and the longest event-loop
turn (CPU of this thread between two wake-ups of a 1 ms ticker) seen in the variant's
rounds, its writes and picks included. Baseline: the picks of rounds with no change
(``no-change``); the ratio is their rate over the variant's (how many times cheaper a
no-change pick is).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench.bench_scale import _LagMeter, _large_pools
from bench.harness import BenchFailure, Row, scaled
from cfgstore.adapters import Settings, Store
from cfgstore.model import jsjson
from cfgstore.model.node_changes import changes_of
from cfgstore.model.pools import pools_to_json
from cfgstore_gateway.selection_index import IndexedSelector

NAME = "file-chain"
NODES = 5_000
ROUNDS = 40
NOW = 1_780_000_000_000


def run(scale: float) -> list[Row]:
    return asyncio.run(_run(scaled(ROUNDS, scale, 5)))


def _settings(configs: Path) -> Settings:
    return Settings(
        configs_dir=configs,
        backends=("memory", "file"),
        reset_counters_on_start=False,
        watch_interval_ms=0,
        write_debounce_ms=0,
        write_max_wait_ms=0,
    )


async def _run(rounds: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-file-chain-") as folder:
        configs = Path(folder) / "configs"
        configs.mkdir()
        pools = _large_pools(NODES)
        (configs / "provider_pools.json").write_bytes(jsjson.dump_bytes(pools_to_json(pools)))
        targets = [(t, nodes[len(nodes) // 2].uuid) for t, nodes in pools.types.items()]
        async with (
            Store.open(_settings(configs)) as store,
            Store.open(_settings(configs)) as other,
        ):
            return await _measure(store, other, targets, rounds)


async def _measure(
    store: Store, other: Store, targets: list[tuple[str, str]], rounds: int
) -> list[Row]:
    selector = IndexedSelector()
    view = await store.pools.view()
    feed = changes_of(view)
    if feed is None:
        raise BenchFailure("the file backend's view has no change feed")
    pools_file = _pools_file(store)

    def pick_all() -> float:
        view_now = pools_file.live_view()
        began = time.perf_counter()
        for provider_type, _ in targets:
            if (
                selector.select(
                    provider_type, view_now[provider_type], None, now_ms=NOW, changes=feed
                )
                is None
            ):
                raise BenchFailure(f"no pick in {provider_type}")
        return time.perf_counter() - began

    pick_all()  # build every type's index
    meter = _LagMeter()
    meter.start()
    rows: list[Row] = []
    seconds = {"no-change": 0.0, "own-write": 0.0, "outside-write": 0.0}
    rebuilds = dict.fromkeys(seconds, 0)
    longest = dict.fromkeys(seconds, 0.0)
    for round_no in range(rounds):
        for variant in seconds:
            provider_type, uuid = targets[round_no % len(targets)]
            if variant == "own-write":
                await store.pools.update_node(
                    provider_type, uuid, {"customName": f"own {round_no}"}
                )
            elif variant == "outside-write":
                await other.pools.update_node(
                    provider_type, uuid, {"customName": f"out {round_no}"}
                )
                if not await pools_file.reload_if_changed():
                    raise BenchFailure("the outside write was not picked up")
            before = selector.rebuilds
            seconds[variant] += pick_all()
            rebuilds[variant] += selector.rebuilds - before
            await asyncio.sleep(0.002)
            _, cpu = meter.take()
            longest[variant] = max(longest[variant], max(cpu, default=0.0) * 1000)
    await meter.stop()
    for variant, spent in seconds.items():
        rows.append(
            Row(
                NAME,
                variant,
                rounds,
                spent,
                "no-change",
                f"{NODES:,} nodes, {rebuilds[variant] / rounds:.1f} index rebuilds/round; "
                f"longest loop turn {longest[variant]:.1f} ms CPU",
            )
        )
    return rows


def _pools_file(store: Store):  # type: ignore[no-untyped-def]
    """The file backend's ``PoolsFile`` behind ``store`` (the bench pokes its re-read)."""
    for plugin in store.plugins.manager.get_plugins():
        pools_file = getattr(plugin, "pools_file", None)
        if pools_file is not None:
            return pools_file
    raise BenchFailure("no file backend in the chain")
