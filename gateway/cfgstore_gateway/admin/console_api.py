"""``/api/cfgstore/pools…``: the console's view of big pools, paged by the server.

The Node-compatible ``/api/providers`` answers whole pools; at thousands of nodes a console
polling it every two seconds downloads megabytes per tab. These endpoints answer what the
console shows and nothing more, each with an ``ETag`` (``If-None-Match`` → ``304``, no
body, :mod:`~cfgstore_gateway.admin.conditional`) and compressed when large
(:mod:`~cfgstore_gateway.admin.compression`):

* ``GET /api/cfgstore/pools/summary``: per type (pool order) ``nodes``, ``healthy``,
  ``unhealthy``, ``disabled``, ``requestsLastHour``, ``errorsLastHour``; the same
  ``totals`` across types; ``lastHour`` says where the hourly figures come from and which
  window they cover (:mod:`~cfgstore_gateway.admin.last_hour`).
* ``GET /api/cfgstore/pools/{type}?q=&health=&sort=&order=&page=&per_page=``: one page of
  the type's nodes (secrets masked as in ``/api/providers``) with ``page``, ``perPage``, ``pages``,
  ``matched``, ``total`` and the type's ``counts`` by health
  (:mod:`~cfgstore_gateway.admin.pool_pages`). A type without nodes is an empty page.

Both read the live pools view (no copy of the pools), so a poll costs a pass over the
type's nodes and the serialisation of one page.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from cfgstore.model.pools import ProviderNode, node_to_json
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore_gateway.admin.conditional import json_with_etag
from cfgstore_gateway.admin.http import not_found
from cfgstore_gateway.admin.last_hour import LAST_HOUR, LastHour
from cfgstore_gateway.admin.masking import masked
from cfgstore_gateway.admin.pool_pages import health_of, parse_page_query, select_page
from cfgstore_gateway.services import SERVICES

_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A provider type id (as ``/api/providers/{type}`` takes it)."""
_COUNTS = ("nodes", "healthy", "unhealthy", "disabled", "requestsLastHour", "errorsLastHour")


async def pools_summary(request: web.Request) -> web.StreamResponse:
    pools = await request.config_dict[SERVICES].store.pools.view()
    last_hour = request.config_dict[LAST_HOUR].last_hour(pools, now_ms())
    types = [_type_summary(t, nodes, last_hour) for t, nodes in pools.items()]
    totals = {key: sum(entry[key] for entry in types) for key in _COUNTS}
    return json_with_etag(
        request,
        {
            "types": types,
            "totals": totals,
            "lastHour": {
                "source": last_hour.source,
                "since": iso_ms(last_hour.since_ms),
                "complete": last_hour.complete,
            },
        },
    )


async def pool_page(request: web.Request) -> web.StreamResponse:
    provider_type = request.match_info["type"]
    if not _TYPE.fullmatch(provider_type):
        raise not_found(f"Provider type {provider_type[:64]}")
    query = parse_page_query(request.query)
    pools = await request.config_dict[SERVICES].store.pools.view()
    nodes = pools.get(provider_type, ())
    page = select_page(nodes, query)
    return json_with_etag(
        request,
        {
            "type": provider_type,
            "nodes": [masked(node_to_json(n)) for n in page.nodes],
            "page": page.page,
            "perPage": query.per_page,
            "pages": page.pages,
            "matched": page.matched,
            "total": len(nodes),
            "counts": page.counts,
            "query": query.to_json(),
        },
    )


def _type_summary(
    provider_type: str, nodes: Sequence[ProviderNode], last_hour: LastHour
) -> dict[str, Any]:
    counts = {"healthy": 0, "unhealthy": 0, "disabled": 0}
    for node in nodes:
        counts[health_of(node)] += 1
    traffic = last_hour.by_type.get(provider_type)
    return {
        "type": provider_type,
        "nodes": len(nodes),
        **counts,
        "requestsLastHour": traffic.requests if traffic else 0,
        "errorsLastHour": traffic.errors if traffic else 0,
    }
