"""Plugin logs in the file backend (:mod:`cfgstore.hookspecs.plugin_logs`): one file per
plugin, ``.cfgstore-plugin-logs/<plugin>.jsonl`` of the configs folder (a hidden folder of
cfgstore's own, like the lock folder: nothing of the Node service reads it, and no file
there is mistaken for a credential), one compact JSON object per line, newest first.

Appends are coalesced: they wait in memory (reads of this store see them at once) and are
written at most about once per ``write_debounce_ms`` (``write_max_wait_ms`` under steady
traffic): read the file, put the waiting entries first, trim to the latest ``keep``, write
atomically, under the file's cross-process lock, so processes sharing the folder add up.
A write that fails keeps the entries waiting and is retried. Mode 0600, folder 0700.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from cfgstore import hookimpl
from cfgstore.fileio import make_private_dirs
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.plugin_logs import decode_entry, encode_entry
from cfgstore_file.atomic import atomic_write, read_bytes
from cfgstore_file.coalescer import CoalescingWriter

if TYPE_CHECKING:
    from cfgstore.adapters.settings import Settings
    from cfgstore_file.atomic import LockDir
    from cfgstore_file.layout import Layout

FOLDER = ".cfgstore-plugin-logs"

Entry = dict[str, JSONValue]


class PluginLogOps:
    layout: Layout
    locks: LockDir
    settings: Settings
    _plog_pending: dict[str, tuple[list[str], int]]
    """Per plugin: the entries not written yet (their JSON lines, newest first) and the
    latest ``keep``."""
    _plog_writer: CoalescingWriter | None = None
    """Made at the first append."""
    _plog_lock: asyncio.Lock
    """Held while waiting entries are written (a read never sees them twice or not at all)."""

    def _plog_path(self, plugin: str) -> Path:
        return self.layout.configs_dir / FOLDER / f"{plugin}.jsonl"

    def _plog_state(self) -> dict[str, tuple[list[str], int]]:
        if "_plog_pending" not in vars(self):  # the backend's __init__ is not this mixin's
            self._plog_pending = {}
            self._plog_lock = asyncio.Lock()
        return self._plog_pending

    @hookimpl
    async def cfgstore_plugin_log_append(self, plugin: str, entry: Entry, keep: int) -> None:
        pending = self._plog_state()
        waiting, _ = pending.get(plugin, ([], keep))
        waiting.insert(0, encode_entry(entry))  # a copy: the caller may reuse its dict
        del waiting[keep:]
        pending[plugin] = (waiting, keep)
        if self._plog_writer is None:
            self._plog_writer = CoalescingWriter(
                self._plog_flush,
                self.settings.write_debounce_ms / 1000,
                self.settings.write_max_wait_ms / 1000,
            )
        self._plog_writer.note_change()

    @hookimpl
    async def cfgstore_plugin_log_recent(self, plugin: str, limit: int) -> list[Entry]:
        if limit <= 0:
            return []
        pending = self._plog_state()
        async with self._plog_lock:
            stored = await asyncio.to_thread(self._plog_read, self._plog_path(plugin))
            waiting, keep = pending.get(plugin, ([], 0))
        found = [*(e for e in map(decode_entry, waiting) if e is not None), *stored]
        if waiting:
            del found[keep:]
        return found[:limit]

    @hookimpl
    async def cfgstore_plugin_log_clear(self, plugin: str) -> None:
        pending = self._plog_state()
        path = self._plog_path(plugin)

        def clear() -> None:
            with self.locks.lock_for(path):
                path.unlink(missing_ok=True)

        async with self._plog_lock:
            pending.pop(plugin, None)
            await asyncio.to_thread(clear)

    async def plugin_logs_durable(self) -> None:
        """Write what waits now and wait for it (``cfgstore_flush``)."""
        if self._plog_writer is not None:
            await self._plog_writer.durable()

    async def plugin_logs_close(self) -> None:
        if self._plog_writer is not None:
            await self._plog_writer.close()

    async def _plog_flush(self) -> None:
        pending = self._plog_state()
        async with self._plog_lock:
            for plugin in list(pending):
                taken = pending.pop(plugin)
                try:
                    await asyncio.to_thread(self._plog_write, self._plog_path(plugin), *taken)
                except BaseException:
                    later = pending.get(plugin)  # appended during the write: newer
                    if later is None:
                        pending[plugin] = taken
                    else:
                        pending[plugin] = ([*later[0], *taken[0]][: later[1]], later[1])
                    raise

    def _plog_write(self, path: Path, newest: list[str], keep: int) -> None:
        """Blocking: put the lines ``newest`` first in the file and trim it to ``keep``."""
        make_private_dirs(path.parent)
        with self.locks.lock_for(path):
            kept = [encode_entry(e) for e in self._plog_read(path)]
            lines = [*newest, *kept][:keep]
            atomic_write(path, "".join(line + "\n" for line in lines).encode("utf-8"))

    @staticmethod
    def _plog_read(path: Path) -> list[Entry]:
        """Blocking: the entries of a log file, newest first (none when it is absent)."""
        raw = read_bytes(path)
        if raw is None:
            return []
        return [e for e in map(decode_entry, raw.splitlines()) if e is not None]
