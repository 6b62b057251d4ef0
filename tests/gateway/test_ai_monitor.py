"""``ai-monitor``: off by default; enabled, it logs each exchange before and after conversion
(streams aggregated) with no key, token or password left in the log, each body cut at its
size limit, and keeps the last ones for its console tab (admin session only)."""

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

from cfgstore.adapters import Store
from cfgstore.model.plugin_config import PluginConfig
from cfgstore_gateway.app import create_app
from cfgstore_gateway.hookspecs import plugins_hookimpl
from cfgstore_gateway.plugin_api import Outcome
from tests.admin.conftest import Admin, set_password
from tests.gateway.conftest import CLIENT_KEY, WAIT_S, make_deployment, serving
from tests.gateway.protocol_stubs import MODEL, ProtocolStub

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
