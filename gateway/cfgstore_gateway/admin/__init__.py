"""The admin API under ``/api`` and the web UI at ``/`` (``gateway/admin-api.md``).

:func:`add_admin` mounts both on the gateway application: a sub-application at ``/api``
whose middleware requires a session (every route but ``POST /api/login``, and any path
under ``/api`` that matches none) before any handler runs, and answers errors in the admin
shape (storage degraded → ``503 storage_degraded``, missing → ``404``, conflicts →
``409``/``412``, bad input → ``400 invalid`` with field errors; a read-only session
signed in during an outage is refused every change: ``503 storage_degraded``; JSON answers
of 1 KiB or more go gzip-encoded to a client that accepts it; ``POST /api/login`` answers in
the Node service's login shape, :mod:`~cfgstore_gateway.admin.login_shape`), and the static
UI (``/`` and ``/ui/*``, public: it holds no data, it asks the API for it). Every UI answer,
a missing file's included, carries the same security headers (strict CSP, no framing,
``nosniff``). The routes are marked in the gateway's
:class:`~cfgstore_gateway.access.RouteAccess`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from cfgstore.errors import (
    AlreadyExists,
    CfgStoreError,
    InvalidData,
    NotFound,
    StorageDegraded,
    VersionConflict,
)
from cfgstore.model.timefmt import now_ms
from cfgstore_gateway.access import ROUTE_ACCESS, Access, RouteAccess
from cfgstore_gateway.admin import (
    adapters_api,
    config_api,
    console_api,
    custom_models_api,
    login_api,
    plugins_api,
    providers_api,
    storage_api,
    traffic_api,
    uploads_api,
    usage_api,
)
from cfgstore_gateway.admin.compression import compress_json
from cfgstore_gateway.admin.http import ApiError
from cfgstore_gateway.admin.last_hour import LAST_HOUR, StoredTraffic
from cfgstore_gateway.admin.login_shape import login_refusal
from cfgstore_gateway.admin.outage_sign_in import READ_ONLY_REFUSAL
from cfgstore_gateway.admin.sessions import SessionGate
from cfgstore_gateway.admin.state import ADMIN, SESSION, AdminState
from cfgstore_gateway.log_text import escaped

__all__ = ["add_admin", "api_routes"]

log = logging.getLogger("cfgstore_gateway.admin")

STATIC_DIR = Path(__file__).parent / "static"
_UI_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def add_admin(
    app: web.Application,
    gate: SessionGate,
    access: RouteAccess,
    more_routes: Callable[[web.Application], None] | None = None,
) -> None:
    """Mount the admin API (``/api``) and the UI (``/``, ``/ui/*``) on ``app``, their
    routes marked in ``access``; ``more_routes(api)`` adds routes to the API's
    sub-application (the gateway plugins') before it is mounted, marking them itself."""
    api = web.Application(middlewares=[compress_json, _admin_middleware])
    state = AdminState(gate)
    api[ADMIN] = state
    api[LAST_HOUR] = StoredTraffic(gate.store.traffic)

    async def close_password_work(_: web.Application) -> None:
        state.password_work.close()

    api.on_cleanup.append(close_password_work)
    api_routes(api.router)
    access.default(api, Access.ADMIN)
    for route in api.router.routes():
        access.mark(_ROUTE_ACCESS.get(route.handler, Access.ADMIN), route)
    if more_routes is not None:
        more_routes(api)
    app.add_subapp("/api", api)
    access.mark(Access.UI, app.router.add_get("/", _index))
    access.mark_resource(Access.UI, app.router.add_static("/ui/", STATIC_DIR, append_version=False))
    app.on_response_prepare.append(_ui_headers)


def api_routes(r: web.UrlDispatcher) -> None:
    """The Node service's paths with its shapes (aiclient-formats §7), then the paths only
    cfgstore has (its console's richer answers under ``/api/cfgstore/``)."""
    p = providers_api
    r.add_post("/login", login_api.login)
    r.add_get("/health", _health)
    r.add_post("/admin-password", login_api.change_password)
    r.add_get("/config", config_api.get_node_config)
    r.add_post("/config", config_api.update_node_config)
    r.add_post("/reload-config", config_api.reload_config)
    r.add_get("/providers", p.list_providers)
    r.add_post("/providers", p.add_provider)
    r.add_get("/providers/supported", p.supported_types)
    r.add_get("/providers/{type}", p.providers_of_type)
    r.add_post("/providers/{type}/reset-health", p.reset_health)
    r.add_delete("/providers/{type}/delete-unhealthy", p.delete_unhealthy)
    r.add_post("/providers/{type}/refresh-unhealthy-uuids", p.refresh_unhealthy_uuids)
    r.add_post("/providers/{type}/health-check", p.health_check)
    r.add_put("/providers/{type}/{uuid}", p.update_provider)
    r.add_delete("/providers/{type}/{uuid}", p.delete_provider)
    r.add_post("/providers/{type}/{uuid}/disable", p.disable_provider)
    r.add_post("/providers/{type}/{uuid}/enable", p.enable_provider)
    r.add_post("/providers/{type}/{uuid}/refresh-uuid", p.refresh_uuid)
    r.add_post("/providers/{type}/{uuid}/health-check", p.health_check)
    r.add_post("/upload-oauth-credentials", uploads_api.upload)
    r.add_get("/upload-configs", uploads_api.list_configs)
    r.add_get("/upload-configs/view/{path:.+}", uploads_api.view_config)
    r.add_delete("/upload-configs/delete-unbound", uploads_api.delete_unbound)
    r.add_delete("/upload-configs/delete/{path:.+}", uploads_api.delete_config)
    r.add_post("/quick-link-provider", uploads_api.quick_link)
    r.add_get("/plugins", plugins_api.list_plugins)
    r.add_post("/plugins/{name}/toggle", plugins_api.toggle_plugin)
    r.add_get("/cfgstore/plugin-tabs", plugins_api.console_tabs)
    r.add_get("/usage", usage_api.usage)
    r.add_get("/usage/supported-providers", usage_api.supported_providers)
    r.add_get("/usage/{type}", usage_api.usage_of_type)
    r.add_get("/usage/{type}/{uuid}", usage_api.usage_of_node)
    r.add_get("/custom-models", custom_models_api.list_models)
    r.add_post("/custom-models", custom_models_api.add_model)
    r.add_put("/custom-models/{id}", custom_models_api.update_model)
    r.add_delete("/custom-models/{id}", custom_models_api.delete_model)
    # cfgstore's own
    r.add_post("/logout", login_api.logout)
    r.add_get("/session", login_api.session_info)
    r.add_put("/providers/{type}/{uuid}/credential", p.put_credential)
    r.add_get("/storage/status", storage_api.storage_status)
    r.add_get("/cfgstore/traffic", traffic_api.traffic)
    r.add_get("/adapters", adapters_api.adapters)
    # The console's own reads, beside the Node service's paths (console_api).
    r.add_get("/cfgstore/pools/summary", console_api.pools_summary)
    r.add_post("/cfgstore/pools/poll", console_api.pools_poll)
    r.add_get("/cfgstore/storage/mode", console_api.storage_mode)
    r.add_get("/cfgstore/pools/{type}", console_api.pool_page)
    r.add_get("/cfgstore/config", config_api.get_config)
    r.add_post("/cfgstore/config", config_api.update_config)
    r.add_put("/cfgstore/config", config_api.update_config)
    r.add_post("/cfgstore/upload-oauth-credentials", p.upload_credential)


async def _health(request: web.Request) -> web.StreamResponse:
    """``GET /api/health``: the Node UI's liveness probe, public as there."""
    return web.json_response({"status": "ok", "timestamp": now_ms()})


async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def _ui_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.config_dict[ROUTE_ACCESS].of(request) is Access.UI:
        response.headers.update(_UI_HEADERS)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ROUTE_ACCESS: dict[Handler, Access] = {login_api.login: Access.LOGIN, _health: Access.UI}
"""Admin routes anyone may call (the others need a session). ``/api/health`` is the Node
UI's probe: public as there, and off with the UI (``UI_ENABLED``)."""


@web.middleware
async def _admin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    access = request.config_dict[ROUTE_ACCESS].of(request)
    is_login = access is Access.LOGIN
    try:
        if access is Access.ADMIN:  # the others: open, or a gateway plugin's client route
            request[SESSION] = await request.config_dict[ADMIN].gate.require(request)
            _refuse_read_only_change(request)
        return await handler(request)
    except ApiError as exc:
        if exc.status == 400 and exc.code == "bad_request":  # say so once, no traceback
            log.warning("%s %s refused: %s", request.method, escaped(request.path), exc)
        error = exc
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = ApiError(exc.status, _HTTP_CODES.get(exc.status, "error"), exc.reason)
    except CfgStoreError as exc:
        error = _storage_error(exc)
    except TimeoutError:
        error = ApiError(503, "storage_error", "The storage did not answer in time")
    return login_refusal(error) if is_login else error.response()


_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_NOT_CHANGES = (login_api.logout, console_api.pools_poll)


def _refuse_read_only_change(request: web.Request) -> None:
    """``503 storage_degraded`` for a change asked with a read-only session (its logout,
    and the console's poll, a read sent as a POST, excepted)."""
    token, _ = request[SESSION]
    if request.method in _READS or request.match_info.handler in _NOT_CHANGES:
        return
    if request.config_dict[ADMIN].gate.is_read_only(token):
        raise ApiError(503, "storage_degraded", READ_ONLY_REFUSAL)


DEGRADED_MESSAGE = (
    "Not saved: the storage is degraded (Redis cannot be reached), so changes are refused "
    "until it is back. Requests are still served."
)
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def _storage_error(exc: CfgStoreError) -> ApiError:
    if isinstance(exc, StorageDegraded):
        log.warning("admin change refused: %s", exc)
        return ApiError(503, "storage_degraded", DEGRADED_MESSAGE)
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, AlreadyExists):
        return ApiError(409, "conflict", str(exc))
    if isinstance(exc, VersionConflict):
        return ApiError(409, "conflict", f"Changed concurrently, retry: {exc}")
    if isinstance(exc, InvalidData):
        return ApiError(400, "invalid", str(exc), fields={"body": exc.problem})
    return ApiError(503, "storage_error", f"Storage error: {exc}")
