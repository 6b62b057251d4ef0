"""The api-potluck plugin object against real stores: two gateway instances (the memory
fallback over one real Redis, as two service processes run) admit a shared ``maki_`` key
exactly up to its daily limit, the Beijing day boundary resets it (clock injected), a
toggle is seen by both at once, refusals carry the Node codes, finished requests add their
tokens; its admin and owner routes answer in the Node shapes over HTTP.

The plugin is driven through its contract (``admit``/``finished``/``routes``), as the
gateway's plugin runtime calls it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from cfgstore.adapters import Store
from cfgstore.model import potluck as pl
from cfgstore_gateway.gateway_plugins.potluck import NAME, PotluckPlugin
from cfgstore_gateway.plugin_api import (
    Admit,
    ClientCall,
    Outcome,
    PluginContext,
    Refuse,
    TokenUsage,
)
from tests.gateway.conftest import WAIT_S, scaled, serving
from tests.gateway.redis_instances import Namespace, seeded_namespace
from tests.support.redis_server import RedisServerProcess

BEFORE_MIDNIGHT = 1_767_196_799_000  # 2025-12-31T23:59:59 Beijing (15:59:59 UTC)
MIDNIGHT = BEFORE_MIDNIGHT + 1_000  # 2026-01-01 in Beijing


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def call(*keys: str, request_id: str = "r") -> ClientCall:
    return ClientCall(request_id, "POST", "/v1/chat/completions", "openai", {}, {}, keys, None)


def outcome(admission: Admit, usage: TokenUsage | None, model: str = "gpt-4o") -> Outcome:
    return Outcome(
        request_id="r",
        path="/v1/chat/completions",
        protocol="openai",
        status=200,
        stream=False,
        latency_ms=1.0,
        model=model,
        provider_type="openai-custom",
        node="n1",
        upstream_protocol="openai",
        usage=usage,
        admitted_by=NAME,
        admission=admission.data,
    )


@pytest_asyncio.fixture
async def namespace(redis_url: str, tmp_path: Path) -> Namespace:
    return await seeded_namespace(redis_url, tmp_path, "pl")


@pytest_asyncio.fixture
async def instances(namespace: Namespace) -> AsyncIterator[tuple[PotluckPlugin, PotluckPlugin]]:
    """Two gateway instances' plugins, each over its own store, sharing one clock."""
    clock = Clock(BEFORE_MIDNIGHT - 60_000)
    async with AsyncExitStack() as stack:
        plugins = []
        for name in ("a", "b"):
            store = await stack.enter_async_context(Store.open(namespace.instance_settings(name)))
            plugin = PotluckPlugin(clock)
            await plugin.start(PluginContext(store, store.instance_id, lambda: True))
            stack.push_async_callback(plugin.stop)
            plugins.append(plugin)
        yield plugins[0], plugins[1]


async def test_two_instances_admit_exactly_the_daily_limit(
    instances: tuple[PotluckPlugin, PotluckPlugin], namespace: Namespace
) -> None:
    one, two = instances
    limit = scaled(100)
    key = await one.store.potluck.create("shared", limit, now=one.clock())
    answers = await asyncio.wait_for(
        asyncio.gather(
            *(
                (one, two)[i % 2].admit(call("sk-other", key["id"], request_id=str(i)))
                for i in range(3 * limit)
            )
        ),
        WAIT_S * 3,
    )
    admitted = [a for a in answers if isinstance(a, Admit)]
    refused = [a for a in answers if isinstance(a, Refuse)]
    assert (len(admitted), len(refused)) == (limit, 2 * limit)
    assert admitted[0].identity == pl.masked(key["id"])
    assert admitted[0].data["potluckApiKey"] == key["id"]
    assert {(r.status, r.code, r.message) for r in refused} == {
        (429, "quota_exceeded", "Quota exceeded for this API key")
    }
    assert refused[0].details == {
        "quota": {"used": limit, "limit": limit, "resetDate": "2025-12-31"}
    }
    async with Store.open(namespace.redis_settings()) as direct:
        stored = await direct.potluck.get(key["id"], one.clock())
    assert stored is not None
    assert (stored["todayUsage"], stored["totalUsage"]) == (limit, limit)


async def test_the_beijing_day_boundary_resets_the_quota(
    instances: tuple[PotluckPlugin, PotluckPlugin],
) -> None:
    one, two = instances
    clock = one.clock
    assert isinstance(clock, Clock)
    key = await one.store.potluck.create("daily", 2, now=clock())
    assert isinstance(await one.admit(call(key["id"])), Admit)
    assert isinstance(await two.admit(call(key["id"])), Admit)
    clock.now = BEFORE_MIDNIGHT
    refused = await two.admit(call(key["id"]))
    assert isinstance(refused, Refuse) and refused.status == 429
    clock.now = MIDNIGHT
    admitted = await one.admit(call(key["id"]))
    assert isinstance(admitted, Admit) and admitted.data["day"] == "2026-01-01"
    stored = await two.store.potluck.get(key["id"], clock.now)
    assert stored is not None
    assert (stored["todayUsage"], stored["totalUsage"], stored["lastResetDate"]) == (
        1,
        3,
        "2026-01-01",
    )


async def test_a_toggle_is_seen_by_both_instances_at_once(
    instances: tuple[PotluckPlugin, PotluckPlugin],
) -> None:
    one, two = instances
    key = await one.store.potluck.create("toggled", 0, now=one.clock())
    assert isinstance(await two.admit(call(key["id"])), Admit)
    async with asyncio.timeout(1.0):  # "within a second": no instance caches the key
        await one.store.potluck.toggle(key["id"])
        answers = [await p.admit(call(key["id"])) for p in (one, two)]
    assert [(a.status, a.code, a.message) for a in answers if isinstance(a, Refuse)] == [
        (403, "disabled", "API key has been disabled")
    ] * 2
    await two.store.potluck.toggle(key["id"])
    for plugin in (one, two):
        assert isinstance(await plugin.admit(call(key["id"])), Admit)


async def test_which_key_is_checked(instances: tuple[PotluckPlugin, PotluckPlugin]) -> None:
    one, _ = instances
    key = await one.store.potluck.create("first", now=one.clock())
    assert await one.admit(call()) is None
    assert await one.admit(call("sk-not-potluck")) is None
    unknown = await one.admit(call("maki_" + "0" * 32, key["id"]))
    assert isinstance(unknown, Refuse)
    assert (unknown.status, unknown.code, unknown.message) == (
        401,
        "not_found",
        "API key not found",
    )
    assert isinstance(await one.admit(call("sk-x", key["id"], "maki_" + "0" * 32)), Admit)


async def test_finished_requests_add_their_tokens(
    instances: tuple[PotluckPlugin, PotluckPlugin],
) -> None:
    one, two = instances
    key = await one.store.potluck.create("tokens", 0, now=one.clock())
    first = await one.admit(call(key["id"]))
    second = await two.admit(call(key["id"]))
    assert isinstance(first, Admit) and isinstance(second, Admit)
    await one.finished(outcome(first, TokenUsage(100, 20, 30, 5)))
    await two.finished(outcome(second, None, model="o1"))
    await one.finished(  # another plugin's admission is none of potluck's business
        attrs_evolve_admitted_by(outcome(first, TokenUsage(1, 1)), None)
    )
    await one.store.flush()
    await two.store.flush()
    stored = await one.store.potluck.get(key["id"], one.clock())
    assert stored is not None
    assert (stored["totalPromptTokens"], stored["totalCompletionTokens"]) == (100, 25)
    assert (stored["totalTokens"], stored["totalCachedTokens"]) == (125, 30)
    day = stored["usageHistory"]["2025-12-31"]
    assert day["summary"]["requestCount"] == 2
    assert day["models"]["gpt-4o"]["totalTokens"] == 125
    assert day["models"]["o1"]["requestCount"] == 1
    assert day["providers"]["openai-custom"]["requestCount"] == 2


def attrs_evolve_admitted_by(value: Outcome, admitted_by: str | None) -> Outcome:
    import attrs

    return attrs.evolve(value, admitted_by=admitted_by)


@pytest_asyncio.fixture
async def routes_url(
    instances: tuple[PotluckPlugin, PotluckPlugin],
) -> AsyncIterator[tuple[PotluckPlugin, aiohttp.ClientSession]]:
    """The plugin's routes mounted on a bare application (the gateway checks ``admin``
    access before them)."""
    plugin = instances[0]
    app = web.Application()
    for route in plugin.routes:
        app.router.add_route(route.method, route.path, route.handler)
    async with (
        serving(app) as url,
        aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=WAIT_S)) as client,
    ):
        yield plugin, client


async def answer(response: aiohttp.ClientResponse, status: int) -> Any:
    assert response.status == status, await response.text()
    return await response.json()


async def test_admin_routes_in_the_node_shapes(
    routes_url: tuple[PotluckPlugin, aiohttp.ClientSession],
) -> None:
    plugin, client = routes_url
    assert {r.access for r in plugin.routes if r.path.startswith("/api/potluck/")} == {"admin"}
    created = await answer(await client.post("/api/potluck/keys", json={"name": "alice"}), 201)
    assert created["success"] is True and created["message"] == "API Key 创建成功"
    kid = created["data"]["id"]
    assert pl.KEY_PATTERN.match(kid) and created["data"]["dailyLimit"] == 500
    await answer(await client.post("/api/potluck/keys", json={}), 201)
    listed = await answer(await client.get("/api/potluck/keys"), 200)
    assert [k["name"] for k in listed["data"]["keys"]] == ["alice", "Key-2"]
    assert listed["data"]["keys"][0]["maskedKey"] == pl.masked(kid)
    assert listed["data"]["stats"]["totalKeys"] == 2
    base = f"/api/potluck/keys/{kid}"
    limited = await answer(await client.put(f"{base}/limit", json={"dailyLimit": 1}), 200)
    assert limited["data"]["dailyLimit"] == 1
    await answer(await client.put(f"{base}/limit", json={"dailyLimit": -1}), 400)
    renamed = await answer(await client.put(f"{base}/name", json={"name": "bob"}), 200)
    assert renamed["data"]["name"] == "bob"
    bad = await answer(await client.put(f"{base}/name", json={"name": ""}), 400)
    assert bad == {"success": False, "error": {"message": "无效的名称值"}}
    assert isinstance(await plugin.admit(call(kid)), Admit)
    assert isinstance(await plugin.admit(call(kid)), Refuse)
    reset = await answer(await client.post(f"{base}/reset"), 200)
    assert reset["data"]["todayUsage"] == 0 and reset["data"]["totalUsage"] == 1
    assert isinstance(await plugin.admit(call(kid)), Admit)
    toggled = await answer(await client.post(f"{base}/toggle"), 200)
    assert toggled["message"] == "Key 已成功禁用" and toggled["data"]["enabled"] is False
    await answer(await client.post(f"{base}/toggle"), 200)
    await answer(await client.post(f"{base}/reset-tokens"), 200)
    applied = await answer(
        await client.post("/api/potluck/keys/apply-limit", json={"dailyLimit": 500}), 200
    )
    assert applied["data"] == {"total": 2, "updated": 1}  # Key-2 had 500 already
    await answer(await client.post("/api/potluck/keys/apply-limit", json={"dailyLimit": 0}), 400)
    stats = await answer(await client.get("/api/potluck/stats"), 200)
    assert stats["data"]["totalUsage"] == 2 and stats["data"]["enabledKeys"] == 2
    await answer(await client.post("/api/potluck/stats/reset-tokens"), 200)
    moved = await answer(await client.post(f"{base}/regenerate"), 200)
    new_id = moved["data"]["newKey"]
    assert moved["data"]["oldKey"] == kid and moved["data"]["keyData"]["name"] == "bob"
    assert moved["data"]["keyData"]["regeneratedFrom"] == kid[:12] + "..."
    missing = await answer(await client.get(base), 404)
    assert missing == {"success": False, "error": {"message": "未找到 Key"}}
    assert (await answer(await client.get(f"/api/potluck/keys/{new_id}"), 200))["data"][
        "totalUsage"
    ] == 2
    await answer(await client.delete(f"/api/potluck/keys/{new_id}"), 200)
    await answer(await client.delete(f"/api/potluck/keys/{new_id}"), 404)


async def test_the_owner_reads_their_usage(
    routes_url: tuple[PotluckPlugin, aiohttp.ClientSession],
) -> None:
    plugin, client = routes_url
    assert [r.access for r in plugin.routes if r.path == "/api/potluckuser/usage"] == ["public"]
    key = await plugin.store.potluck.create("owner", 1, now=plugin.clock())
    required = await answer(await client.get("/api/potluckuser/usage"), 401)
    assert required["error"]["code"] == "API_KEY_REQUIRED"
    assert isinstance(await plugin.admit(call(key["id"])), Admit)
    assert isinstance(await plugin.admit(call(key["id"])), Refuse)  # over quota
    mine = await answer(
        await client.get(
            "/api/potluckuser/usage", headers={"Authorization": f"Bearer {key['id']}"}
        ),
        200,
    )
    usage = mine["data"]["usage"]
    assert (usage["today"], usage["limit"], usage["remaining"], usage["percent"]) == (1, 1, 0, 100)
    assert usage["resetDate"] == "2025-12-31"
    assert mine["data"]["maskedKey"] == pl.masked(key["id"]) and mine["data"]["total"] == 1
    unknown = await answer(
        await client.get("/api/potluckuser/usage", headers={"x-api-key": "maki_" + "9" * 32}),
        401,
    )
    assert unknown["error"]["code"] == "not_found"
    await plugin.store.potluck.toggle(key["id"])
    disabled = await answer(
        await client.get("/api/potluckuser/usage", headers={"x-api-key": key["id"]}), 401
    )
    assert disabled["error"]["code"] == "disabled"


@pytest.mark.parametrize("limit", [0])
async def test_unlimited_keys_are_counted(
    instances: tuple[PotluckPlugin, PotluckPlugin], limit: int
) -> None:
    one, two = instances
    key = await one.store.potluck.create("free", limit, now=one.clock())
    answers = await asyncio.gather(*((one, two)[i % 2].admit(call(key["id"])) for i in range(20)))
    assert all(isinstance(a, Admit) for a in answers)
    stored = await one.store.potluck.get(key["id"], one.clock())
    assert stored is not None and stored["todayUsage"] == 20


async def test_an_outage_refuses_potluck_keys_and_counts_nothing(
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    """With Redis gone the limit is unknown: ``maki_`` keys are refused (503), never
    admitted on a guess; tokens of requests finished meanwhile are journaled and land once
    when the instance replays its journal."""
    namespace = await seeded_namespace(aof_server.url, tmp_path, "plo")
    clock = Clock(BEFORE_MIDNIGHT - 60_000)
    async with AsyncExitStack() as stack:
        plugins = []
        for name in ("a", "b"):
            store = await stack.enter_async_context(Store.open(namespace.instance_settings(name)))
            plugin = PotluckPlugin(clock)
            await plugin.start(PluginContext(store, store.instance_id, lambda: True))
            plugins.append(plugin)
        one, two = plugins
        key = await one.store.potluck.create("outage", 5, now=clock())
        admitted = await one.admit(call(key["id"]))
        assert isinstance(admitted, Admit)
        await aof_server.astop()
        for plugin in (one, two, one):
            refused = await asyncio.wait_for(plugin.admit(call(key["id"])), WAIT_S)
            assert isinstance(refused, Refuse)
            assert (refused.status, refused.code) == (503, "storage_unavailable")
        await one.finished(outcome(admitted, TokenUsage(7, 3)))  # journaled, not lost
        await aof_server.arestart()
    async with Store.open(namespace.instance_settings("a")) as again:  # replays its journal
        await asyncio.wait_for(again.flush(), WAIT_S)
    async with Store.open(namespace.redis_settings()) as direct:
        stored = await direct.potluck.get(key["id"], clock())
    assert stored is not None
    assert (stored["todayUsage"], stored["totalUsage"], stored["totalTokens"]) == (1, 1, 10)


async def test_tokens_of_an_instance_stopped_during_an_outage_land_once(
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    """Tokens finished while Redis is down go to the instance's journal; the instance stops
    before Redis is back; started again it replays them exactly once."""
    namespace = await seeded_namespace(aof_server.url, tmp_path, "plj")
    clock = Clock(BEFORE_MIDNIGHT - 60_000)
    settings = namespace.instance_settings("a")
    async with Store.open(settings) as store:
        plugin = PotluckPlugin(clock)
        await plugin.start(PluginContext(store, store.instance_id, lambda: True))
        key = await store.potluck.create("journaled", 0, now=clock())
        admitted = [await plugin.admit(call(key["id"])) for _ in range(3)]
        assert all(isinstance(a, Admit) for a in admitted)
        await store.flush()
        await aof_server.astop()
        for one in admitted:
            assert isinstance(one, Admit)
            await plugin.finished(outcome(one, TokenUsage(5, 2)))
        await asyncio.wait_for(store.flush(), WAIT_S)  # journaled: durable without Redis
        [status] = await store.top_status()
        assert int(status.details["journal depth"]) >= 1  # the tokens wait in the journal
        assert "api-potluck counts pending" not in status.details
    await aof_server.arestart()
    async with Store.open(settings) as store:
        await asyncio.wait_for(store.flush(), WAIT_S)
        async with Store.open(namespace.redis_settings()) as direct:
            stored = await direct.potluck.get(key["id"], clock())
    assert stored is not None
    assert (stored["totalUsage"], stored["totalPromptTokens"], stored["totalTokens"]) == (
        3,
        15,
        21,
    )
    assert stored["usageHistory"]["2025-12-31"]["summary"]["requestCount"] == 3
