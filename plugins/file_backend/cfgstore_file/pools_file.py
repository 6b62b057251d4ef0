"""``provider_pools.json`` with coalesced hot-path writes and cross-process merging.

Memory holds the *view* every read sees: the document as the file held it after our
last read or write, with the *pending* records (not yet written) applied on top; the
pending records are also kept on their own, to be re-applied to fresh data. A flush
takes the cross-process lock, reads the file fresh, re-applies the pending records to
it, applies an admin edit if there is one, and writes. Because records are re-applied
to whatever the file holds now, two processes sharing the folder lose no count and no
edit.

Each read or write of the file is compared with the view node by node (in the worker
thread that parsed it): when the file holds the same types and nodes in the same order,
only the nodes that differ are replaced in the view's lists, each reported to
:attr:`PoolsFile.changes` on its own, so an index over the view (provider selection's)
re-files the nodes that changed, not the pool. Anything else (a node added, removed,
renamed or moved, a type added or removed) replaces the view and reports "everything".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import attrs

from cfgstore.model import jsjson
from cfgstore.model.node_changes import LiveView, NodeChanges
from cfgstore.model.pools import ProviderNode, ProviderPools, pools_from_json, pools_to_json
from cfgstore.model.records import NodeRecord, apply_record
from cfgstore.model.replica import HealthTransition
from cfgstore_file.atomic import LockDir, Signature, atomic_write, read_bytes, signature

T = TypeVar("T")
Edit = Callable[[ProviderPools], T]
NodeKey = tuple[str, str]
Changed = list[tuple[str, int]] | None
"""The (type, position) of each node a fresh read holds differently from the view, or
``None``: the structure differs (replace the view)."""


class PoolsFile:
    def __init__(self, path: Path, locks: LockDir) -> None:
        self.path = path
        self._locks = locks
        self.view = ProviderPools()
        self.pending: list[NodeRecord] = []
        self.seen: Signature | None = None
        self._io = asyncio.Lock()  # one read-merge-write at a time in this process
        self._positions: dict[NodeKey, int] = {}  # a view node's index in its type's list
        self.changes = NodeChanges()

    def live_view(self) -> LiveView:
        """The view's types with :attr:`changes` (``cfgstore_pools_view``)."""
        return LiveView(self.view.types, self.changes)

    async def load(self) -> None:
        """Read the file (missing = empty pools) into memory."""
        async with self._io:
            pools, sig, changed = await asyncio.to_thread(self._read_sync, self.view)
            self._confirm(pools, sig, changed)

    async def reload_if_changed(self) -> bool:
        """Pick up another process's write; return whether the file had changed."""
        if self._io.locked() or await asyncio.to_thread(signature, self.path) == self.seen:
            return False
        async with self._io:
            pools, sig, changed = await asyncio.to_thread(self._read_sync, self.view)
            if sig == self.seen:
                return False
            self._confirm(pools, sig, changed)
            return True

    def apply(self, records: Sequence[NodeRecord]) -> tuple[int, list[HealthTransition]]:
        """Apply records to the view at once and queue them for the next flush.

        Returns how many were accepted (records for absent nodes are dropped) and the
        healthy ↔ unhealthy transitions they caused, in order."""
        accepted = 0
        transitions: list[HealthTransition] = []
        nodes, positions = self.view.types, self._positions
        for record in records:
            position = positions.get((record.provider_type, record.uuid))
            if position is None:
                continue
            node = nodes[record.provider_type][position]
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
                pools, sig, result, changed = await asyncio.to_thread(
                    self._merge_write_sync, taken, edit, self.view
                )
            except BaseException:
                self.pending = taken + self.pending
                raise
            self._confirm(pools, sig, changed)
            return result

    def _confirm(self, pools: ProviderPools, sig: Signature | None, changed: Changed) -> None:
        """Adopt freshly read data (an object no one else holds), re-applying the records
        that arrived while it was being read or written (their nodes count as changed: the
        comparison in the worker thread may have seen them half-applied). ``changed``
        (from :func:`changed_nodes` against the current view): the nodes to replace in
        the view, or ``None`` to replace the view."""
        self.seen = sig
        if changed is None:
            positions = _positions(pools)
            fresh = pools.types
            for record in self.pending:
                position = positions.get((record.provider_type, record.uuid))
                if position is not None:
                    apply_record(fresh[record.provider_type][position], record)
            self.view, self._positions = pools, positions
            self.changes.everything()
            return
        replaced = dict.fromkeys(changed)
        fresh, shown, positions = pools.types, self.view.types, self._positions
        for record in self.pending:
            position = positions.get((record.provider_type, record.uuid))
            if position is not None:
                apply_record(fresh[record.provider_type][position], record)
                replaced[(record.provider_type, position)] = None
        for provider_type, position in replaced:
            node = shown[provider_type][position] = fresh[provider_type][position]
            self.changes.node(provider_type, node)

    def _read_sync(self, view: ProviderPools) -> tuple[ProviderPools, Signature | None, Changed]:
        raw = read_bytes(self.path)
        sig = signature(self.path)
        if raw is None:
            pools = ProviderPools()
            return pools, None, changed_nodes(view.types, pools.types)
        pools = pools_from_json(jsjson.loads(raw, str(self.path)), str(self.path))
        return pools, sig, changed_nodes(view.types, pools.types)

    def _merge_write_sync(
        self, records: list[NodeRecord], edit: Edit[T] | None, view: ProviderPools
    ) -> tuple[ProviderPools, Signature | None, T | None, Changed]:
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
            sig = signature(self.path)
        return pools, sig, result, changed_nodes(view.types, pools.types)


def changed_nodes(
    shown: Mapping[str, Sequence[ProviderNode]], fresh: Mapping[str, Sequence[ProviderNode]]
) -> Changed:
    """The (type, position) of every node ``fresh`` holds differently from ``shown`` (JSON
    values compared with their types and key order: ``1`` is not ``true``), or ``None``
    when the two differ in structure (types, their order, a node's uuid at a position).

    Runs in a worker thread while the event loop may apply records to ``shown``'s nodes:
    a node caught half-changed may be reported either way; the caller re-applies those
    records and counts their nodes as changed. ``shown``'s lists themselves must not
    change meanwhile (the caller holds the I/O lock)."""
    if list(shown) != list(fresh):
        return None
    changed: list[tuple[str, int]] = []
    for provider_type, nodes in fresh.items():
        before = shown[provider_type]
        if len(before) != len(nodes):
            return None
        for position, (old, new) in enumerate(zip(before, nodes, strict=True)):
            if old.uuid != new.uuid:
                return None
            if not _same_node(old, new):
                changed.append((provider_type, position))
    return changed


def _same_node(old: ProviderNode, new: ProviderNode) -> bool:
    return (
        old.layout == new.layout
        and _same(_state_fields(old), _state_fields(new))
        and _same(old.settings, new.settings)
    )


def _state_fields(node: ProviderNode) -> tuple[object, ...]:
    return attrs.astuple(node.state, recurse=False)


def _same(a: object, b: object) -> bool:
    """``a == b`` as JSON: same types (``True`` is not ``1``), dict keys in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return len(a) == len(b) and all(
            ka == kb and _same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, list | tuple):
        assert isinstance(b, list | tuple)
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _positions(pools: ProviderPools) -> dict[NodeKey, int]:
    return {
        (provider_type, node.uuid): position
        for provider_type, nodes in pools.types.items()
        for position, node in enumerate(nodes)
    }
