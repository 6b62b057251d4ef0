"""Provider selection: µs per pick at 50, 500, 5,000 and 50,000 nodes of one type — the
indexed selector (:mod:`cfgstore_gateway.selection_index`) against today's scan
(:mod:`cfgstore_gateway.selection`) and a straight port of the Node service's algorithm.

One benchmark per pool size (``selection-50`` … ``selection-50000``), one
``openai-custom`` pool each (a managed-list type, so ``supportedModels`` matters), built
from :mod:`bench.pools_data`'s web-UI node shape with seeded, realistic states: ~85 %
healthy (the unhealthy ones cooling down, due for auto-recovery, or plain unhealthy), ~5 %
disabled, ~2 % waiting for a token refresh, ``lastUsed`` spread over the last hour (or
never), usage counts 0–200, ``_lastSelectionSeq`` spread, ~10 % with a health check in the
last minute, ~35 % restricted by ``supportedModels``, ~10 % with ``notSupportedModels``,
~25 % with a ``concurrencyLimit`` (some with a queue), and in-flight requests held in the
:class:`~cfgstore_gateway.selection.SlotTable` on ~10 % of the nodes (some at their limit,
some with queued waiters). Requests cycle through no model and four model names (one that
no node serves explicitly).

The pool lives in the memory layer's :class:`~cfgstore_memory.pools_mirror.PoolsMirror`
(the view the gateway selects from). After every pick the loop applies what the gateway
would record, with ``apply_local`` as the store does: a ``Recovered`` per due node,
``Selected`` (new ``lastUsed`` text, new seq), then an outcome drawn from a seeded RNG: 85 %
``Success``, 0.2 % ``Cooldown`` (10–60 s), 2 % ``Failure``, 0.5 % a passed health check on a
random node; the clock advances 1–20 ms per pick. So the states (and the strings the caches
see) keep changing as in production. Only the ``select`` call is timed (``perf_counter``
around each call); record application is not — but the indexed selector re-files the
changed nodes inside ``select`` (it reads the mirror's change feed there), so its time
includes keeping the index up to date.

``scan`` (baseline)
    :class:`cfgstore_gateway.selection.Selector`: today's selector, one pass over the nodes.
``indexed``
    :class:`cfgstore_gateway.selection_index.IndexedSelector` given the mirror's change
    feed. Its first pick builds the index: timed apart and given in the note, not in the
    mean (a one-off per type and view rebuild).
``naive-sort``
    A straight port of ``_doSelectProvider`` + ``_calculateNodeScore``: a recovery pass,
    ``minSeq`` over a list, filtered lists, ``normalizeModelIds`` per node per call, every
    ISO time parsed (:func:`~cfgstore.model.timefmt.parse_time_ms`) per call, then
    ``sorted`` by ``(score, uuid)``. The score is computed once per candidate (a key sort,
    kinder than the Node comparator, which computes it twice per comparison).
    (not run at 50,000 nodes: ~0.1 s a pick).

``selection-scaling`` repeats the ``indexed`` rows with the 50-node one as baseline: the
ratio says how much slower a pick gets as the pool grows (the issue's target: the
5,000-node pick within 2× the 50-node pick, i.e. a ratio of at least 0.5×).

Check: every variant runs the same seeded sequence; the shorter ones run a prefix of it,
and every pick of that prefix (uuid, seq, recovered uuids) must be identical, else
``ERROR``; the indexed run must build its index once (every later pick follows the feed).
The note gives µs per pick (mean) and the candidate count of the first pick.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Collection, Sequence

from bench.harness import BenchFailure, Row, percentile_ms, scaled
from bench.pools_data import realistic_pools
from cfgstore.model.pools import ProviderNode, ProviderPools, node_from_json
from cfgstore.model.records import (
    Cooldown,
    Failure,
    HealthCheckResult,
    NodeRecord,
    Recovered,
    Selected,
    Success,
)
from cfgstore.model.timefmt import iso_ms, parse_time_ms
from cfgstore_gateway.selection import (
    Choice,
    Selector,
    SlotLease,
    SlotTable,
    uses_managed_model_list,
)
from cfgstore_gateway.selection_index import IndexedSelector
from cfgstore_memory.pools_mirror import PoolsMirror

NAME = "selection"
BASELINE = "scan"
TYPE = "openai-custom"
START_MS = 1_780_000_000_000
SEED = 20261126
SIZES: dict[int, tuple[int, int, int]] = {
    50: (20_000, 20_000, 4_000),
    500: (4_000, 20_000, 400),
    5_000: (400, 20_000, 40),
    50_000: (40, 20_000, 0),
}
"""Pool size → (scan picks, indexed picks, naive picks) at scale 1."""
MENU = [
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1",
    "deepseek-chat",
    "deepseek-reasoner",
    "qwen-max",
    "o3-mini",
    "claude-sonnet-4-5",
]
REQUESTS: list[str | None] = [None, "gpt-4o-mini", "deepseek-chat", "gpt-4o-mini", "o1-preview"]
MAX_ERRORS = 3

Pick = tuple[str, int, tuple[str, ...]]


def run(scale: float) -> list[Row]:
    rows: list[Row] = []
    scaling: list[Row] = []
    for size, (scan_ops, indexed_ops, naive_ops) in SIZES.items():
        scan_picks = scaled(scan_ops, scale, 10)
        indexed_picks = max(scaled(indexed_ops, scale, 20), scan_picks)
        naive_picks = min(scaled(naive_ops, scale, 10), scan_picks) if naive_ops else 0
        compared = asyncio.run(_compare(size, scan_picks, indexed_picks, naive_picks))
        rows.extend(compared)
        indexed = next(row for row in compared if row.variant == "indexed")
        scaling.append(
            Row(
                f"{NAME}-scaling",
                f"indexed-{size}",
                indexed.ops,
                indexed.seconds,
                f"indexed-{next(iter(SIZES))}",
                f"{indexed.seconds / indexed.ops * 1e6:,.1f} µs/pick (mean) at {size:,} nodes",
                indexed.p50_ms,
                indexed.p99_ms,
            )
        )
    return rows + scaling


async def _compare(size: int, scan_picks: int, indexed_picks: int, naive_picks: int) -> list[Row]:
    benchmark = f"{NAME}-{size}"
    results = {"scan": await _run(size, scan_picks, "scan")}
    results["indexed"] = await _run(size, indexed_picks, "indexed")
    if naive_picks:
        results["naive-sort"] = await _run(size, naive_picks, "naive-sort")
    longest = results["indexed"].picks
    for variant, result in results.items():
        if longest[: len(result.picks)] != result.picks:
            head = zip(longest, result.picks, strict=False)
            at = next(i for i, (a, b) in enumerate(head) if a != b)
            raise BenchFailure(
                f"{benchmark}: pick {at} differs: indexed {longest[at]}, "
                f"{variant} {result.picks[at]}"
            )
    return [result.row(benchmark, variant) for variant, result in results.items()]


class _Result:
    def __init__(
        self, picks: list[Pick], latencies: list[float], candidates: int, built_s: float | None
    ) -> None:
        self.picks = picks
        self.latencies = latencies
        self.candidates = candidates
        self.built_s = built_s

    def row(self, benchmark: str, variant: str) -> Row:
        seconds = sum(self.latencies)
        ops = len(self.latencies)
        built = (
            f"; index built at the first pick in {self.built_s * 1e3:,.1f} ms (not in the mean)"
            if self.built_s is not None
            else ""
        )
        return Row(
            benchmark,
            variant,
            ops,
            seconds,
            BASELINE,
            f"{seconds / ops * 1e6:,.1f} µs/pick (mean), {self.candidates} candidates at the "
            f"first pick; lat = one select() call{built}",
            percentile_ms(self.latencies, 0.5),
            percentile_ms(self.latencies, 0.99),
        )


# -- the workload ----------------------------------------------------------------------


def _pool(size: int, rng: random.Random, now: int) -> list[ProviderNode]:
    docs = realistic_pools({TYPE: size})[TYPE]
    assert isinstance(docs, list)
    nodes = []
    for doc in docs:
        assert isinstance(doc, dict)
        roll = rng.random()
        doc["isHealthy"] = roll >= 0.15
        if roll < 0.075:
            doc["scheduledRecoveryTime"] = iso_ms(now + rng.randint(60_000, 1_800_000))
        elif roll < 0.11:
            doc["scheduledRecoveryTime"] = iso_ms(now - rng.randint(1, 10_000))
        doc["isDisabled"] = rng.random() < 0.05
        doc["needsRefresh"] = rng.random() < 0.02
        doc["lastUsed"] = None if rng.random() < 0.15 else iso_ms(now - rng.randint(0, 3_600_000))
        doc["usageCount"] = rng.randint(0, 200)
        doc["_lastSelectionSeq"] = rng.randint(0, 2 * size)
        check = rng.random()
        if check < 0.10:
            doc["lastHealthCheckTime"] = iso_ms(now - rng.randint(0, 50_000))
        elif check < 0.50:
            doc["lastHealthCheckTime"] = iso_ms(now - rng.randint(3_600_000, 86_400_000))
        doc["supportedModels"] = rng.sample(MENU, rng.randint(2, 6)) if rng.random() < 0.35 else []
        doc["notSupportedModels"] = ["gpt-4o-mini"] if rng.random() < 0.10 else []
        if rng.random() < 0.25:
            doc["concurrencyLimit"] = rng.randint(2, 8)
            doc["queueLimit"] = rng.choice([0, 4, 16])
        else:
            doc["concurrencyLimit"] = 0
            doc["queueLimit"] = 0
        nodes.append(node_from_json(doc, "bench"))
    return nodes


async def _occupy(
    table: SlotTable, nodes: Sequence[ProviderNode], rng: random.Random
) -> tuple[list[SlotLease], list[asyncio.Task[None]]]:
    """In-flight requests on ~10 % of the nodes: leases held, some queues with waiters."""
    leases: list[SlotLease] = []
    waiters: list[asyncio.Task[None]] = []
    for node in nodes:
        if rng.random() >= 0.10:
            continue
        limit = node.concurrency_limit
        if limit > 0:
            active = limit if rng.random() < 0.5 else rng.randint(1, limit - 1)
        else:
            active = rng.randint(1, 3)
        for _ in range(active):
            lease = table.acquire(TYPE, node)
            await lease.__aenter__()
            leases.append(lease)
        if limit > 0 and active == limit and node.queue_limit > 0:
            for _ in range(rng.randint(0, 2)):
                waiters.append(asyncio.create_task(_wait(table.acquire(TYPE, node))))
    await asyncio.sleep(0)  # let the waiters queue up
    return leases, waiters


async def _wait(lease: SlotLease) -> None:
    async with lease:
        pass


async def _run(size: int, picks: int, variant: str) -> _Result:
    rng = random.Random(SEED + size)
    now = START_MS
    mirror = PoolsMirror()
    mirror.reset(ProviderPools({TYPE: _pool(size, rng, now)}), [])
    view = mirror.live_view()
    nodes = view[TYPE]
    changes = view.changes
    table = SlotTable()
    leases, waiters = await _occupy(table, nodes, rng)
    selector: Selector | NaiveSelector
    if variant == "indexed":
        selector = IndexedSelector(table)
    elif variant == "scan":
        selector = Selector(table)
    else:
        selector = NaiveSelector(table)
    select = selector.select
    clock = time.thread_time
    latencies: list[float] = []
    made: list[Pick] = []
    candidates = _candidates(nodes, REQUESTS[0], now)
    built_s: float | None = None
    try:
        if isinstance(selector, IndexedSelector):  # the first pick builds the index
            began = clock()
            select(TYPE, nodes, REQUESTS[0], now_ms=now, changes=changes)
            built_s = clock() - began
            selector._counters.clear()  # that pick is made again below, timed
        for index in range(picks):
            model = REQUESTS[index % len(REQUESTS)]
            began = clock()
            choice = select(TYPE, nodes, model, now_ms=now, changes=changes)
            latencies.append(clock() - began)
            if choice is None:
                raise BenchFailure(f"{NAME}-{size}: no node chosen at pick {index}")
            made.append((choice.node.uuid, choice.seq, choice.recovered))
            records: list[NodeRecord] = [Recovered(TYPE, uuid, now) for uuid in choice.recovered]
            records.append(Selected(TYPE, choice.node.uuid, now, choice.seq))
            records.extend(_outcome(rng, choice.node.uuid, nodes, now))
            mirror.apply_local(records)
            now += rng.randint(1, 20)
    finally:
        for task in waiters:
            task.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        for lease in leases:
            await lease.__aexit__(None, None, None)
    if isinstance(selector, IndexedSelector) and selector.rebuilds != 1:
        raise BenchFailure(
            f"{NAME}-{size}: the index was built {selector.rebuilds} times: the timed picks "
            "must follow the change feed, not rebuild"
        )
    return _Result(made, latencies, candidates, built_s)


def _outcome(
    rng: random.Random, uuid: str, nodes: Sequence[ProviderNode], now: int
) -> list[NodeRecord]:
    roll = rng.random()
    out: list[NodeRecord] = []
    if roll < 0.85:
        out.append(Success(TYPE, uuid, now))
    elif roll < 0.852:
        recovery = now + rng.randint(10_000, 60_000)
        out.append(Cooldown(TYPE, uuid, now, "429 Too Many Requests", MAX_ERRORS, recovery))
    elif roll < 0.872:
        out.append(Failure(TYPE, uuid, now, "upstream 500", MAX_ERRORS))
    if rng.random() < 0.005:
        checked = nodes[rng.randrange(len(nodes))].uuid
        out.append(HealthCheckResult(TYPE, checked, now, True, "gpt-4o-mini", None, MAX_ERRORS))
    return out


def _candidates(nodes: Sequence[ProviderNode], model: str | None, now: int) -> int:
    probe = NaiveSelector(SlotTable())
    return len(probe.candidates(TYPE, nodes, model, now, (), set()))


# -- the baseline: a straight port of the Node service ---------------------------------


class NaiveSelector:
    """``_doSelectProvider`` + ``_calculateNodeScore`` as written in the Node service, with
    the same inputs and outputs as :class:`~cfgstore_gateway.selection.Selector`."""

    def __init__(self, slots: SlotTable) -> None:
        self.slots = slots
        self.counters: dict[str, int] = {}

    def select(
        self,
        provider_type: str,
        nodes: Sequence[ProviderNode],
        model: str | None,
        *,
        now_ms: int,
        exclude: Collection[str] = (),
        changes: object = None,
    ) -> Choice | None:
        recovered = []
        for node in nodes:
            state = node.state
            if state.scheduled_recovery_time and not state.is_healthy:
                due = parse_time_ms(state.scheduled_recovery_time)
                if due is not None and now_ms >= due:
                    recovered.append(node.uuid)
        min_seq = min([node.state.last_selection_seq for node in nodes])
        candidates = self.candidates(provider_type, nodes, model, now_ms, exclude, set(recovered))
        if not candidates:
            return None
        ordered = sorted(
            candidates, key=lambda n: (self.score(provider_type, n, now_ms, min_seq), n.uuid)
        )
        seq = max(self.counters.get(provider_type, 0), *(n.state.last_selection_seq for n in nodes))
        self.counters[provider_type] = seq + 1
        return Choice(ordered[0], seq + 1, tuple(recovered))

    def candidates(
        self,
        provider_type: str,
        nodes: Sequence[ProviderNode],
        model: str | None,
        now_ms: int,
        exclude: Collection[str],
        recovered: set[str],
    ) -> list[ProviderNode]:
        available = [
            n
            for n in nodes
            if (n.state.is_healthy or n.uuid in recovered)
            and not n.state.is_disabled
            and not n.state.needs_refresh
            and n.uuid not in exclude
        ]
        if model:
            managed = uses_managed_model_list(provider_type)

            def serves(node: ProviderNode) -> bool:
                if managed:
                    listed = node.setting("supportedModels")
                    items = listed if isinstance(listed, list) else []
                    normal = sorted({m.strip() for m in items if isinstance(m, str)} - {""})
                    if normal:
                        return model in normal
                banned = node.setting("notSupportedModels")
                return not (isinstance(banned, list) and model in banned)

            available = [n for n in available if serves(n)]
        return available

    def score(self, provider_type: str, node: ProviderNode, now: int, min_seq: int) -> float:
        state = node.state
        active = self.slots.active(provider_type, node.uuid)
        limit = node.concurrency_limit
        if limit > 0 and active >= limit:
            waiting = self.slots.waiting(provider_type, node.uuid)
            queue_limit = node.queue_limit
            if queue_limit > 0 and waiting >= queue_limit:
                return 1e17
            return 1e15 + waiting * 1e10
        checked = (
            parse_time_ms(state.last_health_check_time) if state.last_health_check_time else 0
        ) or 0
        fresh = bool(checked) and now - checked < 60000
        used = parse_time_ms(state.last_used) if state.last_used else None
        base = -1e14 if fresh else (used if used is not None else now - 86400000)
        usage = state.usage_count * 10000
        relative = min(max(0, state.last_selection_seq - min_seq), 100) * 1000
        load = active * 5000
        bonus = now - checked if fresh else 0
        return base + usage + relative + load + bonus
