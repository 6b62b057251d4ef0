"""The usage routes (US7, aiclient-protocols §4.1, aiclient-formats §6.3), in the Node
service's shapes (``src/ui-modules/usage-api.js``):

* ``GET /api/usage[?refresh=true]``: the whole stored cache, shared by every instance,
  with ``fromCache: true``; ``?refresh=true``, or no cache yet, refreshes every type first.
* ``GET /api/usage/{type}[?refresh=true]``: one type's entry (``cachedAt``, the cache's
  time, and ``fromCache: true`` when read), refreshed first when asked or absent (``404``
  for a type without nodes).
* ``GET /api/usage/{type}/{uuid}``: always asks that node afresh, patches its instance
  into the type's entry (counts recomputed) and answers the instance (``404`` for an
  absent node).
* ``GET /api/usage/supported-providers``: the types whose adapter reports quotas (its
  optional ``usage``), a JSON array.

Every answer but the last carries ``serverTime`` (ISO) and no-cache headers. Refreshing
asks the upstreams of quota types and counts the others from the gateway's own counters;
it runs once for all instances (:mod:`cfgstore_gateway.usage_quotas`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from cfgstore.errors import NotFound
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore_gateway.admin.http import not_found
from cfgstore_gateway.services import SERVICES
from cfgstore_gateway.usage_quotas import QUOTAS, UsageQuotas

_NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate"}


def _quotas(request: web.Request) -> UsageQuotas:
    quotas = request.config_dict.get(QUOTAS)
    if quotas is None:  # an application not started through its cleanup context
        quotas = UsageQuotas(request.config_dict[SERVICES])
    return quotas


async def usage(request: web.Request) -> web.StreamResponse:
    store = request.config_dict[SERVICES].store
    cache = None if _refresh_asked(request) else await store.usage_cache.get()
    from_cache = cache is not None
    if cache is None:
        await _quotas(request).refresh_all()
        cache = await store.usage_cache.get()
    answer = cache.to_json() if cache is not None else {"timestamp": None, "providers": {}}
    return _answer(answer, from_cache)


async def usage_of_type(request: web.Request) -> web.StreamResponse:
    store = request.config_dict[SERVICES].store
    provider_type = request.match_info["type"]
    entry = None
    cache = None
    if not _refresh_asked(request):
        cache = await store.usage_cache.get()
        entry = cache.providers.get(provider_type) if cache is not None else None
    from_cache = isinstance(entry, dict)
    if not from_cache:
        try:
            await _quotas(request).refresh_type(provider_type)
        except NotFound:
            raise not_found(f"Provider type {provider_type[:64]}") from None
        cache = await store.usage_cache.get()
        entry = cache.providers.get(provider_type) if cache is not None else None
    if not isinstance(entry, dict):
        raise not_found(f"Usage of {provider_type[:64]}")
    answer = dict(entry)
    if from_cache and cache is not None:
        answer["cachedAt"] = cache.timestamp
    return _answer(answer, from_cache)


async def usage_of_node(request: web.Request) -> web.StreamResponse:
    provider_type, uuid = request.match_info["type"], request.match_info["uuid"]
    try:
        instance = await _quotas(request).refresh_node(provider_type, uuid)
    except NotFound:
        raise not_found(f"Provider {provider_type[:64]}/{uuid[:64]}") from None
    return _answer(instance, False)


async def supported_providers(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _quotas(request).supported_types())


def _answer(document: Mapping[str, Any], from_cache: bool) -> web.Response:
    body = dict(document)
    if from_cache:
        body["fromCache"] = True
    body["serverTime"] = iso_ms(now_ms())
    return web.json_response(body, headers=_NO_CACHE)


def _refresh_asked(request: web.Request) -> bool:
    return request.query.get("refresh", "").lower() in ("1", "true", "yes")
