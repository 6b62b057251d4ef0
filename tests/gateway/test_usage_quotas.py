"""Account quotas into the usage cache (issue 18.5): the admin usage routes ask the adapters'
``usage()`` once for all instances on one Redis, record each node's answer or error, patch a
node's refresh into the cache, cool spent accounts down until their reset, and refresh on a
schedule once per period whatever the number of instances.

The account adapter is this file's: the OpenAI-compatible adapter for ``openai-qwen-oauth``
plus a ``usage()`` that asks a local quota stub with the node's credential (the real
refresher, its token endpoint stubbed). Chat goes to the local OpenAI-compatible stub.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest_asyncio
from aiohttp import web

from cfgstore.adapters import Settings, Store
from cfgstore.model.credentials import Credential
from cfgstore.model.pools import node_from_json
from cfgstore.model.timefmt import iso_ms, now_ms, parse_time_ms
from cfgstore_gateway.adapters import (
    CredentialRejected,
    ModelsCall,
    UpstreamUnavailable,
)
from cfgstore_gateway.adapters.openai_compat import PROFILES, OpenAICompatAdapter
from cfgstore_gateway.app import create_app
from cfgstore_gateway.usage_quotas import QUOTAS, UsageQuotas, spent_until
from tests.admin.conftest import PASSWORD, Admin, admin_gateway, set_password
from tests.gateway.codex_stub import CodexStub
from tests.gateway.conftest import (
    CLIENT_KEY,
    WAIT_S,
    api_node,
    auth,
    make_deployment,
    serving,
    write_json,
)
from tests.gateway.redis_instances import Namespace, delete_namespace, seeded_namespace
from tests.gateway.test_codex_adapter import CODEX, codex_document, codex_node, fake_jwt
from tests.gateway.token_stub import TokenStub
from tests.gateway.upstream_stub import UpstreamStub
from tests.support.waiting import until

QWEN = "openai-qwen-oauth"
OTHER = "openai-custom"
NODES = ("q1", "q2", "q3")
FAR = 86_400_000


def usage_of(percent: float, reset_ms: int | None) -> dict[str, Any]:
    """A formatted usage object (aiclient-protocols §4.2) at ``percent`` used."""
    reset = iso_ms(reset_ms) if reset_ms is not None else None
    return {
        "summary": {
            "usedPercent": percent,
            "status": "danger" if percent > 90 else "normal",
            "resetAt": reset,
            "plan": "FREE",
            "planClass": "plan-free",
            "unit": "percent",
        },
        "user": {"email": "someone@example.com"},
        "items": [
            {"id": "m", "label": "m", "used": percent, "limit": 100, "percent": percent}
            | {"unit": "percent", "status": "normal", "resetAt": reset}
        ],
        "raw": {"percent": percent},
    }


@attrs.define
class Asked:
    uuid: str
    token: str | None


Answer = Callable[[Asked], tuple[int, Any]]


class QuotaStub:
    """A local quota API: ``GET /usage/<uuid>`` with the node's bearer token; records every
    call, answers what ``answer`` says, and can hold answers while a test lines callers up."""

    def __init__(self) -> None:
        self.answer: Answer = lambda asked: (200, usage_of(10, None))
        self.asked: list[Asked] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    def count(self, uuid: str | None = None) -> int:
        return sum(1 for a in self.asked if uuid is None or a.uuid == uuid)

    async def wait_for(self, count: int) -> None:
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: self.count() >= count), WAIT_S)

    async def _handle(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        asked = Asked(request.match_info["uuid"], header.removeprefix("Bearer ") or None)
        self.asked.append(asked)
        async with self._arrived:
            self._arrived.notify_all()
        await asyncio.wait_for(self.gate.wait(), WAIT_S)
        status, body = self.answer(asked)
        return web.json_response(body, status=status)

    async def __aenter__(self) -> QuotaStub:
        app = web.Application()
        app.router.add_get("/usage/{uuid}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.gate.set()
        assert self._runner is not None
        await self._runner.cleanup()


class QuotaAdapter(OpenAICompatAdapter):
    """An account adapter for ``openai-qwen-oauth`` reporting quotas from the stub."""

    name = "quota-test"

    def __init__(self, stub: QuotaStub) -> None:
        super().__init__({QWEN: PROFILES[QWEN]})
        self.stub = stub

    async def usage(self, call: ModelsCall) -> dict[str, Any]:
        assert call.credential is not None
        token = call.credential.document.get("access_token")
        url = f"{self.stub.url}/usage/{call.node.uuid}"
        try:
            async with call.session.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
                body = await r.json(content_type=None)
                status = r.status
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"quota API unreachable: {exc}") from exc
        if status == 401:
            raise CredentialRejected("quota API: HTTP 401")
        if status != 200:
            raise UpstreamUnavailable(f"quota API: HTTP {status}")
        assert isinstance(body, dict)
        return body


@attrs.frozen
class Instance:
    admin: Admin
    app: web.Application

    @property
    def quotas(self) -> UsageQuotas:
        return self.app[QUOTAS]

    async def get(self, path: str) -> Any:
        status, body = await self.admin.call("GET", path)
        assert status == 200, body
        return body


@attrs.define
class World:
    namespace: Namespace
    quota: QuotaStub
    upstream: UpstreamStub
    tokens: TokenStub

    @asynccontextmanager
    async def instance(self, name: str) -> AsyncIterator[Instance]:
        settings: Settings = self.namespace.instance_settings(name)
        adapters = [OpenAICompatAdapter(), QuotaAdapter(self.quota)]
        async with Store.open(settings) as store:
            await set_password(store)
            app = create_app(store, adapters=adapters)
            async with (
                serving(app) as url,
                aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=WAIT_S)) as http,
            ):
                admin = await Admin(http, store).login(PASSWORD)
                yield Instance(admin, app)

    @asynccontextmanager
    async def instances(self, count: int) -> AsyncIterator[list[Instance]]:
        async with AsyncExitStack() as stack:
            yield [await stack.enter_async_context(self.instance(f"i{n}")) for n in range(count)]

    async def configure(self, **config: Any) -> None:
        async with Store.open(self.namespace.redis_settings()) as store:
            current = await store.config.get()
            await store.config.put({**current.document, **config}, current.version)


@pytest_asyncio.fixture
async def world(redis_url: str, tmp_path: Path) -> AsyncIterator[World]:
    namespace = await seeded_namespace(redis_url, tmp_path, "quota-")
    async with QuotaStub() as quota, UpstreamStub() as upstream, TokenStub() as tokens:
        tokens.responder = lambda received, n: (
            200,
            {"access_token": f"fresh-{n}", "token_type": "bearer", "expires_in": 7200},
        )
        async with Store.open(namespace.redis_settings()) as store:
            config = await store.config.get()
            document = {
                **config.document,
                "REQUIRED_API_KEY": CLIENT_KEY,
                "MODEL_PROVIDER": QWEN,
                "REQUEST_MAX_RETRIES": 0,
            }
            await store.config.put(document, config.version)
            for uuid in NODES:
                path = f"./configs/qwen/{uuid}.json"
                fields = {
                    "uuid": uuid,
                    "QWEN_OAUTH_CREDS_FILE_PATH": path,
                    "QWEN_BASE_URL": upstream.base_url,
                    "QWEN_OAUTH_BASE_URL": tokens.url("/qwen"),
                    "QWEN_OAUTH_CLIENT_ID": "FAKE-qwen-client",
                }
                await store.pools.add_node(QWEN, node_from_json(fields, "test"))
                document = {
                    "access_token": f"old-{uuid}",
                    "token_type": "Bearer",
                    "refresh_token": f"refresh-{uuid}",
                    "resource_url": "portal.qwen.ai",
                    "expiry_date": now_ms() + FAR,
                }
                await store.credentials.put(Credential(QWEN, uuid, document, path), None)
            other = api_node("k1", upstream.base_url, "sk-other-0123456789")
            await store.pools.add_node(OTHER, node_from_json(other, "test"))
        try:
            yield World(namespace, quota, upstream, tokens)
        finally:
            await asyncio.to_thread(delete_namespace, redis_url, namespace.prefix)


def by_uuid(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["uuid"]: i for i in entry["instances"]}


async def test_a_refresh_on_one_instance_is_what_the_other_reads_without_asking(
    world: World,
) -> None:
    async with world.instances(2) as (one, two):
        fresh = await one.get("/api/usage?refresh=true")
        assert "fromCache" not in fresh and fresh["serverTime"]
        entry = fresh["providers"][QWEN]
        assert (entry["totalCount"], entry["successCount"], entry["errorCount"]) == (3, 3, 0)
        assert by_uuid(entry)["q1"]["usage"]["summary"]["usedPercent"] == 10
        assert by_uuid(entry)["q1"]["configFilePath"] == "./configs/qwen/q1.json"
        counted = fresh["providers"][OTHER]  # no usage(): the gateway's own counters
        assert counted["instances"][0]["usage"]["summary"]["unit"] == "requests"
        assert world.quota.count() == 3
        assert {a.token for a in world.quota.asked} == {"old-q1", "old-q2", "old-q3"}

        cached = await two.get("/api/usage")
        assert cached["fromCache"] is True
        assert cached["providers"][QWEN] == entry
        of_type = await two.get(f"/api/usage/{QWEN}")
        assert of_type["fromCache"] is True and of_type["cachedAt"] == cached["timestamp"]
        assert of_type["instances"] == entry["instances"]
        assert world.quota.count() == 3  # the second instance asked no upstream

        assert await two.get("/api/usage/supported-providers") == [QWEN]


async def test_two_instances_refreshing_at_once_ask_each_node_once(world: World) -> None:
    async with world.instances(2) as (one, two):
        refused: list[str] = []
        take = two.admin.store.leases.take

        async def watched_take(name: str, ttl_ms: int) -> str | None:
            token = await take(name, ttl_ms)
            if token is None:
                refused.append(name)
            return token

        two.admin.store.leases.take = watched_take  # type: ignore[method-assign]
        world.quota.gate.clear()
        first = asyncio.create_task(one.get("/api/usage?refresh=true"))
        await world.quota.wait_for(3)  # one's refresh is asking every node
        second = asyncio.create_task(two.get(f"/api/usage/{QWEN}?refresh=true"))
        await until(lambda: f"usage:type:{QWEN}" in refused, "two finding the refresh under way")
        world.quota.gate.set()
        got_one, got_two = await asyncio.gather(first, second)
        assert world.quota.count() == 3
        assert {a.uuid for a in world.quota.asked} == set(NODES)
        assert got_two["instances"] == got_one["providers"][QWEN]["instances"]
        assert got_two["successCount"] == 3


async def test_one_failing_node_is_its_instance_error_and_a_401_refreshes_once(
    world: World,
) -> None:
    def answer(asked: Asked) -> tuple[int, Any]:
        if asked.uuid == "q2":
            return 500, {"error": "quota backend down"}
        if asked.uuid == "q3" and asked.token == "old-q3":
            return 401, {"error": "expired"}
        return 200, usage_of(25, None)

    world.quota.answer = answer
    async with world.instances(1) as (one,):
        entry = (await one.get("/api/usage?refresh=true"))["providers"][QWEN]
        assert (entry["totalCount"], entry["successCount"], entry["errorCount"]) == (3, 2, 1)
        instances = by_uuid(entry)
        assert instances["q2"]["success"] is False and instances["q2"]["usage"] is None
        assert instances["q2"]["error"] == "quota API: HTTP 500"
        assert instances["q1"]["success"] is True and instances["q1"]["error"] is None
        assert instances["q3"]["success"] is True
        q3_tokens = [a.token for a in world.quota.asked if a.uuid == "q3"]
        assert q3_tokens == ["old-q3", "fresh-1"]  # refreshed once, asked again
        assert world.tokens.count == 1
        q2 = await one.admin.store.pools.get_node(QWEN, "q2")
        assert q2 is not None and q2.state.is_healthy  # a quota query failure marks nothing


async def test_a_node_refresh_patches_its_instance_and_recounts(world: World) -> None:
    broken = {"q2"}
    world.quota.answer = lambda asked: (
        (503, {}) if asked.uuid in broken else (200, usage_of(40, None))
    )
    async with world.instances(2) as (one, two):
        before = (await one.get("/api/usage?refresh=true"))["providers"][QWEN]
        assert (before["successCount"], before["errorCount"]) == (2, 1)
        broken.clear()
        instance = await two.get(f"/api/usage/{QWEN}/q2")
        assert instance["uuid"] == "q2" and instance["success"] is True
        assert instance["usage"]["summary"]["usedPercent"] == 40 and instance["serverTime"]
        assert [world.quota.count(u) for u in NODES] == [1, 2, 1]  # only q2 asked again
        after = await one.get(f"/api/usage/{QWEN}")
        assert after["fromCache"] is True
        assert (after["totalCount"], after["successCount"], after["errorCount"]) == (3, 3, 0)
        assert [i["uuid"] for i in after["instances"]] == list(NODES)  # in place
        assert by_uuid(after)["q1"] == by_uuid(before)["q1"]
        status, _ = await one.admin.call("GET", f"/api/usage/{QWEN}/nobody")
        assert status == 404
        counted = await one.get(f"/api/usage/{OTHER}/k1")  # no usage(): its own counters
        assert counted["success"] is True and counted["usage"]["summary"]["unit"] == "requests"


async def test_a_spent_account_cools_down_until_its_reset_and_is_not_selected(
    world: World,
) -> None:
    reset = now_ms() + 2 * FAR
    world.quota.answer = lambda asked: {
        "q1": (200, usage_of(100, reset)),  # spent, back in two days
        "q2": (200, usage_of(55, reset)),
        "q3": (200, usage_of(100, now_ms() - 60_000)),  # spent, but its reset is past
    }[asked.uuid]
    async with world.instances(1) as (one,):
        await one.get(f"/api/usage/{QWEN}?refresh=true")
        store = one.admin.store
        q1 = await store.pools.get_node(QWEN, "q1")
        assert q1 is not None and q1.state.is_healthy is False
        assert parse_time_ms(q1.state.scheduled_recovery_time) == reset
        assert q1.state.last_error_message == f"Quota exhausted until {iso_ms(reset)}"
        for uuid in ("q2", "q3"):
            node = await store.pools.get_node(QWEN, uuid)
            assert node is not None and node.state.is_healthy
            assert node.state.scheduled_recovery_time is None
        for _ in range(6):
            response = await one.admin.client.post(
                "/v1/chat/completions",
                json={"model": "qwen3-coder-plus", "messages": [{"role": "user", "content": "hi"}]},
                headers=auth(),
            )
            assert response.status == 200, await response.text()
        used = world.upstream.tokens()
        assert len(used) == 6 and "old-q1" not in used
        assert {"old-q2", "old-q3"} == set(used)
        # A second refresh does not stack another record on the cooling node.
        errors_before = q1.state.error_count
        await one.get(f"/api/usage/{QWEN}?refresh=true")
        q1 = await store.pools.get_node(QWEN, "q1")
        assert q1 is not None and q1.state.error_count == errors_before


async def test_the_scheduled_refresh_asks_once_per_period_across_instances(
    world: World,
) -> None:
    await world.configure(USAGE_REFRESH_INTERVAL_MS=700)
    async with world.instances(2) as (one, two):
        await world.quota.wait_for(3 * 3)  # three passes over the three nodes
        passes = one.quotas.passes + two.quotas.passes
        assert len(passes) == len(set(passes)), passes  # never two passes in one period
        for uuid in NODES:  # each pass asked each node once at most
            assert world.quota.count(uuid) <= len(passes)
        cached = await two.get("/api/usage")
        assert cached["providers"][QWEN]["successCount"] == 3


def test_when_a_usage_says_the_account_is_spent() -> None:
    now = now_ms()
    soon, later = now + 3_600_000, now + FAR

    def item(used: float, limit: float, reset: int | None) -> dict[str, Any]:
        return {"used": used, "limit": limit, "resetAt": iso_ms(reset) if reset else None}

    assert spent_until(usage_of(100, later), now) == later
    assert spent_until(usage_of(99.5, later), now) is None
    assert spent_until(usage_of(100, now - 1000), now) is None  # its reset is past
    assert spent_until(usage_of(100, None), now) is None  # no reset known
    summary = {"usedPercent": 60, "resetAt": iso_ms(later)}
    every = {"summary": summary, "items": [item(5, 5, soon), item(9, 8, later)]}
    assert spent_until(every, now) == soon  # every item spent: back when the first is
    some = {"summary": summary, "items": [item(5, 5, soon), item(1, 8, later)]}
    assert spent_until(some, now) is None  # a bonus or another model still has room
    unknown = {"summary": {"usedPercent": 100}, "items": [item(5, 5, later)]}
    assert spent_until(unknown, now) == later
    assert spent_until(None, now) is None and spent_until({"summary": "x"}, now) is None


async def test_the_codex_adapter_s_usage_refreshes_a_refused_token_once(tmp_path: Path) -> None:

    claims = {"sub": "user-1", "https://api.openai.com/auth": {"chatgpt_account_id": "acct-a"}}
    async with CodexStub({"tok-new": "acct-a"}) as codex, TokenStub() as tokens:
        tokens.responder = lambda received, n: (
            200,
            {"id_token": fake_jwt(claims), "access_token": "tok-new", "expires_in": 3600},
        )
        write_json(tmp_path / "configs/codex/c1.json", codex_document("tok-stale", "acct-a"))
        node = {**codex_node("c1", codex), "CODEX_OAUTH_TOKEN_URL": tokens.url("/token")}
        settings = make_deployment(tmp_path, {CODEX: [node]}, MODEL_PROVIDER=CODEX)
        async with admin_gateway(settings) as anonymous:
            admin = await anonymous.login()
            status, supported = await admin.call("GET", "/api/usage/supported-providers")
            assert status == 200 and CODEX in supported
            status, instance = await admin.call("GET", f"/api/usage/{CODEX}/c1")
    assert status == 200 and instance["success"] is True, instance
    assert instance["usage"]["items"][0]["label"] == "Request Quota (5h)"
    assert tokens.count == 1
    asked = [r.headers["Authorization"] for r in codex.received]
    assert asked == ["Bearer tok-stale", "Bearer tok-new"]
