"""The ``model-usage-stats`` plugin object on its own (no gateway runtime): which outcomes
it counts and with which tokens, and its routes' answers and authorisation (an admin
session or the client key, Node's 401 otherwise), over a file store."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from cfgstore.adapters import Store
from cfgstore.model.sessions import UiSession
from cfgstore.model.timefmt import now_ms
from cfgstore_gateway.gateway_plugins.model_usage_stats import ModelUsageStats
from cfgstore_gateway.plugin_api import GatewayPlugin, Outcome, PluginContext, TokenUsage
from tests.gateway.conftest import CLIENT_KEY, auth, make_deployment, serving

pytestmark = pytest.mark.asyncio


def outcome(
    provider_type: str | None = "openai-custom",
    model: str | None = "gpt-x",
    status: int = 200,
    usage: TokenUsage | None = None,
) -> Outcome:
    return Outcome(
        request_id=secrets.token_hex(4),
        path="/v1/chat/completions",
        protocol="openai",
        status=status,
        stream=False,
        latency_ms=5.0,
        model=model,
        provider_type=provider_type,
        node="n1",
        upstream_protocol="openai",
        usage=usage,
        admitted_by=None,
        admission={},
    )


@pytest_asyncio.fixture
async def started(tmp_path: Path) -> AsyncIterator[tuple[ModelUsageStats, Store]]:
    settings = make_deployment(tmp_path, {})
    async with Store.open(settings) as store:
        plugin = ModelUsageStats()
        await plugin.start(PluginContext(store, "test", lambda: True))
        yield plugin, store
        await plugin.stop()


async def test_the_plugin_meets_the_contract() -> None:
    plugin = ModelUsageStats()
    assert isinstance(plugin, GatewayPlugin)
    assert (plugin.name, plugin.priority, plugin.enabled_by_default) == (
        "model-usage-stats",
        9000,
        False,
    )
    assert b"export async function render" in plugin.console.script


async def test_only_answered_requests_are_counted_with_their_tokens(
    started: tuple[ModelUsageStats, Store],
) -> None:
    plugin, store = started
    await plugin.finished(outcome(usage=TokenUsage(10, 4, cached_tokens=3, reasoning_tokens=2)))
    await plugin.finished(outcome(usage=None))  # answered, no usage reported
    await plugin.finished(outcome(model=None, usage=TokenUsage(1, 1)))
    await plugin.finished(outcome("claude-kiro-oauth", "claude-x", usage=TokenUsage(5, 5)))
    await plugin.finished(outcome(status=502, usage=TokenUsage(100, 100)))  # upstream failed
    await plugin.finished(outcome(provider_type=None, status=401))  # no upstream reached
    doc = await store.usage_stats.read(live=False)
    summary = doc["summary"]
    assert (summary["requestCount"], summary["promptTokens"], summary["completionTokens"]) == (
        4,
        16,
        10,
    )
    assert (summary["totalTokens"], summary["cachedTokens"]) == (26, 3)
    models = doc["providers"]["openai-custom"]["models"]
    assert list(models) == ["gpt-x", "unknown"]
    assert models["gpt-x"]["requestCount"] == 2 and models["gpt-x"]["totalTokens"] == 14
    assert doc["providers"]["claude-kiro-oauth"]["summary"]["totalTokens"] == 10


async def test_routes_answer_node_shapes_to_a_session_or_the_client_key(
    started: tuple[ModelUsageStats, Store],
) -> None:
    plugin, store = started
    app = web.Application()
    for route in plugin.routes:
        assert route.access == "public"  # checked by the plugin: a session or the key
        app.router.add_route(route.method, route.path, route.handler)
    token = secrets.token_hex(32)
    await store.sessions.add(token, UiSession("admin", now_ms(), now_ms() + 3_600_000))
    await plugin.finished(outcome(usage=TokenUsage(7, 3)))
    async with serving(app) as url, aiohttp.ClientSession(url) as http:

        async def call(method: str, path: str, headers: dict[str, str]) -> tuple[int, Any]:
            async with http.request(method, path, headers=headers) as response:
                return response.status, await response.json()

        for refused in ({}, auth("wrong"), auth(secrets.token_hex(32))):
            status, body = await call("GET", "/api/model-usage-stats", refused)
            assert status == 401
            assert body["success"] is False and body["error"]["code"] == "UNAUTHORIZED"
        status, body = await call("GET", "/api/model-usage-stats", auth(token))
        assert status == 200 and body["success"] is True
        assert body["data"]["summary"]["totalTokens"] == 10
        assert {"qps", "tps", "rpm"} <= set(body["data"]["summary"])
        model = body["data"]["providers"]["openai-custom"]["models"]["gpt-x"]
        assert model["rpm"] >= 1
        status, body = await call("GET", "/api/model-usage-stats", {"x-api-key": CLIENT_KEY})
        assert status == 200 and body["data"]["summary"]["requestCount"] == 1

        status, body = await call("POST", "/api/model-usage-stats/reset-tokens", auth())
        assert status == 200 and body["success"] is True and body["message"]
        assert body["data"]["summary"]["requestCount"] == 1
        assert body["data"]["summary"]["totalTokens"] == 0
        status, body = await call("DELETE", "/api/model-usage-stats/reset", auth(token))
        assert status == 200 and body["data"]["summary"]["requestCount"] == 0
        assert body["data"]["providers"] == {} and body["data"]["daily"] == {}
        assert (await call("POST", "/api/model-usage-stats/reset", {}))[0] == 401
