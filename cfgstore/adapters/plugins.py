"""The plugin manager: hookspecs, entry-point discovery and the environment controls.

``CFGSTORE_LOAD_PLUGINS`` (comma list) loads only the named entry points;
``CFGSTORE_DISABLE_PLUGINS`` blocks some; ``CFGSTORE_TRACE_PLUGINS=1`` logs every hook call.
A plugin that fails to import is recorded in :attr:`PluginSet.failures`, never fatal.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from importlib.metadata import entry_points

import attrs
import pluggy

from cfgstore.hookspecs import PROJECT, spec_modules

log = logging.getLogger("cfgstore.plugins")

ENTRY_POINT_GROUP = "cfgstore"


@attrs.frozen
class PluginFailure:
    name: str
    error: str


@attrs.define
class PluginSet:
    manager: pluggy.PluginManager
    failures: list[PluginFailure] = attrs.Factory(list)
    distributions: dict[str, tuple[str, str]] = attrs.Factory(dict)
    """Plugin name → (distribution name, version) for entry-point plugins."""


def make_plugin_manager(environ: Mapping[str, str] | None = None) -> PluginSet:
    """A fresh manager with every hookspec added and the entry-point plugins loaded."""
    env = os.environ if environ is None else environ
    manager = pluggy.PluginManager(PROJECT)
    for module in spec_modules():
        manager.add_hookspecs(module)
    allow = _names(env.get("CFGSTORE_LOAD_PLUGINS"))
    deny = _names(env.get("CFGSTORE_DISABLE_PLUGINS")) or set()
    plugins = PluginSet(manager)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if (allow is not None and ep.name not in allow) or ep.name in deny:
            continue
        if manager.has_plugin(ep.name):
            continue
        try:
            manager.register(ep.load(), name=ep.name)
            if ep.dist is not None:
                plugins.distributions[ep.name] = (ep.dist.name, ep.dist.version)
        except Exception as exc:  # a broken third-party plugin must not take cfgctl down
            log.warning("plugin %s failed to load: %s", ep.name, exc)
            plugins.failures.append(PluginFailure(ep.name, f"{type(exc).__name__}: {exc}"))
    manager.check_pending()
    if env.get("CFGSTORE_TRACE_PLUGINS"):
        manager.trace.root.setwriter(lambda message: log.info("%s", message.rstrip()))
        manager.enable_tracing()
    return plugins


def _names(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}
