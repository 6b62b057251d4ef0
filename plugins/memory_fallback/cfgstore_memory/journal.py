"""The outage journal: an append-only, checksummed, group-committed file (DESIGN §3).

While Redis is unreachable every hot-path write is appended here before it counts as done,
and replayed in order when Redis is back. One journal file per instance.

File format
    A sequence of frames, nothing else (no file header)::

        magic    2 bytes   b"\\xc7J" (also the format version: a new format gets a new magic)
        length   4 bytes   big-endian, payload bytes
        crc32    4 bytes   big-endian, zlib.crc32 of the payload
        payload  length    UTF-8 JSON object of one entry:
                           {"seq": int, "op_id": str, "at_ms": int, "kind": str, "data": JSON}

    Payloads are written ASCII-only (``json.dumps``' default escaping; ASCII is UTF-8), so
    the magic's first byte (0xC7) never occurs inside a payload: a scan for later frames
    after a damaged one does not trip over payload text. ``data`` is opaque to the journal
    (kinds used by the memory fallback: ``"records"``, ``"credential"``, ``"logout"``).
    Kinds starting with ``$`` are the journal's own: ``"$cleared"`` keeps the sequence
    number when :meth:`Journal.clear_through` empties the file; they never show in
    :meth:`entries`.

Durability
    :meth:`Journal.append` returns once its entry is on disk (``write`` + ``fdatasync``,
    which also persists the file size). Appends are group-committed: one writer task takes
    everything pending, writes it with one ``write`` and one sync in a worker thread, and
    starts the next batch as soon as that returns, so a lone append is written at once and
    200 concurrent ones share a sync. Sequence numbers increase strictly, also across
    reopening (gaps are possible: a failed write consumes its numbers). Past ``max_bytes``
    an append raises :class:`~cfgstore.errors.JournalFull` and nothing is written.

Recovery on open
    Frames are read until the first one that is incomplete or wrong (short header, bad
    magic, short payload, CRC mismatch, payload that is not an entry, sequence number not
    above the previous one). Then the rest of the file is searched for any later frame that
    checks out:

    * none (a **torn or corrupt tail**: a write cut short by a crash, or damage in the last
      frame): the tail is truncated away (and synced) with a warning naming the file, the
      offset and the reason. Acknowledged appends are never in a torn tail: an append is
      acknowledged only after its sync.
    * some (**corruption in the middle**, followed by frames that look good): the journal
      keeps the entries before the damage and **does not** load those after it — replaying
      later entries with a hole before them would apply a different history than the one
      recorded, and the damage means the file cannot be fully trusted. Nothing is dropped
      silently: the whole original file is first copied to ``<name>.corrupt-<ms>`` (mode
      0600), then the journal is rewritten atomically to the good prefix, and an error-level
      log says which frames (count and sequence range) were left in the copy for an
      operator. The next sequence number continues above every sequence number seen in the
      copy, so a later salvage never meets a number twice.

Atomic clearing
    :meth:`Journal.clear_through` rewrites the remainder to a temp file, syncs it and
    renames it over the journal (then syncs the directory), so a crash leaves either the old
    or the new journal. When nothing remains the new file holds a single ``$cleared`` frame
    carrying the last sequence number, so numbering survives an empty journal too.

Failures
    A failed ``write`` fails the batch's appends with
    :class:`~cfgstore.errors.StorageServerError` and cuts the file back to its last durable
    size; the journal goes on. A failed sync does the same but then refuses every further
    append (after a failed ``fsync`` the kernel may have dropped the dirty pages, so what is
    on disk is unknown until the file is read again): reopen the journal.

Ownership
    The journal holds an exclusive ``flock`` on ``<name>.lock`` beside it while open: a
    second opener (another process by mistake, or ``cfgctl`` looking for orphaned journals)
    gets :class:`~cfgstore.errors.StorageUnavailable` instead of interleaving writes. The
    kernel drops the lock when the process dies.

Inspection
    :func:`inspect_file` reads a journal file the way :meth:`Journal.open` reads it and
    reports what it found (the entries, the clean prefix, the damage after it and whether
    frames that check out follow the damage) without acting on it: no lock is taken, no
    file is created, nothing is truncated or set aside. For tools looking at a journal an
    instance may hold open (``cfgctl journal list``): there a damaged end may be an append
    in progress.

Files are created mode 0600 in a directory created 0700 (they may carry credentials). No
file work runs on the event loop; JSON encoding of an entry does (entries are small: one
flush's records or one credential), so the bound check and the sequence number are
decided before ``append`` first awaits.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fcntl
import gc
import json
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from cfgstore.errors import InvalidData, JournalFull, StorageServerError, StorageUnavailable
from cfgstore.fileio import atomic_write
from cfgstore.model.jsjson import JSONValue

log = logging.getLogger("cfgstore.memory.journal")

MAGIC = b"\xc7J"
HEADER = struct.Struct(">2sII")
HEADER_SIZE = HEADER.size  # 10
CLEARED_KIND = "$cleared"
"""Internal entry kept when the journal is emptied: its ``seq`` is the last one used."""

_ENTRY_KEYS = frozenset(("seq", "op_id", "at_ms", "kind", "data"))

Sync = Callable[[int], None]

_default_sync: Sync = getattr(os, "fdatasync", os.fsync)


@attrs.frozen
class JournalEntry:
    """One durable journal entry. ``data`` is any JSON value, opaque to the journal."""

    seq: int
    op_id: str
    at_ms: int
    kind: str
    data: JSONValue

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "seq": self.seq,
            "op_id": self.op_id,
            "at_ms": self.at_ms,
            "kind": self.kind,
            "data": self.data,
        }


_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encode_frame(entry: JournalEntry) -> bytes:
    """One frame (header + payload) for ``entry``; :class:`ValueError`/:class:`TypeError`
    when ``data`` is not JSON (NaN, infinities and non-JSON objects are refused)."""
    payload = _encoder.encode(entry.to_json()).encode("ascii")
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def _entry_from_doc(doc: Any) -> JournalEntry:
    if type(doc) is not dict or doc.keys() != _ENTRY_KEYS:
        raise ValueError("payload is not a journal entry object")
    seq, op_id, at_ms, kind = doc["seq"], doc["op_id"], doc["at_ms"], doc["kind"]
    if type(seq) is not int or type(at_ms) is not int:
        raise ValueError("seq and at_ms must be integers")
    if type(op_id) is not str or type(kind) is not str or not kind:
        raise ValueError("op_id and kind must be strings")
    return JournalEntry(seq, op_id, at_ms, kind, doc["data"])


def _decode_entry(payload: bytes | memoryview) -> JournalEntry:
    return _entry_from_doc(json.loads(bytes(payload).decode("utf-8")))


def _check_frame(view: memoryview, offset: int) -> int | str:
    """The end of the frame at ``offset`` when its header and CRC check out, else why not."""
    end = len(view)
    if end - offset < HEADER_SIZE:
        return f"incomplete header ({end - offset} of {HEADER_SIZE} bytes)"
    magic, length, crc = HEADER.unpack_from(view, offset)
    if magic != MAGIC:
        return f"bad magic {magic!r}"
    start = offset + HEADER_SIZE
    stop: int = start + length
    if stop > end:
        return f"incomplete payload ({end - start} of {length} bytes)"
    if zlib.crc32(view[start:stop]) != crc:
        return "CRC mismatch"
    return stop


def _frame_at(view: memoryview, offset: int) -> tuple[JournalEntry, int] | str:
    """The entry of the frame at ``offset`` and the offset after it, or why there is none."""
    stop = _check_frame(view, offset)
    if isinstance(stop, str):
        return stop
    try:
        entry = _decode_entry(view[offset + HEADER_SIZE : stop])
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return f"bad entry ({exc})"
    return entry, stop


@attrs.define
class _Scan:
    """What reading a journal file found."""

    entries: list[JournalEntry] = attrs.Factory(list)
    ends: list[int] = attrs.Factory(list)
    """File offset after each entry's frame (same index as ``entries``)."""
    last_seq: int = 0
    good_bytes: int = 0
    """Length of the clean prefix."""
    problem: str | None = None
    later_frames: int = 0
    """Frames that check out after the damage (corruption in the middle when > 0)."""
    later_seqs: tuple[int, int] | None = None


def _scan(buf: bytes) -> _Scan:
    """Read every frame up to the first bad one.

    Two passes for speed: headers and CRCs frame by frame, then every payload that passed
    is parsed in one ``json.loads`` of a JSON array (C speed); when that fails or the array
    does not have one item per frame, payloads are parsed one by one to find the bad one.
    (Only a payload that is not one JSON value can shift the array's items, and such a
    payload never carries a matching CRC unless someone crafted it, who could as well have
    written well-formed entries.)"""
    scan = _Scan()
    view = memoryview(buf)
    offset = 0
    end = len(buf)
    frames: list[tuple[int, int]] = []  # (start, stop) of frames whose header and CRC check
    while offset < end:
        stop = _check_frame(view, offset)
        if isinstance(stop, str):
            scan.problem = stop
            break
        frames.append((offset, stop))
        offset = stop
    docs = _parse_payloads(view, frames)
    entries, ends = scan.entries, scan.ends
    for (start, stop), doc in zip(frames, docs, strict=True):
        try:
            if isinstance(doc, Exception):
                raise doc
            entry = _entry_from_doc(doc)
        except (ValueError, RecursionError) as exc:
            scan.problem = f"bad entry ({exc})"
        else:
            if entry.seq > scan.last_seq:
                scan.last_seq = entry.seq
                if not entry.kind.startswith("$"):
                    entries.append(entry)
                    ends.append(stop)
                continue
            scan.problem = f"sequence number {entry.seq} not above {scan.last_seq}"
        offset = start
        break
    scan.good_bytes = offset
    if scan.problem is not None:
        _scan_after_damage(view, offset, scan)
    return scan


def _parse_payloads(view: memoryview, frames: list[tuple[int, int]]) -> list[Any]:
    """The parsed payload of each frame; from the first one that is not JSON on, the
    error instead (and nothing after it)."""
    payloads = [view[start + HEADER_SIZE : stop] for start, stop in frames]
    try:
        docs = json.loads(b"".join((b"[", b",".join(payloads), b"]")).decode("utf-8"))
        if len(docs) == len(payloads):
            return list(docs)
    except (ValueError, RecursionError):
        pass
    out: list[Any] = []
    for payload in payloads:
        try:
            out.append(json.loads(bytes(payload).decode("utf-8")))
        except (ValueError, RecursionError) as exc:
            out.append(exc)
            break
    return out + [None] * (len(payloads) - len(out))


def _scan_after_damage(view: memoryview, damaged_at: int, scan: _Scan) -> None:
    """Count the frames that check out anywhere after the damage (resynchronising on the
    magic, which never occurs inside a payload)."""
    buf = view.obj
    assert isinstance(buf, bytes)
    low = high = None
    position = buf.find(MAGIC, damaged_at + 1)
    while position != -1:
        found = _frame_at(view, position)
        if isinstance(found, str):
            position = buf.find(MAGIC, position + 1)
            continue
        entry, after = found
        scan.later_frames += 1
        low = entry.seq if low is None else min(low, entry.seq)
        high = entry.seq if high is None else max(high, entry.seq)
        position = buf.find(MAGIC, after)
    if low is not None and high is not None:
        scan.later_seqs = (low, high)


@attrs.frozen
class JournalInspection:
    """What :func:`inspect_file` found in a journal file."""

    entries: list[JournalEntry]
    """The entries that check out from the start of the file, oldest first (what
    :meth:`Journal.open` would keep)."""
    size: int
    """Bytes in the file."""
    good_bytes: int
    """Length of the clean prefix holding ``entries``."""
    problem: str | None
    """Why the frame at ``good_bytes`` is bad; ``None`` when the whole file reads cleanly."""
    later_frames: int
    """Frames that check out after the damage (corruption in the middle when > 0)."""
    starts_with_frame: bool
    """Whether the file is empty or starts with the frame magic; a file that does not is
    no journal at all."""

    @property
    def torn_tail(self) -> bool:
        """Damage with nothing after it that checks out: :meth:`Journal.open` would
        truncate it away."""
        return self.problem is not None and self.later_frames == 0

    @property
    def damaged_in_middle(self) -> bool:
        """Frames that check out follow the damage: :meth:`Journal.open` would keep the
        entries before it and set the whole file aside."""
        return self.later_frames > 0


def inspect_file(path: Path | str) -> JournalInspection:
    """Read the journal file at ``path`` without opening it as a :class:`Journal`.

    Strictly read-only and synchronous: the file is read once, the ``.lock`` is neither
    taken nor created, a torn tail is reported, not truncated, and corruption in the
    middle is reported, not set aside. The file may be held open by a running instance;
    then a damaged end may be an append in progress. Raises :class:`OSError` when the file
    cannot be read (:class:`FileNotFoundError` when it does not exist: nothing is created).
    """
    buf = Path(path).read_bytes()
    scan = _scan(buf)
    return JournalInspection(
        entries=scan.entries,
        size=len(buf),
        good_bytes=scan.good_bytes,
        problem=scan.problem,
        later_frames=scan.later_frames,
        starts_with_frame=not buf or buf.startswith(MAGIC),
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _sync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _open_private(path: Path, flags: int) -> tuple[int, bool]:
    """Open (creating 0600 when missing) and say whether it was created."""
    try:
        return os.open(path, flags | os.O_CLOEXEC), False
    except FileNotFoundError:
        pass
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), True
    except FileExistsError:  # created meanwhile
        return os.open(path, flags | os.O_CLOEXEC), False


def _make_private(fd: int, path: Path) -> None:
    mode = os.fstat(fd).st_mode & 0o777
    if mode & 0o077:
        log.warning("journal %s had mode %o; setting 0600", path, mode)
        os.fchmod(fd, 0o600)


@attrs.define
class _Pending:
    entry: JournalEntry
    frame: bytes
    done: asyncio.Future[None]


class _WriteFailed(Exception):
    def __init__(self, error: OSError, at_sync: bool, broken: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.at_sync = at_sync
        self.broken = broken


class Journal:
    """An open journal. Create with ``await Journal.open(path, max_bytes)``; one per file."""

    def __init__(
        self, path: Path, max_bytes: int, fd: int, lock_fd: int, scan: _Scan, sync: Sync
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._fd = fd
        self._lock_fd = lock_fd
        self._sync = sync
        self._entries = scan.entries
        self._ends = scan.ends
        self._size = scan.good_bytes
        self._next_seq = scan.last_seq + 1
        self._last_written_seq = scan.last_seq
        self._pending: list[_Pending] = []
        self._reserved = 0  # bytes accepted by append, not yet written
        self._writer: asyncio.Task[None] | None = None
        self._file_lock = asyncio.Lock()  # one writer of the file at a time (append / clear)
        self._closed = False
        self._broken: str | None = None
        self.fsync_count = 0
        """Syncs of the journal file since open (appends and clears)."""
        self.commit_count = 0
        """Group commits (one write + one sync each) since open."""
        self.append_count = 0
        """Entries made durable by append since open."""

    # ------------------------------------------------------------------ opening

    @classmethod
    async def open(cls, path: Path | str, max_bytes: int, *, fsync: Sync | None = None) -> Journal:
        """Open (or create) the journal at ``path`` bounded to ``max_bytes`` bytes, repairing
        a torn tail or setting a corrupt file aside (see the module docstring).

        ``fsync`` syncs the file's data after each group commit and clear (default
        ``os.fdatasync``); tests pass a counting or failing one."""
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        sync = fsync or _default_sync
        journal_path = Path(path)
        fd, lock_fd, scan = await asyncio.to_thread(cls._open_sync, journal_path)
        return cls(journal_path, max_bytes, fd, lock_fd, scan, sync)

    @staticmethod
    def _open_sync(path: Path) -> tuple[int, int, _Scan]:
        directory = path.parent
        if not directory.is_dir():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)  # mkdir's mode is subject to the umask
        lock_path = path.with_name(path.name + ".lock")
        lock_fd, _ = _open_private(lock_path, os.O_RDWR)
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StorageUnavailable(
                    f"journal {path} is open in another process (lock {lock_path})"
                ) from None
            _remove_stale_temps(path)
            fd, created = _open_private(path, os.O_RDWR | os.O_APPEND)
            try:
                _make_private(fd, path)
                if created:
                    os.fsync(fd)
                    _sync_dir(directory)
                    return fd, lock_fd, _Scan()
                buf = _read_all(fd)
                with _gc_paused():
                    scan = _scan(buf)
                if scan.problem is None:
                    return fd, lock_fd, scan
                if scan.later_frames == 0:
                    log.warning(
                        "journal %s: torn or corrupt tail at offset %d (%s); truncating the "
                        "last %d bytes, keeping %d entries",
                        path,
                        scan.good_bytes,
                        scan.problem,
                        len(buf) - scan.good_bytes,
                        len(scan.entries),
                    )
                    os.ftruncate(fd, scan.good_bytes)
                    os.fsync(fd)
                    return fd, lock_fd, scan
                os.close(fd)
                fd = -1
                fd = _set_aside(path, buf, scan)
                return fd, lock_fd, scan
            except BaseException:
                if fd >= 0:
                    os.close(fd)
                raise
        except BaseException:
            os.close(lock_fd)
            raise

    # ------------------------------------------------------------------ reading

    def entries(self) -> list[JournalEntry]:
        """Every durable entry, oldest first."""
        return list(self._entries)

    @property
    def depth(self) -> int:
        """Number of durable entries."""
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Bytes of the journal file holding durable frames."""
        return self._size

    @property
    def oldest_at_ms(self) -> int | None:
        """``at_ms`` of the oldest durable entry; ``None`` when there is none."""
        return self._entries[0].at_ms if self._entries else None

    @property
    def next_seq(self) -> int:
        """The sequence number the next append gets."""
        return self._next_seq

    # ------------------------------------------------------------------ appending

    async def append(self, kind: str, data: JSONValue, op_id: str, at_ms: int) -> JournalEntry:
        """Append one entry; return it once it is durable.

        Raises :class:`JournalFull` (nothing written) when the entry would take the file
        past ``max_bytes``, :class:`InvalidData` when ``data`` is not JSON or ``kind`` is
        empty or reserved, :class:`StorageServerError` when the disk write fails (the entry
        is then not in the journal). A caller cancelled while waiting does not withdraw
        the entry: it may still be written."""
        self._check_usable()
        if not isinstance(kind, str) or not kind or kind.startswith("$"):
            raise InvalidData(f"journal {self.path}", "kind", f"not an entry kind: {kind!r}")
        entry = JournalEntry(self._next_seq, op_id, at_ms, kind, data)
        try:
            frame = encode_frame(entry)
        except (TypeError, ValueError) as exc:
            raise InvalidData(f"journal {self.path}", "data", f"not JSON: {exc}") from None
        wanted = self._size + self._reserved + len(frame)
        if wanted > self.max_bytes:
            raise JournalFull(
                f"journal {self.path} is full: {self._size + self._reserved} of "
                f"{self.max_bytes} bytes used, entry needs {len(frame)}"
            )
        self._next_seq += 1
        self._reserved += len(frame)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(entry, frame, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_pending())
        await done
        return entry

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError(f"journal {self.path} is closed")
        if self._broken is not None:
            raise StorageServerError(self._broken)

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            data = b"".join(item.frame for item in batch)
            error: BaseException | None = None
            try:
                async with self._file_lock:
                    if self._broken is not None:
                        raise StorageServerError(self._broken)
                    await asyncio.to_thread(self._write_sync, data)
            except _WriteFailed as failed:
                if failed.at_sync:
                    self.fsync_count += 1
                what = "sync" if failed.at_sync else "write"
                message = f"journal {self.path}: {what} failed: {failed.error}"
                if failed.broken:
                    self._broken = f"{message}; the journal must be reopened"
                log.error("%s (%d entries not written)", message, len(batch))
                error = StorageServerError(message)
                error.__cause__ = failed.error
            except StorageServerError as exc:
                error = exc
            except BaseException as exc:  # cancelled while writing (loop shutdown), or a bug
                self._broken = f"journal {self.path}: writer stopped ({exc!r}); reopen it"
                batch += self._pending
                self._pending = []
                self._reserved = 0  # everything accepted is in ``batch`` now
                self._settle(batch, StorageServerError(self._broken))
                raise
            self._reserved -= len(data)
            if error is None:
                self._commit(batch, len(data))
            self._settle(batch, error)

    @staticmethod
    def _settle(batch: list[_Pending], error: BaseException | None) -> None:
        for item in batch:
            if item.done.done():
                continue  # the caller was cancelled
            if error is None:
                item.done.set_result(None)
            else:
                item.done.set_exception(error)

    def _write_sync(self, data: bytes) -> None:
        """One write and one sync; on failure, cut the file back to the committed size."""
        at_sync = False
        try:
            _write_all(self._fd, data)
            at_sync = True
            self._sync(self._fd)
        except OSError as exc:
            # After a failed sync the page cache cannot be trusted (the kernel may already
            # have dropped the dirty pages): refuse further appends until reopened.
            broken = at_sync
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                broken = True
            raise _WriteFailed(exc, at_sync, broken) from exc

    def _commit(self, batch: list[_Pending], length: int) -> None:
        self.fsync_count += 1
        self.commit_count += 1
        self.append_count += len(batch)
        offset = self._size
        for item in batch:
            offset += len(item.frame)
            self._entries.append(item.entry)
            self._ends.append(offset)
        self._size += length
        self._last_written_seq = batch[-1].entry.seq

    # ------------------------------------------------------------------ clearing

    async def clear_through(self, seq: int) -> None:
        """Drop every entry with ``seq`` ≤ the given one (after a successful replay).

        Atomic: the remainder goes to a temp file that is synced and renamed over the
        journal, so a crash leaves the old or the new journal, never a mix. Appends wait
        meanwhile (and are never lost); sequence numbers continue."""
        self._check_usable()
        async with self._file_lock:
            self._check_usable()
            cut = bisect.bisect_right(self._entries, seq, key=lambda entry: entry.seq)
            if cut == 0:
                return
            start = self._ends[cut - 1]
            remainder = self._entries[cut:]
            try:
                self._size = await asyncio.to_thread(self._clear_sync, start, not remainder)
            except OSError as exc:
                raise StorageServerError(f"journal {self.path}: clear failed: {exc}") from exc
            self.fsync_count += 1
            self._ends = [end - start for end in self._ends[cut:]]
            self._entries = remainder

    def _clear_sync(self, start: int, empty: bool) -> int:
        """Replace the file by its bytes from ``start`` (or by a ``$cleared`` frame when
        nothing remains); return the new size."""
        if empty:
            marker = JournalEntry(
                self._last_written_seq, "", time.time_ns() // 1_000_000, CLEARED_KIND, None
            )
            data = encode_frame(marker)
        else:
            data = os.pread(self._fd, self._size - start, start)
            if len(data) != self._size - start:
                raise StorageServerError(f"journal {self.path}: short read while clearing")
        _atomic_replace(self.path, data, self._sync)  # raises only before the rename
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except OSError as exc:
            # The new file is the journal now but this object still describes the old one.
            self._broken = f"journal {self.path}: reopening after a clear failed ({exc})"
            raise
        old, self._fd = self._fd, fd
        os.close(old)
        try:
            _sync_dir(self.path.parent)
        except OSError as exc:
            # Only the rename may be lost in a crash: the cleared entries would come back
            # and be replayed again, which their operation ids make harmless.
            log.warning("journal %s: directory sync after a clear failed: %s", self.path, exc)
        return len(data)

    # ------------------------------------------------------------------ closing

    async def close(self) -> None:
        """Wait for pending appends, then close the file and release the lock."""
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        if writer is not None and not writer.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(writer)
        async with self._file_lock:
            await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        try:
            os.close(self._fd)
        finally:
            os.close(self._lock_fd)  # releases the flock


# ---------------------------------------------------------------------- file helpers


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Reading a journal creates a dozen containers per entry and no cycles; the cyclic
    collector would walk the growing heap again and again (more than half the read time at
    100,000 entries). Paused only for the read, at open."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _remove_stale_temps(path: Path) -> None:
    """Temp files of an interrupted clear or repair (``<name>[.corrupt-<ms>].<ms>.<hex>.tmp``);
    only the lock holder writes them."""
    pattern = re.compile(re.escape(path.name) + r"(\.corrupt-\d+)?\.\d+\.[0-9a-f]+\.tmp")
    for candidate in path.parent.iterdir():
        name = candidate.name
        if pattern.fullmatch(name):
            log.info("journal %s: removing %s left by an interrupted rewrite", path, name)
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()


def _atomic_replace(path: Path, data: bytes, sync: Sync) -> None:
    """Like :func:`cfgstore.fileio.atomic_write` (temp file 0600, sync, rename), with the
    journal's sync function; the caller syncs the directory."""
    tmp = path.with_name(f"{path.name}.{time.time_ns() // 1_000_000}.{os.getpid():x}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            _write_all(fd, data)
            sync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _set_aside(path: Path, buf: bytes, scan: _Scan) -> int:
    """Corruption in the middle: keep the whole file as ``<name>.corrupt-<ms>``, rewrite
    the journal to the good prefix, and return the new file's descriptor."""
    stamp = time.time_ns() // 1_000_000
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    while aside.exists():
        stamp += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    atomic_write(aside, buf, 0o600)
    low, high = scan.later_seqs or (0, 0)
    log.error(
        "journal %s: corrupt frame at offset %d (%s) followed by %d frames that check out "
        "(seq %d..%d, %d bytes from the damage on): kept the %d entries before it; the "
        "frames after it are NOT loaded or replayed. The whole original file is kept as %s "
        "for inspection or salvage.",
        path,
        scan.good_bytes,
        scan.problem,
        scan.later_frames,
        low,
        high,
        len(buf) - scan.good_bytes,
        len(scan.entries),
        aside,
    )
    atomic_write(path, buf[: scan.good_bytes], 0o600)
    scan.last_seq = max(scan.last_seq, high)
    return os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
