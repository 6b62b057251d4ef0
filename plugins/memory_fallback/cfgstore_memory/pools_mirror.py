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

Not thread-safe; event-loop only. Reads return copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cfgstore.model.credentials import credential_file_key
from cfgstore.model.node_changes import LiveView, NodeChanges
from cfgstore.model.pools import ProviderNode, ProviderPools
from cfgstore.model.records import NodeRecord, apply_record, apply_run, fold_runs

NodeKey = tuple[str, str]


class PoolsMirror:
    def __init__(self) -> None:
        self.confirmed = ProviderPools()
        self.view = ProviderPools()
        self._confirmed_index: dict[NodeKey, ProviderNode] = {}
        self._view_index: dict[NodeKey, ProviderNode] = {}
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
        rebuild the view with ``unconfirmed`` on top."""
        self.confirmed = confirmed
        self._confirmed_index = _index(confirmed)
        self.view = confirmed.copy()
        self._view_index = _index(self.view)
        self._apply(self._view_index, unconfirmed)
        self.changes.everything()

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
        fresh node with this instance's unconfirmed records for it on top."""
        for key, fresh in nodes:
            _replace(self.confirmed, self._confirmed_index, key, fresh)
            mine = [r for r in unconfirmed if (r.provider_type, r.uuid) == key]
            shown = fresh.copy()
            for record in mine:
                apply_record(shown, record)
            _replace(self.view, self._view_index, key, shown)
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


def _index(pools: ProviderPools) -> dict[NodeKey, ProviderNode]:
    return {(provider_type, node.uuid): node for provider_type, node in pools}


def _replace(
    pools: ProviderPools, index: dict[NodeKey, ProviderNode], key: NodeKey, fresh: ProviderNode
) -> None:
    nodes = pools.types[key[0]]
    position = nodes.index(index[key])
    nodes[position] = fresh
    index[key] = fresh
