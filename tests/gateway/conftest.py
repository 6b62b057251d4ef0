"""Shared pieces of the gateway request tests: deployments on disk, a running gateway
(a real listening aiohttp server over a real Store, as ``cfgctl serve`` runs it) and a
local OpenAI-compatible upstream."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest_asyncio
from aiohttp import ClientResponse, web

from cfgstore.adapters import Settings, Store
from cfgstore.model import jsjson
from cfgstore.model.pools import ProviderNode
from cfgstore_gateway.app import create_app
from tests.gateway.upstream_stub import UpstreamStub

SCALE = float(os.environ.get("CFGSTORE_TEST_SCALE", "1"))
CLIENT_KEY = "test-client-key-0123456789"
TYPE = "openai-custom"
WAIT_S = 10.0
"""Bound of every wait in these tests (generous; the happy path takes milliseconds)."""


def scaled(count: float, minimum: int = 1) -> int:
    return max(minimum, int(count * SCALE))


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jsjson.dump_bytes(value))


def api_node(uuid: str, base_url: str, key: str, **fields: Any) -> dict[str, Any]:
    """An ``openai-custom``-style node (API key inline)."""
    return {"uuid": uuid, "OPENAI_API_KEY": key, "OPENAI_BASE_URL": base_url, **fields}


def make_deployment(
    root: Path, pools: Mapping[str, list[dict[str, Any]]], **config: Any
) -> Settings:
    """A configs folder under ``root`` with ``config.json`` (the test client key, small
    ``MAX_ERROR_COUNT``, ``config`` over that) and ``provider_pools.json``; its settings."""
    document: dict[str, Any] = {
        "REQUIRED_API_KEY": CLIENT_KEY,
        "REQUEST_MAX_RETRIES": 0,  # failures switch node at once (tests count calls)
        "MODEL_PROVIDER": TYPE,
        "MAX_ERROR_COUNT": 3,
        "CREDENTIAL_SWITCH_MAX_RETRIES": 5,
    }
    document.update(config)
    configs = root / "configs"
    write_json(configs / "config.json", document)
    write_json(configs / "provider_pools.json", dict(pools))
    return Settings(configs_dir=configs, state_dir=root / "state", watch_interval_ms=0)


def auth(key: str = CLIENT_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@attrs.frozen
class Gateway:
    """A gateway application on a test server, over ``store``."""

    client: aiohttp.ClientSession
    store: Store

    async def chat(
        self,
        model: str = "gpt-4o",
        *,
        stream: bool = False,
        headers: Mapping[str, str] | None = None,
        path: str = "/v1/chat/completions",
        **extra: Any,
    ) -> ClientResponse:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
        if stream:
            body["stream"] = True
        return await self.client.post(path, json=body, headers={**auth(), **(headers or {})})

    async def node(self, uuid: str, provider_type: str = TYPE) -> ProviderNode:
        node = await self.store.pools.get_node(provider_type, uuid)
        assert node is not None, f"node {provider_type}/{uuid} missing"
        return node


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port as ``cfgctl serve`` does (aiohttp's access log
    off, no handler cancellation); yields the base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=WAIT_S)
    await runner.setup()
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await asyncio.wait_for(runner.cleanup(), WAIT_S * 2)


@asynccontextmanager
async def running_gateway(settings: Settings, **app_options: Any) -> AsyncIterator[Gateway]:
    """Open a store on ``settings`` and serve a gateway over it (closed afterwards)."""
    async with (
        Store.open(settings) as store,
        serving(create_app(store, **app_options)) as url,
        aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=WAIT_S * 3)) as client,
    ):
        yield Gateway(client, store)


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[UpstreamStub]:
    async with UpstreamStub() as stub:
        yield stub


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client session (no base URL)."""
    async with aiohttp.ClientSession() as session:
        yield session
