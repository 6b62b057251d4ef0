"""The file backend object: lifecycle, status and change detection.

Operations live in mixins, one module per entity group: :mod:`.pool_ops`,
:mod:`.credential_ops`, :mod:`.document_ops`, :mod:`.login_guard_ops` (in memory),
:mod:`.kept_file_ops`, :mod:`.traffic_ops`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cfgstore import hookimpl
from cfgstore.adapters.backend import BackendContext
from cfgstore.errors import InvalidData
from cfgstore.model.config import config_from_text
from cfgstore.model.events import ChangeEvent
from cfgstore.model.login_guard import LoginFailures
from cfgstore.model.pools import ProviderPools, cold_start
from cfgstore.model.status import BackendStatus, EntityCounts
from cfgstore.model.timefmt import now_ms
from cfgstore.model.versions import content_version
from cfgstore_file.atomic import LockDir, read_bytes
from cfgstore_file.coalescer import CoalescingWriter
from cfgstore_file.credential_ops import CredentialOps
from cfgstore_file.document_ops import DocumentOps
from cfgstore_file.documents import DocumentFile
from cfgstore_file.kept_file_ops import KeptFileOps
from cfgstore_file.layout import Layout
from cfgstore_file.lease_ops import LeaseOps
from cfgstore_file.login_guard_ops import LoginGuardOps
from cfgstore_file.plugin_log_ops import PluginLogOps
from cfgstore_file.pool_ops import PoolOps
from cfgstore_file.pools_file import PoolsFile
from cfgstore_file.potluck_ops import PotluckOps
from cfgstore_file.traffic_ops import TrafficOps
from cfgstore_file.usage_stats_ops import UsageStatsOps

log = logging.getLogger("cfgstore.file")


class FileBackend(
    PoolOps,
    CredentialOps,
    DocumentOps,
    LoginGuardOps,
    KeptFileOps,
    TrafficOps,
    LeaseOps,
    PotluckOps,
    UsageStatsOps,
    PluginLogOps,
):
    """Every storage operation on the AIClient-2-API folder layout.

    Pools live in memory and are written coalesced (debounce with a maximum wait); every
    other file is read when asked and written at once, always atomically, mode 0600, under
    a cross-process lock, with blocking work in worker threads. Another process's writes
    are noticed by polling file signatures every ``watch_interval_ms``.
    """

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.settings = context.settings
        self._watch_task: asyncio.Task[None] | None = None
        self._logins: dict[str, LoginFailures] = {}  # per process: login_guard_ops

    # -- lifecycle ---------------------------------------------------------------------

    @hookimpl
    async def cfgstore_open(self) -> None:
        settings = self.settings
        configs_dir = settings.configs_dir.absolute()
        if not await asyncio.to_thread(configs_dir.is_dir):
            exists = await asyncio.to_thread(configs_dir.exists)
            problem = "is a file, not a folder" if exists else "does not exist"
            raise InvalidData(str(configs_dir), "folder", f"the configs folder {problem}")
        config_file = configs_dir / "config.json"
        raw = await asyncio.to_thread(read_bytes, config_file)
        config = config_from_text(
            raw if raw is not None else b"{}", str(config_file), content_version(raw or b"")
        )
        self.layout = Layout.build(configs_dir, settings.working_dir, config)
        self.locks = LockDir(self.layout.locks)
        self.docs = {
            entity: DocumentFile(getattr(self.layout, entity), self.locks)
            for entity in (
                "config",
                "custom_models",
                "system_prompt",
                "password",
                "sessions",
                "usage_cache",
                "plugins",
                "meta",
            )
        }
        self.pools_file = PoolsFile(self.layout.pools, self.locks)
        await self.pools_file.load()
        if settings.reset_counters_on_start and self.pools_file.seen is not None:
            await self.pools_file.flush(_cold_start_all)
        self.writer = CoalescingWriter(
            self._flush_pools,
            settings.write_debounce_ms / 1000,
            settings.write_max_wait_ms / 1000,
        )
        await self._open_potluck(
            configs_dir,
            self.locks,
            settings.write_debounce_ms / 1000,
            settings.write_max_wait_ms / 1000,
        )
        for doc in self.docs.values():
            await doc.changed_on_disk()
        if settings.watch_interval_ms > 0:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch())

    @hookimpl
    async def cfgstore_flush(self) -> None:
        await self.writer.durable()
        await self.potluck_writer.durable()
        await self.plugin_logs_durable()

    @hookimpl
    async def cfgstore_close(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        try:
            try:
                await self.potluck_writer.close()
            finally:
                await self.writer.close()
        finally:
            await self.plugin_logs_close()

    @hookimpl
    async def cfgstore_status(self) -> BackendStatus:
        pools = self.pools_file.view
        plugins = await self.cfgstore_plugin_config_get()
        return BackendStatus(
            name="file",
            location=str(self.layout.configs_dir),
            mode="file",
            counts=EntityCounts(
                provider_types=len(pools.types),
                nodes=pools.node_count(),
                healthy_nodes=sum(1 for _, n in pools if n.state.is_healthy),
                credentials=len(await self.cfgstore_credentials_list()),
                sessions=await self.cfgstore_sessions_count(now_ms()),
                plugins=len(plugins.plugins),
                custom_models=len(await self.cfgstore_custom_models_list()),
            ),
            details={
                "working directory": str(self.layout.cwd),
                "provider pools": str(self.layout.pools),
                **{k: v for k, v in (await self.cfgstore_meta_get()).items() if k == "schema"},
            },
        )

    # -- change detection --------------------------------------------------------------

    def _publish(self, entity: str, *ids: str, remote: bool = False) -> None:
        self.context.publish(
            ChangeEvent(entity, tuple(ids), origin=self.context.instance_id, remote=remote)
        )

    async def _watch(self) -> None:
        interval = self.settings.watch_interval_ms / 1000
        entity_of = {"plugins": "plugin_config"}
        while True:
            await asyncio.sleep(interval)
            try:
                if await self.pools_file.reload_if_changed():
                    self._publish("pools", remote=True)
                await self.potluck_file.reload_if_changed()
                for name, doc in self.docs.items():
                    if await doc.changed_on_disk():
                        self._publish(entity_of.get(name, name), remote=True)
            except Exception as exc:  # keep watching; the next read reports the problem
                log.warning("watching %s failed: %s", self.layout.configs_dir, exc)


def _cold_start_all(pools: ProviderPools) -> None:
    for _, node in pools:
        cold_start(node)
