"""The outage journal (cfgstore_memory.journal): durable group-committed appends, repair of
torn tails, corruption set aside, the bound, atomic clearing, and a real SIGKILL."""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import signal
import stat
import struct
import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cfgstore.errors import InvalidData, JournalFull, StorageServerError, StorageUnavailable
from cfgstore.model.record_codec import record_from_json, record_to_json
from cfgstore.model.records import Failure, Success
from cfgstore_memory import journal as journal_module
from cfgstore_memory.journal import (
    HEADER_SIZE,
    MAGIC,
    Journal,
    JournalEntry,
    encode_frame,
    inspect_file,
)

BIG = 1 << 30
T0 = 1773576000000
TYPE = "openai-custom"
UUID = "5e0f3c1a-0000-4000-8000-000000000001"
LOGGER = "cfgstore.memory.journal"
TIMEOUT_S = 60


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "instance-1.journal"


def frames(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each frame in a well-formed journal file."""
    out = []
    offset = 0
    while offset < len(data):
        magic, length, _ = struct.unpack_from(">2sII", data, offset)
        assert magic == MAGIC
        out.append((offset, offset + HEADER_SIZE + length))
        offset += HEADER_SIZE + length
    assert offset == len(data)
    return out


def payload(index: int) -> dict[str, Any]:
    record = Failure(TYPE, UUID, T0 + index, f"error {index} — ünïcode", 3)
    return {"records": [record_to_json(record)], "n": index}


async def write_entries(path: Path, count: int) -> list[JournalEntry]:
    journal = await Journal.open(path, BIG)
    try:
        return [
            await journal.append("records", payload(i), f"op-{i}", T0 + i) for i in range(count)
        ]
    finally:
        await journal.close()


async def reopen_entries(path: Path) -> list[JournalEntry]:
    journal = await Journal.open(path, BIG)
    try:
        return journal.entries()
    finally:
        await journal.close()


class CountingSync:
    """An fsync stand-in that counts calls and notes the file size each one made durable."""

    def __init__(self, fail: Callable[[int], bool] | None = None) -> None:
        self.calls = 0
        self.on_main_thread = False
        self.synced_sizes: list[int] = []
        self.fail = fail

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.on_main_thread = self.on_main_thread or threading.current_thread() is (
            threading.main_thread()
        )
        if self.fail is not None and self.fail(self.calls):
            raise OSError(errno.EIO, "injected I/O error")
        os.fsync(fd)
        self.synced_sizes.append(os.fstat(fd).st_size)


def warnings_about(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER
        and record.levelno >= logging.WARNING
        and str(path) in record.getMessage()
    ]


# ---------------------------------------------------------------------- round trip


async def test_append_reopen_round_trip(path: Path) -> None:
    data: list[Any] = [
        [record_to_json(Success(TYPE, UUID, T0))],
        {"type": "claude-kiro-oauth", "uuid": UUID, "document": {"token": "t\u2028x"}, "v": None},
        "lone surrogate \ud800 and emoji 🙂",
        None,
        [1, 2.5, True, {"nested": [[]]}],
        12345678901234567890,
    ]
    journal = await Journal.open(path, BIG)
    assert journal.depth == 0
    assert journal.oldest_at_ms is None
    assert journal.size_bytes == 0
    written = [
        await journal.append("credential" if i == 1 else "records", value, f"op-{i}", T0 + i)
        for i, value in enumerate(data)
    ]
    assert [entry.seq for entry in written] == [1, 2, 3, 4, 5, 6]
    assert journal.entries() == written
    assert journal.depth == 6
    assert journal.oldest_at_ms == T0
    assert journal.size_bytes == path.stat().st_size
    await journal.close()

    journal = await Journal.open(path, BIG)
    assert journal.entries() == written
    assert [entry.data for entry in journal.entries()] == data
    assert journal.size_bytes == path.stat().st_size
    assert journal.oldest_at_ms == T0
    nxt = await journal.append("records", [], "op-next", T0 + 99)
    assert nxt.seq == 7
    await journal.close()
    record = record_from_json((await reopen_entries(path))[0].data[0], "journal")
    assert record == Success(TYPE, UUID, T0)


async def test_file_is_exactly_the_encoded_frames(path: Path) -> None:
    written = await write_entries(path, 3)
    assert path.read_bytes() == b"".join(encode_frame(entry) for entry in written)
    # header: magic, big-endian length, CRC32 of the payload; payload is the entry as JSON
    raw = path.read_bytes()
    magic, length, crc = struct.unpack_from(">2sII", raw)
    body = raw[HEADER_SIZE : HEADER_SIZE + length]
    assert magic == MAGIC
    assert crc == zlib.crc32(body)
    assert body.startswith(b'{"seq":1,"op_id":"op-0","at_ms":')


async def test_modes_directory_0700_and_files_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "a" / "state" / "j.journal"
        journal = await Journal.open(path, BIG)
        await journal.append("records", [], "op", T0)
        await journal.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.with_name("j.journal.lock").stat().st_mode) == 0o600


async def test_loose_file_mode_is_tightened(path: Path) -> None:
    await write_entries(path, 1)
    path.chmod(0o644)
    assert len(await reopen_entries(path)) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_second_open_is_refused_while_open(path: Path) -> None:
    journal = await Journal.open(path, BIG)
    with pytest.raises(StorageUnavailable, match="another process"):
        await Journal.open(path, BIG)
    await journal.close()
    again = await Journal.open(path, BIG)
    await again.close()


async def test_bad_kind_or_data_is_refused_and_nothing_written(path: Path) -> None:
    journal = await Journal.open(path, BIG)
    await journal.append("records", [], "op-1", T0)
    size = path.stat().st_size
    for kind, data in [
        ("$cleared", None),
        ("", None),
        ("records", math.nan),
        ("records", {"x": object()}),
        ("records", [math.inf]),
    ]:
        with pytest.raises(InvalidData):
            await journal.append(kind, data, "op-x", T0)
    assert path.stat().st_size == size
    assert (await journal.append("records", [], "op-2", T0)).seq == 2
    await journal.close()


# ---------------------------------------------------------------------- group commit


async def test_200_concurrent_appenders_share_fsyncs(path: Path) -> None:
    sync = CountingSync()
    journal = await Journal.open(path, BIG, fsync=sync)
    returned: list[tuple[int, int]] = []  # (seq, bytes durable when its append returned)

    async def appender(n: int) -> JournalEntry:
        entry = await journal.append("records", payload(n), f"op-{n}", T0 + n)
        returned.append((entry.seq, sync.synced_sizes[-1]))
        return entry

    entries = await asyncio.wait_for(asyncio.gather(*(appender(n) for n in range(200))), TIMEOUT_S)
    assert sorted(entry.seq for entry in entries) == list(range(1, 201))
    assert [entry.seq for entry in journal.entries()] == list(range(1, 201))
    # entries are written in sequence order, each with its own data
    assert all(entry.data == payload(int(entry.op_id[3:])) for entry in journal.entries())
    assert sync.calls == journal.fsync_count == journal.commit_count
    assert sync.calls <= 5, f"{sync.calls} fsyncs for 200 concurrent appends"
    assert not sync.on_main_thread  # file work stays off the event loop
    # every caller returned only once the sync covering its frame had happened
    ends = {i + 1: end for i, (_, end) in enumerate(frames(path.read_bytes()))}
    assert all(ends[seq] <= durable for seq, durable in returned)
    await journal.close()
    assert [entry.seq for entry in await reopen_entries(path)] == list(range(1, 201))


async def test_appenders_in_loops_far_fewer_fsyncs_than_appends(path: Path) -> None:
    sync = CountingSync()
    journal = await Journal.open(path, BIG, fsync=sync)
    seen: list[list[int]] = [[] for _ in range(200)]

    async def appender(n: int) -> None:
        for i in range(5):
            entry = await journal.append("records", [n, i], f"op-{n}-{i}", T0 + i)
            seen[n].append(entry.seq)

    await asyncio.wait_for(asyncio.gather(*(appender(n) for n in range(200))), TIMEOUT_S)
    assert journal.append_count == 1000
    assert sync.calls <= 100, f"{sync.calls} fsyncs for 1000 appends"
    seqs = [entry.seq for entry in journal.entries()]
    assert seqs == list(range(1, 1001))
    assert all(s == sorted(s) and len(set(s)) == 5 for s in seen)
    await journal.close()
    assert [entry.seq for entry in await reopen_entries(path)] == seqs


async def test_a_lone_append_is_written_at_once(path: Path) -> None:
    sync = CountingSync()
    journal = await Journal.open(path, BIG, fsync=sync)
    for i in range(3):
        await asyncio.wait_for(journal.append("records", [i], f"op-{i}", T0), TIMEOUT_S)
        assert sync.calls == i + 1
    await journal.close()


async def test_close_waits_for_pending_appends(path: Path) -> None:
    journal = await Journal.open(path, BIG)
    tasks = [asyncio.create_task(journal.append("records", [n], f"op-{n}", T0)) for n in range(50)]
    await asyncio.sleep(0)  # let them enqueue
    await asyncio.wait_for(journal.close(), TIMEOUT_S)
    assert [task.result().seq for task in tasks] == list(range(1, 51))
    with pytest.raises(RuntimeError, match="closed"):
        await journal.append("records", [], "op-late", T0)
    assert [e.seq for e in await reopen_entries(path)] == list(range(1, 51))


async def test_a_cancelled_appender_does_not_disturb_the_others(path: Path) -> None:
    journal = await Journal.open(path, BIG)
    tasks = [asyncio.create_task(journal.append("records", [n], f"op-{n}", T0)) for n in range(20)]
    await asyncio.sleep(0)
    tasks[5].cancel()
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TIMEOUT_S)
    assert isinstance(done[5], asyncio.CancelledError)
    assert all(isinstance(r, JournalEntry) for i, r in enumerate(done) if i != 5)
    later = await journal.append("records", ["later"], "op-later", T0)
    assert later.seq == 21
    await journal.close()
    # the cancelled caller's entry was already handed to the writer: it may be there
    assert {e.seq for e in await reopen_entries(path)} >= set(range(1, 22)) - {6}


async def test_sync_failure_fails_the_batch_and_stops_the_journal(path: Path) -> None:
    sync = CountingSync(fail=lambda call: call == 2)
    journal = await Journal.open(path, BIG, fsync=sync)
    await journal.append("records", [1], "op-1", T0)
    with pytest.raises(StorageServerError, match="sync failed"):
        await journal.append("records", [2], "op-2", T0)
    with pytest.raises(StorageServerError, match="reopen"):
        await journal.append("records", [3], "op-3", T0)
    assert journal.depth == 1
    await journal.close()
    assert [entry.data for entry in await reopen_entries(path)] == [[1]]


async def test_write_failure_cuts_back_and_the_journal_goes_on(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = await Journal.open(path, BIG)
    await journal.append("records", [1], "op-1", T0)
    real = journal_module._write_all

    def half_then_enospc(fd: int, data: bytes) -> None:
        real(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module, "_write_all", half_then_enospc)
    with pytest.raises(StorageServerError, match="write failed"):
        await journal.append("records", [2], "op-2", T0)
    monkeypatch.setattr(journal_module, "_write_all", real)
    third = await journal.append("records", [3], "op-3", T0)
    assert third.seq == 3  # the failed append's number is not reused
    await journal.close()
    assert [(e.seq, e.data) for e in await reopen_entries(path)] == [(1, [1]), (3, [3])]


# ---------------------------------------------------------------------- torn tails


async def test_torn_tail_at_every_offset_of_the_last_frame(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = await write_entries(path, 3)
    data = path.read_bytes()
    start, end = frames(data)[-1]
    for cut in range(start + 1, end):
        path.write_bytes(data[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, LOGGER):
            journal = await Journal.open(path, BIG)
        assert journal.entries() == written[:2], cut
        assert path.stat().st_size == start, cut
        messages = warnings_about(caplog, path)
        assert len(messages) == 1, (cut, messages)
        assert f"offset {start}" in messages[0]
        assert "incomplete" in messages[0]
        # later appends are clean
        again = await journal.append("records", ["after"], "op-after", T0)
        assert again.seq == 3
        await journal.close()
        caplog.clear()
        with caplog.at_level(logging.WARNING, LOGGER):
            reread = await reopen_entries(path)
        assert reread == [*written[:2], again], cut
        assert warnings_about(caplog, path) == []


@pytest.mark.parametrize("garbage", [b"\0" * 4096, MAGIC, b"\xc7", b"{}"])
async def test_junk_after_the_last_frame_is_truncated(
    path: Path, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    written = await write_entries(path, 2)
    size = path.stat().st_size
    with path.open("ab") as handle:
        handle.write(garbage)
    with caplog.at_level(logging.WARNING, LOGGER):
        assert await reopen_entries(path) == written
    assert path.stat().st_size == size
    assert any(f"offset {size}" in m for m in warnings_about(caplog, path))


async def test_inspect_file_reports_a_torn_tail_and_touches_nothing(
    path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = await write_entries(path, 3)
    data = path.read_bytes()
    start, end = frames(data)[-1]
    torn = tmp_path / "inspected" / "journal"
    torn.parent.mkdir()
    torn.write_bytes(data[: end - 3])
    before = torn.stat()

    with caplog.at_level(logging.WARNING, LOGGER):
        found = inspect_file(torn)

    assert found.entries == written[:2]
    assert (found.size, found.good_bytes) == (end - 3, start)
    assert found.problem is not None and "incomplete" in found.problem
    assert found.torn_tail and not found.damaged_in_middle and found.starts_with_frame
    # Read-only: the tail is not truncated, no lock file (or anything else) is created.
    assert torn.read_bytes() == data[: end - 3]
    assert torn.stat().st_mtime_ns == before.st_mtime_ns
    assert [p.name for p in torn.parent.iterdir()] == ["journal"]
    assert warnings_about(caplog, torn) == []
    with pytest.raises(FileNotFoundError):
        inspect_file(torn.with_name("missing"))
    assert [p.name for p in torn.parent.iterdir()] == ["journal"]
    # The lock is not taken: a journal held open reads too.
    held = await Journal.open(path, BIG)
    try:
        assert inspect_file(path).entries == written
    finally:
        await held.close()


async def test_flipped_byte_in_last_payload_is_caught_by_the_crc(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = await write_entries(path, 3)
    data = path.read_bytes()
    start, end = frames(data)[-1]
    for position in range(start + HEADER_SIZE, end):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        path.write_bytes(bytes(damaged))
        caplog.clear()
        with caplog.at_level(logging.WARNING, LOGGER):
            assert await reopen_entries(path) == written[:2], position
        messages = warnings_about(caplog, path)
        assert len(messages) == 1
        assert "CRC mismatch" in messages[0]
        assert f"offset {start}" in messages[0]
        assert path.stat().st_size == start


async def test_last_frame_with_good_crc_but_bad_json_is_cut(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = await write_entries(path, 2)
    size = path.stat().st_size
    for body in [b"{not json", b"[1,2]", b'{"seq":3}', b"\xff\xfe"]:
        with path.open("ab") as handle:
            handle.write(struct.pack(">2sII", MAGIC, len(body), zlib.crc32(body)) + body)
        caplog.clear()
        with caplog.at_level(logging.WARNING, LOGGER):
            assert await reopen_entries(path) == written
        assert any("bad entry" in m for m in warnings_about(caplog, path)), body
        assert path.stat().st_size == size


# ---------------------------------------------------------------------- corruption inside


@pytest.mark.parametrize(
    ("where", "delta"),
    [
        pytest.param("magic", 0, id="magic"),
        pytest.param("length", 3, id="length"),
        pytest.param("crc", 7, id="crc"),
        pytest.param("payload", HEADER_SIZE + 5, id="payload"),
    ],
)
async def test_corruption_in_the_middle_keeps_the_prefix_and_sets_the_file_aside(
    path: Path, caplog: pytest.LogCaptureFixture, where: str, delta: int
) -> None:
    written = await write_entries(path, 5)
    data = path.read_bytes()
    start, _ = frames(data)[1]
    damaged = bytearray(data)
    damaged[start + delta] ^= 0x40
    path.write_bytes(bytes(damaged))

    with caplog.at_level(logging.WARNING, LOGGER):
        journal = await Journal.open(path, BIG)
    assert journal.entries() == written[:1]
    asides = sorted(path.parent.glob(path.name + ".corrupt-*"))
    assert len(asides) == 1
    assert asides[0].read_bytes() == bytes(damaged)  # the whole original, kept
    assert stat.S_IMODE(asides[0].stat().st_mode) == 0o600
    assert path.read_bytes() == data[:start]
    messages = warnings_about(caplog, path)
    assert len(messages) == 1
    message = messages[0]
    assert f"offset {start}" in message
    assert "3 frames" in message
    assert "seq 3..5" in message
    assert "NOT loaded" in message
    assert str(asides[0]) in message
    # numbering continues above everything seen in the copy
    assert (await journal.append("records", [], "op-next", T0)).seq == 6
    await journal.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, LOGGER):
        assert [e.seq for e in await reopen_entries(path)] == [1, 6]
    assert warnings_about(caplog, path) == []


async def test_out_of_order_sequence_number_is_corruption(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = await write_entries(path, 2)
    stray = JournalEntry(1, "op-stray", T0, "records", None)
    with path.open("ab") as handle:
        handle.write(encode_frame(stray))
    with caplog.at_level(logging.WARNING, LOGGER):
        assert await reopen_entries(path) == written
    assert any("not above 2" in m for m in warnings_about(caplog, path))


# ---------------------------------------------------------------------- bound


async def test_journal_full_at_the_bound_writes_nothing(path: Path) -> None:
    frame_size = len(encode_frame(JournalEntry(1, "op-0", T0, "records", [0])))
    journal = await Journal.open(path, 3 * frame_size)
    for i in range(3):
        await journal.append("records", [i], f"op-{i}", T0)
    before = path.read_bytes()
    with pytest.raises(JournalFull, match="full"):
        await journal.append("records", [3], "op-3", T0)
    assert path.read_bytes() == before
    assert journal.depth == 3
    assert journal.size_bytes == len(before) == 3 * frame_size
    assert journal.next_seq == 4  # nothing consumed
    await journal.clear_through(2)
    assert (await journal.append("records", [3], "op-3", T0)).seq == 4
    await journal.close()


async def test_concurrent_appenders_at_the_bound_never_overshoot(path: Path) -> None:
    bound = 4000
    journal = await Journal.open(path, bound)
    results = await asyncio.wait_for(
        asyncio.gather(
            *(journal.append("records", [n], f"op-{n}", T0) for n in range(200)),
            return_exceptions=True,
        ),
        TIMEOUT_S,
    )
    accepted = [r for r in results if isinstance(r, JournalEntry)]
    refused = [r for r in results if not isinstance(r, JournalEntry)]
    assert accepted
    assert refused
    assert all(isinstance(r, JournalFull) for r in refused)
    size = path.stat().st_size
    assert size <= bound
    assert size + len(encode_frame(accepted[-1])) > bound  # refused only when it didn't fit
    await journal.close()
    assert await reopen_entries(path) == accepted


# ---------------------------------------------------------------------- clearing


async def test_clear_through_keeps_later_entries_and_numbering_continues(path: Path) -> None:
    journal = await Journal.open(path, BIG)
    written = [await journal.append("records", [i], f"op-{i}", T0 + i) for i in range(5)]
    await journal.clear_through(0)
    assert journal.entries() == written
    await journal.clear_through(3)
    assert journal.entries() == written[3:]
    assert journal.oldest_at_ms == T0 + 3
    assert journal.size_bytes == path.stat().st_size
    assert path.read_bytes() == b"".join(encode_frame(e) for e in written[3:])
    sixth = await journal.append("records", [5], "op-5", T0 + 5)
    assert sixth.seq == 6
    await journal.close()

    journal = await Journal.open(path, BIG)
    assert journal.entries() == [*written[3:], sixth]
    await journal.clear_through(6)
    assert journal.depth == 0
    assert journal.entries() == []
    assert journal.oldest_at_ms is None
    assert journal.size_bytes == path.stat().st_size
    await journal.close()

    # an emptied journal still remembers its numbering
    journal = await Journal.open(path, BIG)
    assert journal.entries() == []
    assert (await journal.append("records", [], "op-7", T0)).seq == 7
    await journal.clear_through(100)
    await journal.close()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".lock"]


async def test_clear_that_fails_before_the_rename_leaves_the_old_journal(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = await Journal.open(path, BIG)
    written = [await journal.append("records", [i], f"op-{i}", T0) for i in range(4)]
    before = path.read_bytes()

    def crash(src: Any, dst: Any) -> None:
        raise OSError(errno.EIO, "injected: crashed before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StorageServerError, match=r"clear failed.*injected"):
        await journal.clear_through(2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert journal.entries() == written
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".lock"]
    fifth = await journal.append("records", [4], "op-4", T0)
    await journal.close()
    assert await reopen_entries(path) == [*written, fifth]


async def test_stale_temp_file_of_an_interrupted_clear_is_removed(path: Path) -> None:
    written = await write_entries(path, 2)
    stale = path.with_name(f"{path.name}.1773576000000.1a2b.tmp")
    stale.write_bytes(b"half a rewrite")
    assert await reopen_entries(path) == written
    assert not stale.exists()


async def test_appends_during_a_clear_are_kept(path: Path) -> None:
    journal = await Journal.open(path, BIG)
    for i in range(50):
        await journal.append("records", [i], f"op-{i}", T0)
    results = await asyncio.wait_for(
        asyncio.gather(
            journal.clear_through(25),
            *(journal.append("records", [n], f"new-{n}", T0) for n in range(100)),
        ),
        TIMEOUT_S,
    )
    new_seqs = [entry.seq for entry in results[1:] if isinstance(entry, JournalEntry)]
    assert len(new_seqs) == 100
    assert [e.seq for e in journal.entries()] == list(range(26, 151))
    await journal.close()
    assert [e.seq for e in await reopen_entries(path)] == list(range(26, 151))


# ---------------------------------------------------------------------- crash


CHILD = """
import asyncio, sys
from cfgstore_memory.journal import Journal

async def main():
    journal = await Journal.open(sys.argv[1], 1 << 30)
    print("ready", flush=True)

    async def worker(w):
        i = 0
        while True:
            entry = await journal.append(
                "records", {"w": w, "i": i, "pad": "x" * (i * 97 % 3000)}, f"op-{w}-{i}", i
            )
            sys.stdout.write(f"{entry.seq}\\n")
            sys.stdout.flush()
            i += 1

    await asyncio.gather(*(worker(w) for w in range(16)))

asyncio.run(main())
"""


async def test_sigkill_while_appending_leaves_a_clean_prefix(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    acknowledged: set[int] = set()
    async with asyncio.timeout(TIMEOUT_S * 2):
        for _round in range(3):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CHILD,
                str(path),
                stdout=asyncio.subprocess.PIPE,
            )
            assert process.stdout is not None
            try:
                assert (await process.stdout.readline()).strip() == b"ready"
                seen = 0
                while seen < 300:
                    line = await process.stdout.readline()
                    assert line, "child exited early"
                    acknowledged.add(int(line))
                    seen += 1
            finally:
                process.send_signal(signal.SIGKILL)
                await process.wait()
            assert process.returncode == -signal.SIGKILL
            # everything it printed before dying was acknowledged
            for line in (await process.stdout.read()).splitlines():
                if line.strip():
                    acknowledged.add(int(line))

            with caplog.at_level(logging.WARNING, LOGGER):
                entries = await reopen_entries(path)
            seqs = [entry.seq for entry in entries]
            assert seqs == sorted(set(seqs))
            missing = acknowledged - set(seqs)
            assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"
            assert not list(path.parent.glob("*.corrupt-*"))
    assert len(acknowledged) >= 900
