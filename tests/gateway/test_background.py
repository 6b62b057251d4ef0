"""Background work of the gateway: health checks (§3.7), the health alert webhook and the
proactive token refresh (§3.6), each driven one pass at a time (no sleeps).

Health checks run against a local OpenAI-compatible upstream (``UpstreamStub``) over a
file-backed store; the webhook and the proactive refresh run on two instances (memory
fallback over one Redis namespace, each with its own state directory), against a local
webhook stub and the token stub.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from cfgstore.adapters import Store
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import Credential
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import node_from_json
from cfgstore.model.timefmt import iso_ms, now_ms, parse_time_ms
from cfgstore_gateway.adapters import AdapterRegistry
from cfgstore_gateway.adapters.openai_compat import OpenAICompatAdapter
from cfgstore_gateway.health_checks import HealthChecker, HealthCheckSettings
from cfgstore_gateway.proactive_refresh import Background, ProactiveRefresher
from cfgstore_gateway.refresh import Refresher
from cfgstore_gateway.selection import Selector, SlotTable
from cfgstore_gateway.services import ConfigCache, GatewayOptions, Services
from cfgstore_gateway.webhook import HealthAlertWebhook
from tests.gateway.conftest import TYPE, api_node, make_deployment
from tests.gateway.health_support import NOW, checker, checking_upstream, clock, node, responder
from tests.gateway.redis_instances import Namespace, seeded_namespace
from tests.gateway.token_stub import Received as TokenReceived
from tests.gateway.token_stub import TokenStub
from tests.gateway.upstream_stub import Received, Reply, UpstreamStub
from tests.support.waiting import until

KIRO = "claude-kiro-oauth"
WAIT_S = 30.0


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[UpstreamStub]:
    async with checking_upstream() as running:
        yield running


# -- health checks -----------------------------------------------------------------------------


def checked_models(upstream: UpstreamStub) -> list[str]:
    return sorted(str(r.body["model"]) for r in upstream.chat_requests())


def test_settings_follow_the_interval_rules() -> None:
    off = HealthCheckSettings.of(MainConfig({}))
    assert not off.startup and not off.periodic
    short = HealthCheckSettings.of(
        MainConfig(
            {
                "SCHEDULED_HEALTH_CHECK": {
                    "enabled": True,
                    "interval": 1000,
                    "providerTypes": [TYPE],
                },
                "CRON_NEAR_MINUTES": 3,
            }
        )
    )
    assert short.periodic and short.interval_ms == 180_000
    startup_only = HealthCheckSettings.of(
        MainConfig({"SCHEDULED_HEALTH_CHECK": {"enabled": False, "providerTypes": [TYPE]}})
    )
    assert startup_only.startup and not startup_only.periodic
    assert startup_only.interval_ms == 600_000


async def test_scheduled_pass_marks_a_failure_unhealthy_at_once(
    tmp_path: Path, upstream: UpstreamStub, http: aiohttp.ClientSession
) -> None:
    url = upstream.base_url
    pools = {
        TYPE: [
            api_node("good", url, "k1", checkModelName="good-model", usageCount=4),
            api_node("bad", url, "k2", checkModelName="bad-model"),
            api_node("off", url, "k3", checkModelName="off-model", isDisabled=True),
        ],
        "openai-other": [api_node("other", url, "k4", checkModelName="other-model")],
    }
    health = {"enabled": True, "interval": 600000, "providerTypes": [TYPE]}
    settings = make_deployment(tmp_path, pools, SCHEDULED_HEALTH_CHECK=health)
    async with Store.open(settings) as store:
        usage_before = (await node(store, "good")).state.usage_count
        results = await checker(store, http).run_once()
        assert sorted((r.uuid, r.ok) for r in results) == [("bad", False), ("good", True)]
        assert checked_models(upstream) == ["bad-model", "good-model"]
        assert all(r.body["max_tokens"] == 1 for r in upstream.chat_requests())
        good, bad = await node(store, "good"), await node(store, "bad")
        assert good.state.is_healthy and good.state.usage_count >= max(1, usage_before)
        assert good.state.last_health_check_model == "good-model"
        assert parse_time_ms(good.state.last_health_check_time) == NOW
        assert not bad.state.is_healthy  # MAX_ERROR_COUNT is 3: one failure is enough
        assert bad.state.last_health_check_model == "bad-model"
        assert "500" in (bad.state.last_error_message or "")


async def test_startup_pass_accumulates_resets_usage_and_skips(
    tmp_path: Path, upstream: UpstreamStub, http: aiohttp.ClientSession
) -> None:
    url = upstream.base_url
    pools = {
        TYPE: [
            api_node("good", url, "k1", checkModelName="good-model", usageCount=4),
            api_node("bad", url, "k2", checkModelName="bad-model"),
            api_node(
                "recent",
                url,
                "k3",
                checkModelName="recent-model",
                isHealthy=False,
                lastErrorTime=iso_ms(NOW - 60_000),
            ),
            api_node(
                "old-error",
                url,
                "k4",
                checkModelName="old-model",
                isHealthy=False,
                lastErrorTime=iso_ms(NOW - 11 * 60_000),
            ),
            api_node(
                "cooling",
                url,
                "k5",
                checkModelName="cooling-model",
                scheduledRecoveryTime=iso_ms(NOW + 60_000),
            ),
        ]
    }
    health = {"enabled": False, "providerTypes": [TYPE]}
    settings = make_deployment(tmp_path, pools, SCHEDULED_HEALTH_CHECK=health)
    async with Store.open(settings) as store:
        results = await checker(store, http).run_once(startup=True)
        assert sorted(r.uuid for r in results) == ["bad", "good", "old-error"]
        assert checked_models(upstream) == ["bad-model", "good-model", "old-model"]
        good, bad = await node(store, "good"), await node(store, "bad")
        assert good.state.is_healthy and good.state.usage_count == 0
        assert bad.state.is_healthy and bad.state.error_count == 1  # accumulating
        assert bad.state.last_health_check_model == "bad-model"
        assert (await node(store, "old-error")).state.is_healthy
        assert not (await node(store, "recent")).state.is_healthy


# -- the background loops together -------------------------------------------------------------


def services_over(store: Store, session: aiohttp.ClientSession) -> Services:
    """A gateway's services as ``create_app`` builds them (OpenAI-compatible adapter)."""
    registry = AdapterRegistry()
    registry.register(OpenAICompatAdapter())
    slots = SlotTable()
    return Services(
        store=store,
        registry=registry,
        selector=Selector(slots),
        slots=slots,
        config=ConfigCache(store),
        session=session,
        refresher=Refresher(store, session),
        options=GatewayOptions(),
    )


def gateway_tasks() -> list[asyncio.Task[Any]]:
    """Running tasks whose coroutine is gateway code (stubs' and aiohttp's are not)."""
    package = str(Path(HealthChecker.__module__.replace(".", "/")).parent)
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if not task.done() and code is not None and package in code.co_filename:
            found.append(task)
    return found


async def test_background_runs_the_startup_check_and_stops_cleanly(
    namespace: Namespace,
) -> None:
    """Over a gateway instance's store (memory fallback over Redis, which announces health
    transitions): the startup pass checks the node, the webhook reports it healthy again,
    and ``stop`` cancels every loop at once."""
    checked = asyncio.Event()

    def answer(received: Received) -> Reply:
        if isinstance(received.body, dict) and received.body.get("max_tokens") == 1:
            checked.set()
        return responder(received)

    async with UpstreamStub(answer) as upstream, WebhookStub() as hook:
        # Unhealthy since 11 minutes: the startup pass checks it (younger errors: skipped).
        sick = api_node(
            "n1",
            upstream.base_url,
            "k1",
            checkModelName="good-model",
            isHealthy=False,
            errorCount=3,
            lastErrorTime=iso_ms(now_ms() - 11 * 60_000),
        )
        async with Store.open(namespace.redis_settings()) as seed:
            await seed.pools.add_node(TYPE, node_from_json(sick, "test"))
            current = await seed.config.get()
            config = dict(current.document)
            config.update(
                SCHEDULED_HEALTH_CHECK={
                    "enabled": True,
                    "interval": 600_000,
                    "providerTypes": [TYPE],
                },
                HEALTH_ALERT_WEBHOOK_URL=hook.url,
                CRON_REFRESH_TOKEN=True,
            )
            await seed.config.put(config, current.version)
        async with (
            Store.open(namespace.instance_settings("a")) as store,
            aiohttp.ClientSession() as session,
        ):
            assert gateway_tasks() == []
            background = Background.start(services_over(store, session))
            try:
                await asyncio.wait_for(checked.wait(), WAIT_S)  # the startup pass ran
                await asyncio.wait_for(hook.posted.wait(), WAIT_S)  # and was recorded
                assert {t.get_name() for t in gateway_tasks()} >= {
                    "cfgstore-health-checks",
                    "cfgstore-proactive-refresh",
                }
            finally:
                started = time.monotonic()
                await asyncio.wait_for(background.stop(), WAIT_S)
                stopped_in = time.monotonic() - started
            assert stopped_in < 2.0  # cancelled, not waited out (the next pass is 10 min off)
            assert gateway_tasks() == []
            assert [(b["uuid"], b["healthy"]) for b in hook.bodies] == [("n1", True)]
            state = (await node(store, "n1")).state
            assert state.is_healthy and state.last_health_check_model == "good-model"
            assert state.last_health_check_time is not None
            assert [r.body["model"] for r in upstream.chat_requests()] == ["good-model"]


# -- two instances over Redis ------------------------------------------------------------------


@pytest.fixture
async def namespace(redis_url: str, tmp_path: Path) -> Namespace:
    return await seeded_namespace(redis_url, tmp_path)


class WebhookStub:
    """A local HTTP server keeping every POSTed JSON body (``posted`` is set at the first)."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.posted = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        self.posted.set()
        return web.json_response({"ok": True})

    async def __aenter__(self) -> WebhookStub:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def test_webhook_posts_once_per_transition_across_two_instances(
    namespace: Namespace, http: aiohttp.ClientSession
) -> None:
    async with WebhookStub() as hook:
        config = MainConfig({"HEALTH_ALERT_WEBHOOK_URL": hook.url})

        async def source() -> MainConfig:
            return config

        async with Store.open(namespace.redis_settings()) as seed:
            await seed.pools.add_node(TYPE, node_from_json({"uuid": "n1"}, "test"))
        async with (
            Store.open(namespace.instance_settings("a")) as store_a,
            Store.open(namespace.instance_settings("b")) as store_b,
        ):
            webhooks = [HealthAlertWebhook(http, source), HealthAlertWebhook(http, source)]
            webhooks[0].register(store_a)
            webhooks[1].register(store_b)

            async def record(store: Store, ok: bool) -> None:
                await store.pools.record_health_check(
                    TYPE, "n1", ok=ok, model="m", max_error_count=3, immediate=True
                )
                await store.flush()
                for webhook in webhooks:
                    await webhook.drain()

            await record(store_a, False)  # healthy → unhealthy, caused by a
            assert [(b["uuid"], b["healthy"]) for b in hook.bodies] == [("n1", False)]
            await record(store_b, False)  # already unhealthy: no transition
            await record(store_a, False)
            assert len(hook.bodies) == 1
            await record(store_b, True)  # back to healthy, caused by b
            assert [b["healthy"] for b in hook.bodies] == [False, True]
            assert [w.sent for w in webhooks] == [1, 1]
            first = hook.bodies[0]
            assert set(first) == {"providerType", "uuid", "healthy", "timestamp"}
            assert first["providerType"] == TYPE
            assert parse_time_ms(first["timestamp"]) is not None
            for webhook, store in zip(webhooks, (store_a, store_b), strict=True):
                webhook.unregister(store)
                await webhook.aclose()


def kiro_doc(expires_ms: int) -> dict[str, JSONValue]:
    return {
        "accessToken": "old-access",
        "refreshToken": "old-refresh",
        "expiresAt": iso_ms(expires_ms),
        "authMethod": "social",
        "region": "eu-central-1",
    }


async def add_kiro(store: Store, uuid: str, expires_ms: int, refresh_url: str) -> None:
    path = f"./configs/{KIRO}/{uuid}.json"
    fields = {"uuid": uuid, "KIRO_OAUTH_CREDS_FILE_PATH": path, "KIRO_REFRESH_URL": refresh_url}
    await store.pools.add_node(KIRO, node_from_json(fields, "test"))
    await store.credentials.put(
        Credential(KIRO, uuid, kiro_doc(expires_ms), path), expected_version=None
    )


async def test_proactive_refresh_two_instances_one_call_per_credential(
    namespace: Namespace,
) -> None:
    async with TokenStub() as stub:

        def reply(received: TokenReceived, number: int) -> tuple[int, Any]:
            return 200, {
                "accessToken": f"new-access-{number}",
                "refreshToken": f"new-refresh-{number}",
                "expiresIn": 3600,
            }

        stub.responder = reply
        url = stub.url("/refresh")
        async with Store.open(namespace.redis_settings()) as seed:
            await add_kiro(seed, "near1", NOW + 10 * 60_000, url)  # inside 15 min
            await add_kiro(seed, "near2", NOW - 60_000, url)  # expired
            await add_kiro(seed, "fresh", NOW + 60 * 60_000, url)
            await seed.config.put({"CRON_NEAR_MINUTES": 15}, (await seed.config.get()).version)
        async with (
            Store.open(namespace.instance_settings("a")) as store_a,
            Store.open(namespace.instance_settings("b")) as store_b,
            aiohttp.ClientSession() as http_a,
            aiohttp.ClientSession() as http_b,
        ):
            refreshers = [
                Refresher(store, session, clock=clock, wait_for_other_s=WAIT_S)
                for store, session in ((store_a, http_a), (store_b, http_b))
            ]
            instances = [
                ProactiveRefresher(store, refresher, clock=clock)
                for store, refresher in zip((store_a, store_b), refreshers, strict=True)
            ]
            stub.hold()  # the first refresh stays in flight until the other instance waits
            runs = asyncio.gather(*(i.run_once() for i in instances))
            try:
                await stub.wait_for_requests(1, WAIT_S)
                await until(lambda: sum(r.stats.waited for r in refreshers) == 1, "one waiter")
            finally:
                stub.release()
            passes = await asyncio.wait_for(runs, WAIT_S)
        assert sum(r.stats.endpoint_calls for r in refreshers) == 2
        assert stub.count == 2
        near = {f"{KIRO}/near1", f"{KIRO}/near2"}
        # An instance that reads after the other's write finds the credential fresh.
        assert set(passes[0].refreshed) | set(passes[1].refreshed) == near
        for one in passes:
            assert one.failed == [] and f"{KIRO}/fresh" in one.fresh
            assert set(one.refreshed) | set(one.fresh) == near | {f"{KIRO}/fresh"}
        async with Store.open(namespace.redis_settings()) as check:
            tokens = set()
            for uuid in ("near1", "near2"):
                credential = await check.credentials.get(KIRO, uuid)
                assert credential is not None
                tokens.add(credential.document["accessToken"])
            assert tokens == {"new-access-1", "new-access-2"}
            fresh = await check.credentials.get(KIRO, "fresh")
            assert fresh is not None and fresh.document["accessToken"] == "old-access"
