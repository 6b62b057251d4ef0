"""The aiohttp application: routes, the client key check, request ids and the access log.

:func:`create_app` builds an application over an **open** :class:`~cfgstore.adapters.Store`
that the caller owns (opens before, flushes and closes after). On start-up the application
creates its :class:`~cfgstore_gateway.services.Services`: the one shared upstream
``aiohttp.ClientSession`` (pooled connector sized by
:attr:`~cfgstore_gateway.services.GatewayOptions.upstream_connections`), the selector and its
slot table, the refresher, the adapters (from the ``cfgstore_gateway_adapters`` hook unless
given), and a config cache fed by the store's change events; on clean-up it cancels pending
refreshes and closes the session.

Endpoints (each also under ``/{type}/``; errors in the client protocol's own shape):

* ``POST /v1/chat/completions`` (OpenAI chat), ``POST /v1/messages`` (Anthropic Messages),
  ``POST /v1/responses`` (OpenAI Responses), ``POST /v1beta/models/{model}:generateContent``
  and ``:streamGenerateContent`` (Gemini; also under ``/v1/models/``, google-genai's default
  with a custom base URL; always answered as SSE when streaming, whatever ``alt`` says):
  proxied, streaming or not (:mod:`cfgstore_gateway.proxy`, routing in
  :mod:`cfgstore_gateway.routing`), converted to and from the adapter's protocol when it
  differs (:mod:`cfgstore_gateway.protocols`);
* ``POST /v1/messages/count_tokens``: an estimate (about four characters a token), no
  upstream asked;
* ``GET /v1beta/models``: the model list below in Gemini's shape;
* ``GET /v1/models`` and ``GET /{type}/v1/models``: the models of the pools' types (one
  type with a ``model-provider`` header or a path prefix): the ``supportedModels`` of the
  type's enabled nodes, else the adapter's static list, else the upstream's own ``/models``
  asked through one usable node it serves (cached for ``models_cache_s``; an upstream that
  cannot say contributes nothing);
* ``GET /metrics``: public, like ``/health`` (scrapers hold no client key; nothing
  exported is secret), unless ``METRICS_REQUIRE_API_KEY`` is true in the config: then it
  needs the client key. Prometheus text format, see :mod:`cfgstore_gateway.metrics`;
* ``GET /health``: public; ``{"status": "healthy", "storage": <mode>, ...}`` where the
  storage mode is the top layer's status ``mode`` (``file``, ``redis``,
  ``degraded``…), cached for ``health_cache_s``.

The web UI (``/``, ``/ui/*``) and the admin API (``/api/*``, which checks its own sessions)
are mounted by :mod:`cfgstore_gateway.admin`; with ``UI_ENABLED: false`` in the config they
answer 404. Every other route, and a path that matches none, needs the client key
(:mod:`cfgstore_gateway.auth`) or an authenticating gateway plugin's admission: the enabled
gateway plugins (hook ``cfgstore_gateway_plugins``, :mod:`cfgstore_gateway.plugin_runtime`)
decide in priority order, ``default-auth`` being the key check, and each admitted request's
outcome goes to their ``finished`` off the request's path. Which is which is decided by
the route the request matched (:mod:`cfgstore_gateway.access`), before any handler runs,
so nothing reads the body of a request that is not let in. A request let in without any
credential (``/health``, the UI's files) may not announce a body over
:data:`~cfgstore_gateway.access.PUBLIC_BODY_MAX` (``413``). The ``/{type}/...`` routes never
take a reserved word (:data:`~cfgstore_gateway.routing.RESERVED_TYPE_NAMES`) as a type.

Every response carries ``X-Request-Id`` (the client's, when it sent a sane one). One log
line per request names the request id, method, path (never the query string: it may hold
the key), provider type, node uuid, attempts, status and latency; client-controlled text
in it has its control characters escaped (:mod:`cfgstore_gateway.log_text`). Run it with
aiohttp's own access log off (``access_log=None``, as :mod:`cfgstore_gateway.serve` does):
that one prints query strings.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from cfgstore.adapters import Store
from cfgstore.adapters.offers import one_line
from cfgstore.adapters.plugins import PluginSet
from cfgstore.errors import CfgStoreError
from cfgstore.model.config import MainConfig
from cfgstore.model.pools import ProviderNode
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore_gateway.access import PUBLIC_BODY_MAX, ROUTE_ACCESS, Access, RouteAccess
from cfgstore_gateway.adapters import Adapter, AdapterRegistry, ModelsCall, UpstreamUnavailable
from cfgstore_gateway.admin import add_admin
from cfgstore_gateway.admin.sessions import SessionGate
from cfgstore_gateway.auth import key_matches, offered_keys, required_key, unauthorized
from cfgstore_gateway.errors import error_response
from cfgstore_gateway.hookspecs import add_gateway_hookspecs
from cfgstore_gateway.json_body import parse_client_json
from cfgstore_gateway.log_text import escaped
from cfgstore_gateway.metrics import CONTENT_TYPE, METRICS_PATH, GatewayMetrics
from cfgstore_gateway.plugin_api import ClientCall, GatewayPlugin, Outcome, Refuse, TokenUsage
from cfgstore_gateway.plugin_runtime import PLUGINS, ExchangeRecorder, PluginRuntime
from cfgstore_gateway.proactive_refresh import Background
from cfgstore_gateway.protocols import ConverterRegistry, neutral
from cfgstore_gateway.protocols.client import OPENAI_CLIENT, ClientProtocol
from cfgstore_gateway.proxy import ClientRequest, RequestInfo, proxy_chat
from cfgstore_gateway.refresh import Refresher, RefreshFailed
from cfgstore_gateway.routing import (
    AUTO,
    default_providers,
    is_known_type,
    is_reserved_type,
    listed_custom_models,
    resolve,
)
from cfgstore_gateway.selection import SlotTable
from cfgstore_gateway.selection_index import IndexedSelector
from cfgstore_gateway.serviceability import unserved_reason
from cfgstore_gateway.services import (
    SERVICES,
    ConfigCache,
    GatewayOptions,
    RefresherLike,
    Services,
)
from cfgstore_gateway.usage_quotas import QUOTAS

log = logging.getLogger("cfgstore_gateway.app")

RefresherFactory = Callable[[Store, aiohttp.ClientSession], RefresherLike]


@attrs.frozen
class _Setup:
    store: Store
    registry: AdapterRegistry
    options: GatewayOptions
    refresher_factory: RefresherFactory
    converters: ConverterRegistry


SETUP = web.AppKey("cfgstore_gateway.setup", _Setup)
ROUTE_PROTOCOLS = web.AppKey(
    "cfgstore_gateway.route_protocols", dict[web.AbstractRoute, ClientProtocol]
)
"""The client protocol of each route that is not OpenAI chat: its errors take that shape."""
_CURRENT: contextvars.ContextVar[RequestInfo] = contextvars.ContextVar("cfgstore_gateway_request")
"""The current request's log record: set by the middleware, read by the handlers (same task)."""
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def create_app(
    store: Store,
    *,
    options: GatewayOptions | None = None,
    adapters: Sequence[Adapter] | None = None,
    refresher_factory: RefresherFactory | None = None,
) -> web.Application:
    """The gateway application over ``store`` (see the module docstring). ``adapters``
    replaces the plugin-registered ones; ``refresher_factory(store, session)`` replaces
    :class:`~cfgstore_gateway.refresh.Refresher`."""
    options = options or GatewayOptions()
    if adapters is None:
        registry = load_adapters(store.plugins)
    else:
        registry = AdapterRegistry()
        for adapter in adapters:
            registry.register(adapter)
    converters = load_converters(store.plugins)
    plugins = PluginRuntime(load_plugins(store.plugins))
    app = web.Application(middlewares=[_middleware], client_max_size=options.client_max_size)
    app[SETUP] = _Setup(
        store, registry, options, refresher_factory or _default_refresher, converters
    )
    app.cleanup_ctx.append(_services)
    access = app[ROUTE_ACCESS] = RouteAccess()
    access.default(app, Access.CLIENT)
    r = app.router
    access.mark(Access.PUBLIC, r.add_get("/health", health))
    access.mark(Access.METRICS, r.add_get(METRICS_PATH, metrics))
    protocols = app[ROUTE_PROTOCOLS] = {}
    for prefix in ("", "/{provider}"):
        access.mark(Access.CLIENT, r.add_get(f"{prefix}/v1/models", models))
        access.mark(Access.CLIENT, r.add_post(f"{prefix}/v1/chat/completions", chat_completions))
        for path, handler, name in (
            (f"{prefix}/v1/messages", messages, "claude"),
            (f"{prefix}/v1/messages/count_tokens", count_tokens, "claude"),
            (f"{prefix}/v1/responses", responses, "openaiResponses"),
            (f"{prefix}/v1beta/models/{{target}}", gemini_generate, "gemini"),
            (f"{prefix}/v1/models/{{target}}", gemini_generate, "gemini"),  # google-genai's default
        ):
            route = r.add_post(path, handler)
            access.mark(Access.CLIENT, route)
            protocols[route] = ClientProtocol(converters[name])
        gemini_models = r.add_get(f"{prefix}/v1beta/models", gemini_model_list)
        access.mark(Access.CLIENT, gemini_models)
        protocols[gemini_models] = ClientProtocol(converters["gemini"])
    app[PLUGINS] = plugins
    add_admin(app, SessionGate(store), access, lambda api: plugins.mount(api, access))
    plugins.mount_scripts(app, access)
    return app


def load_adapters(plugins: PluginSet) -> AdapterRegistry:
    """Ask every plugin for its adapters (the ``cfgstore_gateway_adapters`` hook), each
    implementation isolated: one that raises is reported in one line (with the traceback
    at debug level) and its adapters are skipped; an adapter that does not implement the
    protocol is skipped alone, the line naming what it lacks."""
    registry = AdapterRegistry()
    for origin, adapter in _registered(plugins, "cfgstore_gateway_adapters", "adapters"):
        try:
            registry.register(adapter)
        except TypeError as exc:
            log.error("plugin %s: adapter skipped: %s", origin, exc)
    if not registry.adapters:
        log.warning("no upstream adapter is installed: every chat request will fail")
    return registry


def load_converters(plugins: PluginSet) -> ConverterRegistry:
    """The built-in protocol converters, then every plugin's (the
    ``cfgstore_gateway_converters`` hook), isolated like adapters."""
    registry = ConverterRegistry()
    for origin, converter in _registered(plugins, "cfgstore_gateway_converters", "converters"):
        try:
            registry.register(converter)
        except TypeError as exc:
            log.error("plugin %s: converter skipped: %s", origin, exc)
    return registry


def load_plugins(plugins: PluginSet) -> list[GatewayPlugin]:
    """Every plugin's gateway plugins (the ``cfgstore_gateway_plugins`` hook), isolated
    like adapters; one without the four required members is skipped with a line naming
    what it lacks."""
    loaded: list[GatewayPlugin] = []
    for origin, plugin in _registered(plugins, "cfgstore_gateway_plugins", "gateway plugins"):
        missing = [
            member
            for member in ("name", "description", "priority", "enabled_by_default")
            if not hasattr(plugin, member)
        ]
        if missing:
            log.error("plugin %s: gateway plugin %r skipped: no %s", origin, plugin, missing)
            continue
        loaded.append(plugin)
    return loaded


def _registered(plugins: PluginSet, hook: str, what: str) -> Iterator[tuple[str, Any]]:
    """``(plugin origin, object)`` for every object the implementations of the register
    hook ``hook`` offer; an implementation that raises is reported in one line (the
    traceback at debug level) and what it offered is skipped."""
    manager = plugins.manager
    add_gateway_hookspecs(manager)
    for impl in getattr(manager.hook, hook).get_hookimpls():
        origin = plugins.origin(impl.plugin_name)
        offered: list[Any] = []
        arguments = {"register": offered.append}
        try:
            impl.function(*[arguments[name] for name in impl.argnames])
        except Exception as exc:
            log.error(
                "plugin %s could not register its %s: %s",
                origin,
                what,
                one_line(exc),
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            continue
        for item in offered:
            yield origin, item


def _default_refresher(store: Store, session: aiohttp.ClientSession) -> RefresherLike:
    return Refresher(store, session)


async def _services(app: web.Application) -> AsyncIterator[None]:
    setup = app[SETUP]
    options = setup.options
    connector = aiohttp.TCPConnector(
        limit=options.upstream_connections,
        limit_per_host=0,
        keepalive_timeout=options.keepalive_timeout_s,
        ttl_dns_cache=300,
    )
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=options.upstream_connect_timeout_s,
        sock_connect=options.upstream_sock_connect_timeout_s,
        sock_read=options.upstream_read_timeout_s,
    )
    session = aiohttp.ClientSession(connector=connector, timeout=timeout)
    config = ConfigCache(setup.store, options.config_max_age_s)
    manager = setup.store.plugins.manager
    manager.register(config, name=f"cfgstore-gateway-config:{id(config)}")
    slots = SlotTable()
    refresher = setup.refresher_factory(setup.store, session)
    gateway_metrics = GatewayMetrics(lambda: getattr(refresher, "stats", None))
    manager.register(
        gateway_metrics.health_observer, name=f"cfgstore-gateway-metrics:{id(gateway_metrics)}"
    )
    app[SERVICES] = Services(
        store=setup.store,
        registry=setup.registry,
        selector=IndexedSelector(slots),
        slots=slots,
        config=config,
        session=session,
        refresher=refresher,
        options=options,
        converters=setup.converters,
        metrics=gateway_metrics,
    )
    required = required_key(await config.get())
    if required is None:
        log.warning("REQUIRED_API_KEY is not set: every request but /health is refused")
    elif not required:
        log.warning("REQUIRED_API_KEY is empty: every request but /health is refused")
    elif required == "123456":
        log.warning("REQUIRED_API_KEY is the well-known default 123456: change it")
    background = Background.start(app[SERVICES])  # health checks, alerts, refresh, quotas
    app[QUOTAS] = background.quotas
    plugins = app[PLUGINS]
    await plugins.start(setup.store)
    try:
        yield
    finally:
        try:
            await plugins.stop()
            await background.stop()
            await refresher.aclose()
        finally:
            manager.unregister(config)
            manager.unregister(gateway_metrics.health_observer)
            await session.close()


# ----------------------------------------------------------------------------- middleware


@web.middleware
async def _middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    offered = request.headers.get("X-Request-Id", "")
    info = RequestInfo(offered if _REQUEST_ID.fullmatch(offered) else uuidlib.uuid4().hex[:16])
    _CURRENT.set(info)
    started = time.perf_counter()
    response: web.StreamResponse
    try:
        response = await _admitted(request, handler)
    except web.HTTPException as exc:
        response = error_response(exc.status, exc.reason, "invalid_request_error")
    except CfgStoreError as exc:
        log.error("req=%s storage error: %s", info.request_id, exc)
        response = error_response(503, f"Storage error: {exc}", "server_error", "storage_error")
    except Exception:
        log.exception("req=%s failed", info.request_id)
        response = error_response(500, "Internal gateway error", "server_error")
    if not response.prepared:  # a stream stamped its own before it started
        response.headers["X-Request-Id"] = info.request_id
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    if SERVICES in request.app:
        services = request.app[SERVICES]
        services.metrics.request(info.provider_type, response.status)
        if info.provider_type is not None:  # a proxied request that reached a node
            services.store.traffic.record(
                info.provider_type, ok=response.status < 400, latency_ms=elapsed_ms
            )
    usage = info.usage
    if info.admitted:
        request.app[PLUGINS].finish(lambda: _outcome(request, info, response.status, elapsed_ms))
    log.info(
        "req=%s %s %s type=%s node=%s attempts=%d status=%d ms=%.1f tokens=%s",
        info.request_id,
        escaped(request.method),
        escaped(request.path),
        escaped(info.provider_type or "-"),
        escaped(info.uuid or "-"),
        info.attempts,
        response.status,
        elapsed_ms,
        f"{usage.input_tokens}/{usage.output_tokens}" if usage is not None else "-",
        extra={  # the same facts as fields, for --log-format json
            "request_id": info.request_id,
            "method": request.method,
            "path": request.path,
            "provider_type": info.provider_type,
            "node": info.uuid,
            "attempts": info.attempts,
            "status": response.status,
            "ms": elapsed_ms,
            "input_tokens": usage.input_tokens if usage is not None else None,
            "output_tokens": usage.output_tokens if usage is not None else None,
        },
    )
    return response


async def _admitted(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The handler's answer if the request may reach it (its route's
    :class:`~cfgstore_gateway.access.Access`), else the refusal; the body is never read
    here. ``/health`` answers without the config (it reports on the storage)."""
    access = request.config_dict[ROUTE_ACCESS].of(request)
    metrics_require_key = False
    if access is not Access.PUBLIC:
        config = await request.app[SERVICES].config.get()
        if access.is_admin and config.get("UI_ENABLED") is False:
            return error_response(
                404, "The web UI and admin API are off (UI_ENABLED is false)", "not_found"
            )
        metrics_require_key = config.get("METRICS_REQUIRE_API_KEY") is True
        if access is Access.CLIENT:
            refused = await _plugins_admit(request, config)
            if refused is not None:
                return refused
        elif access.needs_client_key(metrics_require_key) and not key_matches(
            request, required_key(config)
        ):
            return _unauthorized(request)
    if access.is_open(metrics_require_key) and (request.content_length or 0) > PUBLIC_BODY_MAX:
        return error_response(
            413,
            f"Request body larger than {PUBLIC_BODY_MAX} bytes",
            "invalid_request_error",
            "too_large",
        )
    return await handler(request)  # the admin API checks its own sessions first


async def _plugins_admit(request: web.Request, config: MainConfig) -> web.Response | None:
    """The gateway plugins' verdict on a client request (``default-auth``, the key check,
    among them: :mod:`cfgstore_gateway.plugin_runtime`): ``None`` when it is let in."""
    plugins = request.config_dict[PLUGINS]
    info = _CURRENT.get()
    admission = await plugins.admit(
        lambda: _client_call(request, info), lambda: key_matches(request, required_key(config))
    )
    if admission.refusal is not None:
        return _refused(request, admission.refusal)
    if not admission.admitted:
        return _unauthorized(request)
    info.admitted, info.admitted_by, info.admission = True, admission.admitted_by, admission.data
    if plugins.wants_exchange:
        info.exchange = ExchangeRecorder(plugins.exchange_cap)
    return None


def _client_call(request: web.Request, info: RequestInfo) -> ClientCall:
    return ClientCall(
        request_id=info.request_id,
        method=request.method,
        path=request.path,
        protocol=_protocol_of(request).name,
        headers=request.headers,
        query=request.query,
        keys=tuple(offered_keys(request)),
        remote=request.remote,
    )


def _refused(request: web.Request, refusal: Refuse) -> web.Response:
    """A plugin's refusal in the client protocol's error shape, its ``code`` and
    ``details`` in the error object where the shape has room (Gemini's numeric ``code``
    kept: the plugin's goes in an ``ErrorInfo`` of ``details``)."""
    body = _protocol_of(request).converter.error_body(refusal.status, refusal.message)
    error = body.get("error")
    if isinstance(error, dict):
        if isinstance(error.get("code"), int):  # Gemini: the HTTP status
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": refusal.code,
                    "domain": "cfgstore",
                }
            ]
        else:
            error["code"] = refusal.code
        for key, value in refusal.details.items():
            error.setdefault(key, value)
    return web.json_response(body, status=refusal.status)


def _outcome(request: web.Request, info: RequestInfo, status: int, latency_ms: float) -> Outcome:
    usage = info.usage
    return Outcome(
        request_id=info.request_id,
        path=request.path,
        protocol=_protocol_of(request).name,
        status=status,
        stream=info.stream,
        latency_ms=latency_ms,
        model=info.model,
        provider_type=info.provider_type,
        node=info.uuid,
        upstream_protocol=info.upstream_protocol,
        usage=TokenUsage(
            usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.reasoning_tokens
        )
        if usage is not None
        else None,
        admitted_by=info.admitted_by,
        admission=info.admission,
        exchange=info.exchange.exchange() if info.exchange is not None else None,
        headers=request.headers,
        keys=tuple(offered_keys(request)),
    )


# ----------------------------------------------------------------------------- handlers


async def health(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    config = await services.config.get()
    view = await services.store.pools.view()
    return web.json_response(
        {
            "status": "healthy",
            "timestamp": iso_ms(now_ms()),
            "storage": await _storage_mode(services),
            "provider": default_providers(config, view.keys())[0],
            "instance": services.store.instance_id,
        }
    )


async def metrics(request: web.Request) -> web.StreamResponse:
    """``GET /metrics``: Prometheus text format (see the module docstring)."""
    services = request.app[SERVICES]
    body = await services.metrics.scrape(services.store.top_status)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


async def _storage_mode(services: Services) -> str:
    cached = services.health_cache
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    try:
        async with asyncio.timeout(5.0):
            statuses = await services.store.top_status()
        mode = statuses[0].mode if statuses else "unknown"
    except (TimeoutError, CfgStoreError) as exc:
        log.warning("storage status unavailable: %s", exc)
        mode = "unknown"
    services.health_cache = (time.monotonic() + services.options.health_cache_s, mode)
    return mode


def _protocol_of(request: web.Request) -> ClientProtocol:
    """The client protocol of the matched route (OpenAI chat when it has none)."""
    return request.config_dict[ROUTE_PROTOCOLS].get(request.match_info.route, OPENAI_CLIENT)


def _unauthorized(request: web.Request) -> web.Response:
    protocol = _protocol_of(request)
    if protocol.is_openai_chat:
        return unauthorized()
    return protocol.error_response(
        401,
        "Unauthorized: API key is invalid or missing.",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def _json_object(
    request: web.Request, protocol: ClientProtocol
) -> tuple[dict[str, object] | None, bytes, web.Response | None]:
    """The request's JSON object body and its bytes, or the error answer."""
    raw = await request.read()
    try:
        body = parse_client_json(raw)
    except ValueError:
        return None, raw, protocol.error_response(400, "Request body is not valid JSON")
    if not isinstance(body, dict):
        return None, raw, protocol.error_response(400, "Request body must be a JSON object")
    return body, raw, None


def _path_type_refused(
    request: web.Request, services: Services, pool_types: Collection[str]
) -> web.Response | None:
    """The answer for a ``/{provider}/...`` path that goes nowhere, checked before any body
    is read."""
    path_type = request.match_info.get("provider")
    if path_type is None or _routable(services, path_type, pool_types):
        return None
    return _protocol_of(request).error_response(
        404, f"Unknown provider type {path_type!r}", "unknown_provider"
    )


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``: the upstream's protocol, passed through."""
    services = request.app[SERVICES]
    refused = _path_type_refused(request, services, (await services.store.pools.view()).keys())
    if refused is not None:
        return refused
    body, raw, error = await _json_object(request, OPENAI_CLIENT)
    if body is None:
        return error or OPENAI_CLIENT.error_response(400, "Request body is not valid JSON")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        return error_response(
            400, "you must provide a model parameter", "invalid_request_error", "missing_model"
        )
    client = ClientRequest(raw, body, model, body.get("stream") is True)
    return await _generate(request, client)


async def messages(request: web.Request) -> web.StreamResponse:
    """``POST /v1/messages`` (Anthropic Messages)."""
    return await _converted(request)


async def responses(request: web.Request) -> web.StreamResponse:
    """``POST /v1/responses`` (OpenAI Responses)."""
    return await _converted(request)


GEMINI_ACTIONS = {"generateContent": False, "streamGenerateContent": True}


async def gemini_generate(request: web.Request) -> web.StreamResponse:
    """``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``
    (always answered as SSE, whatever ``alt`` says, as the Node service does)."""
    model, _, action = request.match_info["target"].rpartition(":")
    if not model or action not in GEMINI_ACTIONS:
        return _protocol_of(request).error_response(
            404, f"Unknown method {request.match_info['target']!r}: use <model>:generateContent"
        )
    return await _converted(request, model=model, stream=GEMINI_ACTIONS[action])


async def _converted(
    request: web.Request, *, model: str | None = None, stream: bool | None = None
) -> web.StreamResponse:
    """A generation request of a converted client protocol: read into the neutral model,
    sent as the upstream's body; the answer comes back in the client's protocol."""
    services = request.app[SERVICES]
    protocol = _protocol_of(request)
    refused = _path_type_refused(request, services, (await services.store.pools.view()).keys())
    if refused is not None:
        return refused
    body, raw, error = await _json_object(request, protocol)
    if body is None:
        return error or protocol.error_response(400, "Request body is not valid JSON")
    parsed = protocol.converter.parse_request(body, model)
    if stream is not None:
        parsed = attrs.evolve(parsed, stream=stream)
    if not parsed.model.strip():
        return protocol.error_response(400, "you must provide a model parameter")
    client = ClientRequest(
        raw, body, parsed.model, parsed.stream, protocol=protocol, neutral=parsed
    )
    return await _generate(request, client)


async def _generate(request: web.Request, client: ClientRequest) -> web.StreamResponse:
    """Route and proxy one generation (the upstream body is ready in ``client``)."""
    services = request.app[SERVICES]
    config = await services.config.get()
    view = await services.store.pools.view()
    path_type = request.match_info.get("provider")
    path = request.path[len(path_type) + 1 :] if path_type else request.path
    client = attrs.evolve(client, path=path)
    route = resolve(
        header_type=request.headers.get("model-provider"),
        path_type=request.match_info.get("provider"),
        model=client.model,
        config=config,
        pool_types=view.keys(),
        static_models=lambda t: _static_models(services, t),
    )
    return await proxy_chat(services, request, client, route, config, _CURRENT.get())


async def count_tokens(request: web.Request) -> web.StreamResponse:
    """``POST /v1/messages/count_tokens``: an estimate (about four characters a token, as
    no upstream is asked), ``{"input_tokens": N}``."""
    protocol = _protocol_of(request)
    body, _, error = await _json_object(request, protocol)
    if body is None:
        return error or protocol.error_response(400, "Request body is not valid JSON")
    return web.json_response(
        {"input_tokens": estimated_tokens(protocol.converter.parse_request(body))}
    )


def estimated_tokens(request: neutral.ChatRequest) -> int:
    """A rough input size: characters of text, tool arguments and schemas over four, plus
    a fixed cost per image and per message."""
    characters = len(request.system or "")
    extra = 0
    for message in request.messages:
        extra += 4
        for part in message.parts:
            if isinstance(part, neutral.Text | neutral.Thinking):
                characters += len(part.text)
            elif isinstance(part, neutral.ToolCall):
                characters += len(part.name) + len(part.arguments)
            elif isinstance(part, neutral.ToolResult):
                characters += len(part.text())
            else:
                extra += 256
    for tool in request.tools:
        characters += len(tool.name) + len(tool.description) + len(json.dumps(tool.parameters))
    return max(1, (characters + 3) // 4 + extra)


async def models(request: web.Request) -> web.StreamResponse:
    """``GET /v1/models``: the OpenAI model list."""
    listing = await _model_listing(request)
    if isinstance(listing, web.StreamResponse):
        return listing
    created = now_ms() // 1000
    return web.json_response(
        {
            "object": "list",
            "data": [
                {"id": model_id, "object": "model", "created": created, "owned_by": owner}
                for model_id, owner in listing
            ],
        }
    )


async def gemini_model_list(request: web.Request) -> web.StreamResponse:
    """``GET /v1beta/models``: the same models in Gemini's list shape."""
    listing = await _model_listing(request)
    if isinstance(listing, web.StreamResponse):
        return listing
    methods = ["generateContent", "streamGenerateContent", "countTokens"]
    return web.json_response(
        {
            "models": [
                {
                    "name": f"models/{model_id}",
                    "baseModelId": model_id,
                    "version": "001",
                    "displayName": model_id,
                    "description": f"{model_id} ({owner})",
                    "supportedGenerationMethods": methods,
                }
                for model_id, owner in listing
            ]
        }
    )


async def _model_listing(request: web.Request) -> list[tuple[str, str]] | web.StreamResponse:
    """``(model id, owner type)`` of every model the request's route lists, each once."""
    services = request.app[SERVICES]
    config = await services.config.get()
    view = await services.store.pools.view()
    refused = _path_type_refused(request, services, view.keys())
    if refused is not None:
        return refused
    path_type = request.match_info.get("provider")
    wanted = request.headers.get("model-provider") or path_type
    if wanted and wanted != AUTO:
        types = [wanted]
    else:
        types = [t for t in view if services.registry.for_type(t) is not None]
    listing: dict[str, str] = {}
    for provider_type in types:
        nodes = view.get(provider_type, ())
        for model_id in await _models_of(services, provider_type, nodes, config, _CURRENT.get()):
            listing.setdefault(model_id, provider_type)
    for model_id, owner in await _custom_models(services, wanted if wanted != AUTO else None):
        listing.setdefault(model_id, owner)
    return list(listing.items())


async def _custom_models(services: Services, wanted: str | None) -> list[tuple[str, str]]:
    """``(id, owned_by)`` of the custom models (``custom_models.json``) a listing of
    ``wanted`` (``None``: every type) shows; none when the store cannot give them."""
    try:
        models = await services.store.custom_models.list()
    except CfgStoreError as exc:
        log.error("custom models unavailable: %s", exc)
        return []
    return listed_custom_models(models, wanted)


def _routable(services: Services, provider_type: str, pool_types: Collection[str]) -> bool:
    """Whether ``/{provider_type}/v1/...`` goes anywhere (never a reserved word, even one
    a legacy pools file uses as a type)."""
    if provider_type == AUTO:
        return True
    if is_reserved_type(provider_type):
        return False
    return (
        is_known_type(provider_type, pool_types)
        or services.registry.for_type(provider_type) is not None
    )


def _static_models(services: Services, provider_type: str) -> Sequence[str]:
    adapter = services.registry.for_type(provider_type)
    return adapter.static_models(provider_type) if adapter is not None else ()


async def _models_of(
    services: Services,
    provider_type: str,
    nodes: Sequence[ProviderNode],
    config: MainConfig,
    info: RequestInfo,
) -> list[str]:
    listed: list[str] = []
    for node in nodes:
        if node.state.is_disabled:
            continue
        supported = node.settings.get("supportedModels")
        if isinstance(supported, list):
            for item in supported:
                if isinstance(item, str) and item.strip() and item.strip() not in listed:
                    listed.append(item.strip())
    if listed:
        return listed
    adapter = services.registry.for_type(provider_type)
    if adapter is None:
        return []
    static = list(adapter.static_models(provider_type))
    if static:
        return static
    cached = services.models_cache.get(provider_type)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    usable = next(
        (
            n
            for n in nodes
            if n.state.is_healthy
            and not n.state.is_disabled
            and not n.state.needs_refresh
            and unserved_reason(services.registry, provider_type, n, config) is None
        ),
        None,
    )
    if usable is None:
        return []
    try:
        adapter.check_node(provider_type, usable, config)
        credential = (
            await services.refresher.credential_for(provider_type, usable)
            if adapter.needs_credential(provider_type)
            else None
        )
        fetched = await adapter.list_models(
            ModelsCall(
                provider_type=provider_type,
                node=usable,
                config=config,
                credential=credential,
                session=services.session,
                request_id=info.request_id,
                pools=services.store.pools,
            )
        )
    except (UpstreamUnavailable, RefreshFailed) as exc:
        log.warning(
            "req=%s type=%s node=%s: no model list from the upstream: %s",
            info.request_id,
            provider_type,
            usable.uuid,
            exc,
        )
        return []
    services.models_cache[provider_type] = (
        time.monotonic() + services.options.models_cache_s,
        fetched,
    )
    return fetched
