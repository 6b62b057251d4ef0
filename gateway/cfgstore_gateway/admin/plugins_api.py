"""``GET /api/plugins`` and ``POST /api/plugins/{name}/toggle`` (``plugins.json``, US8), in
the Node service's shapes (``src/ui-modules/plugin-api.js``): a list of ``{"name",
"description", "enabled", ...}`` (the entry's other fields too), and a toggle that takes
``{"enabled": bool}`` (``400`` otherwise) and answers ``{"success", "message", "plugin":
{"name", "enabled"}}``.

The list holds the gateway's plugins (:mod:`cfgstore_gateway.plugin_runtime`, each with its
``priority`` and ``builtIn``; ``enabled`` as it stands, the plugin's default when
``plugins.json`` does not name it) and the file's other entries. An authenticating plugin
(``default-auth``, the client key check, or ``api-potluck``…) is not turned off while no
other one is enabled: ``400`` saying so (nothing would let a client in; two admins turning
off the last two at once still leave the gateway closed, never open). A name nothing
knows is stored as before (the Node UI may toggle a plugin this gateway does not run).
``GET /api/cfgstore/plugin-tabs`` lists the enabled plugins' console tabs.

A toggle is one store operation (``set_enabled``: atomic, other fields kept), so two
instances toggling different plugins lose neither change, and every instance sees it.
"""

from __future__ import annotations

import re

from aiohttp import web

from cfgstore_gateway.admin.http import invalid, read_json_object, success
from cfgstore_gateway.plugin_runtime import (
    PLUGINS,
    authenticates,
    is_built_in,
    priority_of,
)
from cfgstore_gateway.services import SERVICES

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@/-]{0,127}")


async def list_plugins(request: web.Request) -> web.StreamResponse:
    config = await request.config_dict[SERVICES].store.plugin_config.get()
    runtime = request.config_dict[PLUGINS]
    listed = []
    for plugin in runtime.plugins:
        entry = config.plugins.get(plugin.name, {})
        listed.append(
            {
                **entry,
                "name": plugin.name,
                "description": entry.get("description") or plugin.description,
                "enabled": (
                    config.is_enabled(plugin.name)
                    if plugin.name in config.plugins
                    else plugin.enabled_by_default is True
                ),
                "priority": priority_of(plugin),
                "builtIn": is_built_in(plugin),
            }
        )
    known = {plugin.name for plugin in runtime.plugins}
    listed += [
        {
            **entry,
            "name": name,
            "description": entry.get("description", ""),
            "enabled": config.is_enabled(name),
        }
        for name, entry in config.plugins.items()
        if name not in known
    ]
    return web.json_response({"plugins": listed})


async def console_tabs(request: web.Request) -> web.StreamResponse:
    return web.json_response({"tabs": request.config_dict[PLUGINS].console_tabs()})


async def toggle_plugin(request: web.Request) -> web.StreamResponse:
    store = request.config_dict[SERVICES].store
    name = request.match_info["name"]
    if not _NAME.fullmatch(name):
        raise invalid({"name": "expected a plugin name"})
    body = await read_json_object(request, optional=True)
    wanted = body.get("enabled")
    if not isinstance(wanted, bool):
        raise invalid({"enabled": "expected true or false"}, "Enabled status must be a boolean")
    runtime = request.config_dict[PLUGINS]
    plugin = runtime.get(name)
    if not wanted and plugin is not None and authenticates(plugin):
        config = await store.plugin_config.get()
        others = [
            p.name
            for p in runtime.plugins
            if p.name != name
            and authenticates(p)
            and (
                config.is_enabled(p.name)
                if p.name in config.plugins
                else p.enabled_by_default is True
            )
        ]
        if not others:
            raise invalid(
                {"enabled": "no other authenticating plugin is enabled"},
                f"{name} cannot be disabled while no other authenticating plugin is enabled "
                "(default-auth is the client API key check): no client could be let in",
            )
    await store.plugin_config.set_enabled(name, wanted)
    return success(
        message=f"Plugin {name} {'enabled' if wanted else 'disabled'} successfully",
        plugin={"name": name, "enabled": wanted},
    )
