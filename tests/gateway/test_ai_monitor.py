"""``ai-monitor``: off by default; enabled, it logs each exchange before and after conversion
(streams aggregated) with no key, token or password left in the log, each body cut at its
size limit, and keeps the last ones for its console tab (admin session only). With
``keepInStore`` (read live) two gateway instances on one Redis keep one capped log of
both's exchanges, with no secret in what Redis holds."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from cfgstore.adapters import Store
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.pools import node_from_json
from cfgstore.model.versions import ABSENT_VERSION
from cfgstore_gateway.app import create_app
from cfgstore_gateway.hookspecs import plugins_hookimpl
from cfgstore_gateway.plugin_api import Outcome
from cfgstore_gateway.plugin_runtime import PLUGINS, PluginRuntime
from tests.admin.conftest import PASSWORD, Admin, set_password
from tests.gateway.conftest import CLIENT_KEY, TYPE, WAIT_S, make_deployment, serving
from tests.gateway.protocol_stubs import MODEL, ProtocolStub
from tests.gateway.redis_instances import Namespace, delete_namespace, seeded_namespace

NODE = "0b0b0b0b-0000-4000-8000-00000000000b"
UPSTREAM_KEY = "sk-upstream-monitor-secret-0123456789"
BODY_SECRETS = {"api_key": "body-key-3f9a8c7e", "password": "hunter2-pass-77"}
LOGGER = "cfgstore_gateway.ai_monitor"


class After:
    """Runs after ai-monitor (priority 100): its outcome means the monitor has logged."""

    name = "after-monitor"
    description = "Marks the end of the monitor's work"
    priority = 200
    enabled_by_default = True

    def __init__(self) -> None:
        self.outcomes: asyncio.Queue[Outcome] = asyncio.Queue()

    async def finished(self, outcome: Outcome) -> None:
        self.outcomes.put_nowait(outcome)

    async def next(self) -> Outcome:
        return await asyncio.wait_for(self.outcomes.get(), WAIT_S)

    @plugins_hookimpl
    def cfgstore_gateway_plugins(self, register: Callable[[Any], None]) -> None:
        register(self)


@asynccontextmanager
async def monitored(
    tmp_path: Path, stub: ProtocolStub, enabled: bool = True
) -> AsyncIterator[tuple[Admin, After]]:
    pools = {
        "openai-custom": [
            {"uuid": NODE, "OPENAI_API_KEY": UPSTREAM_KEY, "OPENAI_BASE_URL": f"{stub.url}/v1"}
        ]
    }
    settings = make_deployment(tmp_path, pools)
    after = After()
    async with Store.open(settings) as store:
        await set_password(store)
        store.plugins.manager.register(after, name="after-monitor")
        if enabled:
            await store.plugin_config.put(PluginConfig({"ai-monitor": {"enabled": True}}))
        async with (
            serving(create_app(store)) as url,
            aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=WAIT_S * 3)) as client,
        ):
            yield Admin(client, store), after


async def ask(gw: Admin, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    async with gw.client.post(path, json=body, headers=headers) as response:
        data = await response.read()
        assert response.status == 200, data
        return data


def monitor_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


async def test_exchanges_are_logged_with_every_secret_masked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    chat = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hello monitor"}],
        "metadata": {"api_key": BODY_SECRETS["api_key"]},
        "user_password": BODY_SECRETS["password"],
    }
    claude = {
        "model": MODEL,
        "max_tokens": 50,
        "messages": [{"role": "user", "content": f"my key is {CLIENT_KEY}"}],
        "stream": True,
    }
    caplog.set_level(logging.INFO, LOGGER)
    async with ProtocolStub() as stub, monitored(tmp_path, stub) as (gw, after):
        await ask(gw, "/v1/chat/completions", chat, {"Authorization": f"Bearer {CLIENT_KEY}"})
        whole = await after.next()
        stream = await ask(gw, "/v1/messages", claude, {"x-api-key": CLIENT_KEY})
        streamed = await after.next()
        assert b"message_stop" in stream
        status, _ = await gw.call("GET", "/api/ai-monitor/recent")
        assert status == 401  # an admin route
        admin = await gw.login()
        status, recent = await admin.call("GET", "/api/ai-monitor/recent")
    lines = monitor_lines(caplog)
    text = "\n".join(lines)
    for secret in (CLIENT_KEY, UPSTREAM_KEY, *BODY_SECRETS.values()):
        assert secret not in text, secret
        assert secret not in json.dumps(recent), secret
    assert whole.usage is not None and streamed.usage is not None
    mine = [line for line in lines if f"[AI Monitor][{whole.request_id}]" in line]
    assert "openai -> openai" in mine[0] and "tokens 11/7" in mine[0]
    assert any("client request:" in m and "hello monitor" in m for m in mine)
    assert any("upstream request: (the client request, unchanged)" in m for m in mine)
    assert any("upstream reply:" in m and "chat.completion" in m for m in mine)
    theirs = [line for line in lines if f"[AI Monitor][{streamed.request_id}]" in line]
    assert "claude -> openai" in theirs[0] and "stream" in theirs[0]
    upstream_request = next(m for m in theirs if "upstream request:" in m)
    assert '"messages"' in upstream_request and "***" in upstream_request  # converted, masked
    reply = next(m for m in theirs if "upstream reply:" in m)
    assert reply.split("upstream reply: ", 1)[1].startswith("[")  # the stream's events, one array
    answer = next(m for m in theirs if "client reply:" in m)
    assert "message_delta" in answer
    headers = next(m for m in theirs if "request headers:" in m)
    assert '"X-Api-Key": "***"' in headers or '"x-api-key": "***"' in headers
    assert status == 200 and [e["requestId"] for e in recent["data"]] == [
        streamed.request_id,
        whole.request_id,
    ]


async def test_bodies_are_cut_and_the_monitor_is_off_by_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    big = "word " * 40_000  # 200 kB: past the gateway's 64 KiB capture and the 16 KiB lines
    body = {"model": MODEL, "messages": [{"role": "user", "content": big}]}
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    caplog.set_level(logging.INFO, LOGGER)
    async with ProtocolStub() as stub:
        async with monitored(tmp_path / "off", stub, enabled=False) as (gw, after):
            await ask(gw, "/v1/chat/completions", body, headers)
            off = await after.next()
            assert off.exchange is None  # nobody wants the bodies: none kept
        assert monitor_lines(caplog) == []
        async with monitored(tmp_path / "on", stub) as (gw, after):
            await ask(gw, "/v1/chat/completions", body, headers)
            outcome = await after.next()
    assert outcome.exchange is not None and outcome.exchange.truncated
    assert len(outcome.exchange.client_request) == 64 * 1024
    lines = monitor_lines(caplog)
    assert lines and max(len(line) for line in lines) < 16 * 1024 + 200
    assert any("more characters" in line for line in lines)
    assert any("cut at the gateway's capture limit" in line for line in lines)
    assert CLIENT_KEY not in "\n".join(lines)


# -- keepInStore: one log for every instance ------------------------------------------------

HEADER_TOKEN = "hdr-session-token-5d1c2b9a"


@pytest_asyncio.fixture
async def namespace(redis_url: str, tmp_path: Path) -> AsyncIterator[Namespace]:
    namespace = await seeded_namespace(redis_url, tmp_path, "aim-")
    try:
        yield namespace
    finally:
        await asyncio.to_thread(delete_namespace, redis_url, namespace.prefix)


@asynccontextmanager
async def instance(
    namespace: Namespace, name: str
) -> AsyncIterator[tuple[Admin, After, PluginRuntime]]:
    """A gateway instance (memory fallback over the namespace), its admin signed in."""
    async with Store.open(namespace.instance_settings(name)) as store:
        after = After()
        store.plugins.manager.register(after, name="after-monitor")
        app = create_app(store)
        async with (
            serving(app) as url,
            aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=WAIT_S * 3)) as client,
        ):
            admin = await Admin(client, store).login()
            yield admin, after, app[PLUGINS]


async def monitor_config(namespace: Namespace, entry: dict[str, Any]) -> None:
    async with Store.open(namespace.redis_settings()) as store:
        await store.plugin_config.put(PluginConfig({"ai-monitor": entry}))


async def test_two_instances_keep_one_capped_log_of_both_in_the_store_with_no_secret(
    namespace: Namespace, redis_url: str
) -> None:
    async with ProtocolStub() as stub:
        async with Store.open(namespace.redis_settings()) as store:
            config = {"REQUIRED_API_KEY": CLIENT_KEY, "MODEL_PROVIDER": TYPE}
            await store.config.put({**config, "REQUEST_MAX_RETRIES": 0}, ABSENT_VERSION)
            node = {
                "uuid": NODE,
                "OPENAI_API_KEY": UPSTREAM_KEY,
                "OPENAI_BASE_URL": f"{stub.url}/v1",
            }
            await store.pools.add_node(TYPE, node_from_json(node, "test"))
            await set_password(store)
        await monitor_config(namespace, {"enabled": True})
        key = "{" + namespace.prefix + "}:plog:ai-monitor"
        direct = aioredis.Redis.from_url(redis_url)
        try:
            async with (
                instance(namespace, "one") as (one, one_after, one_plugins),
                instance(namespace, "two") as (two, two_after, two_plugins),
            ):

                async def through(gw: Admin, after: After, n: int) -> str:
                    body = {
                        "model": MODEL,
                        "messages": [
                            {
                                "role": "user",
                                "content": f"q{n}: my keys {CLIENT_KEY} {UPSTREAM_KEY}",
                            }
                        ],
                        "metadata": {"api_key": BODY_SECRETS["api_key"]},
                        "user_password": BODY_SECRETS["password"],
                        "stream": n % 2 == 0,
                    }
                    headers = {
                        "Authorization": f"Bearer {CLIENT_KEY}",
                        "X-Session-Token": HEADER_TOKEN,
                    }
                    await ask(gw, "/v1/chat/completions", body, headers)
                    return (await after.next()).request_id

                # Off by default: memory only, nothing in Redis.
                await through(one, one_after, 0)
                assert await direct.llen(key) == 0
                status, alone = await one.call("GET", "/api/ai-monitor/recent")
                assert status == 200 and alone["source"] == "memory" and len(alone["data"]) == 1

                # keepInStore 5, written once: both instances follow it live.
                reloads = [one_plugins.changed(), two_plugins.changed()]
                await monitor_config(namespace, {"enabled": True, "keepInStore": 5})
                async with asyncio.timeout(WAIT_S):
                    await asyncio.gather(*reloads)
                ids = []
                for n in range(1, 9):  # alternately through each instance
                    gw, after = (one, one_after) if n % 2 else (two, two_after)
                    ids.append(await through(gw, after, n))

                newest = list(reversed(ids))[:5]
                for gw in (one, two):
                    status, recent = await gw.call("GET", "/api/ai-monitor/recent")
                    assert status == 200 and recent["source"] == "store"
                    assert [e["requestId"] for e in recent["data"]] == newest
                    instances = {e["instance"] for e in recent["data"]}
                    assert instances == {one.store.instance_id, two.store.instance_id}
                stored = await direct.lrange(key, 0, -1)
        finally:
            await direct.aclose()
    assert len(stored) == 5
    entries = [json.loads(raw) for raw in stored]
    assert [e["requestId"] for e in entries] == newest
    assert all("clientRequest" in e and "upstreamReply" in e for e in entries)
    assert any("q8: my keys ***" in e["clientRequest"] for e in entries)
    raw_text = b"\n".join(stored)
    secrets = (CLIENT_KEY, UPSTREAM_KEY, *BODY_SECRETS.values(), HEADER_TOKEN, PASSWORD)
    for secret in secrets:
        assert secret.encode() not in raw_text, secret
        assert json.dumps(secret)[1:-1].encode() not in raw_text, secret
