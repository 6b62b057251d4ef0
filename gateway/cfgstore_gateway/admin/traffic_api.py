"""``GET /api/cfgstore/traffic?range=hour|day``: requests, errors and latency per provider
type, summed over every instance on the storage, as series a chart draws.

``hour`` (the default): 60 points of one minute ending with the current minute; ``day``:
96 points of 15 minutes ending with the current quarter hour. The answer::

    {"range": "hour", "stepMs": 60000, "points": 60, "start": <epoch ms of the first point>,
     "available": true,
     "types": {"<type>": {"requests": [...], "errors": [...], "meanMs": [... | null],
                          "p95Ms": [... | null], "totals": {"requests", "errors", "meanMs",
                          "p95Ms"}}}}

``available`` is false on a store whose backend keeps no traffic (``types`` is empty).
p95 is an estimate: the upper bound of the latency histogram bin holding it
(:data:`cfgstore.model.traffic.LATENCY_BOUNDS_MS`). A storage that cannot answer is a 503
(the admin middleware's storage error).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cfgstore.model.timefmt import now_ms
from cfgstore.model.traffic import MINUTE_MS, series, totals_by_type
from cfgstore_gateway.admin.http import invalid
from cfgstore_gateway.services import SERVICES

RANGES = {"hour": (MINUTE_MS, 60), "day": (15 * MINUTE_MS, 96)}
"""Range name → (step ms, points)."""


async def traffic(request: web.Request) -> web.StreamResponse:
    name = request.query.get("range", "hour")
    if name not in RANGES:
        raise invalid({"range": "must be hour or day"}, f"Unknown range {name[:32]!r}")
    step, points = RANGES[name]
    now = now_ms()
    start = now - now % step - (points - 1) * step
    store = request.config_dict[SERVICES].store
    counts = await store.traffic.read(start)
    types: dict[str, Any] = {}
    totals = totals_by_type(counts)
    for provider_type, row in series(counts, start, step, points).items():
        types[provider_type] = {
            "requests": [t.requests for t in row],
            "errors": [t.errors for t in row],
            "meanMs": [round(t.mean_ms, 1) if t.mean_ms is not None else None for t in row],
            "p95Ms": [t.p95_ms for t in row],
            "totals": totals[provider_type].to_json(),
        }
    return web.json_response(
        {
            "range": name,
            "stepMs": step,
            "points": points,
            "start": start,
            "available": store.traffic.available,
            "types": types,
        }
    )
