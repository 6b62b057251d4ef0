"""Pool size: what a large pool costs a request, and what a full resync costs the loop.

``gateway-scale`` — throughput with a 5,000-node pool vs a 50-node pool (issue 16)
    Two ``memory+redis`` gateways (the Redis mode's service chain) on one private
    ``redis-server``, each on its own prefix: ``50-nodes`` (baseline) and ``5000-nodes``
    ``openai-custom`` API-key nodes pointing at the upstream stub. Everything else is
    :mod:`bench.bench_gateway`'s ``gateway-storage`` ``redis`` variant (same processes,
    pinning, load generator, 200 keep-alive connections, checks: every request answered
    200, the ``usageCount`` sum in Redis equal to the responses after the stop), in
    interleaved rounds (50, 5000, … then the reverse order, :data:`ROUNDS` of them). The
    note gives the per-round rates, the gateway CPU per request and, for the large
    pools, the median (and range) of the per-round ratios against the 50-node phase of
    the same round, for the rate and for the CPU per request: the figures to quote on a
    shared machine. ``CFGSTORE_BENCH_PROFILE=<dir>`` writes each gateway's
    cProfile stats there (``scale-<n>.prof``; profiled rates are not comparable).

``resync-lag`` — the event loop during a full resync of 50,000 nodes
    In this process: a ``memory+redis`` store opened on a private ``redis-server`` holding
    50,000 nodes over 10 types (seeded by one import), while a ticker task sleeps 1 ms in
    a loop and records how late each wake-up is (the event-loop lag a request would see)
    and the CPU this thread spent between two wake-ups (the longest "loop turn": the lag
    an idle machine would show; a busy machine adds waits for a CPU, and the snapshot
    encoder's worker thread adds waits for the GIL). Rows: ``start-up`` (``Store.open``:
    plugin loading and the first full read) and ``resync`` (a full resync, as after a
    reconnect, then the snapshot save it asks for), each with the seconds it took, the
    p50 / p99 lag in the latency columns and the max lag and longest turn in the note.
    ``ops`` = nodes. The note of ``start-up`` gives the memory the open store holds per
    node: the growth of this process's resident set from before the open (after a warm-up
    open of a one-node store, so that modules are loaded) to after it (a snapshot saved,
    a full collection): the memory layer's confirmed and view copies of
    each node, the Redis client's buffers and the caches, allocator overhead included.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import statistics
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

import attrs

from bench import bench_gateway as gw
from bench.harness import BenchFailure, Row, private_redis, redis_only, scaled
from cfgstore.adapters import Settings, Store
from cfgstore.model.pools import ProviderPools, node_from_json
from tests.support.namespace_seed import seed_namespace

NAME = "scale"
GATEWAY = "gateway-scale"
LAG = "resync-lag"
SMALL = 50
LARGE = 5_000
SMALL_VARIANT, LARGE_VARIANT = f"{SMALL}-nodes", f"{LARGE}-nodes"
WINDOW_VARIANT = f"{LARGE}-nodes-select-{SMALL}"
"""5,000 nodes, the selector handed a sliding window of 50 of them: selection's own cost
taken out, everything else a large pool costs left in."""
NODES = {SMALL_VARIANT: SMALL, LARGE_VARIANT: LARGE, WINDOW_VARIANT: LARGE}
VARIANTS: tuple[str, ...] = (SMALL_VARIANT, LARGE_VARIANT, WINDOW_VARIANT)
ROUNDS = 5
REQUESTS_PER_PHASE = 6_000
RESYNC_NODES = 50_000
RESYNC_TYPES = 10
TICK_S = 0.001


def run(scale: float) -> list[Row]:
    rows = _gateway_scale(scale)
    rows += asyncio.run(_resync_lag(scaled(RESYNC_NODES, scale, 1_000)))
    return rows


# ========================================================================= gateway-scale


def _gateway_scale(scale: float) -> list[Row]:
    per_phase = scaled(REQUESTS_PER_PHASE, scale, gw.CONCURRENCY)
    sizes = VARIANTS
    profile_dir = os.environ.get("CFGSTORE_BENCH_PROFILE")
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(private_redis(GATEWAY))
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cfgstore-bench-sc-")))
        cpus = gw._cpu_plan()
        if cpus is not None:
            previous = os.sched_getaffinity(0)
            os.sched_setaffinity(0, cpus.others)
            stack.callback(os.sched_setaffinity, 0, previous)
            gw._pin_all_threads(server.pid, cpus.others)
        others = None if cpus is None else cpus.others
        stub = stack.enter_context(gw._child("stub", {}, others))
        stub_url = f"http://{gw.LOOPBACK}:{int(stub.expect('READY').split()[1])}/v1"
        load = stack.enter_context(gw._child("load", {}, others))
        load.expect("READY")
        context = gw._Context(server, root, stub_url, load, cpus)
        specs = {}
        for size in sizes:
            extra: dict[str, object] = {"nodes": NODES[size]}
            if profile_dir:
                extra["profile"] = f"{profile_dir}/scale-{size}.prof"
            if size == WINDOW_VARIANT:
                extra["select_window"] = SMALL
            specs[size] = gw._gateway_spec(context, "redis", **extra)
        series = {size: gw._Series() for size in sizes}
        gateways = {
            size: stack.enter_context(gw._child("gateway", specs[size], context.server_cpus))
            for size in sizes
        }
        ports = {size: int(gateways[size].expect("READY").split()[1]) for size in sizes}
        for round_no in range(ROUNDS):
            # Alternate the order (50, 5000, … then …, 5000, 50): a machine getting busier
            # or quieter during a round favours neither variant.
            for size in sizes if round_no % 2 == 0 else tuple(reversed(sizes)):
                phase = gw._phase(
                    context, gateways[size], ports[size], per_phase, redis_pid=server.pid
                )
                gw._check_phase(f"{GATEWAY}/{size}", phase)
                series[size].phases.append(phase)
        for size in sizes:
            status = gateways[size].stop()
            if status != 0:
                raise BenchFailure(
                    f"{GATEWAY}/{size}: gateway exited with {status}{gateways[size].stderr_tail()}"
                )
        counted = {
            size: asyncio.run(gw._redis_usage(server.url, specs[size]["prefix"])) for size in sizes
        }
    rows: list[Row] = []
    for size in sizes:
        s = series[size]
        if counted[size] != s.served:
            raise BenchFailure(
                f"{GATEWAY}/{size}: usageCount sum {counted[size]:,} after the stop, "
                f"expected {s.served:,} (successful responses)"
            )
        calls = sum(p.evalsha[0] for p in s.phases)
        note = (
            f"{NODES[size]:,} nodes; rounds {s.rates()}; gateway CPU {s.cpu_us:,.0f} µs/req "
            f"({s.core_share:.0%} of a core); {2 * s.ok / max(calls, 1):,.1f} records/batch; "
            f"usageCount {counted[size]:,} = responses"
        )
        if size != SMALL_VARIANT:
            note += "; " + _round_ratios(series[SMALL_VARIANT], s)
        if size == WINDOW_VARIANT:
            note += f"; selection among a sliding window of {SMALL}"
        rows.append(s.row(GATEWAY, size, SMALL_VARIANT, note))
    return rows


# ============================================================================ resync-lag


PROVIDER_TYPES = (
    "openai-custom",
    "claude-custom",
    "gemini-cli-oauth",
    "claude-kiro-oauth",
    "openai-qwen-oauth",
    "openai-iflow",
    "openaiResponses-custom",
    "grok-custom",
    "gemini-antigravity",
    "claude-orchids-oauth",
)


def _round_ratios(baseline: gw._Series, measured: gw._Series) -> str:
    """The per-round ratios against the baseline measured in the same round (rate, and
    baseline CPU per request over this one's): median and range. Rounds are interleaved,
    so a ratio compares two phases minutes apart at most; the median of the rounds is
    the figure to quote on a shared machine (the total-time ratio of the table mixes
    rounds of different machine load)."""
    rates = sorted(
        m.rate / b.rate for b, m in zip(baseline.phases, measured.phases, strict=True) if b.rate
    )
    cpus = sorted(
        (b.cpu / max(b.ok, 1)) / (m.cpu / max(m.ok, 1))
        for b, m in zip(baseline.phases, measured.phases, strict=True)
        if m.cpu
    )
    return (
        f"per-round rate ratio median {statistics.median(rates):.2f}× "
        f"({rates[0]:.2f}–{rates[-1]:.2f}), CPU/request ratio median "
        f"{statistics.median(cpus):.2f}× ({cpus[0]:.2f}–{cpus[-1]:.2f})"
    )


def _large_pools(nodes: int) -> ProviderPools:
    """``nodes`` API-key nodes spread over :data:`RESYNC_TYPES` types."""
    pools = ProviderPools({t: [] for t in PROVIDER_TYPES[:RESYNC_TYPES]})
    for index in range(nodes):
        provider_type = PROVIDER_TYPES[index % RESYNC_TYPES]
        document = {
            "customName": f"bench node {index}",
            "OPENAI_API_KEY": f"sk-bench-{index:06d}-0123456789abcdef",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "uuid": str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"bench-scale/{index}")),
            "isHealthy": True,
            "isDisabled": False,
            "lastUsed": None,
            "usageCount": index,
            "errorCount": 0,
            "lastErrorTime": None,
        }
        pools.types[provider_type].append(node_from_json(document, "bench"))
    return pools


def _seeding(url: str, prefix: str) -> Settings:
    """A Redis-only store whose one import of every node may take its time."""
    return attrs.evolve(redis_only(url, prefix), redis_socket_timeout_ms=120_000)


async def _warm_up(url: str, root: Path) -> None:
    """Open and close a one-node ``memory+redis`` store: the plugins' modules are loaded
    and the allocator primed before the measured open, so that its memory is the pool's."""
    prefix = f"bench-warm-{uuidlib.uuid4().hex[:8]}"
    await asyncio.to_thread(seed_namespace, url, prefix)
    async with Store.open(_seeding(url, prefix)) as admin:
        await admin.pools.import_all(_large_pools(1), keep_live_state=False)
    settings = Settings(
        backends=("memory", "redis"),
        redis_url=url,
        redis_prefix=prefix,
        state_dir=root / "state",
        configs_dir=root / "no-configs",
    )
    async with Store.open(settings):
        pass


def _resident_bytes() -> int:
    """This process's resident set size (``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


async def _snapshot_saved(store: Store) -> None:
    """Wait (bounded) until the snapshot the start-up asked for is saved: its copies
    are not what the instance holds."""
    layer = store._chain.layers[0].instance
    async with asyncio.timeout(60):
        async with layer._replicator.io_lock:
            pass
        await layer._save_snapshot()


class _LagMeter:
    """A task sleeping :data:`TICK_S` in a loop: how late each wake-up came (wall time),
    and how much CPU this thread spent between two wake-ups (the work that held the loop;
    unlike the wall lag, not inflated when a busy machine leaves the process waiting)."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.cpu: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began, cpu = loop.time(), time.thread_time()
            await asyncio.sleep(TICK_S)
            self.lags.append(max(0.0, loop.time() - began - TICK_S))
            self.cpu.append(time.thread_time() - cpu)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def take(self) -> tuple[list[float], list[float]]:
        taken = self.lags, self.cpu
        self.lags, self.cpu = [], []
        return taken


class _GcMeter:
    """The cyclic collector's runs (``gc.callbacks``): generation and duration of each,
    to tell a long loop turn that is a collection from one that is work."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, float]] = []
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.runs.append((info["generation"], time.perf_counter() - self._began))

    def __enter__(self) -> _GcMeter:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)

    def take(self) -> str:
        runs, self.runs = self.runs, []
        longest = [
            max((seconds for g, seconds in runs if g == generation), default=0.0) * 1000
            for generation in range(3)
        ]
        counts = [sum(1 for g, _ in runs if g == generation) for generation in range(3)]
        return "collections (gen 0/1/2) " + ", ".join(
            f"{count} longest {ms:.1f} ms" for count, ms in zip(counts, longest, strict=True)
        )


def _lag_row(
    variant: str, nodes: int, seconds: float, measured: tuple[list[float], list[float]], note: str
) -> Row:
    lags, cpu = measured
    ordered = sorted(lags) or [0.0]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Row(
        LAG,
        variant,
        nodes,
        seconds,
        "start-up",
        f"{note}; {len(lags):,} ticks, max lag {ordered[-1] * 1000:.1f} ms, longest loop "
        f"turn {max(cpu, default=0.0) * 1000:.1f} ms CPU",
        p50_ms=ordered[len(ordered) // 2] * 1000,
        p99_ms=p99 * 1000,
    )


async def _resync_lag(nodes: int) -> list[Row]:
    with (
        contextlib.ExitStack() as stack,
        private_redis(LAG) as server,
        tempfile.TemporaryDirectory() as root,
    ):
        prefix = f"bench-lag-{uuidlib.uuid4().hex[:8]}"
        await asyncio.to_thread(seed_namespace, server.url, prefix)
        async with Store.open(_seeding(server.url, prefix)) as admin:
            await admin.pools.import_all(_large_pools(nodes), keep_live_state=False)
        settings = Settings(
            backends=("memory", "redis"),
            redis_url=server.url,
            redis_prefix=prefix,
            state_dir=Path(root) / "state",
            configs_dir=Path(root) / "no-configs",
        )
        await _warm_up(server.url, Path(root) / "warm-up")
        meter = _LagMeter()
        gc.collect()
        before = _resident_bytes()
        meter.start()
        await asyncio.sleep(0.05)
        meter.take()
        collections = stack.enter_context(_GcMeter())
        collections.take()
        began = time.perf_counter()
        async with Store.open(settings) as store:
            opened = time.perf_counter() - began
            startup = meter.take()
            startup_gc = collections.take()
            await _snapshot_saved(store)
            gc.collect()
            held = _resident_bytes() - before
            # Let the ticker finish the turn that the full collection above held, before
            # the resync's measurement starts: that turn (40-60 ms at 50,000 nodes) was
            # counted as the resync's longest.
            await asyncio.sleep(0.01)
            meter.take()
            collections.take()
            layer = store._chain.layers[0].instance
            began = time.perf_counter()
            await layer._replicator.resync()
            await layer._save_snapshot()  # what the resync asks the saver for
            resynced = time.perf_counter() - began
            await asyncio.sleep(0.05)
            resync = meter.take()
            resync_gc = collections.take()
            if (await store.top_status())[0].counts.nodes != nodes:
                raise BenchFailure(f"{LAG}: the memory layer does not hold {nodes:,} nodes")
        await meter.stop()
    per_node = held / nodes
    memory = f"resident memory +{held / 2**20:,.0f} MiB = {per_node / 1024:,.2f} KiB/node"
    return [
        _lag_row(
            "start-up",
            nodes,
            opened,
            startup,
            f"Store.open, first full read; {memory}; {startup_gc}",
        ),
        _lag_row("resync", nodes, resynced, resync, f"full resync + snapshot save; {resync_gc}"),
    ]
