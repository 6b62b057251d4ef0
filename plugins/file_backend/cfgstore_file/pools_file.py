"""``provider_pools.json`` with coalesced hot-path writes and cross-process merging.

Memory holds the *view* every read sees: the document as the file held it after our
last read or write, with the *pending* records (not yet written) applied on top; the
pending records are also kept on their own, to be re-applied to fresh data. A flush
takes the cross-process lock, reads the file fresh, re-applies the pending records to
it, applies an admin edit if there is one, and writes. Because records are re-applied
to whatever the file holds now, two processes sharing the folder lose no count and no
edit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from cfgstore.model import jsjson
from cfgstore.model.node_changes import LiveView, NodeChanges
from cfgstore.model.pools import ProviderPools, pools_from_json, pools_to_json
from cfgstore.model.records import NodeRecord, apply_record
from cfgstore.model.replica import HealthTransition
from cfgstore_file.atomic import LockDir, Signature, atomic_write, read_bytes, signature

T = TypeVar("T")
Edit = Callable[[ProviderPools], T]


class PoolsFile:
    def __init__(self, path: Path, locks: LockDir) -> None:
        self.path = path
        self._locks = locks
        self.view = ProviderPools()
        self.pending: list[NodeRecord] = []
        self.seen: Signature | None = None
        self._io = asyncio.Lock()  # one read-merge-write at a time in this process
        self.changes = NodeChanges()

    def live_view(self) -> LiveView:
        """The view's types with :attr:`changes` (``cfgstore_pools_view``)."""
        return LiveView(self.view.types, self.changes)

    async def load(self) -> None:
        """Read the file (missing = empty pools) into memory."""
        async with self._io:
            pools, sig = await asyncio.to_thread(self._read_sync)
            self._confirm(pools, sig)

    async def reload_if_changed(self) -> bool:
        """Pick up another process's write; return whether the file had changed."""
        if self._io.locked() or await asyncio.to_thread(signature, self.path) == self.seen:
            return False
        async with self._io:
            pools, sig = await asyncio.to_thread(self._read_sync)
            if sig == self.seen:
                return False
            self._confirm(pools, sig)
            return True

    def apply(self, records: Sequence[NodeRecord]) -> tuple[int, list[HealthTransition]]:
        """Apply records to the view at once and queue them for the next flush.

        Returns how many were accepted (records for absent nodes are dropped) and the
        healthy ↔ unhealthy transitions they caused, in order."""
        accepted = 0
        transitions: list[HealthTransition] = []
        for record in records:
            node = self.view.find(record.provider_type, record.uuid)
            if node is None:
                continue
            was_healthy = node.state.is_healthy
            apply_record(node, record)
            self.changes.node(record.provider_type, node)
            if node.state.is_healthy != was_healthy:
                transitions.append(
                    HealthTransition(record.provider_type, record.uuid, node.state.is_healthy)
                )
            self.pending.append(record)
            accepted += 1
        return accepted, transitions

    async def flush(self, edit: Edit[T] | None = None) -> T | None:
        """Write pending records (and ``edit``, applied to the fresh file state) atomically.

        If ``edit`` raises, nothing is written and pending records stay pending."""
        async with self._io:
            taken, self.pending = self.pending, []
            try:
                pools, sig, result = await asyncio.to_thread(self._merge_write_sync, taken, edit)
            except BaseException:
                self.pending = taken + self.pending
                raise
            self._confirm(pools, sig)
            return result

    def _confirm(self, pools: ProviderPools, sig: Signature | None) -> None:
        """Adopt freshly read data (an object no one else holds) as the view, re-applying
        the records that arrived while it was being read or written."""
        self.seen = sig
        for record in self.pending:
            node = pools.find(record.provider_type, record.uuid)
            if node is not None:
                apply_record(node, record)
        self.view = pools
        self.changes.everything()

    def _read_sync(self) -> tuple[ProviderPools, Signature | None]:
        raw = read_bytes(self.path)
        sig = signature(self.path)
        if raw is None:
            return ProviderPools(), None
        return pools_from_json(jsjson.loads(raw, str(self.path)), str(self.path)), sig

    def _merge_write_sync(
        self, records: list[NodeRecord], edit: Edit[T] | None
    ) -> tuple[ProviderPools, Signature | None, T | None]:
        with self._locks.lock_for(self.path):
            raw = read_bytes(self.path)
            pools = (
                ProviderPools()
                if raw is None
                else pools_from_json(jsjson.loads(raw, str(self.path)), str(self.path))
            )
            for record in records:
                node = pools.find(record.provider_type, record.uuid)
                if node is not None:
                    apply_record(node, record)
            result = edit(pools) if edit is not None else None
            data = jsjson.dump_bytes(pools_to_json(pools))
            if data != raw:
                atomic_write(self.path, data)
            return pools, signature(self.path), result
