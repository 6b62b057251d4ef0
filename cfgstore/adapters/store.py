"""The composite Store: what every consumer (gateway, cfgctl, tests) holds.

``async with Store.open(settings) as store:`` loads the plugins, builds the backend chain
the settings name, opens it, and exposes one typed facade per entity (``store.pools``,
``store.credentials``, ``store.config``…).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from cfgstore.adapters.chain import Chain, Layer, build_chain
from cfgstore.adapters.facades import (
    Config,
    Credentials,
    CustomModels,
    Meta,
    Password,
    PluginConfigs,
    Pools,
    Sessions,
    SystemPrompt,
    UsageCaches,
)
from cfgstore.adapters.plugins import PluginSet, make_plugin_manager
from cfgstore.adapters.settings import Settings
from cfgstore.model.status import BackendStatus

log = logging.getLogger("cfgstore.store")


class Store:
    """A built, opened backend chain. Create with :meth:`open`."""

    def __init__(self, settings: Settings, plugins: PluginSet, chain: Chain) -> None:
        self.settings = settings
        self.plugins = plugins
        self._chain = chain
        ops = chain.operations
        self.pools = Pools(ops)
        self.credentials = Credentials(ops)
        self.config = Config(ops)
        self.system_prompt = SystemPrompt(ops)
        self.custom_models = CustomModels(ops)
        self.sessions = Sessions(ops)
        self.password = Password(ops)
        self.usage_cache = UsageCaches(ops)
        self.plugin_config = PluginConfigs(ops)
        self.meta = Meta(ops)

    @property
    def backend_names(self) -> list[str]:
        """The chain, top first (e.g. ``["memory", "file"]``)."""
        return [layer.name for layer in self._chain.layers]

    @property
    def instance_id(self) -> str:
        return self._chain.instance_id

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        plugins: PluginSet | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> AsyncIterator[Store]:
        """Build and open a store; flush and close it on exit."""
        settings = settings or Settings.load(environ=environ)
        plugins = plugins or make_plugin_manager(environ)
        chain = build_chain(plugins.manager, settings)
        store = cls(settings, plugins, chain)
        opened: list[Layer] = []
        try:
            for layer in reversed(chain.layers):
                if "cfgstore_open" in layer.lifecycle:
                    await layer.lifecycle["cfgstore_open"]()
                opened.append(layer)
            yield store
        finally:
            await store._close(opened)

    async def flush(self) -> None:
        """Wait until every write accepted so far is durable in every layer."""
        for layer in self._chain.layers:
            if "cfgstore_flush" in layer.lifecycle:
                await layer.lifecycle["cfgstore_flush"]()

    async def status(self) -> list[BackendStatus]:
        """Each layer's status, top of the chain first."""
        out: list[BackendStatus] = []
        for layer in self._chain.layers:
            if "cfgstore_status" in layer.lifecycle:
                out.append(await layer.lifecycle["cfgstore_status"]())
        return out

    async def _close(self, opened: list[Layer]) -> None:
        for layer in self._chain.layers:
            if layer in opened and "cfgstore_close" in layer.lifecycle:
                try:
                    await layer.lifecycle["cfgstore_close"]()
                except Exception:
                    log.exception("closing backend %s failed", layer.name)
            self.plugins.manager.unregister(layer.instance)
