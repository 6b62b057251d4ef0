"""``GET /api/adapters``: which adapter serves each pool type, and the types and nodes this
gateway does not serve ("no adapter installed", :mod:`cfgstore_gateway.serviceability`).

Answer: ``{"types": {"<type>": {"adapter": name | null, "served": bool, "reason": str |
null, "unservedNodes": [uuid, ...]}}}`` for every pool type, in pool order. The console
marks the types not served; health checks, refresh and selection leave their nodes alone.
"""

from __future__ import annotations

from aiohttp import web

from cfgstore_gateway.serviceability import type_report
from cfgstore_gateway.services import SERVICES


async def adapters(request: web.Request) -> web.StreamResponse:
    services = request.config_dict[SERVICES]
    pools = await services.store.pools.view()
    config = await services.config.get()
    return web.json_response({"types": type_report(services.registry, pools, config)})
