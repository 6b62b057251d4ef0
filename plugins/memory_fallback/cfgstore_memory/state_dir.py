"""An instance's state directory: its identity, its confirmed-state snapshot, its journal.

Layout (directory mode 0700, files 0600 — the snapshot and the journal hold credentials)::

    instance.json    {"instance_id": "<hex>", "namespaces": {"<redis prefix>": "<namespace id>"},
                      "epoch": <int>}
    snapshot.json    the confirmed state (cfgstore.model.snapshot), rewritten atomically
    journal          the outage journal (cfgstore_memory.journal), with journal.lock
    confirmed-tail   the batches Redis acknowledged lately (cfgstore_memory.confirmed_tail),
                     with confirmed-tail.lock

The instance id is made once and kept: it names the instance's heartbeat and journal, and
its record batches (``<instance id>:<epoch>:<seq>``, :mod:`cfgstore.model.batch_ids`).
``epoch`` is the current run's: every :meth:`StateDir.open` moves it above the last one
(to the wall clock in ms, or one above the last when the clock is behind it) and writes
it before any batch is made, so no two runs share an epoch and a journal of an earlier
run is checked against that run's own mark. The wall clock keeps epochs new for a state
directory restored from a copy.
``namespaces`` remembers which namespace this instance ran on, per key prefix, so an
emptied Redis is recognised as data loss rather than as a fresh install.

An instance opens its own directory with :meth:`StateDir.open` (creating what is missing);
tools look at one with :meth:`StateDir.read`, which only reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid as uuidlib
from pathlib import Path

import attrs

from cfgstore.errors import InvalidData
from cfgstore.fileio import atomic_write, read_bytes
from cfgstore.model.batch_ids import instance_problem
from cfgstore.model.snapshot import StoreSnapshot, snapshot_from_bytes
from cfgstore.model.timefmt import now_ms
from cfgstore_memory.snapshot_writer import snapshot_pieces

IDENTITY_FILE = "instance.json"
SNAPSHOT_FILE = "snapshot.json"
JOURNAL_FILE = "journal"
TAIL_FILE = "confirmed-tail"
MAX_EPOCH = 10**15
"""Epochs are kept below this (:mod:`cfgstore.model.batch_ids`: exact in a Lua script)."""


@attrs.define
class StateDir:
    path: Path
    instance_id: str
    namespaces: dict[str, str]
    epoch: int = 0
    """The current run's batch epoch (the last run's, for :meth:`read`)."""

    @property
    def snapshot_path(self) -> Path:
        return self.path / SNAPSHOT_FILE

    @property
    def journal_path(self) -> Path:
        return self.path / JOURNAL_FILE

    @property
    def tail_path(self) -> Path:
        return self.path / TAIL_FILE

    @classmethod
    async def open(cls, path: Path) -> StateDir:
        """Create the directory (0700) and the identity when missing; read them otherwise;
        start a new epoch (written before it returns). Raises :class:`InvalidData` for an
        identity file that is not ours."""
        return await asyncio.to_thread(cls._open_sync, path)

    @classmethod
    def read(cls, path: Path) -> StateDir | None:
        """The state directory at ``path`` as its identity file describes it, or ``None``
        when there is no identity file (or no directory). Read-only, for tools looking at
        another process's state directory: nothing is created, written or repaired, and it
        runs synchronously. Raises :class:`InvalidData` for an identity file that is not
        ours (as :meth:`open` does), :class:`OSError` when it cannot be read."""
        raw = read_bytes(path / IDENTITY_FILE)
        return None if raw is None else cls._parse(path, raw)

    @classmethod
    def _open_sync(cls, path: Path) -> StateDir:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is subject to the umask
        raw = read_bytes(path / IDENTITY_FILE)
        state = cls(path, uuidlib.uuid4().hex[:16], {}) if raw is None else cls._parse(path, raw)
        state.epoch = max(now_ms(), state.epoch + 1)
        state._write_sync()
        return state

    @classmethod
    def _parse(cls, path: Path, raw: bytes) -> StateDir:
        """The state directory at ``path`` from the bytes of its identity file."""
        source = str(path / IDENTITY_FILE)
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise InvalidData(source, "$", f"not JSON: {exc}") from None
        instance_id = doc.get("instance_id") if isinstance(doc, dict) else None
        namespaces = doc.get("namespaces", {}) if isinstance(doc, dict) else None
        if not isinstance(instance_id, str) or not instance_id:
            raise InvalidData(source, "$.instance_id", "expected a non-empty string")
        problem = instance_problem(instance_id)  # it names the instance's record batches
        if problem is not None:
            raise InvalidData(source, "$.instance_id", problem)
        if not isinstance(namespaces, dict) or not all(
            isinstance(v, str) for v in namespaces.values()
        ):
            raise InvalidData(source, "$.namespaces", "expected an object of strings")
        epoch = doc.get("epoch", 0)  # absent: written before batch ids were sequenced
        if type(epoch) is not int or not 0 <= epoch < MAX_EPOCH:
            raise InvalidData(source, "$.epoch", f"expected an integer from 0 to {MAX_EPOCH - 1}")
        return cls(path, instance_id, dict(namespaces), epoch)

    def remembered(self, prefix: str) -> str | None:
        """The namespace id this instance last ran on under ``prefix``."""
        return self.namespaces.get(prefix)

    async def remember(self, prefix: str, namespace_id: str) -> None:
        if self.namespaces.get(prefix) == namespace_id:
            return
        self.namespaces[prefix] = namespace_id
        await asyncio.to_thread(self._write_sync)

    def _write_sync(self) -> None:
        doc = {"instance_id": self.instance_id, "namespaces": self.namespaces, "epoch": self.epoch}
        atomic_write(self.path / IDENTITY_FILE, json.dumps(doc, indent=2).encode() + b"\n")

    async def load_snapshot(self) -> StoreSnapshot | None:
        """The saved confirmed state, or ``None`` when none was saved. Raises
        :class:`InvalidData` for a damaged file (never served silently)."""
        raw = await asyncio.to_thread(read_bytes, self.snapshot_path)
        if raw is None:
            return None
        return await asyncio.to_thread(snapshot_from_bytes, raw, str(self.snapshot_path))

    async def save_snapshot(self, snapshot: StoreSnapshot) -> None:
        """Write the snapshot atomically (0600): encoded on the event loop a chunk of
        nodes per turn (:mod:`~cfgstore_memory.snapshot_writer`), joined and written
        off it. The caller hands over ``snapshot``: it must not change it afterwards."""
        pieces = await snapshot_pieces(snapshot)
        await asyncio.to_thread(self._save_sync, pieces)

    def _save_sync(self, pieces: list[bytes]) -> None:
        atomic_write(self.snapshot_path, b"".join(pieces))
