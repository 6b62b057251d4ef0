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
* ``POST /api/cfgstore/pools/poll``: the console's poll, one exchange for the summary and
  every page it shows, answering only what changed (``204`` when nothing did; see
  :func:`pools_poll`). A quiet poll then costs one small answer whatever the number of
  types.
* ``GET /api/cfgstore/storage/mode``: the storage mode for the pill and the banner
  (:func:`storage_mode`).

Both read the live pools view (no copy of the pools), so a poll costs a pass over the
type's nodes and the serialisation of one page.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from cfgstore.model.pools import ProviderNode, node_to_json
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore_gateway.admin.conditional import encoded, json_with_etag
from cfgstore_gateway.admin.http import ApiError, invalid, not_found, read_json_object
from cfgstore_gateway.admin.last_hour import LAST_HOUR, LastHour
from cfgstore_gateway.admin.masking import masked
from cfgstore_gateway.admin.pool_pages import PageQuery, health_of, parse_page_query, select_page
from cfgstore_gateway.admin.storage_api import DEGRADED_MODES, STATUS_TIMEOUT_S
from cfgstore_gateway.services import SERVICES

_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A provider type id (as ``/api/providers/{type}`` takes it)."""
_COUNTS = ("nodes", "healthy", "unhealthy", "disabled", "requestsLastHour", "errorsLastHour")


async def pools_summary(request: web.Request) -> web.StreamResponse:
    pools = await request.config_dict[SERVICES].store.pools.view()
    return json_with_etag(request, await _summary(request, pools))


async def pool_page(request: web.Request) -> web.StreamResponse:
    provider_type = request.match_info["type"]
    if not _TYPE.fullmatch(provider_type):
        raise not_found(f"Provider type {provider_type[:64]}")
    query = parse_page_query(request.query)
    pools = await request.config_dict[SERVICES].store.pools.view()
    return json_with_etag(request, _page(provider_type, query, pools))


async def pools_poll(request: web.Request) -> web.StreamResponse:
    """``POST /api/cfgstore/pools/poll``: what changed of everything a console shows, in
    one exchange. The body names the summary's tag and each shown page (``type``, its
    query fields, its ``etag``); the answer holds only the parts whose tag differs
    (``summary`` with its ``etag``, ``pages``: each with its ``etag``), or is ``204``
    without a body when nothing did. The tags are those of the ``GET`` answers."""
    summary_tag, watched = _watched(await read_json_object(request, limit=POLL_BODY_MAX))
    pools = await request.config_dict[SERVICES].store.pools.view()
    answer: dict[str, Any] = {}
    summary = await _summary(request, pools)
    tag = encoded(summary)[1]
    if tag != summary_tag:
        answer["summary"] = {**summary, "etag": tag}
    pages = []
    for provider_type, query, page_tag in watched:
        page = _page(provider_type, query, pools)
        tag = encoded(page)[1]
        if tag != page_tag:
            pages.append({**page, "etag": tag})
    if not answer and not pages:
        return web.Response(status=204)
    return web.json_response({**answer, "pages": pages})


async def storage_mode(request: web.Request) -> web.StreamResponse:
    """``GET /api/cfgstore/storage/mode``: ``{"mode", "degraded", "degradedSince",
    "journalDepth"}`` from the top layer
    alone (it answers from memory), for the console's pill and banner on every tab. The
    full ``/api/storage/status`` asks every layer, and the shared storage then reads every
    node and credential (seconds at thousands of nodes): the console asks it only while
    the Storage tab is open."""
    store = request.config_dict[SERVICES].store
    async with asyncio.timeout(STATUS_TIMEOUT_S):
        statuses = await store.top_status()
    mode = statuses[0].mode if statuses else "unknown"
    details = statuses[0].details if statuses else {}
    depth = details.get("journal depth")
    return json_with_etag(
        request,
        {
            "mode": mode,
            "degraded": mode in DEGRADED_MODES,
            # For the degraded banner: since when, and what waits to be replayed.
            "degradedSince": details.get("degraded since"),
            "journalDepth": int(depth) if depth and depth.isdigit() else 0,
        },
    )


POLL_BODY_MAX = 64 * 1024
POLL_PAGES_MAX = 100
_QUERY_FIELDS = ("q", "health", "sort", "order", "page", "per_page")


def _watched(body: dict[str, Any]) -> tuple[str | None, list[tuple[str, PageQuery, str | None]]]:
    """The poll body's summary tag and shown pages; ``400`` naming what is wrong."""
    summary_tag = body.get("summary")
    if summary_tag is not None and not isinstance(summary_tag, str):
        raise invalid({"summary": "expected the summary's ETag (a string) or null"})
    shown = body.get("pages", [])
    if not isinstance(shown, list) or len(shown) > POLL_PAGES_MAX:
        raise invalid({"pages": f"expected a list of at most {POLL_PAGES_MAX} pages"})
    watched = []
    for index, entry in enumerate(shown):
        where = f"pages[{index}]"
        if not isinstance(entry, dict):
            raise invalid({where: "expected an object (type, query fields, etag)"})
        provider_type, tag = entry.get("type"), entry.get("etag")
        if not isinstance(provider_type, str) or not _TYPE.fullmatch(provider_type):
            raise invalid({f"{where}.type": "expected a provider type id"})
        if tag is not None and not isinstance(tag, str):
            raise invalid({f"{where}.etag": "expected the page's ETag (a string) or null"})
        params = {k: str(entry[k]) for k in _QUERY_FIELDS if entry.get(k) is not None}
        try:
            query = parse_page_query(params)
        except ApiError as exc:
            raise invalid({f"{where}.{k}": v for k, v in exc.fields.items()}) from None
        watched.append((provider_type, query, tag))
    return summary_tag, watched


async def _summary(
    request: web.Request, pools: Mapping[str, Sequence[ProviderNode]]
) -> dict[str, Any]:
    last_hour = await request.config_dict[LAST_HOUR].last_hour(pools, now_ms())
    types = [_type_summary(t, nodes, last_hour) for t, nodes in pools.items()]
    return {
        "types": types,
        "totals": {key: sum(entry[key] for entry in types) for key in _COUNTS},
        "lastHour": {
            "source": last_hour.source,
            "since": iso_ms(last_hour.since_ms) if last_hour.since_ms is not None else None,
            "complete": last_hour.complete,
        },
    }


def _page(
    provider_type: str, query: PageQuery, pools: Mapping[str, Sequence[ProviderNode]]
) -> dict[str, Any]:
    nodes = pools.get(provider_type, ())
    page = select_page(nodes, query)
    return {
        "type": provider_type,
        "nodes": [masked(node_to_json(n)) for n in page.nodes],
        "page": page.page,
        "perPage": query.per_page,
        "pages": page.pages,
        "matched": page.matched,
        "total": len(nodes),
        "counts": page.counts,
        "query": query.to_json(),
    }


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
