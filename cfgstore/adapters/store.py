"""The composite Store: what every consumer (gateway, cfgctl, tests) holds.

``async with Store.open(settings) as store:`` loads the plugins, builds the backend chain
the settings name, opens it, and exposes one typed facade per entity (``store.pools``,
``store.credentials``, ``store.config``…).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import attrs

from cfgstore.adapters.chain import Chain, Layer, build_chain
from cfgstore.adapters.facades import (
    Config,
    Credentials,
    CustomModels,
    KeptFiles,
    Leases,
    Logins,
    Meta,
    Password,
    PluginConfigs,
    Pools,
    Potluck,
    Replicas,
    Sessions,
    SystemPrompt,
    UsageCaches,
)
from cfgstore.adapters.plugin_logs import PluginLogs
from cfgstore.adapters.plugins import PluginSet, make_plugin_manager
from cfgstore.adapters.settings import DEFAULT_FILE_CHAIN, Settings
from cfgstore.adapters.traffic import Traffic
from cfgstore.adapters.usage_stats import UsageStats
from cfgstore.errors import CfgStoreError, NotInitialised, StorageUnavailable
from cfgstore.model.status import BackendStatus, EntityCounts

log = logging.getLogger("cfgstore.store")

_BUILDING = threading.Lock()


def _build_chain_locked(plugins: PluginSet, settings: Settings) -> Chain:
    with _BUILDING:
        return build_chain(plugins, settings)


class Store:
    """A built, opened backend chain. Create with :meth:`open`."""

    def __init__(self, settings: Settings, plugins: PluginSet, chain: Chain) -> None:
        self.settings = settings
        self.plugins = plugins
        self._chain = chain
        self._announced_id: str | None = None
        ops = chain.operations
        self.pools = Pools(ops)
        self.credentials = Credentials(ops)
        self.config = Config(ops)
        self.system_prompt = SystemPrompt(ops)
        self.custom_models = CustomModels(ops)
        self.sessions = Sessions(ops)
        self.logins = Logins(ops)
        self.password = Password(ops)
        self.usage_cache = UsageCaches(ops)
        self.plugin_config = PluginConfigs(ops)
        self.meta = Meta(ops)
        self.replicas = Replicas(ops)
        self.kept_files = KeptFiles(ops)
        self.traffic = Traffic(ops)
        self.potluck = Potluck(ops)
        self.leases = Leases(ops)
        self.usage_stats = UsageStats(ops)
        self.plugin_logs = PluginLogs(ops)

    @property
    def backend_names(self) -> list[str]:
        """The chain, top first (e.g. ``["memory", "file"]``)."""
        return [layer.name for layer in self._chain.layers]

    @property
    def instance_id(self) -> str:
        """This instance's id: the one its heartbeat announces when a layer keeps one (the
        memory fallback's, persistent in its state directory; status detail
        ``instance id``), else the chain's own for this process. ``/health``, the storage
        status and the instances list all name the instance by it."""
        return self._announced_id or self._chain.instance_id

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        plugins: PluginSet | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Store]:
        """Build and open a store; flush and close it on exit.

        When the default chain finds its Redis namespace empty and never used by this
        instance (:class:`~cfgstore.errors.NotInitialised`), the store warns, naming
        ``cfgctl migrate`` and ``cfgctl init``, and serves from the files instead (a chain
        named explicitly in the settings fails instead)."""
        settings = settings or Settings.load(environ=environ)
        if plugins is None:
            # Off the loop: it reads every installed distribution's metadata and imports
            # the plugins (15 ms warm, ~0.9 s on a process's first open).
            plugins = await asyncio.to_thread(make_plugin_manager, environ)
        try:
            store = await cls._open_chain(settings, plugins)
        except NotInitialised as exc:
            if settings.backends is not None:
                raise
            log.warning("%s. Serving from the files in %s until then.", exc, settings.configs_dir)
            store = await cls._open_chain(
                attrs.evolve(settings, backends=DEFAULT_FILE_CHAIN), plugins
            )
        try:
            yield store
        finally:
            try:
                await store.traffic.close()
                await store.usage_stats.close()
            finally:
                await store._close(store._chain.layers)

    @classmethod
    async def _open_chain(cls, settings: Settings, plugins: PluginSet) -> Store:
        # Off the loop: instantiating the backends and pluggy's registration (each hookimpl
        # looked up with inspect.getattr_static, then validated) took one 15-25 ms loop
        # turn. The backends' constructors create no loop-bound objects (they connect in
        # cfgstore_open); one build at a time per process, as pluggy's registry is shared.
        try:
            chain = await asyncio.to_thread(_build_chain_locked, plugins, settings)
        except RuntimeError as exc:
            if "event loop" not in str(exc):
                raise
            chain = build_chain(plugins, settings)  # a factory wants the loop: build here
        store = cls(settings, plugins, chain)
        opened: list[Layer] = []
        try:
            for layer in reversed(chain.layers):
                if "cfgstore_open" in layer.lifecycle:
                    await layer.lifecycle["cfgstore_open"]()
                opened.append(layer)
            store._announced_id = await store._announced_instance_id()
        except BaseException:
            await store._close(opened)
            raise
        return store

    async def _announced_instance_id(self) -> str | None:
        """The ``instance id`` the top reporting layer states (read once: it never changes
        while the store is open)."""
        with contextlib.suppress(CfgStoreError):
            for status in await self.top_status():
                announced = status.details.get("instance id")
                if announced:
                    return announced
        return None

    async def flush(self) -> None:
        """Wait until every write accepted so far is durable in every layer (the traffic
        tally is handed over first)."""
        await self.traffic.flush()
        await self.usage_stats.flush()
        for layer in self._chain.layers:
            if "cfgstore_flush" in layer.lifecycle:
                await layer.lifecycle["cfgstore_flush"]()

    async def status(self) -> list[BackendStatus]:
        """Each layer's status, top of the chain first. A layer whose storage cannot
        answer is reported ``unreachable`` with the error, not raised."""
        return [await _layer_status(layer) for layer in self._reporting_layers()]

    async def top_status(self) -> list[BackendStatus]:
        """The status of the top layer that reports one (a list of at most one, shaped
        like :meth:`status`). The top layer answers from what it holds, so this is what
        frequent, unauthenticated callers (``/health``, ``/metrics``) may ask: it does not
        make the shared storage below count nodes on every call."""
        return [await _layer_status(layer) for layer in self._reporting_layers()[:1]]

    def _reporting_layers(self) -> list[Layer]:
        return [layer for layer in self._chain.layers if "cfgstore_status" in layer.lifecycle]

    async def _close(self, opened: list[Layer]) -> None:
        """Close the opened layers, top first, and unregister every layer of the chain."""
        for layer in self._chain.layers:
            if layer in opened and "cfgstore_close" in layer.lifecycle:
                try:
                    await layer.lifecycle["cfgstore_close"]()
                except Exception:
                    log.exception("closing backend %s failed", layer.name)
            self.plugins.manager.unregister(layer.instance)


async def _layer_status(layer: Layer) -> BackendStatus:
    try:
        status: BackendStatus = await layer.lifecycle["cfgstore_status"]()
    except StorageUnavailable as exc:
        return BackendStatus(layer.name, "", "unreachable", EntityCounts(), (str(exc),))
    return status
