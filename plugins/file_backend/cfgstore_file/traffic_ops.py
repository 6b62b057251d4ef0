"""Traffic counts in the file backend: ``.cfgstore-traffic.json`` of the configs folder.

``{"buckets": [{"type", "minute", "requests", "errors", "latencyMs", "bins"}, …]}``, one
entry per provider type and minute. The Store hands counts over about once a second
(:class:`cfgstore.adapters.traffic.Traffic`), so the file is rewritten at most that often
per instance: read, add, drop the buckets older than
:data:`~cfgstore.model.traffic.KEEP_MS`, write atomically, under the file's cross-process
lock (instances sharing the folder add up; none loses another's counts). The file is
bounded by types × minutes of a day. A write that fails changes nothing (the counts are
given back to the caller, which adds them again later). Nothing of the Node service reads
it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cfgstore import hookimpl
from cfgstore.errors import InvalidData
from cfgstore.model import jsjson
from cfgstore.model.timefmt import now_ms
from cfgstore.model.traffic import KEEP_MS, MINUTE_MS, TrafficCount, merge_counts, minute_of
from cfgstore_file.atomic import atomic_write, read_bytes

if TYPE_CHECKING:
    from cfgstore_file.atomic import LockDir
    from cfgstore_file.layout import Layout


class TrafficOps:
    layout: Layout
    locks: LockDir

    @hookimpl
    async def cfgstore_traffic_add(self, counts: Sequence[TrafficCount]) -> None:
        if counts:
            await asyncio.to_thread(self._add_traffic, list(counts))

    @hookimpl
    async def cfgstore_traffic_read(self, since_ms: int) -> list[TrafficCount]:
        oldest = max(since_ms, minute_of(now_ms()) - KEEP_MS + MINUTE_MS)
        stored = await asyncio.to_thread(self._read_traffic)
        return [c for c in stored if c.minute_ms >= oldest]

    def _add_traffic(self, counts: list[TrafficCount]) -> None:
        """Blocking: call it in a worker thread."""
        path = self.layout.traffic
        with self.locks.lock_for(path):
            oldest = minute_of(now_ms()) - KEEP_MS + MINUTE_MS
            kept = [c for c in [*self._read_traffic(), *counts] if c.minute_ms >= oldest]
            body = {"buckets": [c.to_json() for c in merge_counts(kept)]}
            atomic_write(path, json.dumps(body, separators=(",", ":")).encode() + b"\n")

    def _read_traffic(self) -> list[TrafficCount]:
        """Blocking: the stored buckets (none when the file is absent)."""
        path = self.layout.traffic
        raw = read_bytes(path)
        if raw is None:
            return []
        data = jsjson.loads(raw, str(path))
        buckets = data.get("buckets") if isinstance(data, dict) else None
        if not isinstance(buckets, list):
            raise InvalidData(str(path), "$.buckets", "must be a list of traffic buckets")
        return [TrafficCount.from_json(b, str(path)) for b in buckets]
