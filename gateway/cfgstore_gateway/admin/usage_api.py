"""``GET /api/usage`` and ``GET /api/usage/{type}``: the usage cache (US7, §6.3).

Reads answer the stored cache, shared by every instance, with ``fromCache: true``;
``?refresh=true``, or no cache yet, recomputes (every type, or one) and stores the result,
so the other instances read it next. Every answer carries ``serverTime`` (ISO), as the Node
service's (``src/ui-modules/usage-api.js``). An
entry has the Node service's shape (``providerType``, ``instances`` with ``uuid``,
``name``, ``isHealthy``, ``isDisabled``, ``success``, ``usage``, ``error``, and the counts).
Usage comes from what the gateway itself counted for each account (``usageCount``,
``errorCount``, ``lastUsed``): the upstreams' own quota APIs are not queried.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from cfgstore.adapters import Store
from cfgstore.model.credentials import credential_path_of
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import ProviderNode
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore_gateway.admin.http import not_found
from cfgstore_gateway.services import SERVICES


async def usage(request: web.Request) -> web.StreamResponse:
    store = request.config_dict[SERVICES].store
    cache = None if _refresh_asked(request) else await store.usage_cache.get()
    from_cache = cache is not None
    if cache is None:
        await _refresh(store, None)
        cache = await store.usage_cache.get()
    answer = cache.to_json() if cache is not None else {"timestamp": None, "providers": {}}
    return _answer(answer, from_cache)


async def usage_of_type(request: web.Request) -> web.StreamResponse:
    store = request.config_dict[SERVICES].store
    provider_type = request.match_info["type"]
    entry = None
    if not _refresh_asked(request):
        cache = await store.usage_cache.get()
        entry = cache.providers.get(provider_type) if cache is not None else None
    from_cache = entry is not None
    if entry is None:
        await _refresh(store, provider_type)
        cache = await store.usage_cache.get()
        entry = cache.providers.get(provider_type) if cache is not None else None
    if not isinstance(entry, dict):
        raise not_found(f"Usage of {provider_type[:64]}")
    return _answer(entry, from_cache)


def _answer(document: Mapping[str, Any], from_cache: bool) -> web.Response:
    body = dict(document)
    if from_cache:
        body["fromCache"] = True
    body["serverTime"] = iso_ms(now_ms())
    return web.json_response(body, headers={"Cache-Control": "no-cache, no-store, must-revalidate"})


def _refresh_asked(request: web.Request) -> bool:
    return request.query.get("refresh", "").lower() in ("1", "true", "yes")


async def _refresh(store: Store, only: str | None) -> None:
    pools = (await store.pools.list()).types
    if only is not None and only not in pools:
        raise not_found(f"Provider type {only[:64]}")
    stamp = iso_ms(now_ms())
    for provider_type, nodes in pools.items():
        if only is None or provider_type == only:
            await store.usage_cache.put_type(provider_type, entry_of(provider_type, nodes), stamp)


def entry_of(provider_type: str, nodes: Sequence[ProviderNode]) -> JSONValue:
    """One type's usage-cache entry from the pool's own counters."""
    instances: list[JSONValue] = [_instance(provider_type, n) for n in nodes]
    return {
        "providerType": provider_type,
        "instances": instances,
        "totalCount": len(nodes),
        "successCount": len(nodes),
        "errorCount": 0,
    }


def _instance(provider_type: str, node: ProviderNode) -> dict[str, Any]:
    located = credential_path_of(provider_type, node)
    state = node.state
    return {
        "uuid": node.uuid,
        "name": node.custom_name or node.uuid,
        "configFilePath": located[1] if located else None,
        "isHealthy": state.is_healthy,
        "isDisabled": state.is_disabled,
        "success": True,
        "usage": {
            "summary": {
                "unit": "requests",
                "totalUsed": state.usage_count,
                "errors": state.error_count,
                "lastUsed": state.last_used,
                "status": "healthy" if state.is_healthy else "unhealthy",
            }
        },
        "error": None,
    }
