"""api-potluck through running gateways (the plugin runtime, the plugin from its entry
point): two instances on one real Redis share a ``maki_`` key's daily quota exactly; the
Beijing day boundary resets it; a key disabled on one instance is refused on the other at
once; refusals reach official SDKs in their protocol's error shape; the owner reads their
usage; the admin routes need an admin session; a disabled plugin leaves ``maki_`` keys to
the client-key check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest_asyncio

from cfgstore.adapters import Settings, Store
from cfgstore.model import potluck as pl
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.pools import node_from_json
from cfgstore_gateway.app import create_app
from cfgstore_gateway.gateway_plugins.potluck import PotluckPlugin
from cfgstore_gateway.plugin_runtime import PLUGINS, PluginRuntime
from tests.admin.conftest import Admin, set_password
from tests.gateway.conftest import CLIENT_KEY, WAIT_S, scaled, serving
from tests.gateway.protocol_stubs import MODEL, ProtocolStub
from tests.gateway.redis_instances import Namespace, delete_namespace, seeded_namespace

TYPE = "openai-custom"
NODE = "0b0b0b0b-0000-4000-8000-00000000000b"
BEFORE_MIDNIGHT = 1_767_196_799_000  # 2025-12-31T23:59:59 Beijing (15:59:59 UTC)


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest_asyncio.fixture
async def stub() -> AsyncIterator[ProtocolStub]:
    async with ProtocolStub() as running:
        yield running


@pytest_asyncio.fixture
async def namespace(redis_url: str, tmp_path: Path, stub: ProtocolStub) -> AsyncIterator[Namespace]:
    """A Redis namespace with one upstream node, a client key and api-potluck enabled."""
    namespace = await seeded_namespace(redis_url, tmp_path, "plk-")
    async with Store.open(namespace.redis_settings()) as seed:
        config = await seed.config.get()
        await seed.config.put(
            {**config.document, "REQUIRED_API_KEY": CLIENT_KEY, "MODEL_PROVIDER": TYPE},
            config.version,
        )
        node = {"uuid": NODE, "OPENAI_API_KEY": "sk-up-0123", "OPENAI_BASE_URL": f"{stub.url}/v1"}
        await seed.pools.add_node(TYPE, node_from_json(node, "test"))
        await seed.plugin_config.put(PluginConfig({"api-potluck": {"enabled": True}}))
        await set_password(seed)
    try:
        yield namespace
    finally:
        await asyncio.to_thread(delete_namespace, redis_url, namespace.prefix)


@asynccontextmanager
async def gateways(
    settings: Sequence[Settings], clock: Clock
) -> AsyncIterator[list[tuple[Admin, PluginRuntime, str]]]:
    """Running gateways over ``settings`` (client, plugin runtime, base URL), their
    api-potluck plugins on ``clock``."""
    async with AsyncExitStack() as stack:
        running = []
        for one in settings:
            store = await stack.enter_async_context(Store.open(one))
            app = create_app(store)
            url = await stack.enter_async_context(serving(app))
            client = await stack.enter_async_context(
                aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=WAIT_S * 3))
            )
            plugin = next(p for p in app[PLUGINS].plugins if p.name == "api-potluck")
            assert isinstance(plugin, PotluckPlugin)
            plugin.clock = clock
            running.append((Admin(client, store), app[PLUGINS], url))
        yield running


def chat(stream: bool = False) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


async def send(gateway: Admin, key: str) -> tuple[int, Any]:
    return await gateway.call(
        "POST", "/v1/chat/completions", json=chat(), headers={"Authorization": f"Bearer {key}"}
    )


async def test_two_gateways_admit_exactly_the_daily_limit(
    namespace: Namespace, stub: ProtocolStub
) -> None:
    clock = Clock(BEFORE_MIDNIGHT - 3_600_000)
    limit = scaled(100)
    settings = [namespace.instance_settings(n) for n in ("a", "b")]
    async with gateways(settings, clock) as [(one, _, _), (two, _, _)]:
        key = await one.store.potluck.create("shared", limit, now=clock())
        answers = await asyncio.wait_for(
            asyncio.gather(*(send((one, two)[i % 2], key["id"]) for i in range(3 * limit))),
            WAIT_S * 6,
        )
        statuses = [status for status, _ in answers]
        assert (statuses.count(200), statuses.count(429)) == (limit, 2 * limit), statuses
        refused = next(body for status, body in answers if status == 429)
        assert refused["error"]["code"] == "quota_exceeded"
        assert refused["error"]["message"] == "Quota exceeded for this API key"
        assert refused["error"]["quota"] == {
            "used": limit,
            "limit": limit,
            "resetDate": "2025-12-31",
        }
        assert len(stub.received) == limit
        stored = await two.store.potluck.get(key["id"], clock())
        assert stored is not None and stored["todayUsage"] == limit

        clock.now = BEFORE_MIDNIGHT  # the last second of the Beijing day: still spent
        assert (await send(two, key["id"]))[0] == 429
        clock.now = BEFORE_MIDNIGHT + 1_000  # 16:00 UTC: a new Beijing day
        assert (await send(two, key["id"]))[0] == 200
        assert (await send(one, key["id"]))[0] == 200
        stored = await one.store.potluck.get(key["id"], clock())
        assert stored is not None
        assert (stored["todayUsage"], stored["totalUsage"], stored["lastResetDate"]) == (
            2,
            limit + 2,
            "2026-01-01",
        )
    # Stopped gateways have handed every outcome to the plugin; the tokens are stored.
    async with Store.open(namespace.redis_settings()) as direct:
        stored = await direct.potluck.get(key["id"], clock())
    assert stored is not None
    assert (stored["totalPromptTokens"], stored["totalCompletionTokens"]) == (
        11 * (limit + 2),
        7 * (limit + 2),
    )
    history = stored["usageHistory"]
    assert history["2025-12-31"]["summary"]["requestCount"] == limit
    assert history["2026-01-01"]["models"][MODEL]["requestCount"] == 2
    assert history["2026-01-01"]["providers"][TYPE]["totalTokens"] == 36


async def test_a_key_disabled_on_one_gateway_is_refused_on_the_other(
    namespace: Namespace,
) -> None:
    clock = Clock(BEFORE_MIDNIGHT - 3_600_000)
    settings = [namespace.instance_settings(n) for n in ("a", "b")]
    async with gateways(settings, clock) as [(one, _, _), (two, _, _)]:
        admin = await one.login()
        status, created = await admin.call("POST", "/api/potluck/keys", json={"name": "t"})
        assert status == 201, created
        kid = created["data"]["id"]
        assert (await send(two, kid))[0] == 200
        async with asyncio.timeout(1.0):  # within a second, on the other instance
            status, toggled = await admin.call("POST", f"/api/potluck/keys/{kid}/toggle")
            assert status == 200 and toggled["data"]["enabled"] is False
            status, body = await send(two, kid)
        assert status == 403
        assert (body["error"]["code"], body["error"]["message"]) == (
            "disabled",
            "API key has been disabled",
        )
        status, body = await send(two, "maki_" + "0" * 32)
        assert (status, body["error"]["code"]) == (401, "not_found")
        assert (await send(one, CLIENT_KEY))[0] == 200  # other keys: the client-key check


async def test_sdks_see_the_refusal_in_their_protocol(namespace: Namespace) -> None:
    clock = Clock(BEFORE_MIDNIGHT - 3_600_000)
    async with gateways([namespace.instance_settings("a")], clock) as [(gateway, _, base)]:
        key = await gateway.store.potluck.create("sdk", 1, now=clock())
        client = openai.AsyncOpenAI(api_key=key["id"], base_url=f"{base}/v1", max_retries=0)
        answer = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.choices and answer.choices[0].finish_reason  # an answer came back
        try:
            await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}]
            )
        except openai.RateLimitError as exc:
            error = exc.response.json()["error"]
            assert error["code"] == "quota_exceeded" and error["quota"]["limit"] == 1
        else:
            raise AssertionError("the second request passed the quota")
        claude = anthropic.AsyncAnthropic(api_key=key["id"], base_url=base, max_retries=0)
        try:
            await claude.messages.create(
                model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "hi"}]
            )
        except anthropic.RateLimitError as exc:
            assert exc.status_code == 429
            assert "Quota exceeded for this API key" in str(exc)
        else:
            raise AssertionError("the Claude request passed the quota")


async def test_owner_and_admin_routes_through_the_gateway(namespace: Namespace) -> None:
    clock = Clock(BEFORE_MIDNIGHT - 3_600_000)
    async with gateways([namespace.instance_settings("a")], clock) as [(anonymous, runtime, _)]:
        key = await anonymous.store.potluck.create("owner", 5, now=clock())
        assert (await send(anonymous, key["id"]))[0] == 200
        status, _ = await anonymous.call("GET", "/api/potluck/keys")
        assert status == 401  # an admin session is needed
        status, mine = await anonymous.call(
            "GET", "/api/potluckuser/usage", headers={"x-api-key": key["id"]}
        )
        assert status == 200, mine
        assert mine["data"]["usage"]["today"] == 1 and mine["data"]["usage"]["remaining"] == 4
        admin = await anonymous.login()
        status, listed = await admin.call("GET", "/api/potluck/keys")
        assert status == 200 and listed["data"]["keys"][0]["maskedKey"] == pl.masked(key["id"])
        assert listed["data"]["stats"]["todayTotalUsage"] == 1
        changed = runtime.changed()
        await admin.store.plugin_config.set_enabled("api-potluck", False)
        while True:  # each re-read of plugins.json, until the plugin is off
            await asyncio.wait_for(changed, WAIT_S)
            if not runtime.is_enabled("api-potluck"):
                break
            changed = runtime.changed()
        assert (await send(anonymous, key["id"]))[0] == 401  # the client-key check decides
        assert (await admin.call("GET", "/api/potluck/keys"))[0] == 404
