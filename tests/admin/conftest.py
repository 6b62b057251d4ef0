"""Shared pieces of the admin API tests: a gateway over a file deployment (or over a Redis
namespace), signed-in clients, and checks that nothing changed after a refused request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest_asyncio

from cfgstore.adapters import Settings, Store
from cfgstore_gateway.app import create_app
from tests.gateway.conftest import TYPE, WAIT_S, api_node, make_deployment, serving
from tests.gateway.upstream_stub import UpstreamStub

PASSWORD = "correct horse battery"
SECRET_KEY = "sk-upstream-secret-0123456789abcdef"
NODE = "node-1"


@attrs.frozen
class Admin:
    """A gateway application on a loopback port and a client of its admin API."""

    client: aiohttp.ClientSession
    store: Store
    token: str | None = None

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        """One API call: (status, decoded JSON body or None)."""
        async with self.client.request(
            method, path, json=json, headers=self.headers(headers), **kwargs
        ) as response:
            body = await response.read()
            try:
                decoded = await response.json(content_type=None) if body else None
            except ValueError:
                decoded = body
            return response.status, decoded

    async def login(self, password: str = PASSWORD) -> Admin:
        status, body = await self.call("POST", "/api/login", json={"password": password})
        assert status == 200, body
        return attrs.evolve(self, token=body["token"])


async def set_password(store: Store, password: str = PASSWORD) -> None:
    """Store ``password`` in the legacy plaintext form: checking it costs nothing, where a
    ``pbkdf2:`` check costs ~0.25 s of CPU per login (``test_sessions_api`` covers that
    form)."""
    await store.password.put_stored(password)


def file_deployment(
    root: Path, upstream_url: str = "http://127.0.0.1:9", **config: Any
) -> Settings:
    """A configs folder with one openai-custom node holding :data:`SECRET_KEY`."""
    pools = {TYPE: [api_node(NODE, upstream_url, SECRET_KEY, customName="first")]}
    return make_deployment(root, pools, **config)


@asynccontextmanager
async def admin_gateway(settings: Settings, **app_options: Any) -> AsyncIterator[Admin]:
    """A gateway over ``settings`` with :data:`PASSWORD` as its admin password."""
    async with Store.open(settings) as store:
        await set_password(store)
        async with (
            serving(create_app(store, **app_options)) as url,
            aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=WAIT_S * 3)) as client,
        ):
            yield Admin(client, store)


@pytest_asyncio.fixture
async def anonymous(tmp_path: Path) -> AsyncIterator[Admin]:
    async with admin_gateway(file_deployment(tmp_path)) as admin:
        yield admin


@pytest_asyncio.fixture
async def admin(anonymous: Admin) -> Admin:
    return await anonymous.login()


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[UpstreamStub]:
    async with UpstreamStub() as stub:
        yield stub
