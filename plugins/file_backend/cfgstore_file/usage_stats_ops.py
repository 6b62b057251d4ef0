"""Model usage statistics in the file backend: Node's ``configs/model-usage-stats.json``
(:mod:`cfgstore.hookspecs.usage_stats`), byte for byte the file the Node service writes
(``JSON.stringify(stats, null, 2)``, mode 0600).

The Store hands counts over about once a second
(:class:`cfgstore.adapters.usage_stats.UsageStats`), so the file is rewritten at most that
often per instance (the coalescing; Node rewrites it after every request): read, add,
write atomically, under the file's cross-process lock, so instances sharing the folder add
up and none loses another's counts. A write that fails changes nothing (the counts are
given back to the caller, which adds them again later).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfgstore import hookimpl
from cfgstore.model import jsjson
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore.model.usage_stats import (
    UsageCount,
    apply_counts,
    empty_document,
    normalise_document,
    reset_document_tokens,
)
from cfgstore_file.atomic import atomic_write, read_bytes

if TYPE_CHECKING:
    from cfgstore_file.atomic import LockDir
    from cfgstore_file.layout import Layout

FILE_NAME = "model-usage-stats.json"


class UsageStatsOps:
    layout: Layout
    locks: LockDir

    @property
    def _usage_stats_path(self) -> Path:
        return self.layout.configs_dir / FILE_NAME

    @hookimpl
    async def cfgstore_usage_stats_add(self, counts: Sequence[UsageCount]) -> None:
        if counts:
            await asyncio.to_thread(self._change_usage_stats, apply_counts, list(counts))

    @hookimpl
    async def cfgstore_usage_stats_read(self) -> dict[str, Any]:
        return await asyncio.to_thread(self._read_usage_stats)

    @hookimpl
    async def cfgstore_usage_stats_reset(self, tokens_only: bool) -> None:
        if tokens_only:
            await asyncio.to_thread(self._change_usage_stats, None, [])
        else:
            await asyncio.to_thread(self._write_usage_stats, empty_document(iso_ms(now_ms())))

    @hookimpl
    async def cfgstore_usage_stats_import(self, document: dict[str, Any]) -> None:
        doc = normalise_document(document, "usage statistics")
        await asyncio.to_thread(self._write_usage_stats, doc)

    def _change_usage_stats(self, apply: Any, counts: list[UsageCount]) -> None:
        """Blocking: add ``counts`` (``apply`` None: reset the tokens) under the lock."""
        path = self._usage_stats_path
        with self.locks.lock_for(path):
            doc = self._read_usage_stats()
            if apply is None:
                reset_document_tokens(doc, iso_ms(now_ms()))
            else:
                apply(doc, counts, iso_ms(now_ms()))
            atomic_write(path, jsjson.dump_bytes(doc))

    def _write_usage_stats(self, doc: dict[str, Any]) -> None:
        """Blocking: replace the file under the lock."""
        path = self._usage_stats_path
        with self.locks.lock_for(path):
            atomic_write(path, jsjson.dump_bytes(doc))

    def _read_usage_stats(self) -> dict[str, Any]:
        """Blocking: the stored document (the empty one when the file is absent)."""
        path = self._usage_stats_path
        raw = read_bytes(path)
        if raw is None:
            return empty_document()
        return normalise_document(jsjson.loads(raw, str(path)), str(path))
