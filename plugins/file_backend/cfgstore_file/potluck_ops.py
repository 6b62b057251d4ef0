"""api-potluck keys on files: ``configs/api-potluck-keys.json`` exactly as the Node service
writes it (``JSON.stringify(store, null, 2)``; order and unknown fields kept).

The keys live in memory; every change applies to that copy at once and is queued. Hot-path
changes (admissions, tokens) are written coalesced like the pools file (debounce with a
maximum wait); admin edits are written before they return. A write takes the file's
cross-process lock, reads the file fresh, re-applies the queued changes to it (an
admission as its increments, an edit as the values it set) and writes atomically: several
processes on one folder lose no count. The daily limit holds per process only (each checks
its own copy between writes): use Redis for an exact limit across instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from cfgstore import hookimpl
from cfgstore.errors import AlreadyExists, CfgStoreError, NotFound
from cfgstore.model import jsjson
from cfgstore.model import potluck as pl
from cfgstore.model.jsjson import JSONValue
from cfgstore_file.atomic import LockDir, Signature, atomic_write, read_bytes, signature
from cfgstore_file.coalescer import CoalescingWriter

FILE_NAME = "api-potluck-keys.json"

log = logging.getLogger("cfgstore.file.potluck")

T = TypeVar("T")
Change = Callable[[pl.PotluckKeys], Any]


def _copy(key: pl.KeyDocument) -> pl.KeyDocument:
    copied: pl.KeyDocument = jsjson.loads(jsjson.dumps(key), "key")
    return copied


class PotluckFile:
    def __init__(self, path: Path, locks: LockDir) -> None:
        self.path = path
        self._locks = locks
        self.view = pl.PotluckKeys()
        self.pending: list[Change] = []
        self.seen: Signature | None = None
        self._io = asyncio.Lock()
        self.problem: Exception | None = None
        """Why the file could not be read at start (operations raise it)."""

    async def load(self) -> None:
        """Read the file. One that cannot be read (malformed, a folder) does not stop the
        store: the api-potluck operations raise its error until it is fixed (the plugin
        is optional; the Node service starts with no keys then)."""
        async with self._io:
            try:
                data, sig = await asyncio.to_thread(self._read_sync)
            except (CfgStoreError, OSError) as exc:
                log.error("api-potluck keys not loaded: %s", exc)
                self.problem = exc
                return
            self._confirm(data, sig)

    def check(self) -> None:
        if self.problem is not None:
            raise self.problem

    async def reload_if_changed(self) -> bool:
        if self._io.locked() or await asyncio.to_thread(signature, self.path) == self.seen:
            return False
        async with self._io:
            data, sig = await asyncio.to_thread(self._read_sync)
            if sig == self.seen and self.problem is None:
                return False
            self.problem = None
            self._confirm(data, sig)
            return True

    def change(self, now: Callable[[pl.PotluckKeys], T], replay: Change | None = None) -> T:
        """Apply ``now`` to the copy (raising changes nothing) and queue ``replay`` (default
        ``now``) for the next write."""
        self.check()
        result = now(self.view)
        self.pending.append(replay or now)
        return result

    async def flush(self) -> None:
        async with self._io:
            taken, self.pending = self.pending, []
            try:
                data, sig = await asyncio.to_thread(self._merge_write_sync, taken)
            except BaseException:
                self.pending = taken + self.pending
                raise
            self._confirm(data, sig)

    def _confirm(self, data: pl.PotluckKeys, sig: Signature | None) -> None:
        self.seen = sig
        for change in self.pending:
            _replay(change, data)
        self.view = data

    def _read_sync(self) -> tuple[pl.PotluckKeys, Signature | None]:
        raw = read_bytes(self.path)
        if raw is None:
            return pl.PotluckKeys(), None
        return pl.keys_from_bytes(raw, str(self.path)), signature(self.path)

    def _merge_write_sync(self, changes: list[Change]) -> tuple[pl.PotluckKeys, Signature | None]:
        with self._locks.lock_for(self.path):
            raw = read_bytes(self.path)
            data = pl.PotluckKeys() if raw is None else pl.keys_from_bytes(raw, str(self.path))
            for change in changes:
                _replay(change, data)
            body = pl.keys_to_bytes(data)
            if body != raw and (raw is not None or data.keys):
                atomic_write(self.path, body)
            return data, signature(self.path)


def _replay(change: Change, data: pl.PotluckKeys) -> None:
    """Re-apply a queued change to fresh data; one that no longer applies (its key deleted
    by another process) is dropped."""
    with contextlib.suppress(NotFound, AlreadyExists):
        change(data)


def _key(data: pl.PotluckKeys, key_id: str) -> pl.KeyDocument:
    key = data.keys.get(key_id)
    if key is None:
        raise NotFound("potluck key", pl.masked(key_id))
    return key


class PotluckOps:
    potluck_file: PotluckFile
    potluck_writer: CoalescingWriter

    async def _open_potluck(
        self, configs_dir: Path, locks: LockDir, debounce_s: float, max_wait_s: float
    ) -> None:
        self.potluck_file = PotluckFile(configs_dir / FILE_NAME, locks)
        await self.potluck_file.load()
        self.potluck_writer = CoalescingWriter(self.potluck_file.flush, debounce_s, max_wait_s)

    async def _edited(self, now: Callable[[pl.PotluckKeys], T], replay: Change | None = None) -> T:
        result = self.potluck_file.change(now, replay)
        self.potluck_writer.note_change()
        await self.potluck_writer.durable()
        return result

    @hookimpl
    async def cfgstore_potluck_list(self) -> list[pl.KeyDocument]:
        self.potluck_file.check()
        return [_copy(k) for k in self.potluck_file.view.keys.values()]

    @hookimpl
    async def cfgstore_potluck_get(self, key_id: str) -> pl.KeyDocument | None:
        self.potluck_file.check()
        key = self.potluck_file.view.keys.get(key_id)
        return None if key is None else _copy(key)

    @hookimpl
    async def cfgstore_potluck_create(self, key: pl.KeyDocument) -> None:
        key_id = str(key.get("id", ""))
        stored = _copy(key)

        def create(data: pl.PotluckKeys) -> None:
            if key_id in data.keys:
                raise AlreadyExists("potluck key", pl.masked(key_id))
            data.keys[key_id] = _copy(stored)

        await self._edited(create)

    @hookimpl
    async def cfgstore_potluck_update(
        self, key_id: str, changes: Mapping[str, JSONValue]
    ) -> pl.KeyDocument:
        values = dict(changes)

        def update(data: pl.PotluckKeys) -> pl.KeyDocument:
            key = _key(data, key_id)
            key.update(values)
            return _copy(key)

        return await self._edited(update)

    @hookimpl
    async def cfgstore_potluck_toggle(self, key_id: str) -> pl.KeyDocument:
        flipped: list[bool] = []

        def toggle(data: pl.PotluckKeys) -> pl.KeyDocument:
            key = _key(data, key_id)
            key["enabled"] = not pl.is_enabled(key)
            flipped.append(bool(key["enabled"]))
            return _copy(key)

        def replay(data: pl.PotluckKeys) -> None:
            _key(data, key_id)["enabled"] = flipped[0]

        return await self._edited(toggle, replay)

    @hookimpl
    async def cfgstore_potluck_apply_limit(self, daily_limit: int) -> tuple[int, int]:
        def apply(data: pl.PotluckKeys) -> tuple[int, int]:
            changed = 0
            for key in data.keys.values():
                if key.get("dailyLimit") != daily_limit:
                    key["dailyLimit"] = daily_limit
                    changed += 1
            return len(data.keys), changed

        return await self._edited(apply)

    @hookimpl
    async def cfgstore_potluck_reset(
        self, key_id: str | None, what: Literal["today", "tokens"], today: str
    ) -> int:
        def reset(data: pl.PotluckKeys) -> int:
            if key_id is None:
                keys = list(data.keys.values())
            else:
                keys = [data.keys[key_id]] if key_id in data.keys else []
            for key in keys:
                if what == "today":
                    pl.reset_today(key, today)
                else:
                    pl.reset_tokens(key)
            return len(keys)

        return await self._edited(reset)

    @hookimpl
    async def cfgstore_potluck_regenerate(
        self, old_id: str, new_id: str, now_ms: int
    ) -> pl.KeyDocument:
        def regenerate(data: pl.PotluckKeys) -> pl.KeyDocument:
            key = _key(data, old_id)
            if new_id in data.keys:
                raise AlreadyExists("potluck key", pl.masked(new_id))
            moved = pl.regenerated(key, new_id, now_ms)
            data.keys = {
                (new_id if k == old_id else k): (moved if k == old_id else v)
                for k, v in data.keys.items()
            }
            return _copy(moved)

        return await self._edited(regenerate)

    @hookimpl
    async def cfgstore_potluck_delete(self, key_id: str) -> bool:
        def delete(data: pl.PotluckKeys) -> bool:
            return data.keys.pop(key_id, None) is not None

        return await self._edited(delete)

    @hookimpl
    async def cfgstore_potluck_import(self, keys: pl.PotluckKeys) -> None:
        def replace(data: pl.PotluckKeys) -> None:
            data.keys = {k: _copy(v) for k, v in keys.keys.items()}
            data.extra = dict(keys.extra)
            data.keys_first = keys.keys_first

        await self._edited(replace)

    @hookimpl
    async def cfgstore_potluck_admit(self, key_id: str, today: str, now_ms: int) -> pl.Admission:
        # No await between the check and the count: atomic within this process.
        def admit(data: pl.PotluckKeys) -> pl.Admission:
            return pl.admit(data.keys.get(key_id), today, now_ms)

        def count(data: pl.PotluckKeys) -> None:
            key = data.keys.get(key_id)
            if key is not None:
                pl.count_admission(key, today, now_ms)

        file = self.potluck_file
        file.check()
        admission = admit(file.view)
        if admission.admitted:
            file.pending.append(count)
            self.potluck_writer.note_change()
        return admission

    @hookimpl
    async def cfgstore_potluck_add_tokens(self, uses: Sequence[pl.TokenUse]) -> None:
        taken = list(uses)

        def add(data: pl.PotluckKeys) -> None:
            for use in taken:
                key = data.keys.get(use.key_id)
                if key is not None:
                    pl.add_tokens(key, use)

        self.potluck_file.change(add)
        self.potluck_writer.note_change()
