"""The memory fallback: the ``memory`` layer above a shared backend (DESIGN §3).

Serves every hot-path read from memory (provider selection never waits on the storage),
keeps the last good copy of everything else it serves, and keeps working through outages
of the storage below: records to the journal, reads from memory, admin edits refused with
:class:`~cfgstore.errors.StorageDegraded`. The mode machine is the
:class:`~cfgstore_memory.replicator.Replicator`'s; start-up follows DESIGN §3's table:

=====================================  ==================================================
storage at start                       start
=====================================  ==================================================
unreachable                            degraded, from the snapshot file and the journal
                                       (no snapshot: fail, saying so)
reachable, our namespace               replay any journal left over, resync, normal
reachable, empty, never used by us     :class:`~cfgstore.errors.NotInitialised` (the Store
                                       warns, naming ``cfgctl migrate``/``init``, and
                                       serves from files when the chain was not chosen)
reachable, empty, but we ran on it     data lost: degraded from the snapshot, journal kept,
                                       reported — nothing re-created silently
reachable, another namespace           the old journal is set aside for ``cfgctl journal
                                       replay``; normal on the new namespace
=====================================  ==================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import posixpath
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from cfgstore import hookimpl
from cfgstore.adapters.backend import BackendContext
from cfgstore.errors import (
    CfgStoreError,
    NotInitialised,
    StorageUnavailable,
    VersionConflict,
)
from cfgstore.model.batch_ids import BatchSequence
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import (
    Credential,
    CredentialRef,
    TokenFormat,
    same_file_key,
    token_format_for,
)
from cfgstore.model.events import ChangeEvent
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.pools import ProviderNode, ProviderPools
from cfgstore.model.potluck import TokenUse
from cfgstore.model.records import NodeRecord
from cfgstore.model.snapshot import StoreSnapshot
from cfgstore.model.status import BackendStatus, EntityCounts
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore.model.traffic import TrafficCount
from cfgstore.model.usage_stats import UsageCount
from cfgstore.model.usage_stats import empty_document as empty_usage_document
from cfgstore_memory.admin_tail import CredentialEdit
from cfgstore_memory.cancellation import raise_if_cancelling, stop_tasks
from cfgstore_memory.collector import collector_paused
from cfgstore_memory.confirmed_tail import ConfirmedTail
from cfgstore_memory.guarded_ops import GuardedOps
from cfgstore_memory.heartbeat import Heartbeat
from cfgstore_memory.journal import Journal
from cfgstore_memory.plugin_logs import LocalPluginLogs
from cfgstore_memory.pools_mirror import PoolsMirror, release
from cfgstore_memory.potluck_relay import PotluckRelay, potluck_instance
from cfgstore_memory.read_cache import _MISSING, ReadCache
from cfgstore_memory.replay import CREDENTIAL, credential_data
from cfgstore_memory.replicator import Mode, Replicator, journaled_records
from cfgstore_memory.state_dir import StateDir
from cfgstore_memory.traffic_relay import TrafficRelay, traffic_instance
from cfgstore_memory.usage_relay import UsageRelay, usage_instance

log = logging.getLogger("cfgstore.memory")

CredentialKey = tuple[str, str]

DOCUMENT_READS = {
    "config": "cfgstore_config_get",
    "system_prompt": "cfgstore_system_prompt_get",
    "custom_models": "cfgstore_custom_models_list",
    "plugin_config": "cfgstore_plugin_config_get",
    "password": "cfgstore_password_get",
    "usage_cache": "cfgstore_usage_cache_get",
}
"""The documents the layer keeps a last good copy of, and the operation reading each."""


class MemoryFallback(GuardedOps, ReadCache):
    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.context = context
        self.settings = context.settings
        self.mirror = PoolsMirror()
        self._last_good: dict[str, Any] = {}
        self._credentials: dict[CredentialKey, Credential] = {}
        self._credentials_complete = False  # every stored credential is in the dict
        self._stale_credentials: set[CredentialKey] = set()
        self._confirmed_absent: set[CredentialKey] = set()
        """Nodes naming a token file whose credential the storage said it does not hold
        (only these are answered "none" from memory: a node naming a file that another
        node shares may have a credential this cache never listed under its uuid)."""
        self._local_locks: dict[tuple[str, ...], tuple[str, float]] = {}
        self._local_versions = 0
        self._revision = 0
        self._save_soon = asyncio.Event()
        self._reload: set[str] = set()  # documents changed since last read
        self._reload_soon = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._early_changes: list[ChangeEvent] | None = []  # None once the replicator is made
        self.started_at_ms = now_ms()
        self.traffic: TrafficRelay | None = None
        """Relays traffic counts when the storage below takes them exactly once."""
        self.potluck: PotluckRelay | None = None
        """Relays api-potluck token counts likewise."""
        self.usage: UsageRelay | None = None
        """Relays model usage counts likewise."""
        self.plugin_logs = LocalPluginLogs()
        """Plugin log entries appended while the storage could not take them."""

    # -- lifecycle ------------------------------------------------------------------------

    @hookimpl
    async def cfgstore_open(self) -> None:
        self.state = await StateDir.open(self.settings.resolved_state_dir)
        self.journal = await Journal.open(self.state.journal_path, self.settings.journal_max_bytes)
        try:
            self.tail = await ConfirmedTail.open(
                self.state.tail_path,
                self.settings.confirmed_tail_ms / 1000,
                self.settings.journal_max_bytes,
            )
        except BaseException:
            await self.journal.close()
            raise
        try:
            await self._start()
        except BaseException:
            await self.journal.close()
            await self.tail.close()
            raise
        self.heartbeat = Heartbeat(self)
        loop = asyncio.get_running_loop()
        self._replicator.start()
        if "cfgstore_replica_add_traffic" in self._below:
            self.traffic = TrafficRelay(
                self._below,
                self._replicator,
                self.settings,
                BatchSequence(traffic_instance(self.state.instance_id), self.state.epoch),
            )
        if "cfgstore_replica_add_potluck_tokens" in self._below:
            self.potluck = PotluckRelay(
                self._below,
                self._replicator,
                self.settings,
                BatchSequence(potluck_instance(self.state.instance_id), self.state.epoch),
            )
        if "cfgstore_replica_add_usage_stats" in self._below:
            self.usage = UsageRelay(
                self._below,
                self._replicator,
                self.settings,
                BatchSequence(usage_instance(self.state.instance_id), self.state.epoch),
            )
        self._tasks = [
            loop.create_task(self._save_loop(), name="cfgstore-snapshot-saver"),
            loop.create_task(self.heartbeat.run(), name="cfgstore-heartbeat"),
            loop.create_task(self._reload_loop(), name="cfgstore-reload"),
        ]

    async def _start(self) -> None:
        prefix = self.settings.redis_prefix
        try:
            async with asyncio.timeout(self.settings.redis_connect_timeout_ms / 1000 + 1):
                head = await self._below["cfgstore_replica_head"]()
        except (StorageUnavailable, TimeoutError) as exc:
            await self._start_from_snapshot(Mode.DEGRADED, f"storage unreachable: {exc}")
            return
        remembered = self.state.remembered(prefix)
        if head.namespace_id is None:
            if remembered is None and not self.journal.depth:
                raise NotInitialised(
                    f"Redis namespace {{{prefix}}} is empty: run `cfgctl migrate` to bring "
                    "your configs/ files over, or `cfgctl init` to start from defaults"
                )
            await self._start_from_snapshot(
                Mode.DATA_LOST,
                f"the storage is empty but this instance ran on namespace {remembered}",
            )
            return
        if remembered is not None and head.namespace_id != remembered:
            self.tail.clear()  # its batches belong to the namespace this instance ran on
            await self.tail.save()
            if self.journal.depth:
                await self._set_journal_aside(remembered, head.namespace_id)
        self._replicator = self._make_replicator(head.namespace_id)
        if self.journal.depth or len(self.tail):
            log.warning(
                "replaying %d journal entries and re-sending %d confirmed batches left by an "
                "earlier run (%s)",
                self.journal.depth,
                len(self.tail),
                self.state.path,
            )
            await self._replicator.recover()
        else:
            await self._replicator.resync()
        await self.state.remember(prefix, head.namespace_id)

    async def _start_from_snapshot(self, mode: Mode, reason: str) -> None:
        with collector_paused():
            await self._load_snapshot(mode, reason)

    async def _load_snapshot(self, mode: Mode, reason: str) -> None:
        snapshot = await self.state.load_snapshot()
        if snapshot is None:
            raise StorageUnavailable(
                f"{reason}; no snapshot in {self.state.path} to serve from (an instance "
                "needs to have run once with the storage reachable)"
            )
        self._replicator = self._make_replicator(snapshot.namespace_id)
        journaled = journaled_records(self.journal)
        await self.mirror.rebuild(snapshot.pools, lambda: journaled)
        self._load(snapshot)
        self._replicator.start_degraded(mode, reason, journaled)
        log.warning(
            "started %s from the snapshot of %s (revision %d) with %d journal entries",
            mode.value,
            snapshot.namespace_id,
            snapshot.revision,
            self.journal.depth,
        )

    async def _set_journal_aside(self, old: str, new: str) -> None:
        aside = self.journal.path.with_name(f"journal.orphan-{old}-{now_ms()}")
        depth = self.journal.depth
        await self.journal.close()
        await asyncio.to_thread(os.replace, self.journal.path, aside)
        log.error(
            "the storage now holds namespace %s, not %s this instance ran on: its journal "
            "(%d entries) is set aside as %s; replay it deliberately with `cfgctl journal "
            "replay --journal %s` if it belongs there",
            new,
            old,
            depth,
            aside,
            aside,
        )
        self.journal = await Journal.open(self.state.journal_path, self.settings.journal_max_bytes)

    def _make_replicator(self, namespace_id: str) -> Replicator:
        """The replicator, handed the pool changes other instances announced while the
        layer was opening (the change feed below runs before this layer is ready)."""
        replicator = Replicator(
            ops=self._below,
            mirror=self.mirror,
            journal=self.journal,
            settings=self.settings,
            namespace_id=namespace_id,
            notify=self.context.notify,
            on_resync=self._load,
            save_snapshot=self._save_soon.set,
            batch_ids=BatchSequence(self.state.instance_id, self.state.epoch),
            tail=self.tail,
        )
        for event in self._early_changes or ():
            replicator.changed_remotely(event)
        self._early_changes = None
        return replicator

    @hookimpl
    async def cfgstore_flush(self) -> None:
        await self._replicator.durable()
        if self.traffic is not None:
            await self.traffic.durable()
        if self.potluck is not None:
            await self.potluck.durable()
        if self.usage is not None:
            await self.usage.durable()

    @hookimpl
    async def cfgstore_close(self) -> None:
        try:
            if self.traffic is not None:
                await self.traffic.close()
            if self.potluck is not None:
                await self.potluck.close()
            if self.usage is not None:
                await self.usage.close()
            await self._replicator.close()
            await stop_tasks(self._tasks, self._stop_waits)
            if not self._replicator.serving_degraded:
                with contextlib.suppress(CfgStoreError, OSError):
                    await self._save_snapshot()
                with contextlib.suppress(CfgStoreError):
                    await self.heartbeat.withdraw()
        finally:
            await self.journal.close()
            await self.tail.close()

    def _stop_waits(self) -> None:
        self._stopping = True
        self._save_soon.set()
        self._reload_soon.set()
        self.heartbeat.stopped.set()

    @hookimpl
    async def cfgstore_status(self) -> BackendStatus:
        r = self._replicator
        pools = self.mirror.view
        warnings: list[str] = []
        if r.mode is Mode.DATA_LOST:
            warnings.append(
                f"DATA LOST: {r.reason}; restore with `cfgctl restore --snapshot "
                f"{self.state.snapshot_path}`"
            )
        elif r.mode is Mode.DEGRADED:
            warnings.append(f"storage degraded: {r.reason}")
        if r.journal_full is not None:
            warnings.append(f"journal full: {r.journal_full}")
        if r.last_error and r.last_error != r.reason:
            warnings.append(f"last error: {r.last_error}")
        if r.last_rollback is not None:
            warnings.append(f"the storage went back in time: {r.last_rollback}")
        oldest = self.journal.oldest_at_ms
        details = {
            "instance id": self.state.instance_id,
            "state dir": str(self.state.path),
            "namespace id": r.namespace_id,
            "journal depth": str(self.journal.depth),
            "journal bytes": f"{self.journal.size_bytes} of {self.journal.max_bytes}",
            "pending records": str(r.backlog),
            "confirmed revision": str(r.confirmed_revision),
            "confirmed tail": f"{len(r.tail)} batches",
            "rollbacks detected": str(r.rollbacks),
        }
        if r.last_rollback is not None:
            details["last rollback"] = r.last_rollback
        if self.traffic is not None and self.traffic.backlog:
            details["traffic counts pending"] = str(self.traffic.backlog)
            if self.traffic.last_error:
                warnings.append(f"traffic counts not stored yet: {self.traffic.last_error}")
        if self.potluck is not None and self.potluck.backlog:
            details["api-potluck counts pending"] = str(self.potluck.backlog)
            if self.potluck.last_error:
                warnings.append(f"api-potluck counts not stored yet: {self.potluck.last_error}")
        if self.usage is not None and self.usage.backlog:
            details["usage counts pending"] = str(self.usage.backlog)
            if self.usage.last_error:
                warnings.append(f"usage counts not stored yet: {self.usage.last_error}")
        if r.admin_after_rollback:
            lines = [o.line for o in r.admin_after_rollback]
            details["admin edits after the last rollback"] = " | ".join(lines)
            warnings.extend(
                f"after the rollback: {o.line}" for o in r.admin_after_rollback if not o.reapplied
            )
        if r.degraded_since_ms is not None:
            details["degraded since"] = iso_ms(r.degraded_since_ms)
        if oldest is not None:
            details["oldest journal entry age"] = f"{(now_ms() - oldest) / 1000:.1f}s"
        if r.last_resync:
            details["last resync"] = r.last_resync
        if r.replayed.entries:
            details["replayed"] = (
                f"{r.replayed.entries} entries, {r.replayed.records} records "
                f"({r.replayed.duplicates} batches already applied)"
            )
        return BackendStatus(
            name="memory",
            location=str(self.state.path),
            mode=r.mode.value,
            counts=EntityCounts(
                provider_types=len(pools.types),
                nodes=pools.node_count(),
                healthy_nodes=sum(1 for _, n in pools if n.state.is_healthy),
                credentials=len(self._credentials),
            ),
            warnings=tuple(warnings),
            details=details,
        )

    # -- the confirmed state ------------------------------------------------------------------

    def _load(self, snapshot: StoreSnapshot) -> None:
        """Take the documents and credentials of a full read (the pools went to the
        mirror already)."""
        self._revision = snapshot.revision
        for entity, value in (
            ("config", snapshot.config),
            ("system_prompt", snapshot.system_prompt),
            ("custom_models", snapshot.custom_models),
            ("plugin_config", snapshot.plugins),
            ("password", snapshot.password),
            ("usage_cache", snapshot.usage_cache),
        ):
            self._values[entity] = value
            self._last_good[entity] = value
        self._credentials = {(c.provider_type, c.uuid): c for c in snapshot.credentials}
        self._credentials_complete = True
        self._stale_credentials.clear()
        self._confirmed_absent.clear()

    async def _confirmed_snapshot(self) -> StoreSnapshot:
        """The confirmed state as a snapshot; copies, so it can be saved off the loop.
        The pools are copied in chunks with the replicator's I/O lock held, so that no
        acknowledgement lands half-way through the copy."""
        async with self._replicator.io_lock:
            pools = await self.mirror.confirmed_copy()
            revision = self._revision
        # The held credentials themselves: they are replaced, never changed in place.
        credentials = list(self._credentials.values())
        good = self._last_good
        return StoreSnapshot(
            namespace_id=self._replicator.namespace_id,
            prefix=self.settings.redis_prefix,
            revision=revision,
            saved_at_ms=now_ms(),
            pools=pools,
            config=copy.deepcopy(good.get("config", MainConfig())),
            system_prompt=good.get("system_prompt"),
            custom_models=copy.deepcopy(good.get("custom_models", [])),
            plugins=copy.deepcopy(good.get("plugin_config", PluginConfig())),
            password=good.get("password"),
            usage_cache=copy.deepcopy(good.get("usage_cache")),
            credentials=credentials,
        )

    async def _save_snapshot(self) -> None:
        """Copy the confirmed state, write it, free the copies; with the collector paused
        (:mod:`~cfgstore_memory.collector`): the copies do not outlive the save (nor form
        reference cycles), yet as they accumulate they made the collector walk them all
        again and again, 25–40 ms per full collection at 25,000 nodes."""
        with collector_paused(freeze=False):
            snapshot = await self._confirmed_snapshot()
            await self.state.save_snapshot(snapshot)
            copies = [node for _, node in snapshot.pools]
            snapshot.pools.types.clear()
            await release(copies)

    async def _save_loop(self) -> None:
        """Save the confirmed state when asked (resync, outage) and every
        ``snapshot_interval_ms``. Saving while degraded rewrites the same state: nothing
        is confirmed without the storage."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.snapshot_interval_ms / 1000):
                    await self._save_soon.wait()
            self._save_soon.clear()
            if self._stopping:
                return
            try:
                await self._save_snapshot()
            except (CfgStoreError, OSError) as exc:
                log.error("could not save the snapshot %s: %s", self.state.snapshot_path, exc)

    # -- change events ------------------------------------------------------------------------

    @hookimpl
    def cfgstore_changed(self, event: ChangeEvent) -> None:
        if event.entity == "pools":
            # Our own pool changes reach the mirror directly (acknowledged batches,
            # the resync after each edit).
            if not event.remote:
                return
            if self._early_changes is not None:  # still opening: kept for the replicator
                self._early_changes.append(event)
            else:
                self._replicator.changed_remotely(event)
            return
        if event.entity == "credentials":
            if event.ids:
                for ident in event.ids:
                    provider_type, _, uuid = ident.partition("/")
                    self._stale_credentials.add((provider_type, uuid))
            else:
                self._credentials_moved()
            self._reload_soon.set()
            return
        super().cfgstore_changed(event)
        if event.entity in DOCUMENT_READS:
            self._reload.add(event.entity)
            self._reload_soon.set()

    async def _reload_loop(self) -> None:
        """Re-read what changed right away, so that the last good copy an outage would
        serve is the latest one, not the one before an edit nobody has read since."""
        while True:
            await self._reload_soon.wait()
            self._reload_soon.clear()
            if self._stopping:
                return
            entities, self._reload = self._reload, set()
            try:
                for entity in entities:
                    await self._cached(entity, self._below[DOCUMENT_READS[entity]])
                for provider_type, uuid in list(self._stale_credentials):
                    await self.cfgstore_credentials_get(provider_type, uuid)
            except CfgStoreError as exc:  # degraded meanwhile, or nothing good to serve
                raise_if_cancelling(exc)
                log.debug("reload after a change stopped: %s", exc)

    # -- documents: last good copy ------------------------------------------------------------

    def _written(self, entity: str, value: Any) -> None:
        """A write this instance made and the storage confirmed: an outage that comes before
        anything read it back serves it (a read begun before it must not replace it)."""
        self._generation[entity] = self._generation.get(entity, 0) + 1
        self._values.pop(entity, None)
        self._last_good[entity] = value

    async def _cached(self, entity: str, load: Callable[[], Awaitable[Any]]) -> Any:
        value = self._values.get(entity, _MISSING)
        if value is not _MISSING:
            return copy.deepcopy(value)
        if not self._replicator.serving_degraded:
            generation = self._generation.get(entity, 0)
            try:
                value = await load()
            except StorageUnavailable as exc:
                self._replicator.note_outage(exc)
            else:
                if self._generation.get(entity, 0) == generation:
                    self._values[entity] = value
                    self._last_good[entity] = value
                else:  # older than a change seen meanwhile: a last good copy, not a newer one
                    self._last_good.setdefault(entity, value)
                return copy.deepcopy(value)
        if entity in self._last_good:
            return copy.deepcopy(self._last_good[entity])
        raise self._refusal(f"reading {entity} (never read before) is")

    # -- pools --------------------------------------------------------------------------------

    @hookimpl
    async def cfgstore_pools_list(self) -> ProviderPools:
        return self.mirror.list()

    @hookimpl
    async def cfgstore_pools_view(self) -> Mapping[str, Sequence[ProviderNode]]:
        return self.mirror.live_view()

    @hookimpl
    async def cfgstore_pools_get_node(self, provider_type: str, uuid: str) -> ProviderNode | None:
        return self.mirror.get(provider_type, uuid)

    @hookimpl
    async def cfgstore_pools_apply_records(self, records: Sequence[NodeRecord]) -> None:
        self._replicator.submit(records)  # first: it refuses when the journal is full
        self.mirror.apply_local(records)

    # -- api-potluck tokens ---------------------------------------------------------------------

    @hookimpl
    async def cfgstore_potluck_add_tokens(self, uses: Sequence[TokenUse]) -> None:
        """Through the relay (journaled during outages) when the storage offers
        ``cfgstore_replica_add_potluck_tokens``; else as the storage below takes them."""
        if self.potluck is not None:
            self.potluck.submit(uses)
        elif "cfgstore_potluck_add_tokens" in self._below:
            await self._below["cfgstore_potluck_add_tokens"](uses=uses)

    # -- traffic ------------------------------------------------------------------------------

    @hookimpl
    async def cfgstore_traffic_add(self, counts: Sequence[TrafficCount]) -> None:
        """Through the relay (journaled during outages) when the storage offers
        ``cfgstore_replica_add_traffic``; else as the storage below takes them."""
        if self.traffic is not None:
            self.traffic.submit(counts)
        elif "cfgstore_traffic_add" in self._below:
            await self._below["cfgstore_traffic_add"](counts=counts)

    @hookimpl
    async def cfgstore_traffic_read(self, since_ms: int) -> list[TrafficCount]:
        """The storage's (counts are not cached: every instance's change every second);
        none when it keeps no traffic."""
        if "cfgstore_traffic_read" not in self._below:
            return []
        counts: list[TrafficCount] = await self._below["cfgstore_traffic_read"](since_ms=since_ms)
        return counts

    # -- model usage statistics ---------------------------------------------------------------

    @hookimpl
    async def cfgstore_usage_stats_add(self, counts: Sequence[UsageCount]) -> None:
        """Through the relay (journaled during outages) when the storage offers
        ``cfgstore_replica_add_usage_stats``; else as the storage below takes them."""
        if self.usage is not None:
            self.usage.submit(counts)
        elif "cfgstore_usage_stats_add" in self._below:
            await self._below["cfgstore_usage_stats_add"](counts=counts)

    @hookimpl
    async def cfgstore_usage_stats_read(self) -> dict[str, Any]:
        """The storage's (not cached: every instance's counts change every second); the
        empty document when it keeps none."""
        if "cfgstore_usage_stats_read" not in self._below:
            return empty_usage_document()
        if self.usage is not None:
            await self.usage.durable()  # this instance's counts first (or journaled)
        doc: dict[str, Any] = await self._below["cfgstore_usage_stats_read"]()
        return doc

    @hookimpl
    async def cfgstore_usage_stats_reset(self, tokens_only: bool) -> None:
        """An admin edit: refused while degraded; this instance's relayed counts land
        first (they were counted before the reset)."""
        if self._replicator.serving_degraded:
            raise self._refusal("a statistics reset")
        if self.usage is not None:
            await self.usage.durable()
        if "cfgstore_usage_stats_reset" in self._below:
            await self._edit(
                "cfgstore_usage_stats_reset", "a statistics reset", tokens_only=tokens_only
            )

    @hookimpl
    async def cfgstore_usage_stats_import(self, document: dict[str, Any]) -> None:
        if "cfgstore_usage_stats_import" in self._below:
            await self._edit(
                "cfgstore_usage_stats_import", "a statistics import", document=document
            )

    # -- plugin logs (debug data: never journaled) --------------------------------------------

    @hookimpl
    async def cfgstore_plugin_log_append(
        self, plugin: str, entry: dict[str, JSONValue], keep: int
    ) -> None:
        """The storage's log; while degraded (or when the storage below keeps none), this
        process's memory only (:mod:`cfgstore_memory.plugin_logs`)."""
        operation = "cfgstore_plugin_log_append"
        if not self._replicator.serving_degraded and operation in self._below:
            try:
                await self._below[operation](plugin=plugin, entry=entry, keep=keep)
                return
            except StorageUnavailable as exc:
                self._replicator.note_outage(exc)
        self.plugin_logs.append(plugin, entry, keep)

    @hookimpl
    async def cfgstore_plugin_log_recent(
        self, plugin: str, limit: int
    ) -> list[dict[str, JSONValue]]:
        """The storage's log; while degraded, what this process appended in memory."""
        operation = "cfgstore_plugin_log_recent"
        if not self._replicator.serving_degraded and operation in self._below:
            try:
                found: list[dict[str, JSONValue]] = await self._below[operation](
                    plugin=plugin, limit=limit
                )
                return found
            except StorageUnavailable as exc:
                self._replicator.note_outage(exc)
        return self.plugin_logs.recent(plugin, limit)

    @hookimpl
    async def cfgstore_plugin_log_clear(self, plugin: str) -> None:
        """An admin edit: refused while degraded."""
        if self._replicator.serving_degraded:
            raise self._refusal("a plugin log clear")
        self.plugin_logs.clear(plugin)
        if "cfgstore_plugin_log_clear" in self._below:
            await self._edit("cfgstore_plugin_log_clear", "a plugin log clear", plugin=plugin)

    # -- credentials --------------------------------------------------------------------------

    def _credentials_moved(self) -> None:
        self._credentials_complete = False
        self._stale_credentials.update(self._credentials)
        self._confirmed_absent.clear()

    def _known_absent(self, key: CredentialKey) -> bool:
        """Whether memory may answer "no credential" for a node it holds none for: the
        node names no token file, or the storage already said the file has none."""
        return self.mirror.credential_file(*key) is None or key in self._confirmed_absent

    def _names_its_file(self, key: CredentialKey, credential: Credential) -> bool:
        """Whether the node still names the file ``credential`` was read from (another
        instance may have pointed it at another token file since)."""
        if credential.source_path is None:
            return True
        return self.mirror.credential_file(*key) == same_file_key(credential.source_path)

    @hookimpl
    async def cfgstore_credentials_get(self, provider_type: str, uuid: str) -> Credential | None:
        key = (provider_type, uuid)
        held = self._credentials.get(key)
        if key not in self._stale_credentials and (
            (held is not None and self._names_its_file(key, held))
            or (held is None and self._credentials_complete and self._known_absent(key))
        ):
            return _handed_out_or_none(held)
        if not self._replicator.serving_degraded:
            try:
                found: Credential | None = await self._below["cfgstore_credentials_get"](
                    provider_type=provider_type, uuid=uuid
                )
            except StorageUnavailable as exc:
                self._replicator.note_outage(exc)
            else:
                self._stale_credentials.discard(key)
                if found is None:
                    self._credentials.pop(key, None)
                    self._confirmed_absent.add(key)
                else:
                    self._credentials[key] = found
                    self._confirmed_absent.discard(key)
                return _handed_out_or_none(found)
        return _handed_out_or_none(self._credentials.get(key))

    @hookimpl
    async def cfgstore_credentials_put(
        self, credential: Credential, expected_version: str | None
    ) -> str:
        """Normally the storage's compare-and-set. Degraded, a refresh proceeds locally:
        checked against the version held here, journaled against the version it read,
        resolved on replay (the later expiry wins)."""
        key = (credential.provider_type, credential.uuid)
        if not self._replicator.serving_degraded:
            try:
                version: str = await self._below["cfgstore_credentials_put"](
                    credential=credential, expected_version=expected_version
                )
            except StorageUnavailable as exc:
                self._replicator.note_outage(exc)
            else:
                self._stale_credentials.add(key)  # read back as stored on the next get
                self._replicator.admin.add(CredentialEdit(credential, expected_version, version))
                return version
        held = self._credentials.get(key)
        held_version = held.version if held is not None else None
        if expected_version != held_version:
            raise VersionConflict(
                "credential", f"{key[0]}/{key[1]}", expected_version, held_version
            )
        self._local_versions += 1
        version = f"{held_version or '0'}+local{self._local_versions}"
        held_siblings = held.siblings if held is not None else {}
        # A refresh hands back the siblings it read: journal the token file alone (empty
        # siblings keep the stored ones on replay), not the whole folder again.
        same_siblings = _same_siblings(credential.siblings, held_siblings)
        journaled = attrs.evolve(credential, siblings={}) if same_siblings else credential
        await self.journal.append(
            CREDENTIAL,
            credential_data(journaled, expected_version),
            secrets.token_hex(8),
            now_ms(),
        )
        token_format = credential.token_format
        if token_format is TokenFormat.UNKNOWN:
            token_format = token_format_for(credential.provider_type)
        stored = attrs.evolve(
            credential,
            document=copy.deepcopy(credential.document),
            siblings=dict(held_siblings)
            if same_siblings
            else {  # a sibling document not read here is the caller's: a copy of it
                name: doc if held_siblings.get(name) is doc else copy.deepcopy(doc)
                for name, doc in credential.siblings.items()
            },
            version=version,
            token_format=token_format,
        )
        self._credentials[key] = stored
        # One token file, one credential: the nodes sharing it see the refresh too (the
        # held credentials are never changed in place, so they may share documents). The
        # other tokens of its folder hold the file as a sibling: it is the new one there.
        file_key = self.mirror.credential_file(*key)
        folder, name = posixpath.split(file_key) if file_key else ("", "")
        for other in list(self._credentials):
            other_file = self.mirror.credential_file(*other) if file_key else None
            if other == key or other_file is None:
                continue
            if other_file == file_key:
                self._credentials[other] = attrs.evolve(
                    stored, provider_type=other[0], uuid=other[1]
                )
            elif name in (held_other := self._credentials[other]).siblings and (
                posixpath.dirname(other_file) == folder
            ):
                siblings = {**held_other.siblings, name: stored.document}
                self._credentials[other] = attrs.evolve(held_other, siblings=siblings)
        log.info("credential %s/%s refreshed while degraded; journaled", *key)
        return version

    @hookimpl
    async def cfgstore_credentials_delete(self, provider_type: str, uuid: str) -> bool:
        existed: bool = await self._edit(
            "cfgstore_credentials_delete",
            "credential deletes are",
            provider_type=provider_type,
            uuid=uuid,
        )
        self._credentials.pop((provider_type, uuid), None)
        return existed

    @hookimpl
    async def cfgstore_credentials_list(self) -> list[CredentialRef]:
        if not self._replicator.serving_degraded:
            try:
                refs: list[CredentialRef] = await self._below["cfgstore_credentials_list"]()
                return refs
            except StorageUnavailable as exc:
                self._replicator.note_outage(exc)
        refs, files = [], set()
        for (provider_type, uuid), c in self._credentials.items():
            file_key = self.mirror.credential_file(provider_type, uuid)
            if file_key is None or file_key not in files:  # a shared credential once
                refs.append(CredentialRef(provider_type, uuid, c.source_path, c.version or ""))
            files.add(file_key)
        return refs

    @hookimpl
    async def cfgstore_credentials_lock(
        self, provider_type: str, uuid: str, ttl_ms: int
    ) -> str | None:
        """The shared lock normally; while degraded a lock of this process only (the
        service keeps refreshing; replay settles concurrent refreshes by expiry)."""
        if not self._replicator.serving_degraded:
            try:
                token: str | None = await self._below["cfgstore_credentials_lock"](
                    provider_type=provider_type, uuid=uuid, ttl_ms=ttl_ms
                )
                if token is not None:
                    # The holder is about to refresh: its next read is the stored truth,
                    # not a copy that may not have heard another instance's refresh yet.
                    self._stale_credentials.add((provider_type, uuid))
                return token
            except StorageUnavailable as exc:
                self._replicator.note_outage(exc)
        file_key = self.mirror.credential_file(provider_type, uuid)
        lock = ("file", file_key) if file_key else ("node", provider_type, uuid)
        held = self._local_locks.get(lock)
        if held is not None and held[1] > time.monotonic():
            return None
        token = "local-" + secrets.token_hex(16)
        self._local_locks[lock] = (token, time.monotonic() + ttl_ms / 1000)
        return token

    @hookimpl
    async def cfgstore_credentials_unlock(self, provider_type: str, uuid: str, token: str) -> bool:
        lock = next((k for k, (t, _) in self._local_locks.items() if t == token), None)
        if lock is not None:
            expiry = self._local_locks.pop(lock)[1]
            return expiry > time.monotonic()
        if self._replicator.serving_degraded:
            return False
        try:
            released: bool = await self._below["cfgstore_credentials_unlock"](
                provider_type=provider_type, uuid=uuid, token=token
            )
        except StorageUnavailable as exc:
            self._replicator.note_outage(exc)
            return False
        return released

    # -- leases -------------------------------------------------------------------------------

    @hookimpl
    async def cfgstore_lease_take(self, name: str, ttl_ms: int) -> str | None:
        """The storage's lease normally; while degraded (or when the storage below keeps
        none) a lease of this process only. A lease taken below drops the cached copies of
        the documents: the holder reads what an earlier holder wrote before releasing."""
        if not self._replicator.serving_degraded and "cfgstore_lease_take" in self._below:
            try:
                token: str | None = await self._below["cfgstore_lease_take"](
                    name=name, ttl_ms=ttl_ms
                )
            except StorageUnavailable as exc:
                self._replicator.note_outage(exc)
            else:
                if token is not None:
                    self.forget_cached()
                return token
        lease = ("lease", name)
        held = self._local_locks.get(lease)
        if held is not None and held[1] > time.monotonic():
            return None
        token = "local-" + secrets.token_hex(16)
        self._local_locks[lease] = (token, time.monotonic() + max(1, ttl_ms) / 1000)
        return token

    @hookimpl
    async def cfgstore_lease_release(self, name: str, token: str) -> bool:
        lease = ("lease", name)
        held = self._local_locks.get(lease)
        if held is not None and held[0] == token:
            del self._local_locks[lease]
            return held[1] > time.monotonic()
        if self._replicator.serving_degraded or "cfgstore_lease_release" not in self._below:
            return False
        try:
            released: bool = await self._below["cfgstore_lease_release"](name=name, token=token)
        except StorageUnavailable as exc:
            self._replicator.note_outage(exc)
            return False
        return released


def _handed_out_or_none(credential: Credential | None) -> Credential | None:
    return None if credential is None else _handed_out(credential)


def _handed_out(credential: Credential) -> Credential:
    """A credential held here, as a reader gets it: its own document and siblings
    mapping, the sibling *documents* shared (read-only by the
    :class:`~cfgstore.model.credentials.Credential` contract; never changed in place
    here): a read of a token of a 1,000-file Kiro folder copies one document, not the
    folder."""
    return attrs.evolve(
        credential, document=copy.deepcopy(credential.document), siblings=dict(credential.siblings)
    )


def _same_siblings(
    put: Mapping[str, Mapping[str, Any]], held: Mapping[str, Mapping[str, Any]]
) -> bool:
    """Whether a put leaves the siblings as held: none given (the stored ones are kept),
    or the same files with the same documents (the ones read, compared by identity
    first)."""
    if not put:
        return True
    if put.keys() != held.keys():
        return False
    return all(doc is held[name] or doc == held[name] for name, doc in put.items())
