"""``GET /api/plugins`` and ``POST /api/plugins/{name}/toggle`` (``plugins.json``, US8), in
the Node service's shapes (``src/ui-modules/plugin-api.js``): a list of ``{"name",
"description", "enabled", ...}`` (the entry's other fields too), and a toggle that takes
``{"enabled": bool}`` (``400`` otherwise) and answers ``{"success", "message", "plugin":
{"name", "enabled"}}``.

A toggle is one store operation (``set_enabled``: atomic, other fields kept), so two
instances toggling different plugins lose neither change, and every instance sees it.
"""

from __future__ import annotations

import re

from aiohttp import web

from cfgstore_gateway.admin.http import invalid, read_json_object, success
from cfgstore_gateway.services import SERVICES

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@/-]{0,127}")


async def list_plugins(request: web.Request) -> web.StreamResponse:
    config = await request.config_dict[SERVICES].store.plugin_config.get()
    return web.json_response(
        {
            "plugins": [
                {
                    **entry,
                    "name": name,
                    "description": entry.get("description", ""),
                    "enabled": config.is_enabled(name),
                }
                for name, entry in config.plugins.items()
            ]
        }
    )


async def toggle_plugin(request: web.Request) -> web.StreamResponse:
    store = request.config_dict[SERVICES].store
    name = request.match_info["name"]
    if not _NAME.fullmatch(name):
        raise invalid({"name": "expected a plugin name"})
    body = await read_json_object(request, optional=True)
    wanted = body.get("enabled")
    if not isinstance(wanted, bool):
        raise invalid({"enabled": "expected true or false"}, "Enabled status must be a boolean")
    await store.plugin_config.set_enabled(name, wanted)
    return success(
        message=f"Plugin {name} {'enabled' if wanted else 'disabled'} successfully",
        plugin={"name": name, "enabled": wanted},
    )
