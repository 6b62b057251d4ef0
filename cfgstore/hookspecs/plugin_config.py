"""Plugin settings of the gateway (``plugins.json``, aiclient-formats §6.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.model.plugin_config import PluginConfig


@hookspec
async def cfgstore_plugin_config_get() -> PluginConfig:
    """Return every plugin entry in stored order (empty when nothing is stored)."""


@hookspec
async def cfgstore_plugin_config_put(config: PluginConfig) -> None:
    """Replace the whole plugin configuration atomically."""


@hookspec
async def cfgstore_plugin_config_set_enabled(name: str, enabled: bool) -> None:
    """Set ``enabled`` of one plugin, keeping its other fields; an unknown name is added
    with only ``enabled``. Atomic with respect to other plugins' toggles."""
