"""The outage journal (:mod:`cfgstore_memory.journal`): durable appends per second, and how
fast a journal reads back for replay.

Every append carries what the memory fallback journals per hot-path flush: kind
``"records"`` with one ``Success`` record (:func:`~cfgstore.model.record_codec.record_to_json`),
an operation id and the time (~230-byte frames). The records and ids are prepared before
the timing. Variants:

``fsync-per-append`` (baseline)
    A plain loop on one thread: encode the frame, ``os.write`` it to the file opened with
    ``O_APPEND``, ``fdatasync`` — the journal's own sync call — each time. What an append
    costs without group commit.
``group-commit``
    The real :class:`~cfgstore_memory.journal.Journal`: 200 concurrent callers (asyncio
    tasks), each awaiting ``append`` (its own entry durable) before the next. Latency is
    that await: time to durable.
``replay-read``
    ``Journal.open`` + ``entries()`` on a journal of 100,000 × scale entries (written
    beforehand, not timed): read, CRC check, JSON parse of every frame.
``replay-decode``
    The same plus :func:`~cfgstore.model.record_codec.record_from_json` of every record,
    i.e. everything a replay does before talking to Redis; compared with ``replay-read``.

After ``group-commit`` the journal is reopened: it must hold every appended entry, numbered
1..n in order. The replay variants must read back every entry. Else ``ERROR``.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid as uuidlib
from pathlib import Path

from bench.harness import BenchFailure, Row, fresh_configs_dir, percentile_ms, scaled
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.record_codec import record_from_json, record_to_json
from cfgstore.model.records import Success
from cfgstore.model.timefmt import now_ms
from cfgstore_memory.journal import Journal, JournalEntry, encode_frame

NAME = "journal"
APPEND_BASELINE = "fsync-per-append"
REPLAY_BASELINE = "replay-read"
CALLERS = 200
PER_FSYNC_OPS = 1_000
GROUP_OPS_PER_CALLER = 100
REPLAY_ENTRIES = 100_000
MAX_BYTES = 1 << 40  # the bound is not what is measured here

_sync = getattr(os, "fdatasync", os.fsync)


def run(scale: float) -> list[Row]:
    per_fsync_ops = scaled(PER_FSYNC_OPS, scale, 10)
    group_ops = scaled(CALLERS * GROUP_OPS_PER_CALLER, scale, CALLERS)
    replay_entries = scaled(REPLAY_ENTRIES, scale, 100)
    rows = [_per_fsync(per_fsync_ops), _group_commit(group_ops)]
    rows.extend(_replay(replay_entries))
    return rows


_PREFIX = uuidlib.uuid4().hex[:20]
_payloads: list[JSONValue] = []


def _data(n: int) -> JSONValue:
    """One of 50 prepared payloads (one ``Success`` each), so that building records is not
    in the timings."""
    if not _payloads:
        at = now_ms()
        _payloads.extend(
            [record_to_json(Success("claude-kiro-oauth", f"5e0f3c1a-0000-4000-8000-{i:012d}", at))]
            for i in range(50)
        )
    return _payloads[n % 50]


def _op_id(n: int) -> str:
    """A uuid-hex-sized operation id, unique within the run."""
    return f"{_PREFIX}{n:012x}"


# -- baseline: one write + one fdatasync per append ----------------------------------------


def _per_fsync(ops: int) -> Row:
    latencies: list[float] = []
    with fresh_configs_dir() as configs:
        path = configs / "baseline.journal"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            start = time.perf_counter()
            for n in range(ops):
                began = time.perf_counter()
                entry = JournalEntry(n + 1, _op_id(n), now_ms(), "records", _data(n))
                frame = encode_frame(entry)
                os.write(fd, frame)
                _sync(fd)
                latencies.append(time.perf_counter() - began)
            seconds = time.perf_counter() - start
        finally:
            os.close(fd)
        size = path.stat().st_size
    return Row(
        NAME,
        APPEND_BASELINE,
        ops,
        seconds,
        APPEND_BASELINE,
        f"{ops:,} fdatasyncs, {size / ops:.0f} B/frame; lat = encode + write + fdatasync",
        percentile_ms(latencies, 0.5),
        percentile_ms(latencies, 0.99),
    )


# -- group commit: the journal with 200 concurrent appenders -------------------------------


def _group_commit(ops: int) -> Row:
    with fresh_configs_dir() as configs:
        path = configs / "instance.journal"
        seconds, latencies, fsyncs = asyncio.run(_append_concurrently(path, ops))
        entries = asyncio.run(_read_back(path))
    seqs = [entry.seq for entry in entries]
    if seqs != list(range(1, ops + 1)):
        raise BenchFailure(
            f"{NAME}/group-commit: reopened journal holds {len(seqs)} entries, expected 1..{ops}"
        )
    return Row(
        NAME,
        "group-commit",
        ops,
        seconds,
        APPEND_BASELINE,
        f"{CALLERS} callers, {fsyncs:,} fdatasyncs, {ops / max(fsyncs, 1):,.0f} appends/fsync; "
        "lat = await append (time to durable)",
        percentile_ms(latencies, 0.5),
        percentile_ms(latencies, 0.99),
    )


async def _append_concurrently(path: Path, ops: int) -> tuple[float, list[float], int]:
    journal = await Journal.open(path, MAX_BYTES)
    share, extra = divmod(ops, CALLERS)
    latencies: list[float] = []

    async def caller(index: int, count: int) -> None:
        for n in range(count):
            began = time.perf_counter()
            await journal.append("records", _data(n), _op_id(index << 24 | n), now_ms())
            latencies.append(time.perf_counter() - began)

    try:
        start = time.perf_counter()
        await asyncio.gather(*(caller(i, share + (i < extra)) for i in range(CALLERS)))
        seconds = time.perf_counter() - start
        fsyncs = journal.fsync_count
    finally:
        await journal.close()
    return seconds, latencies, fsyncs


async def _read_back(path: Path) -> list[JournalEntry]:
    journal = await Journal.open(path, MAX_BYTES)
    try:
        return journal.entries()
    finally:
        await journal.close()


# -- replay: reading a journal back --------------------------------------------------------


def _replay(count: int) -> list[Row]:
    with fresh_configs_dir() as configs:
        path = configs / "replay.journal"
        at = now_ms()
        frames = b"".join(
            encode_frame(JournalEntry(n + 1, _op_id(n), at + n, "records", _data(n)))
            for n in range(count)
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(frames)
        size = path.stat().st_size
        read_seconds, read_count = asyncio.run(_timed_replay(path, decode=False))
        decode_seconds, decode_count = asyncio.run(_timed_replay(path, decode=True))
    for variant, got in ((REPLAY_BASELINE, read_count), ("replay-decode", decode_count)):
        if got != count:
            raise BenchFailure(f"{NAME}/{variant}: read back {got} entries, expected {count}")
    mib = size / (1 << 20)
    return [
        Row(
            NAME,
            REPLAY_BASELINE,
            count,
            read_seconds,
            REPLAY_BASELINE,
            f"Journal.open + entries() of {mib:.1f} MiB ({mib / read_seconds:.0f} MiB/s)",
        ),
        Row(
            NAME,
            "replay-decode",
            count,
            decode_seconds,
            REPLAY_BASELINE,
            "the same + record_from_json of each entry's record",
        ),
    ]


async def _timed_replay(path: Path, decode: bool) -> tuple[float, int]:
    start = time.perf_counter()
    journal = await Journal.open(path, MAX_BYTES)
    try:
        entries = journal.entries()
        if decode:
            source = str(path)
            for entry in entries:
                for record in entry.data:
                    record_from_json(record, source)
        seconds = time.perf_counter() - start
    finally:
        await journal.close()
    return seconds, len(entries)
