"""Browser tests of the gateway's web UI: a real gateway, a real Redis, a real Chromium.

* :func:`chromium_path`: Debian's ``chromium`` (``/usr/bin/chromium`` or on ``PATH``);
  Playwright's own browser downloads are never used. Without it the tests are skipped with
  the reason (``scripts/test`` installs it with apt-get when it runs as root).
* :func:`ui_gateway`: a private ``redis-server`` (AOF, so a stop and a restart keep the
  namespace) with a seeded namespace (client key, admin password, two plugins, health
  checks and proactive refresh off), one gateway application over a store with the memory
  fallback on it (as ``cfgctl serve`` runs it, in this process), and a local
  OpenAI-compatible upstream stub for the nodes the tests add.
* :func:`browser`: headless Chromium driven by Playwright's async API on the test's loop.

Screenshots go to ``test-artifacts/browser/`` at the repository root (gitignored), with
stable names, so a run leaves the latest pictures of each screen.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from cfgstore.adapters import Settings, Store
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.versions import ABSENT_VERSION
from cfgstore_gateway.app import create_app
from tests.gateway.conftest import serving
from tests.gateway.upstream_stub import UpstreamStub
from tests.support.namespace_seed import seed_namespace
from tests.support.redis_server import RedisServerProcess

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CLIENT_KEY = "browser-test-client-key-0123456789"
ADMIN_PASSWORD = "browser-admin-password"
TYPE = "openai-custom"

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

UI_WAIT_MS = 15_000
"""Bound of a wait for the page to show something the gateway already knows (the UI polls
every 2 s; the happy path takes one poll)."""
DEGRADE_WAIT_MS = 30_000
"""Redis stopped → the store degrades (``degrade_after_ms``) → the next status poll."""
RECOVER_WAIT_MS = 60_000
"""Redis back → the store's probe (backoff capped at ``probe_max_delay_ms``), the journal
replay and the resync → the next status poll."""
PLUGINS = {
    "ai-monitor": {"enabled": False, "description": "Logs requests and answers for review."},
    "default-auth": {"enabled": True, "description": "The client API key check."},
}


def chromium_path() -> str | None:
    """Debian's chromium: ``CFGSTORE_TEST_CHROMIUM`` when set, else ``/usr/bin/chromium``,
    else ``chromium`` on ``PATH``."""
    named = os.environ.get("CFGSTORE_TEST_CHROMIUM")
    if named:
        return named
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "browser tests need Debian's chromium (/usr/bin/chromium or `chromium` on PATH); "
            "scripts/test installs it with apt-get when run as root: "
            "apt-get install --no-install-recommends chromium"
        )
    return path


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest_asyncio.fixture
async def browser(chromium_executable: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_executable,
            headless=True,
            args=["--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield launched
        finally:
            await launched.close()


@attrs.frozen
class UiGateway:
    """The gateway under test: its URL, its store, its Redis and its upstream."""

    url: str
    store: Store
    redis: RedisServerProcess
    prefix: str
    upstream: UpstreamStub
    client: aiohttp.ClientSession
    """A plain HTTP client on the gateway (absolute URLs)."""

    def redis_only(self) -> Settings:
        return Settings(
            configs_dir=Path("unused"),
            backends=("redis",),
            redis_url=self.redis.url,
            redis_prefix=self.prefix,
        )

    async def chat(self) -> int:
        """One non-streamed chat request with the client key; its status."""
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        async with self.client.post(
            f"{self.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        ) as response:
            await response.read()
            return response.status

    async def api_token(self) -> str:
        """A session of the admin API (as a script would log in)."""
        async with self.client.post(
            f"{self.url}/api/login", json={"password": ADMIN_PASSWORD}
        ) as response:
            assert response.status == 200, await response.text()
            token: str = (await response.json())["token"]
            return token

    async def api_get(self, path: str, token: str) -> Any:
        async with self.client.get(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 200, f"GET {path}: {response.status} {await response.text()}"
            return await response.json()


async def seed(url: str, prefix: str) -> None:
    await asyncio.to_thread(seed_namespace, url, prefix)
    settings = Settings(
        configs_dir=Path("unused"), backends=("redis",), redis_url=url, redis_prefix=prefix
    )
    async with Store.open(settings) as admin:
        await admin.config.put(
            {
                "REQUIRED_API_KEY": CLIENT_KEY,
                "MODEL_PROVIDER": TYPE,
                "REQUEST_MAX_RETRIES": 0,
                "MAX_ERROR_COUNT": 3,
                "CRON_REFRESH_TOKEN": False,
                "SCHEDULED_HEALTH_CHECK": {"enabled": False, "providerTypes": []},
                "LOGIN_MIN_INTERVAL": 0,  # the tests sign in right after a wrong password
            },
            ABSENT_VERSION,
        )
        await admin.password.set(ADMIN_PASSWORD)
        await admin.plugin_config.put(
            PluginConfig(plugins={k: dict(v) for k, v in PLUGINS.items()})
        )


@pytest_asyncio.fixture
async def ui_gateway(tmp_path: Path, aof_server: RedisServerProcess) -> AsyncIterator[UiGateway]:
    server = aof_server
    prefix = f"ui{uuidlib.uuid4().hex[:12]}"
    await seed(server.url, prefix)
    settings = Settings(
        configs_dir=Path("unused"),
        backends=("memory", "redis"),
        redis_url=server.url,
        redis_prefix=prefix,
        state_dir=tmp_path / "state",
        probe_max_delay_ms=500,
        redis_connect_timeout_ms=500,
        redis_socket_timeout_ms=1000,
    )
    async with (
        UpstreamStub() as upstream,
        Store.open(settings) as store,
        serving(create_app(store)) as url,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client,
    ):
        yield UiGateway(url, store, server, prefix, upstream, client)


async def new_page(browser: Browser, viewport: dict[str, int], errors: list[str]) -> Page:
    """A page in a fresh context (its own sessionStorage); uncaught page errors go to
    ``errors`` (the tests assert there are none)."""
    context = await browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


async def log_in(page: Page, gateway: UiGateway) -> None:
    await page.goto(gateway.url + "/")
    await expect(page.get_by_test_id("login-form")).to_be_visible(timeout=UI_WAIT_MS)
    await page.get_by_test_id("login-password").fill(ADMIN_PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("view-providers")).to_be_visible(timeout=UI_WAIT_MS)
    await expect(page.get_by_test_id("storage-pill")).to_have_text("redis", timeout=UI_WAIT_MS)
