"""The memory fallback of the Redis mode (:mod:`cfgstore_memory`): hot-path throughput with
Redis up and down, journal replay rate, and how fast one instance sees another's changes.

One private ``redis-server`` (``tests.support.redis_server.RedisServerProcess``: free
loopback port, no persistence) serves the whole benchmark; every part works in a fresh key
prefix whose namespace is seeded as ``cfgctl init`` would
(``tests.support.namespace_seed.seed_namespace``), with accounts added through a
Redis-only store. Every ``memory+redis`` store gets its own state directory (instance id,
snapshot, journal) in a temporary folder. Three benchmarks:

``fallback-hotpath`` — records/s through a ``memory+redis`` store
    200 concurrent callers (asyncio tasks) record ``Success`` on accounts they pick (seeded)
    from 50 accounts (:mod:`bench.pools_data` shapes, all healthy, ``usageCount`` 0).

    ``normal`` (baseline)
        Redis up: callers ``await store.pools.record_success(…)`` (applied to the view and
        queued) and yield; the replicator group-commits to Redis. The time ends when the
        final ``await store.flush()`` returns: every record applied in Redis.
    ``degraded``
        The same callers, but the server was stopped before the run and the store already
        reports mode ``degraded`` (one record + flush made it notice; that record is not
        timed, but checked). Records go to the outage journal (group-committed ``fdatasync``); the
        time ends when ``flush()`` returns: every record durable in the journal.
    ``normal-durable`` / ``degraded-durable``
        Every caller awaits ``store.flush()`` after each record (its own record durable —
        in Redis, resp. in the journal — before it goes on); concurrent callers share
        batches. ``degraded-durable`` is compared with ``normal-durable``.

    The note gives the batches sent to Redis (``EVALSHA`` calls from ``INFO commandstats``)
    or the journal entries written, records per batch or entry (and the largest entry), and
    the longest event-loop stall during the run: a watcher task sleeps 1 ms over and over
    and notes how late it wakes. ``p50``/``p99`` latencies cover only the awaits of the
    callers; a stall is what a request arriving meanwhile would wait on top.

    Checks: ``normal``: every account's ``usageCount`` read back from Redis equals its
    successes; ``degraded``: the journal (reopened after the store closed) holds exactly the
    records made, and replaying it onto a fresh prefix (after the server is restarted)
    gives exactly those counts in Redis (the replay rate of that real journal is in the
    note).

``fallback-replay`` — :func:`cfgstore_memory.replay.replay_journal` onto a running Redis
    Journals written beforehand (frames encoded directly, not timed), opened with
    :class:`~cfgstore_memory.journal.Journal`, replayed with the operations of a Redis-only
    store (``store.replicas.operations``) and the seeded namespace id. The timed part is
    ``replay_journal`` alone: per entry decode + one ``cfgstore_replica_apply`` round trip,
    and the journal cleared chunk by chunk (every 256 entries: rewrite + fsync + rename).

    ``live-1rec`` (baseline of ``replay-1rec``)
        The same N one-record batches sent live, one ``cfgstore_replica_apply`` call each
        under a fresh operation id, as the replicator sends them while Redis is up.
    ``replay-1rec``
        A journal of N entries of one record each (what a trickle of traffic during an
        outage leaves).
    ``replay-1rec-again``
        The same journal written again with the same operation ids and replayed: every
        batch is recognised as already applied (an interrupted replay restarted); nothing
        may be counted twice.
    ``live-batched`` (baseline of ``replay-batched``)
        10 × N records in batches of 200, sent live.
    ``replay-batched``
        Those batches as journal entries (what busy traffic during an outage leaves).

    ``ops`` are records; the note gives entries/s. Check: after the four counting variants
    every account's ``usageCount`` equals the records sent to it (the ``again`` replay must
    add nothing), every replay reports 0 (resp. all) duplicates and leaves the journal
    empty.

``fallback-propagation`` — delay until another instance sees a change
    Two ``memory+redis`` stores in this process (instances A and B, own state directories,
    own plugin managers) on one prefix. An observer on B's plugin manager notes remote
    ``cfgstore_changed`` events; once the event has arrived the benchmark spins on B (yield
    to the event loop, check) until B shows the change, so the resolution is tens of µs, not
    a polling interval. Each sample is timed from A's call to B showing it; samples run one
    after another (``ops/s`` = 1 / mean delay).

    ``health-20ms`` (baseline) / ``health-0ms``
        A's ``record_failure(…, max_error_count=1, immediate=True)`` (unhealthy), then
        ``record_recovered`` (healthy), alternately, on one node; until B's
        ``pools.get_node`` shows the new ``isHealthy``. With ``remote_refresh_ms`` 20 (the
        default), resp. 0.
    ``config-20ms`` (baseline) / ``config-0ms``
        A's ``config.put`` (compare-and-set on the version it holds) until B's
        ``config.get()`` returns that version.

    The note gives the max and how much of the delay the change feed took (A's call → the
    event on B).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import tempfile
import time
import uuid as uuidlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import attrs
import redis.asyncio as aioredis

from bench.harness import (
    BenchFailure,
    Row,
    percentile_ms,
    private_redis,
    quiet_logs,
    redis_only,
    scaled,
    usage_in_redis,
)
from bench.pools_data import node_keys, realistic_pools
from cfgstore import hookimpl
from cfgstore.adapters.backend import Operations
from cfgstore.adapters.plugins import PluginSet, make_plugin_manager
from cfgstore.adapters.settings import Settings
from cfgstore.adapters.store import Store
from cfgstore.model.batch_ids import BatchSequence
from cfgstore.model.events import ChangeEvent
from cfgstore.model.pools import node_from_json
from cfgstore.model.record_codec import record_to_json
from cfgstore.model.records import NodeRecord, Success
from cfgstore.model.timefmt import now_ms
from cfgstore_memory.journal import Journal, JournalEntry, encode_frame
from cfgstore_memory.replay import RECORDS, ReplayReport, entry_records, replay_journal
from cfgstore_memory.state_dir import JOURNAL_FILE
from tests.support.namespace_seed import seed_namespace
from tests.support.redis_server import (
    RedisServerProcess,
)

NAME = "fallback"
HOT = "fallback-hotpath"
REPLAY = "fallback-replay"
PROPAGATION = "fallback-propagation"

CALLERS = 200
ACCOUNTS: dict[str, int] = {"claude-kiro-oauth": 20, "gemini-cli-oauth": 15, "openai-custom": 15}
HOT_OPS_PER_CALLER = 500
DURABLE_OPS_PER_CALLER = 100
REPLAY_ENTRIES = 2_000
BATCHED_FACTOR = 10
"""``*-batched`` send ``BATCHED_FACTOR × N`` records…"""
BATCH_RECORDS = 200
"""…in batches of this many (what 200 callers awaiting durability produce)."""
PROPAGATION_SAMPLES = 200
REFRESH_SETTINGS_MS = (20, 0)
"""``remote_refresh_ms`` of the propagation rows: the default (baseline) first."""
WAIT_S = 15.0
"""Give up (and fail the benchmark) when a mode change or a propagation takes longer."""
MAX_JOURNAL_BYTES = 1 << 40  # the bound is not what is measured here
TICK_S = 0.001
"""Period of the event-loop watcher of the hot-path runs."""

Pick = tuple[str, str]


def run(scale: float) -> list[Row]:
    """Every row of the three benchmarks, measured against one private redis-server."""
    hot_ops = scaled(CALLERS * HOT_OPS_PER_CALLER, scale, CALLERS)
    durable_ops = scaled(CALLERS * DURABLE_OPS_PER_CALLER, scale, CALLERS)
    replay_entries = scaled(REPLAY_ENTRIES, scale, 10)
    samples = scaled(PROPAGATION_SAMPLES, scale, 10)
    server = private_redis(NAME)
    with (
        server,
        quiet_logs(),
        tempfile.TemporaryDirectory(prefix="cfgstore-bench-fallback-") as root,
    ):
        rows = asyncio.run(_hot_path(server, Path(root), hot_ops, durable_ops))
        rows += asyncio.run(_replay(server.url, replay_entries))
        rows += asyncio.run(_propagation(server.url, Path(root), samples))
    return rows


# -- shared set-up ----------------------------------------------------------------------------


def _prefix(part: str) -> str:
    """A fresh key prefix for one part of the benchmark."""
    return f"bench-{part}-{uuidlib.uuid4().hex[:8]}"


def _memory_settings(
    url: str, prefix: str, state_dir: Path, remote_refresh_ms: int | None = None
) -> Settings:
    """A ``memory+redis`` instance with its own state directory (default settings, but
    ``remote_refresh_ms`` when given)."""
    settings = Settings(
        backends=("memory", "redis"), redis_url=url, redis_prefix=prefix, state_dir=state_dir
    )
    if remote_refresh_ms is None:
        return settings
    return attrs.evolve(settings, remote_refresh_ms=remote_refresh_ms)


async def _seeded(url: str, prefix: str) -> str:
    """Initialise namespace ``{prefix}`` and add the 50 accounts; the namespace id."""
    namespace_id = await asyncio.to_thread(seed_namespace, url, prefix)
    async with Store.open(redis_only(url, prefix)) as admin:
        for provider_type, nodes in realistic_pools(ACCOUNTS).items():
            assert isinstance(nodes, list)
            for node in nodes:
                assert isinstance(node, dict)
                await admin.pools.add_node(provider_type, node_from_json(node, "bench"))
    return namespace_id


def _picks(ops: int) -> list[list[Pick]]:
    """Each caller's accounts, chosen up front (seeded) so that picking is not timed."""
    keys = node_keys(ACCOUNTS)
    share, extra = divmod(ops, CALLERS)
    return [
        random.Random(caller).choices(keys, k=share + (caller < extra)) for caller in range(CALLERS)
    ]


def _check_counts(
    where: str, expected: Counter[Pick], counts: dict[Pick, int], unhealthy: Sequence[str] = ()
) -> None:
    """Fail unless every account holds exactly its expected count (0 when not expected)."""
    wrong = [
        f"{t}/{u}: {counts.get((t, u), 0)} (expected {expected.get((t, u), 0)})"
        for t, u in sorted(set(expected) | set(counts))
        if counts.get((t, u), 0) != expected.get((t, u), 0)
    ]
    if wrong:
        got, want = sum(counts.values()), sum(expected.values())
        raise BenchFailure(
            f"{where}: counts sum to {got:,}, expected {want:,}; {len(wrong)} accounts wrong, "
            f"e.g. {'; '.join(wrong[:3])}"
        )
    if unhealthy:
        raise BenchFailure(
            f"{where}: {len(unhealthy)} accounts not healthy with errorCount 0 after only "
            f"successes, e.g. {list(unhealthy[:3])}"
        )


async def _mode(store: Store) -> str:
    """The memory layer's mode: ``redis``, ``degraded`` or ``data-lost``."""
    return (await store.status())[0].mode


async def _wait_mode(store: Store, mode: str) -> None:
    """Poll the status until the memory layer is in ``mode``; fail after :data:`WAIT_S`."""
    deadline = time.monotonic() + WAIT_S
    while (current := await _mode(store)) != mode:
        if time.monotonic() > deadline:
            raise BenchFailure(f"{NAME}: store still in mode {current!r}, expected {mode!r}")
        await asyncio.sleep(0.01)


async def _evalsha_calls(url: str) -> int:
    """``EVALSHA`` calls so far on the server (``INFO commandstats``)."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


# -- fallback-hotpath -------------------------------------------------------------------------


@attrs.define
class _Drive:
    """What one run of the callers measured."""

    seconds: float
    """From the first record to the end of the final ``flush()``."""
    latencies: list[float]
    final_flush: float
    stall: float
    """The longest event-loop stall seen meanwhile, seconds (see :func:`_watch_loop`)."""


async def _watch_loop(stop: asyncio.Event, lateness: list[float]) -> None:
    """Until ``stop``: sleep :data:`TICK_S` and note how late the wake-up came. The worst
    lateness is the longest time the event loop ran something else without yielding — what
    a request arriving then would wait. (With 200 callers ready, one loop pass takes about
    a millisecond, so a few ms is the floor.)"""
    clock = time.perf_counter
    while not stop.is_set():
        began = clock()
        await asyncio.sleep(TICK_S)
        lateness.append(clock() - began - TICK_S)


async def _drive(store: Store, picks: list[list[Pick]], *, durable: bool) -> _Drive:
    """Run one task per caller, then ``flush()``. Latency per record: the
    ``record_success`` await (enqueue only), or with ``durable`` record + ``flush()``."""
    record_success = store.pools.record_success
    flush = store.flush
    clock = time.perf_counter
    latencies: list[float] = []

    async def caller(mine: list[Pick]) -> None:
        for provider_type, uuid in mine:
            began = clock()
            await record_success(provider_type, uuid)
            if durable:
                await flush()
                latencies.append(clock() - began)
            else:
                latencies.append(clock() - began)
                await asyncio.sleep(0)  # a request awaits other things between records

    stop = asyncio.Event()
    lateness: list[float] = []
    watcher = asyncio.create_task(_watch_loop(stop, lateness))
    start = clock()
    await asyncio.gather(*(caller(mine) for mine in picks))
    recorded = clock()
    await flush()
    end = clock()
    stop.set()
    await watcher
    return _Drive(end - start, latencies, end - recorded, max(lateness, default=0.0))


def _hot_row(variant: str, baseline: str, drive: _Drive, note: str) -> Row:
    """The row of one hot-path run, latencies per record."""
    return Row(
        HOT,
        variant,
        len(drive.latencies),
        drive.seconds,
        baseline,
        note,
        p50_ms=percentile_ms(drive.latencies, 0.50),
        p99_ms=percentile_ms(drive.latencies, 0.99),
    )


def _latency_note(durable: bool) -> str:
    """What the latency columns of a hot-path row time."""
    if durable:
        return "lat = record_success + flush (time to durable)"
    return "lat = record_success (enqueue only)"


async def _hot_path(
    server: RedisServerProcess, root: Path, ops: int, durable_ops: int
) -> list[Row]:
    """The four ``fallback-hotpath`` rows: Redis up, then stopped (and restarted empty)."""
    url = server.url
    plans = {
        "normal": (_picks(ops), False),
        "normal-durable": (_picks(durable_ops), True),
        "degraded": (_picks(ops), False),
        "degraded-durable": (_picks(durable_ops), True),
    }
    prefixes = {variant: _prefix(variant) for variant in plans}
    rows: list[Row] = []

    # Redis up.
    for variant in ("normal", "normal-durable"):
        picks, durable = plans[variant]
        await _seeded(url, prefixes[variant])
        settings = _memory_settings(url, prefixes[variant], root / variant)
        async with Store.open(settings) as store:
            calls = await _evalsha_calls(url)
            drive = await _drive(store, picks, durable=durable)
            batches = await _evalsha_calls(url) - calls
            mode = await _mode(store)
        if mode != "redis":
            raise BenchFailure(f"{HOT}/{variant}: store went {mode!r} with Redis up")
        expected = Counter(pick for mine in picks for pick in mine)
        _check_counts(f"{HOT}/{variant}", expected, *await usage_in_redis(url, prefixes[variant]))
        note = (
            f"{batches:,} batches to Redis, {len(drive.latencies) / max(batches, 1):,.0f} "
            f"rec/batch, loop stall max {drive.stall * 1000:,.0f} ms, final flush "
            f"{drive.final_flush * 1000:,.0f} ms; {_latency_note(durable)}"
        )
        rows.append(_hot_row(variant, variant, drive, note))

    # Redis down: both stores open (and resynced) first, then the server stops.
    degraded = ("degraded", "degraded-durable")
    triggers: dict[str, Pick] = {}
    drives: dict[str, _Drive] = {}
    entries: dict[str, int] = {}
    async with contextlib.AsyncExitStack() as stack:
        stores: dict[str, Store] = {}
        for variant in degraded:
            await _seeded(url, prefixes[variant])
            settings = _memory_settings(url, prefixes[variant], root / variant)
            stores[variant] = await stack.enter_async_context(Store.open(settings))
        await server.astop()
        for variant in degraded:
            store = stores[variant]
            triggers[variant] = plans[variant][0][0][0]
            await store.pools.record_success(*triggers[variant])  # the outage is noticed
            await store.flush()
            await _wait_mode(store, "degraded")
            entries[variant] = -await _journal_depth(store)
        for variant in degraded:
            picks, durable = plans[variant]
            store = stores[variant]
            drives[variant] = await _drive(store, picks, durable=durable)
            if await _mode(store) != "degraded":
                raise BenchFailure(f"{HOT}/{variant}: store left degraded mode during the run")
            entries[variant] += await _journal_depth(store)
    # The stores are closed: every record is in its journal. An empty server comes back.
    await server.arestart()
    for variant in degraded:
        picks, durable = plans[variant]
        expected = Counter(pick for mine in picks for pick in mine)
        expected[triggers[variant]] += 1
        replayed = await _replay_degraded_journal(
            url, root / variant / JOURNAL_FILE, expected, f"{HOT}/{variant}"
        )
        drive = drives[variant]
        note = (
            f"{entries[variant]:,} journal entries, "
            f"{len(drive.latencies) / max(entries[variant], 1):,.0f} rec/entry "
            f"(largest {replayed.largest:,}), loop stall max {drive.stall * 1000:,.0f} ms; "
            f"replayed afterwards at {replayed.rate:,.0f} rec/s, counts checked; "
            f"{_latency_note(durable)}"
        )
        rows.append(_hot_row(variant, variant.replace("degraded", "normal"), drive, note))
    return rows


async def _journal_depth(store: Store) -> int:
    """Entries in the store's journal (from its status)."""
    return int((await store.status())[0].details.get("journal depth", "0"))


@attrs.frozen
class _Replayed:
    """What replaying a ``degraded`` run's journal showed."""

    largest: int
    """Records of the journal's largest entry."""
    rate: float
    """Records per second of ``replay_journal``."""


async def _replay_degraded_journal(
    url: str, path: Path, expected: Counter[Pick], where: str
) -> _Replayed:
    """Check that the journal holds exactly the expected records, replay it onto a fresh
    prefix and check the counts there."""
    prefix = _prefix("replayed")
    namespace_id = await _seeded(url, prefix)
    journal = await Journal.open(path, MAX_JOURNAL_BYTES)
    try:
        journaled: Counter[Pick] = Counter()
        largest = 0
        for entry in journal.entries():
            if entry.kind != RECORDS:
                raise BenchFailure(f"{where}: journal entry {entry.seq} of kind {entry.kind!r}")
            records = entry_records(entry, str(path))
            largest = max(largest, len(records))
            journaled.update((r.provider_type, r.uuid) for r in records if isinstance(r, Success))
        _check_counts(f"{where} (journal)", expected, dict(journaled))
        async with Store.open(redis_only(url, prefix)) as admin:
            ops = admin.replicas.operations
            start = time.perf_counter()
            report = await replay_journal(journal, ops, namespace_id)
            seconds = time.perf_counter() - start
    finally:
        await journal.close()
    _check_counts(f"{where} (replayed)", expected, *await usage_in_redis(url, prefix))
    return _Replayed(largest, report.records / seconds)


# -- fallback-replay --------------------------------------------------------------------------


def _records(count: int, seed: int) -> list[NodeRecord]:
    """``count`` successes on accounts picked with ``seed``, one ms apart."""
    rng = random.Random(seed)
    keys = node_keys(ACCOUNTS)
    at = now_ms()
    return [Success(*rng.choice(keys), at + n) for n in range(count)]


def _batches(records: list[NodeRecord], size: int) -> list[list[NodeRecord]]:
    """``records`` cut into batches of ``size`` (the last may be shorter)."""
    return [records[i : i + size] for i in range(0, len(records), size)]


def _op_ids(count: int) -> list[str]:
    """Fresh operation ids, as the replicator makes them (a new writer's sequence)."""
    ids = BatchSequence(uuidlib.uuid4().hex[:16], now_ms())
    return [ids.next() for _ in range(count)]


async def _write_journal(path: Path, batches: list[list[NodeRecord]], op_ids: list[str]) -> None:
    """A journal of one ``records`` entry per batch, written directly (not timed)."""
    at = now_ms()
    frames = b"".join(
        encode_frame(
            JournalEntry(n + 1, op_id, at + n, RECORDS, [record_to_json(r) for r in batch])
        )
        for n, (batch, op_id) in enumerate(zip(batches, op_ids, strict=True))
    )
    await asyncio.to_thread(_write_private, path, frames)


def _write_private(path: Path, data: bytes) -> None:
    """A new file of mode 0600, as the journal keeps it (else it logs and fixes the mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


async def _timed_live(ops: Operations, namespace_id: str, batches: list[list[NodeRecord]]) -> float:
    """Send each batch with one ``cfgstore_replica_apply`` call, one after another."""
    apply = ops["cfgstore_replica_apply"]
    op_ids = _op_ids(len(batches))
    start = time.perf_counter()
    for batch, op_id in zip(batches, op_ids, strict=True):
        await apply(records=batch, op_id=op_id, namespace_id=namespace_id)
    return time.perf_counter() - start


async def _timed_replay(
    path: Path, ops: Operations, namespace_id: str
) -> tuple[float, ReplayReport, int]:
    """``replay_journal`` of the journal at ``path``: (seconds, report, depth afterwards)."""
    journal = await Journal.open(path, MAX_JOURNAL_BYTES)
    try:
        start = time.perf_counter()
        report = await replay_journal(journal, ops, namespace_id)
        seconds = time.perf_counter() - start
        depth = journal.depth
    finally:
        await journal.close()
    return seconds, report, depth


async def _replay(url: str, entries: int) -> list[Row]:
    """The five ``fallback-replay`` rows, ``entries`` one-record batches each way."""
    prefix = _prefix("replay")
    namespace_id = await _seeded(url, prefix)
    single = _batches(_records(entries, seed=1), 1)
    big = _batches(_records(entries * BATCHED_FACTOR, seed=2), BATCH_RECORDS)
    live_single = _batches(_records(entries, seed=3), 1)
    live_big = _batches(_records(entries * BATCHED_FACTOR, seed=4), BATCH_RECORDS)
    single_ids, big_ids = _op_ids(len(single)), _op_ids(len(big))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="cfgstore-bench-replay-") as tmp:
        folder = Path(tmp)
        async with Store.open(redis_only(url, prefix)) as admin:
            ops = admin.replicas.operations
            plan: list[tuple[str, str, list[list[NodeRecord]], list[str] | None, int]] = [
                ("live-1rec", "live-1rec", live_single, None, 0),
                ("replay-1rec", "live-1rec", single, single_ids, 0),
                ("replay-1rec-again", "live-1rec", single, single_ids, len(single)),
                ("live-batched", "live-batched", live_big, None, 0),
                ("replay-batched", "live-batched", big, big_ids, 0),
            ]
            for variant, baseline, batches, ids, duplicates in plan:
                records = sum(len(batch) for batch in batches)
                if ids is None:
                    seconds = await _timed_live(ops, namespace_id, batches)
                    note = f"{len(batches):,} cfgstore_replica_apply calls"
                else:
                    path = folder / f"{variant}.journal"
                    await _write_journal(path, batches, ids)
                    seconds, report, depth = await _timed_replay(path, ops, namespace_id)
                    where = f"{REPLAY}/{variant}"
                    if report.entries != len(batches) or report.records != records:
                        raise BenchFailure(
                            f"{where}: replayed {report.entries} entries / {report.records} "
                            f"records, expected {len(batches)} / {records}"
                        )
                    if report.duplicates != duplicates or depth:
                        raise BenchFailure(
                            f"{where}: {report.duplicates} batches reported already applied "
                            f"(expected {duplicates}), {depth} entries left in the journal"
                        )
                    again = ", every batch recognised as applied" if duplicates else ""
                    note = f"{len(batches) / seconds:,.0f} entries/s{again}"
                per = records // len(batches)
                rows.append(
                    Row(REPLAY, variant, records, seconds, baseline, f"{per} rec/entry; {note}")
                )
    expected = Counter(
        (record.provider_type, record.uuid)
        for batches in (single, big, live_single, live_big)
        for batch in batches
        for record in batch
    )
    _check_counts(REPLAY, expected, *await usage_in_redis(url, prefix))
    return rows


# -- fallback-propagation ---------------------------------------------------------------------


class _Watcher:
    """Observer on B's plugin manager: when a remote change of the watched kind arrived."""

    def __init__(self) -> None:
        self.entity = ""
        self.ident = ""
        self.arrived = asyncio.Event()
        self.at = 0.0

    def watch(self, entity: str, ident: str = "") -> None:
        """Wait for the next remote change of ``entity`` (naming ``ident``, if given)."""
        self.entity, self.ident = entity, ident
        self.arrived.clear()

    @hookimpl
    def cfgstore_changed(self, event: ChangeEvent) -> None:
        """Note the first matching remote event since :meth:`watch`."""
        if not event.remote or event.entity != self.entity or self.arrived.is_set():
            return
        if self.ident and event.ids and self.ident not in event.ids:
            return
        self.at = time.perf_counter()
        self.arrived.set()


@attrs.define
class _Samples:
    """The timings of one propagation row."""

    delays: list[float] = attrs.Factory(list)
    """A's call → B shows the change, seconds."""
    feed: list[float] = attrs.Factory(list)
    """A's call → the change event on B, seconds."""
    call: list[float] = attrs.Factory(list)
    """A's call alone (``config.put``), seconds."""


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Spin (yielding to the event loop) until ``check()`` holds."""
    deadline = time.perf_counter() + WAIT_S
    while not await check():
        if time.perf_counter() > deadline:
            raise BenchFailure(f"{PROPAGATION}: {what} not visible after {WAIT_S:.0f} s")
        await asyncio.sleep(0)


async def _arrival(watcher: _Watcher, what: str) -> float:
    """When the watched change event arrived on B; fail after :data:`WAIT_S`."""
    try:
        async with asyncio.timeout(WAIT_S):
            await watcher.arrived.wait()
    except TimeoutError:
        raise BenchFailure(
            f"{PROPAGATION}: no change event for {what} within {WAIT_S:.0f} s"
        ) from None
    return watcher.at


async def _health_samples(a: Store, b: Store, watcher: _Watcher, pick: Pick, k: int) -> _Samples:
    """``k`` health flips of ``pick`` made on A, each timed until B shows it."""
    provider_type, uuid = pick
    ident = f"{provider_type}/{uuid}"
    out = _Samples()

    async def shows(healthy: bool) -> bool:
        node = await b.pools.get_node(provider_type, uuid)
        return node is not None and node.state.is_healthy is healthy

    for n in range(k + 2):  # the first two warm up
        healthy = n % 2 == 1
        watcher.watch("pools", ident)
        start = time.perf_counter()
        if healthy:
            await a.pools.record_recovered(provider_type, uuid)
        else:
            await a.pools.record_failure(
                provider_type, uuid, "bench", max_error_count=1, immediate=True
            )
        arrived = await _arrival(watcher, ident)
        await _until(functools.partial(shows, healthy), f"{ident} healthy={healthy}")
        if n >= 2:
            out.delays.append(time.perf_counter() - start)
            out.feed.append(arrived - start)
    return out


async def _config_samples(a: Store, b: Store, watcher: _Watcher, k: int) -> _Samples:
    """``k`` config edits made on A, each timed until B returns the new version."""
    out = _Samples()
    version = (await a.config.get()).version

    async def shows(wanted: str) -> bool:
        return (await b.config.get()).version == wanted

    for n in range(k + 2):
        watcher.watch("config")
        start = time.perf_counter()
        version = await a.config.put({"benchSample": n, "REQUEST_MAX_RETRIES": 3}, version)
        put = time.perf_counter() - start
        arrived = await _arrival(watcher, "config")
        await _until(functools.partial(shows, version), f"config version {version}")
        if n >= 2:
            out.delays.append(time.perf_counter() - start)
            out.feed.append(arrived - start)
            out.call.append(put)
    return out


@contextlib.asynccontextmanager
async def _two_instances(
    url: str, prefix: str, root: Path, refresh_ms: int, plugins: PluginSet
) -> AsyncIterator[tuple[Store, Store]]:
    """Instances A and B on ``prefix``; B uses ``plugins``."""
    a_settings = _memory_settings(url, prefix, root / "a", remote_refresh_ms=refresh_ms)
    b_settings = _memory_settings(url, prefix, root / "b", remote_refresh_ms=refresh_ms)
    async with Store.open(a_settings) as a, Store.open(b_settings, plugins=plugins) as b:
        yield a, b


def _propagation_row(variant: str, baseline: str, samples: _Samples, what: str) -> Row:
    """The row of one propagation variant; ``seconds`` is the sum of the delays."""
    feed = percentile_ms(samples.feed, 0.5)
    note = (
        f"{what}; max {max(samples.delays) * 1000:,.1f} ms; change event on B after "
        f"p50 {feed:,.2f} ms"
    )
    if samples.call:
        note += f"; put alone p50 {percentile_ms(samples.call, 0.5):,.2f} ms"
    return Row(
        PROPAGATION,
        variant,
        len(samples.delays),
        sum(samples.delays),
        baseline,
        note,
        p50_ms=percentile_ms(samples.delays, 0.50),
        p99_ms=percentile_ms(samples.delays, 0.99),
    )


async def _propagation(url: str, root: Path, k: int) -> list[Row]:
    """The ``fallback-propagation`` rows: per ``remote_refresh_ms`` setting a fresh A and B."""
    prefix = _prefix("propagation")
    await _seeded(url, prefix)
    pick = node_keys(ACCOUNTS)[0]
    health: list[Row] = []
    config: list[Row] = []
    for refresh_ms in REFRESH_SETTINGS_MS:
        plugins = make_plugin_manager()
        watcher = _Watcher()
        plugins.manager.register(watcher, name="bench-propagation-watcher")
        folder = root / f"propagation-{refresh_ms}"
        async with _two_instances(url, prefix, folder, refresh_ms, plugins) as (a, b):
            health_samples = await _health_samples(a, b, watcher, pick, k)
            config_samples = await _config_samples(a, b, watcher, k)
        suffix = f"{refresh_ms}ms"
        base = f"{REFRESH_SETTINGS_MS[0]}ms"
        health.append(
            _propagation_row(
                f"health-{suffix}",
                f"health-{base}",
                health_samples,
                f"remote_refresh_ms={refresh_ms}; A record_failure/recovered → B get_node",
            )
        )
        config.append(
            _propagation_row(
                f"config-{suffix}",
                f"config-{base}",
                config_samples,
                f"remote_refresh_ms={refresh_ms}; A config.put → B config.get",
            )
        )
    return health + config
