"""The provider pools in memory: the confirmed state plus this instance's overlay (DESIGN §3).

``confirmed`` is what the shared storage acknowledged: the last full read, then each of
this instance's batches applied on top as its acknowledgement arrives, and nodes re-read
when another instance changes them. ``view`` is ``confirmed`` with every record of this
instance not yet acknowledged (queued, or journaled during an outage) applied on top: what
every read, and therefore provider selection, sees. Records are applied with the model's
own :func:`~cfgstore.model.records.apply_record`, which a property test holds equal to
the Redis script, so the view computes what Redis will store.

Every change of the view is reported to :attr:`PoolsMirror.changes`
(:class:`~cfgstore.model.node_changes.NodeChanges`): a record applied or a node replaced
per node, a reset as "everything", so provider selection's index follows the view.

The view's nodes share their ``settings`` dicts with the confirmed nodes (records change
only ``state`` and ``layout``; a node whose settings change is replaced, never edited in
place): a node costs memory for its settings once, not twice. Rebuilding either side
after a full read (:meth:`rebuild`, :meth:`confirmed_copy`) goes :data:`CHUNK` nodes at a
time and lets the event loop run in between: 50,000 nodes must not stop the service.

Not thread-safe; event-loop only. Reads return copies.
"""

from __future__ import annotations

import asyncio
import gc
import operator
from collections.abc import Callable, Iterable, Sequence

import attrs

from cfgstore.model.credentials import credential_file_key
from cfgstore.model.node_changes import LiveView, NodeChanges
from cfgstore.model.pools import NodeState, ProviderNode, ProviderPools
from cfgstore.model.records import NodeRecord, apply_record, apply_run, fold_runs

NodeKey = tuple[str, str]

CHUNK = 500
"""Nodes copied or indexed between two yields to the event loop (~1–2 ms of work)."""

RELEASE_CHUNK = 100
"""Nodes freed between two yields: a node whose settings go with it is ~20 objects, and
freeing 500 read nodes at once took up to ~15 ms."""


class PoolsMirror:
    def __init__(self) -> None:
        self.confirmed = ProviderPools()
        self.view = ProviderPools()
        self._confirmed_index: dict[NodeKey, ProviderNode] = {}
        self._view_index: dict[NodeKey, ProviderNode] = {}
        self._positions: dict[NodeKey, int] = {}  # a node's index in its type's list
        self._renamed: dict[NodeKey, str] = {}  # old → new uuid, as the storage forwards
        self.changes = NodeChanges()
        """What changed in :attr:`view` (see :mod:`cfgstore.model.node_changes`)."""

    def live_view(self) -> LiveView:
        """The view's types with :attr:`changes` (``cfgstore_pools_view``)."""
        return LiveView(self.view.types, self.changes)

    def renamed(self, provider_type: str, old_uuid: str, new_uuid: str) -> None:
        """A node this instance renamed: its records still made under the old uuid count
        on the renamed node, as the storage's forwarding pointer makes them."""
        self._renamed[(provider_type, old_uuid)] = new_uuid

    def reset(self, confirmed: ProviderPools, unconfirmed: Iterable[NodeRecord]) -> None:
        """Take ``confirmed`` (the caller hands it over) as the acknowledged state and
        rebuild the view with ``unconfirmed`` on top, in one go (small pools, tests;
        :meth:`rebuild` for a full read)."""
        view = ProviderPools({t: [_view_copy(n) for n in ns] for t, ns in confirmed.types.items()})
        self._take(confirmed, view, _index(confirmed), _index(view), _positions(confirmed))
        self._apply(self._view_index, unconfirmed)
        self.changes.everything()

    async def rebuild(
        self, confirmed: ProviderPools, unconfirmed: Callable[[], Iterable[NodeRecord]]
    ) -> None:
        """:meth:`reset`, yielding to the event loop every :data:`CHUNK` nodes. Reads see
        the old state until the new one is complete; ``unconfirmed()`` is asked at the
        switch, so records made meanwhile are on top. The caller must keep the confirmed
        state from changing meanwhile (the replicator holds its I/O lock)."""
        confirmed_index: dict[NodeKey, ProviderNode] = {}
        view_index: dict[NodeKey, ProviderNode] = {}
        positions: dict[NodeKey, int] = {}
        view = ProviderPools()
        done = 0
        for provider_type, nodes in confirmed.types.items():
            shown = view.types[provider_type] = []
            for position, node in enumerate(nodes):
                key = (provider_type, node.uuid)
                copy = _view_copy(node)
                shown.append(copy)
                confirmed_index[key], view_index[key], positions[key] = node, copy, position
                done += 1
                if done % CHUNK == 0:
                    await asyncio.sleep(0)
        # The old nodes are freed here, in chunks: dropping 100,000 nodes at once is a
        # deallocation run of ~50-100 ms. A reader still holding an old list keeps its
        # nodes alive as before; the lists themselves are left untouched.
        old = [n for pools in (self.confirmed, self.view) for _, n in pools]
        self._take(confirmed, view, confirmed_index, view_index, positions)
        self._apply(self._view_index, unconfirmed())
        self.changes.everything()  # a new view: an index over the old one starts again
        await release(old)

    def _take(
        self,
        confirmed: ProviderPools,
        view: ProviderPools,
        confirmed_index: dict[NodeKey, ProviderNode],
        view_index: dict[NodeKey, ProviderNode],
        positions: dict[NodeKey, int],
    ) -> None:
        self.confirmed, self.view = confirmed, view
        self._confirmed_index, self._view_index = confirmed_index, view_index
        self._positions = positions

    async def confirmed_copy(self) -> ProviderPools:
        """A copy of the confirmed state that later records do not change (for the
        snapshot file), made :data:`CHUNK` nodes at a time. Settings are shared (never
        edited in place); the caller keeps the confirmed state from changing meanwhile."""
        copied = ProviderPools()
        done = 0
        for provider_type, nodes in self.confirmed.types.items():
            out = copied.types[provider_type] = []
            for node in nodes:
                out.append(_view_copy(node))
                done += 1
                if done % CHUNK == 0:
                    # The young generation's copies checked now, a chunk at a time: with
                    # the collector paused for the save, the first collection after it
                    # would walk every copy at once (~20 ms at 25,000 nodes).
                    gc.collect(0)
                    await asyncio.sleep(0)
        return copied

    def apply_local(self, records: Sequence[NodeRecord]) -> None:
        """Records this instance just made: visible to reads at once."""
        self._apply(self._view_index, records)

    def confirm(self, records: Sequence[NodeRecord]) -> None:
        """The shared storage acknowledged ``records`` (already in the view). Applied as
        folded runs: a batch of 2,000 records over 20 nodes costs ~20 applications."""
        for key, runs in fold_runs(records).items():
            node = self._find(self._confirmed_index, key)
            if node is not None:
                for record, count in runs:
                    apply_run(node, record, count)

    def knows(self, key: NodeKey) -> bool:
        return key in self._confirmed_index

    def replace_nodes(
        self, nodes: Sequence[tuple[NodeKey, ProviderNode]], unconfirmed: Sequence[NodeRecord]
    ) -> None:
        """Nodes re-read from the shared storage (another instance changed them); each
        must already exist here (structure changes need :meth:`reset`). The view gets the
        fresh node with this instance's unconfirmed records for it on top. Costs the
        nodes named and the records, never the size of the pool."""
        mine: dict[NodeKey, list[NodeRecord]] = {}
        for record in unconfirmed:
            mine.setdefault((record.provider_type, record.uuid), []).append(record)
        for key, fresh in nodes:
            position = self._positions[key]
            _replace(self.confirmed, self._confirmed_index, key, fresh, position)
            shown = _view_copy(fresh)
            for record in mine.get(key, ()):
                apply_record(shown, record)
            _replace(self.view, self._view_index, key, shown, position)
            self.changes.node(key[0], shown)

    def _find(self, index: dict[NodeKey, ProviderNode], key: NodeKey) -> ProviderNode | None:
        """The node of ``key``, following renames (at most 8, as the storage does)."""
        for _ in range(8):
            node = index.get(key)
            if node is not None or key not in self._renamed:
                return node
            key = (key[0], self._renamed[key])
        return None

    def _apply(self, index: dict[NodeKey, ProviderNode], records: Iterable[NodeRecord]) -> None:
        changed = self.changes.node if index is self._view_index else None
        for record in records:
            node = self._find(index, (record.provider_type, record.uuid))
            if node is not None:  # a deleted node: nothing to count
                apply_record(node, record)
                if changed is not None:
                    changed(record.provider_type, node)

    def get(self, provider_type: str, uuid: str) -> ProviderNode | None:
        node = self._view_index.get((provider_type, uuid))
        return node.copy() if node is not None else None

    def list(self) -> ProviderPools:
        return self.view.copy()

    def credential_file(self, provider_type: str, uuid: str) -> str | None:
        """The key of the token file the node names in the view
        (:func:`~cfgstore.model.credentials.credential_file_key`); ``None``: it names
        none, or there is no such node."""
        node = self._view_index.get((provider_type, uuid))
        return credential_file_key(provider_type, node) if node is not None else None


async def release(nodes: list[ProviderNode]) -> None:
    """Drop the references ``nodes`` holds, :data:`RELEASE_CHUNK` at a time with a loop
    turn in between (emptying the list): the nodes no one else holds are freed a chunk at
    a time, not in one deallocation run of ~1 µs per object."""
    while nodes:
        del nodes[-RELEASE_CHUNK:]
        await asyncio.sleep(0)


def _index(pools: ProviderPools) -> dict[NodeKey, ProviderNode]:
    return {(provider_type, node.uuid): node for provider_type, node in pools}


def _positions(pools: ProviderPools) -> dict[NodeKey, int]:
    return {
        (provider_type, node.uuid): position
        for provider_type, nodes in pools.types.items()
        for position, node in enumerate(nodes)
    }


_STATE_FIELDS = operator.attrgetter(*(field.name for field in attrs.fields(NodeState)))
"""Every field of :class:`NodeState`, in ``__init__`` order (all plain init arguments):
``NodeState(*_STATE_FIELDS(s))`` copies in ~2.5 µs where ``attrs.evolve`` takes ~6."""


def _view_copy(node: ProviderNode) -> ProviderNode:
    """A copy records may change: its own state and layout, the same settings dict."""
    state = NodeState(*_STATE_FIELDS(node.state))
    return ProviderNode(node.uuid, state, node.settings, list(node.layout))


def _replace(
    pools: ProviderPools,
    index: dict[NodeKey, ProviderNode],
    key: NodeKey,
    fresh: ProviderNode,
    position: int,
) -> None:
    pools.types[key[0]][position] = fresh
    index[key] = fresh
