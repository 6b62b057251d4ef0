"""``GET/POST /api/config`` and ``POST /api/reload-config`` (the Node service's shapes), and
``GET/POST/PUT /api/cfgstore/config`` (the console's: the whole document and its version).

``GET /api/config`` answers as the Node service does: the keys its UI edits, flat, with
their values (defaults filled in), ``REQUIRED_API_KEY`` as ``******`` (or ``""`` when
unset), ``systemPrompt`` and ``isDefaultPassword``; other secrets are masked too (the
Node service shows ``PROXY_URL`` in clear). ``POST /api/config`` answers ``{"success":
true, "message", "details"}``. ``/api/cfgstore/config`` answers ``{"config", "systemPrompt",
"isDefaultPassword", "version"}`` with every key of the document.

The config is read fresh from the store (not the request path's cache), answered with its
version as ``ETag`` and secrets masked. An update is a shallow merge of the body's keys
(``null`` removes a key, masked echoes are ignored, ``systemPrompt`` is the prompt text,
stored apart); it is validated as a whole first (``400``, nothing changed; the merged
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
from cfgstore.model.config import DEFAULTS, MainConfig
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


NODE_CONFIG_KEYS = (
    "HOST",
    "SERVER_PORT",
    "MODEL_PROVIDER",
    "DEFAULT_MODEL_PROVIDERS",
    "SYSTEM_PROMPT_FILE_PATH",
    "SYSTEM_PROMPT_MODE",
    "PROMPT_LOG_BASE_NAME",
    "PROMPT_LOG_MODE",
    "REQUEST_MAX_RETRIES",
    "REQUEST_BASE_DELAY",
    "CREDENTIAL_SWITCH_MAX_RETRIES",
    "RATE_LIMIT_COOLDOWN_ENABLED",
    "RATE_LIMIT_COOLDOWN_MS",
    "RATE_LIMIT_COOLDOWN_JITTER_MS",
    "RATE_LIMIT_COOLDOWN_MAX_MS",
    "CRON_NEAR_MINUTES",
    "CRON_REFRESH_TOKEN",
    "LOGIN_EXPIRY",
    "TRUST_PROXY",
    "TRUSTED_PROXY_IPS",
    "PROVIDER_POOLS_FILE_PATH",
    "MAX_ERROR_COUNT",
    "SYSTEM_PROMPT_REPLACEMENTS",
    "WARMUP_TARGET",
    "REFRESH_CONCURRENCY_PER_PROVIDER",
    "providerFallbackChain",
    "modelFallbackMapping",
    "PROXY_URL",
    "PROXY_ENABLED_PROVIDERS",
    "TLS_SIDECAR_ENABLED",
    "TLS_SIDECAR_ENABLED_PROVIDERS",
    "TLS_SIDECAR_PORT",
    "TLS_SIDECAR_PROXY_URL",
    "LOG_ENABLED",
    "LOG_OUTPUT_MODE",
    "LOG_LEVEL",
    "LOG_DIR",
    "LOG_INCLUDE_REQUEST_ID",
    "LOG_INCLUDE_TIMESTAMP",
    "LOG_MAX_FILE_SIZE",
    "LOG_MAX_FILES",
    "SCHEDULED_HEALTH_CHECK",
)
"""The keys ``GET /api/config`` answers, in the Node service's order (its
``handleGetConfig`` whitelist, ``src/ui-modules/config-api.js``); ``REQUIRED_API_KEY``,
``systemPrompt`` and ``isDefaultPassword`` follow."""


async def get_node_config(request: web.Request) -> web.StreamResponse:
    services = request.config_dict[SERVICES]
    config = await services.store.config.get()
    flat: dict[str, Any] = {}
    for key in NODE_CONFIG_KEYS:
        if key in config.document or key in DEFAULTS:  # Node's JSON drops undefined keys
            flat[key] = config.get(key)
    flat = masked(flat)
    flat["REQUIRED_API_KEY"] = API_KEY_MASK if config.get("REQUIRED_API_KEY") else ""
    flat[PROMPT_KEY] = await services.store.system_prompt.get() or ""
    flat["isDefaultPassword"] = await admin_state(request).gate.is_default_password()
    return web.json_response(flat)


async def update_node_config(request: web.Request) -> web.StreamResponse:
    await _update(request)
    return success(
        message="Configuration updated successfully",
        details="Configuration has been updated in both memory and config.json file",
    )


async def get_config(request: web.Request) -> web.StreamResponse:
    services = request.config_dict[SERVICES]
    return await _answer(request, services, await services.store.config.get())


async def update_config(request: web.Request) -> web.StreamResponse:
    services = request.config_dict[SERVICES]
    return await _answer(request, services, await _update(request))


async def _update(request: web.Request) -> MainConfig:
    """Apply the body to the stored config (see the module docstring); the config now."""
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
    return await store.config.get()


async def reload_config(request: web.Request) -> web.StreamResponse:
    """Drop this instance's caches; the next request reads the stored config and pools."""
    services = request.config_dict[SERVICES]
    services.config.invalidate()
    services.models_cache.clear()
    services.health_cache = None
    config = await services.store.config.get()
    return success(
        message="Configuration files reloaded successfully",
        details={
            "configReloaded": True,
            "configPath": "configs/config.json",
            "providerPoolsPath": config.document.get("PROVIDER_POOLS_FILE_PATH") or None,
        },
    )


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
