"""Optional operations of a *shared* backend, used by the memory fallback above it.

A backend that many instances share (Redis) implements these so that a memory layer can
serve from memory, journal through outages and replay exactly (DESIGN §3). They are not
storage operations a chain must have: a chain whose bottom lacks them runs the memory
layer as a plain read cache. The backend's descriptor announces them with the capability
``"replica"``; the layer above announces ``"outage-fallback"``, and the Store then tells the
backend (``BackendContext.fallback_above``) that it may open while its storage is down.

Errors: :class:`~cfgstore.errors.StorageUnavailable` for an outage,
:class:`~cfgstore.errors.StorageServerError` for a refusal that is not one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.model.pools import ProviderNode
    from cfgstore.model.records import NodeRecord
    from cfgstore.model.replica import AppliedBatch, InstanceInfo, ReplicaHead
    from cfgstore.model.snapshot import StoreSnapshot
    from cfgstore.model.traffic import TrafficCount
    from cfgstore.model.usage_stats import UsageCount


@hookspec
async def cfgstore_replica_head() -> ReplicaHead:
    """Probe the storage: its namespace id, revision and whether it holds data. Also the
    point where a backend reports a schema it cannot serve (StorageServerError)."""


@hookspec
async def cfgstore_replica_snapshot() -> StoreSnapshot:
    """Read everything the store serves, for a full resync. The revision is read first, so
    the state is at least that recent. Pending writes of the caller must not be in flight
    (the caller serialises), so the state holds exactly the caller's acknowledged writes."""


@hookspec
async def cfgstore_replica_read_nodes(
    pairs: Sequence[tuple[str, str]],
) -> list[ProviderNode | None]:
    """Read nodes by ``(provider_type, uuid)``; ``None`` for an absent one."""


@hookspec
async def cfgstore_replica_apply(
    records: Sequence[NodeRecord], op_id: str, namespace_id: str
) -> AppliedBatch:
    """Apply a batch of hot-path records now (no coalescing), exactly once per ``op_id``:
    the id is recorded atomically with the writes, and a batch sent again under an id
    already applied changes nothing (``AppliedBatch.duplicate``).

    ``op_id`` is ``<instance>:<epoch>:<seq>`` (:mod:`cfgstore.model.batch_ids`): the
    storage keeps a high-water mark per instance and epoch, applies a batch only when its
    ``seq`` is above its epoch's mark and moves the mark to it; a ``seq`` at or below is a
    duplicate. So the batches of one instance and epoch must be sent in ``seq`` order,
    each sent again until acknowledged before the next is sent (a later batch applied
    first would make an earlier one a duplicate); the caller guarantees that. Nothing
    expires, and a storage rolled back in time rolls the marks back with the data it
    lost. Any other ``op_id`` is a legacy id (journals written before): recorded on its
    own, for a day.

    With a non-empty
    ``namespace_id`` the batch is refused with :class:`~cfgstore.errors.NamespaceMismatch`
    when the storage holds another namespace or none (it was emptied): records are never
    applied to data they were not made for."""


@hookspec
async def cfgstore_replica_apply_many(
    batches: Sequence[tuple[Sequence[NodeRecord], str]], namespace_id: str
) -> list[AppliedBatch]:
    """:func:`cfgstore_replica_apply` for each ``(records, op_id)`` in order, in one round
    trip (a replay of many journal entries, the confirmed tail). Each batch is applied
    atomically and exactly once per ``op_id`` on its own, in list order (ids of one
    instance and epoch ascending); the outcomes are returned in order. A batch whose
    predecessor of the same instance and epoch in the list was refused is refused too
    (:class:`~cfgstore.errors.StorageServerError`), so a re-send of both is exact. The first error
    (an outage, :class:`~cfgstore.errors.NamespaceMismatch`) is raised once every batch
    was sent: some may have been applied, and sending them again under their ids is
    harmless."""


@hookspec
async def cfgstore_replica_add_traffic(counts: Sequence[TrafficCount], op_id: str) -> bool:
    """Add traffic counts (:func:`~cfgstore.hookspecs.traffic.cfgstore_traffic_add`) now,
    exactly once per ``op_id``: a sequenced batch id (``<instance>:<epoch>:<seq>``) checked
    against the same per-instance marks as record batches, so the caller sends the batches
    of one instance and epoch in ``seq`` order, each until acknowledged (the memory
    fallback names its traffic batches after its instance id with a ``-t`` suffix, and
    journals them through outages). Returns ``False`` when the batch had been applied
    already (nothing added)."""


@hookspec
async def cfgstore_replica_add_usage_stats(counts: Sequence[UsageCount], op_id: str) -> bool:
    """Add usage counts (:func:`~cfgstore.hookspecs.usage_stats.cfgstore_usage_stats_add`)
    now, exactly once per ``op_id`` (a sequenced batch id, :mod:`cfgstore.model.batch_ids`):
    ``False`` when a batch with that id (or a later one of its writer) was applied already
    and nothing was added.
    The memory fallback names its batches after its instance id with a ``-u`` suffix and
    journals them through outages."""


@hookspec
async def cfgstore_replica_forget_epochs(instance_id: str, epoch: int) -> int:
    """Drop the batch marks of ``instance_id`` for every epoch but ``epoch`` and return how
    many went. The instance calls it once nothing of its earlier runs is left to send
    (its journal replayed, its confirmed tail holding only this run's batches): a batch
    of a dropped epoch sent afterwards would be applied again. Without it the storage
    keeps one mark per run of every instance."""


@hookspec
async def cfgstore_replica_heartbeat(info: InstanceInfo, ttl_ms: int) -> None:
    """Publish this instance's heartbeat; it disappears ``ttl_ms`` after the last one."""


@hookspec
async def cfgstore_replica_instances() -> list[InstanceInfo]:
    """The instances whose heartbeat is alive, ordered by instance id."""
