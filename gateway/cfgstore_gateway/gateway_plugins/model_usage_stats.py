"""The ``model-usage-stats`` gateway plugin (aiclient-protocols §5.3): requests and tokens
per provider type, model and (Beijing) day, kept in the store
(:mod:`cfgstore.hookspecs.usage_stats`), so every instance counts into the same numbers.

* **Counting** (:meth:`ModelUsageStats.finished`): Node counts a request when at least one
  upstream response or chunk was seen. Here: the outcome names the provider type that
  answered and its status is below 400 (an upstream answered; a stream cut after its first
  chunk still counts). Provider key = that type, model = the routed model (``unknown``
  when none). Tokens are the upstream's (:class:`~cfgstore_gateway.plugin_api.TokenUsage`):
  prompt = input, completion = output, total = input + output, cached = cached. Unlike
  Node, reasoning tokens are not added to the completion a second time (upstreams that
  report them already count them in the output). The count is tallied in memory and
  handed to the store once a second (:class:`cfgstore.adapters.usage_stats.UsageStats`).
* **Routes**: ``GET /api/model-usage-stats`` → ``{success, data}`` (the statistics with
  this instance's live ``qps``/``tps``/``rpm``); ``POST|DELETE
  /api/model-usage-stats/reset`` (everything) and ``…/reset-tokens`` (tokens and peaks,
  counts kept) → ``{success, message, data}``. Allowed with an admin session **or** the
  client key (``REQUIRED_API_KEY``, any place a client puts it), as in Node (a session
  only while the admin API is on, ``UI_ENABLED`` not false); otherwise
  ``401 {"success": false, "error": {"message", "code": "UNAUTHORIZED"}}``.
* **Peaks** are per-instance observations merged with max (:mod:`cfgstore.model.usage_stats`).
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any

from aiohttp import web

from cfgstore.errors import CfgStoreError, StorageDegraded, StorageUnavailable
from cfgstore.model.timefmt import now_ms
from cfgstore_gateway.admin.sessions import bearer_token
from cfgstore_gateway.admin.state import ADMIN
from cfgstore_gateway.auth import key_matches, required_key
from cfgstore_gateway.hookspecs import plugins_hookimpl
from cfgstore_gateway.plugin_api import (
    ConsoleTab,
    Outcome,
    PluginContext,
    PluginRoute,
    PluginsCallback,
)

log = logging.getLogger("cfgstore.gateway.model_usage_stats")

NAME = "model-usage-stats"
BASE = "/api/model-usage-stats"
UNAUTHORIZED_MESSAGE = "未授权：请提供后台登录 Token 或有效 API Key"
RESET_MESSAGE = "模型统计已重置"
RESET_TOKENS_MESSAGE = "模型 Token 统计已重置"
"""The Node service's messages (its console shows them)."""


def counts(outcome: Outcome) -> bool:
    """Whether ``outcome`` is a request an upstream answered (see the module docstring)."""
    return outcome.provider_type is not None and outcome.status < 400


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return web.Response(text=text, status=status, content_type="application/json")


def _failure(status: int, message: str, code: str | None = None) -> web.Response:
    error: dict[str, Any] = {"message": message}
    if code is not None:
        error["code"] = code
    return _json({"success": False, "error": error}, status)


class ModelUsageStats:
    """The plugin object (:class:`cfgstore_gateway.plugin_api.GatewayPlugin`)."""

    name = NAME
    description = "Model usage statistics: requests and tokens per provider, model and day"
    priority = 9000
    enabled_by_default = False

    def __init__(self) -> None:
        self._context: PluginContext | None = None
        self.routes = (
            PluginRoute("GET", BASE, self._get, access="public"),
            *(
                PluginRoute(method, f"{BASE}/{path}", handler, access="public")
                for path, handler in (("reset", self._reset), ("reset-tokens", self._reset_tokens))
                for method in ("POST", "DELETE")
            ),
        )
        script = resources.files(__package__).joinpath("model_usage_stats.js").read_bytes()
        self.console = ConsoleTab("Model usage", script)

    async def start(self, context: PluginContext) -> None:
        self._context = context

    async def stop(self) -> None:
        """Hand this instance's tally over (the store's close would too)."""
        if self._context is not None:
            try:
                await self._context.store.usage_stats.flush()
            except CfgStoreError as exc:
                log.warning("usage statistics not handed over at stop: %s", exc)

    async def finished(self, outcome: Outcome) -> None:
        if self._context is None or not counts(outcome):
            return
        assert outcome.provider_type is not None
        usage = outcome.usage
        self._context.store.usage_stats.record(
            outcome.provider_type,
            outcome.model or "unknown",
            prompt_tokens=usage.input_tokens if usage else 0,
            completion_tokens=usage.output_tokens if usage else 0,
            cached_tokens=usage.cached_tokens if usage else 0,
        )

    # -- routes ------------------------------------------------------------------------

    async def _authorised(self, request: web.Request) -> bool:
        """An admin session, or the client key (Node's ``checkAdminAuth``). With
        ``UI_ENABLED`` false the admin API is off, and its sessions with it: a session
        issued before admits nobody here then (the client key still does)."""
        assert self._context is not None
        store = self._context.store
        try:
            config = await store.config.get()
        except CfgStoreError:
            config = None
        token = bearer_token(request)
        if token is not None and (config is None or config.get("UI_ENABLED") is not False):
            admin = request.config_dict.get(ADMIN)
            try:
                if admin is not None:
                    if await admin.gate.check(token) is not None:
                        return True
                elif await store.sessions.get(token, now_ms()) is not None:
                    return True
            except CfgStoreError as exc:
                log.info("session check failed, trying the client key: %s", exc)
        return config is not None and key_matches(request, required_key(config))

    async def _answer(self, request: web.Request, action: str | None) -> web.Response:
        if self._context is None:
            return _failure(503, "the plugin is not started")
        if not await self._authorised(request):
            return _failure(401, UNAUTHORIZED_MESSAGE, "UNAUTHORIZED")
        stats = self._context.store.usage_stats
        try:
            if action is None:
                return _json({"success": True, "data": await stats.read()})
            await stats.reset(tokens_only=action == "tokens")
            message = RESET_TOKENS_MESSAGE if action == "tokens" else RESET_MESSAGE
            return _json({"success": True, "message": message, "data": await stats.read()})
        except (StorageUnavailable, StorageDegraded) as exc:
            return _failure(503, str(exc))
        except CfgStoreError as exc:
            log.error("model usage statistics route failed: %s", exc)
            return _failure(500, str(exc))

    async def _get(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, None)

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "all")

    async def _reset_tokens(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "tokens")


@plugins_hookimpl
def cfgstore_gateway_plugins(register: PluginsCallback) -> None:
    register(ModelUsageStats())
