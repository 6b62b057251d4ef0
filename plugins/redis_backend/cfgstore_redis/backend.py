"""The Redis backend object: connection, lifecycle, change feed, status.

Operations live in mixins: :mod:`.pool_ops`, :mod:`.credential_ops`,
:mod:`.document_ops`, :mod:`.login_guard_ops`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from cfgstore import hookimpl
from cfgstore.adapters.backend import BackendContext
from cfgstore.errors import CfgStoreError, StorageUnavailable
from cfgstore.model.events import ENTITIES, ChangeEvent
from cfgstore.model.status import BackendStatus, EntityCounts
from cfgstore.model.timefmt import now_ms
from cfgstore_redis import lua
from cfgstore_redis.batch import encode, touched_nodes
from cfgstore_redis.connection import RedisConnection, build_connection, connect
from cfgstore_redis.keys import Keys
from cfgstore_redis.lease_ops import LeaseOps
from cfgstore_redis.login_guard_ops import LoginGuardOps
from cfgstore_redis.plugin_log_ops import PluginLogOps
from cfgstore_redis.potluck_ops import PotluckOps
from cfgstore_redis.replica_ops import ReplicaOps
from cfgstore_redis.traffic_ops import TrafficOps
from cfgstore_redis.translate import translated
from cfgstore_redis.usage_stats_ops import UsageStatsOps
from cfgstore_redis.writer import GroupCommitWriter

log = logging.getLogger("cfgstore.redis")


RESUBSCRIBE_DELAYS_S = (0.1, 0.5, 1.0, 2.0, 5.0)
UNKNOWN = "unknown"
"""A server fact (version, memory policy) in a status when the server will not tell."""


class RedisBackend(
    ReplicaOps, LoginGuardOps, TrafficOps, LeaseOps, UsageStatsOps, PluginLogOps, PotluckOps
):
    """Every storage operation on Redis; key schema in ``redis-keys.md``."""

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.settings = context.settings
        self.keys = Keys(self.settings.redis_prefix)
        self.origin = context.instance_id
        self.warnings: list[str] = []
        self._feed_task: asyncio.Task[None] | None = None
        self._feed_revision = 0  # the last revision the change feed carried
        self.sibling_folders = {}

    # -- lifecycle ---------------------------------------------------------------------

    @hookimpl
    async def cfgstore_open(self) -> None:
        """Connect and check the namespace. With a memory fallback above, an unreachable
        server is not fatal: the backend opens unconnected (commands reconnect) and the
        fallback decides how to start (DESIGN §3)."""
        reachable = True
        try:
            self.connection: RedisConnection = await connect(self.settings, decode_responses=True)
        except StorageUnavailable:
            if not self.context.fallback_above:
                raise
            self.connection = build_connection(self.settings, decode_responses=True)
            reachable = False
        self.redis: Any = self.connection.client
        self.scripts = {
            name: self.redis.register_script(getattr(lua, name))
            for name in (
                "APPLY_RECORDS",
                "FORGET_EPOCHS",
                "ADD_NODE",
                "UPDATE_NODE",
                "DELETE_NODE",
                "RENAME_NODE",
                "DELETE_TYPE",
                "SET_DISABLED",
                "TYPE_HEALTH",
                "CAS_DOCUMENT",
                "CAS_CREDENTIAL",
                "DELETE_CREDENTIAL",
                "LOCK_CREDENTIAL",
                "SET_VALUE",
                "DELETE_KEYS",
                "USAGE_PUT_TYPE",
                "REPLACE_HASH",
                "RELEASE_LOCK",
                "IMPORT_POOLS",
                "LOGIN_FAILURE",
                "LOGIN_ATTEMPT",
                "DELETE_SESSIONS_EXCEPT",
                "UPGRADE_NODE",
                "UPGRADE_SIBLINGS",
                "FINISH_UPGRADE",
                "TRAFFIC_ADD",
                *(
                    name
                    for name in dir(lua)
                    if name.startswith("POTLUCK_") and name != "POTLUCK_PRELUDE"
                ),
                "USAGE_STATS_ADD",
                "USAGE_STATS_RESET_TOKENS",
            )
        }
        self.writer = GroupCommitWriter(self._send_records)  # the schema upgrade reads pools
        self._start_traffic()
        self._start_potluck()
        self._start_usage_stats()
        if reachable:
            try:
                await self._check_schema()
            except CfgStoreError:  # a newer schema, or the storage failing mid-upgrade
                await self.connection.close()
                raise
            self.warnings = await self.connection.server_warnings()
            for warning in self.warnings:
                log.warning("%s", warning)
        self._feed_ready = asyncio.Event()
        self._feed_task = asyncio.get_running_loop().create_task(self._follow_feed())
        if reachable:
            await asyncio.wait_for(
                self._feed_ready.wait(), self.settings.redis_connect_timeout_ms / 1000 + 5
            )

    @hookimpl
    async def cfgstore_flush(self) -> None:
        await self.writer.durable()
        try:
            await self.traffic_writer.durable()
            await self.potluck_writer.durable()
            await self.usage_writer.durable()
        except StorageUnavailable:
            # Above a memory fallback a flush succeeds through an outage (the records are
            # in its journal); traffic counts wait in memory for Redis instead.
            if not self.context.fallback_above:
                raise

    @hookimpl
    async def cfgstore_close(self) -> None:
        try:
            await self.admissions.close()
            try:
                async with asyncio.timeout(self.settings.redis_socket_timeout_ms / 1000 * 3):
                    await self._close_traffic()
                    await self._close_potluck()
            except (CfgStoreError, TimeoutError) as exc:
                log.error("closing with traffic or potluck counts not stored in Redis: %s", exc)
            try:
                async with asyncio.timeout(self.settings.redis_socket_timeout_ms / 1000 * 3):
                    await self._close_usage_stats()
            except (CfgStoreError, TimeoutError) as exc:
                log.error("closing with usage statistics not stored in Redis: %s", exc)
            await self.writer.close()
            if self.writer.batches:
                await self._forget_writer()
        finally:
            if self._feed_task is not None:
                self._feed_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._feed_task
            await self.connection.close()

    async def _forget_writer(self) -> None:
        """Remove the closed writer's batch mark: its id is never used again, and leaving
        it would add one mark per process start. Best effort (a crash leaves it too)."""
        with contextlib.suppress(CfgStoreError), translated(self.connection):
            await self.redis.hdel(self.keys.batches, self.writer.ids.instance)

    @hookimpl
    async def cfgstore_status(self) -> BackendStatus:
        pools = await self.cfgstore_pools_list()
        with translated(self.connection):
            sessions = await self.redis.zcount(self.keys.sessions, now_ms(), "+inf")
            models = await self.cfgstore_custom_models_list()
            plugins = await self.cfgstore_plugin_config_get()
            credentials = await self.cfgstore_credentials_list()
        warnings = list(self.warnings)
        if self.writer.last_error is not None:
            warnings.append(f"hot-path writes are failing: {self.writer.last_error}")
        return BackendStatus(
            name="redis",
            location=self.connection.describe(),
            mode="redis",
            counts=EntityCounts(
                provider_types=len(pools.types),
                nodes=pools.node_count(),
                healthy_nodes=sum(1 for _, n in pools if n.state.is_healthy),
                credentials=len(credentials),
                sessions=int(sessions),
                plugins=len(plugins.plugins),
                custom_models=len(models),
            ),
            warnings=tuple(warnings),
            details=await self._server_details(),
        )

    async def _server_details(self) -> dict[str, str]:
        details = {
            "redis version": await self._server_fact(self.connection.server_version),
            "maxmemory-policy": await self._server_fact(self.connection.maxmemory_policy),
        }
        meta = await self.cfgstore_meta_get()
        for key, label in (
            ("schema", "schema"),
            ("namespace", "namespace id"),
            ("initialized_at", "initialised"),
            ("migrated_at", "last migration"),
        ):
            if key in meta:
                details[label] = meta[key]
        return details

    async def _server_fact(self, read: Callable[[], Awaitable[str | None]]) -> str:
        """What ``read`` finds out about the server, or ``unknown`` when the server will not
        tell (``INFO`` refused by an ACL or a provider, a cluster node away): a status says
        so rather than fail or leave the fact out. Why is in the start-up warnings."""
        try:
            with translated(self.connection):
                value = await read()
        except CfgStoreError:
            return UNKNOWN
        return value or UNKNOWN

    # -- helpers for the operation mixins ------------------------------------------------

    async def _send_records(self, records: Sequence[Any], op_id: str) -> None:
        ids = touched_nodes(records)
        script_keys, args = encode(records, self.keys, op_id, self._head("pools", *ids))
        await self._run("APPLY_RECORDS", script_keys, args)
        self._changed("pools", *ids)

    # -- change feed -------------------------------------------------------------------

    async def _follow_feed(self) -> None:
        """Relay other instances' change messages as remote events. After a reconnect
        every entity is announced changed: messages may have been missed."""
        failures = 0
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.keys.channel)
                if failures:
                    log.info("change feed re-established after %d failures", failures)
                    self._feed_revision = 0
                    self._announce_all()
                failures = 0
                self._feed_ready.set()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self._relay(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = RESUBSCRIBE_DELAYS_S[min(failures, len(RESUBSCRIBE_DELAYS_S) - 1)]
                failures += 1
                log.warning("change feed lost (%s); resubscribing in %.1fs", exc, delay)
                self._feed_ready.set()  # start-up must not hang on the feed
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _relay(self, data: Any) -> None:
        """Announce another instance's change; when the revision shows that messages were
        missed (a gap), announce every entity changed instead."""
        try:
            message = json.loads(data)
            revision = int(message.get("rev", 0))
            previous, self._feed_revision = self._feed_revision, max(self._feed_revision, revision)
            if previous and revision > previous + 1:
                log.info("change feed skipped revisions %d..%d", previous + 1, revision - 1)
                self._announce_all()
                return
            if message.get("origin") == self.origin:
                return
            event = ChangeEvent(
                str(message["entity"]),
                tuple(str(i) for i in message.get("ids", ())),
                origin=str(message.get("origin", "")),
                remote=True,
            )
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed change message: %r", data)
            return
        self.context.publish(event)

    def _announce_all(self) -> None:
        """Every entity may have changed (messages were missed): caches resync in full."""
        for entity in ENTITIES:
            self.context.publish(ChangeEvent(entity, (), remote=True))
