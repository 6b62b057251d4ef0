"""``GET/POST/PUT /api/config`` and ``POST /api/reload-config``.

The config is read fresh from the store (not the request path's cache), answered with its
version as ``ETag`` and secrets masked. An update is a shallow merge of the body's keys
(``null`` removes a key, masked echoes are ignored, ``systemPrompt`` is the prompt text,
stored apart); it is validated as a whole first (``422``, nothing changed; the merged
document within the stored-document limits too), then written
compare-and-set: against ``If-Match`` when given (``412`` when stale), else against the
version just read, re-merged on a concurrent change. The store's writes are asynchronous
(a worker thread for files, one round trip for Redis), so the event loop never waits on
them; every instance's config cache drops the old value on the change event.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cfgstore.errors import VersionConflict
from cfgstore.model.config import MainConfig
from cfgstore.model.config_rules import field_errors
from cfgstore.model.jsjson import JSONValue
from cfgstore_gateway.admin.http import (
    ApiError,
    check_document,
    invalid,
    read_json_object,
    success,
)
from cfgstore_gateway.admin.masking import API_KEY_MASK, is_masked_echo, masked
from cfgstore_gateway.admin.state import admin_state
from cfgstore_gateway.services import SERVICES, Services

PROMPT_KEY = "systemPrompt"
MERGE_ATTEMPTS = 5


async def get_config(request: web.Request) -> web.StreamResponse:
    services = request.config_dict[SERVICES]
    return await _answer(request, services, await services.store.config.get())


async def update_config(request: web.Request) -> web.StreamResponse:
    services = request.config_dict[SERVICES]
    store = services.store
    body = await read_json_object(request)
    errors = field_errors(body)
    if errors:
        raise invalid(errors, "Config not saved: some values are invalid")
    changes = {k: v for k, v in body.items() if k != PROMPT_KEY and not is_masked_echo(v)}
    expected = _if_match(request)
    config = await store.config.get()
    for _ in range(MERGE_ATTEMPTS):
        if expected is not None and config.version != expected:
            raise _stale()
        if changes:
            merged = _merged(config.document, changes)
            check_document(merged, "config")
            try:
                await store.config.put(merged, config.version)
            except VersionConflict:
                if expected is not None:
                    raise _stale() from None
                config = await store.config.get()
                continue
        break
    else:
        raise ApiError(409, "conflict", "The config kept changing under this update; retry")
    prompt = body.get(PROMPT_KEY)
    if isinstance(prompt, str):
        await store.system_prompt.put(prompt)
    services.config.invalidate()
    return await _answer(request, services, await store.config.get())


async def reload_config(request: web.Request) -> web.StreamResponse:
    """Drop this instance's caches; the next request reads the stored config and pools."""
    services = request.config_dict[SERVICES]
    services.config.invalidate()
    services.models_cache.clear()
    services.health_cache = None
    return success()


def _merged(document: dict[str, JSONValue], changes: dict[str, Any]) -> dict[str, JSONValue]:
    merged = dict(document)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


async def _answer(request: web.Request, services: Services, config: MainConfig) -> web.Response:
    document = masked(config.document)
    if "REQUIRED_API_KEY" in document:
        document["REQUIRED_API_KEY"] = API_KEY_MASK
    response = web.json_response(
        {
            "config": document,
            "systemPrompt": await services.store.system_prompt.get(),
            "isDefaultPassword": await admin_state(request).gate.is_default_password(),
            "version": config.version,
        }
    )
    response.headers["ETag"] = f'"{config.version}"'
    return response


def _if_match(request: web.Request) -> str | None:
    value = request.headers.get("If-Match")
    if value is None or value.strip() == "*":
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def _stale() -> ApiError:
    return ApiError(
        412,
        "version_conflict",
        "The config changed since it was read (If-Match is stale): reload it and retry",
    )
