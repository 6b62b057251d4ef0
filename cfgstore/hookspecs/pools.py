"""Provider pools: provider types, their nodes (accounts), and hot-path bookkeeping.

A pool document maps provider type → ordered list of nodes (aiclient-formats §3). Order of
types and of nodes is part of the data and is preserved by every operation (new types and
nodes are appended). A node is identified by ``(provider_type, uuid)``.

Values returned are copies: mutating them changes nothing in the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.model.jsjson import JSONValue
    from cfgstore.model.pools import ProviderNode, ProviderPools
    from cfgstore.model.records import NodeRecord


@hookspec
async def cfgstore_pools_list() -> ProviderPools:
    """Return every provider type with its nodes, in stored order.

    An empty store returns an empty :class:`ProviderPools`. Types with no nodes are listed
    (empty lists are legal data).
    """


@hookspec
async def cfgstore_pools_view() -> Mapping[str, Sequence[ProviderNode]]:
    """The pools for the hot path (provider selection): provider type → nodes, the
    backend's live objects rather than copies.

    Read-only: a caller never mutates the mapping, the lists or the nodes, and reads it
    again for every decision (it changes as records apply and other instances' changes
    arrive). A backend without a live in-memory state returns a fresh copy.

    Optional: a :class:`~cfgstore.model.node_changes.LiveView` whose
    :class:`~cfgstore.model.node_changes.NodeChanges` feed reports every change of the view
    (contract in :mod:`cfgstore.model.node_changes`) lets the gateway keep an index for
    provider selection instead of scanning every node per pick; any other mapping is
    scanned.
    """


@hookspec
async def cfgstore_pools_get_node(provider_type: str, uuid: str) -> ProviderNode | None:
    """Return the node, or ``None`` when the type or the uuid is absent."""


@hookspec
async def cfgstore_pools_add_node(provider_type: str, node: ProviderNode) -> ProviderNode:
    """Append ``node`` to ``provider_type`` (creating the type, appended, when absent).

    Atomic. Raises :class:`~cfgstore.errors.AlreadyExists` when the uuid is already used
    by a node of that type. Returns the node as stored.
    """


@hookspec
async def cfgstore_pools_update_node(
    provider_type: str, uuid: str, changes: Mapping[str, JSONValue]
) -> ProviderNode:
    """Shallow-merge ``changes`` into the node's document and return the stored node.

    Keys keep their position; new keys are appended. ``uuid`` and the live counters
    (``usageCount``, ``errorCount``, ``lastUsed``, ``lastErrorTime``) in ``changes`` are
    ignored (they belong to the hot path, as in the Node service). Other hot-path fields
    are type-checked. Atomic with respect to concurrent hot-path records: no count is lost.
    Raises :class:`~cfgstore.errors.NotFound`, or :class:`~cfgstore.errors.InvalidData`
    for a badly typed field (nothing written).

    Changing the node's token path points it at another file and so at that file's
    credential. Where the store holds credentials itself (Redis), a node pointed at a file
    that holds none yet takes its credential along (moved, or copied when other nodes
    still name the old file); the file backend reads whatever is at the new path.
    """


@hookspec
async def cfgstore_pools_delete_node(provider_type: str, uuid: str) -> None:
    """Remove the node; when it was the type's last node the type is removed too.

    Atomic. Raises :class:`~cfgstore.errors.NotFound` when absent. The node's credential
    is no longer reachable through it afterwards (``cfgstore_credentials_get`` returns
    ``None``); other nodes naming the same token file keep it (one file, one credential:
    ``cfgstore.hookspecs.credentials``). When no node names the file any more, backends
    that hold credentials themselves delete it; the file backend leaves the token file on
    disk, as the Node service does.
    """


@hookspec
async def cfgstore_pools_rename_node(provider_type: str, old_uuid: str, new_uuid: str) -> None:
    """Give a node a new uuid, in place (same position); its credential follows it.

    Atomic: node and credential link move together or not at all (the credential is its
    token file's: nodes sharing the file keep sharing it). A refresh lock taken before
    is released by its token as before (the token names the lock). Hot-path records
    still queued under the old uuid (in any instance) land on the renamed node. Raises
    :class:`~cfgstore.errors.NotFound` when the node is absent and
    :class:`~cfgstore.errors.AlreadyExists` when ``new_uuid`` is taken in the type.
    """


@hookspec
async def cfgstore_pools_delete_type(provider_type: str) -> int:
    """Remove a provider type and all its nodes; return how many nodes were removed.

    Raises :class:`~cfgstore.errors.NotFound` when the type is absent.
    """


@hookspec
async def cfgstore_pools_set_disabled(provider_type: str, uuid: str, disabled: bool) -> None:
    """Set ``isDisabled`` of one node. Raises :class:`~cfgstore.errors.NotFound`."""


@hookspec
async def cfgstore_pools_reset_health(provider_type: str) -> int:
    """Reset health of every node of the type (aiclient-formats §3.7 ``resetAllHealthInType``).

    Sets ``isHealthy=true, errorCount=0, lastErrorTime=null, lastErrorMessage=null,
    refreshCount=0, needsRefresh=false``; ``scheduledRecoveryTime`` is kept. Returns the
    number of nodes reset. Raises :class:`~cfgstore.errors.NotFound` for an absent type.
    """


@hookspec
async def cfgstore_pools_delete_unhealthy(provider_type: str) -> list[str]:
    """Remove every node of the type with ``isHealthy=false``; return their uuids in order.

    The type is removed when no node is left. Raises :class:`~cfgstore.errors.NotFound`
    for an absent type.
    """


@hookspec
async def cfgstore_pools_apply_records(records: Sequence[NodeRecord]) -> None:
    """Apply hot-path records (selected, success, failure, cooldown, need-refresh,
    recovered, health-check result) in the given order.

    Each record is applied to the node's *current* stored state, never to a stale copy, so
    concurrent callers in one or many processes lose no increment: after N success
    records the node's ``usageCount`` is exactly N higher. Records for nodes that no longer
    exist are dropped (the node was deleted; nothing to count). The call may return before
    the records are durable (backends coalesce); ``cfgstore_flush`` waits for durability.
    Semantics of each record: :mod:`cfgstore.model.records`.
    """


@hookspec
async def cfgstore_pools_import(pools: ProviderPools, keep_live_state: bool) -> None:
    """Replace every provider type and node with ``pools``, in its order (empty types
    included), atomically — what a migration writes.

    With ``keep_live_state``, a node already stored under the same type and uuid keeps
    its stored hot-path fields (usage and error counters, health, times); every other
    key comes from ``pools``. Nodes that are not in ``pools`` are removed, and their
    credentials become unreachable as with ``cfgstore_pools_delete_node``. Pending
    hot-path records are applied before the import.
    """
