"""The ``gemini-cli-oauth`` adapter (Google Code Assist) through a real gateway, in front of
a local Code Assist (:mod:`tests.gateway.code_assist_stub`) that refuses to generate until
the account is onboarded.

The official OpenAI, Anthropic and Google GenAI SDKs make a tool round trip (a whole answer
that calls ``get_weather``, then a streamed answer to its result); the project is
discovered once (``loadCodeAssist`` → ``onboardUser`` polled until done) and stored on the
node, and a second instance on the same Redis reuses it; an expired token is refreshed once
for many concurrent requests over two instances; a 429 naming ``quotaResetDelay`` cools the
node down until then; ``usage()`` gives the usage object; the health check goes through.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cfgstore.adapters import Store
from cfgstore.model.credentials import Credential
from cfgstore.model.pools import node_from_json
from cfgstore.model.timefmt import now_ms, parse_time_ms
from cfgstore_gateway.adapters import AdapterRegistry, ModelsCall, code_assist, code_assist_projects
from cfgstore_gateway.adapters.gemini_cli import GEMINI_CLI
from cfgstore_gateway.app import create_app
from cfgstore_gateway.health_checks import HealthChecker
from cfgstore_gateway.protocols.sse import SseParser
from cfgstore_gateway.refresh import Refresher
from tests.admin.conftest import admin_gateway
from tests.gateway.code_assist_stub import CUT_TEXT, EMAIL, PROJECT, TIER, CodeAssistStub, exhausted
from tests.gateway.conftest import (
    CLIENT_KEY,
    WAIT_S,
    auth,
    make_deployment,
    running_gateway,
    scaled,
    serving,
    write_json,
)
from tests.gateway.redis_instances import Namespace, seeded_namespace
from tests.gateway.test_protocol_matrix import ANSWER, CLIENTS
from tests.gateway.token_stub import TokenStub

TYPE = "gemini-cli-oauth"
NODE = "9e3a1c00-0000-4000-8000-00000000ge01"
TOKEN_PATH = "./configs/gemini/a.json"
HOUR_MS = 3_600_000


def google_document(access_token: str, expiry_ms: int) -> dict[str, Any]:
    return {
        "access_token": access_token,
        "refresh_token": "1//google-refresh-0001",
        "token_type": "Bearer",
        "expiry_date": expiry_ms,
    }


def gemini_node(stub: CodeAssistStub, **fields: Any) -> dict[str, Any]:
    return {
        "uuid": NODE,
        "GEMINI_OAUTH_CREDS_FILE_PATH": TOKEN_PATH,
        "GEMINI_BASE_URL": stub.base(),
        **fields,
    }


@pytest.fixture(autouse=True)
def quick_onboarding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll the onboarding operation without the real 2 s pause."""
    monkeypatch.setattr(code_assist_projects, "ONBOARD_POLL_S", 0.01)


@pytest.fixture
async def stub() -> AsyncIterator[CodeAssistStub]:
    async with CodeAssistStub() as running:
        yield running


def file_deployment(tmp_path: Path, stub: CodeAssistStub, **fields: Any) -> Any:
    write_json(tmp_path / TOKEN_PATH, google_document(stub.token, now_ms() + HOUR_MS))
    return make_deployment(tmp_path, {TYPE: [gemini_node(stub, **fields)]}, MODEL_PROVIDER=TYPE)


@pytest.mark.parametrize("client_protocol", ["openai", "claude", "gemini"])
async def test_sdk_clients_make_a_tool_round_trip_after_the_project_is_onboarded(
    tmp_path: Path, stub: CodeAssistStub, client_protocol: str
) -> None:
    settings = file_deployment(tmp_path, stub)
    async with running_gateway(settings) as gw:
        url = str(gw.client._base_url).rstrip("/")
        arguments, text = await CLIENTS[client_protocol](url)
        assert arguments == {"city": "Paris"}, stub
        assert text == ANSWER, stub  # unwrapped from {"response": …} events cut anywhere
        node = await gw.node(NODE, TYPE)
        assert node.settings.get("PROJECT_ID") == PROJECT
    assert stub.problems == []
    assert stub.methods() == [
        "loadCodeAssist",
        "onboardUser",
        "onboardUser",
        "generateContent",
        "streamGenerateContent",
    ]
    first, second = stub.calls[-2:]
    # An unknown model becomes the first of the sorted list, as in the Node service.
    assert first.body["model"] == second.body["model"] == "gemini-2.5-flash"
    assert first.body["project"] == PROJECT
    assert first.body["request"]["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert all(CLIENT_KEY not in str(call.headers) for call in stub.calls)
    assert not stub.calls[0].headers.get("User-Agent", "").startswith("GeminiCLI")


async def test_a_node_with_a_project_id_skips_discovery(
    tmp_path: Path, stub: CodeAssistStub
) -> None:
    stub.onboarded = True
    settings = file_deployment(tmp_path, stub, PROJECT_ID=PROJECT)
    async with running_gateway(settings) as gw:
        response = await gw.chat("gemini-2.5-pro")
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert stub.methods() == ["generateContent"]
    assert stub.calls[0].body["model"] == "gemini-2.5-pro"


async def test_a_refused_token_is_refreshed_and_the_discovery_retried(
    tmp_path: Path, stub: CodeAssistStub
) -> None:
    """``loadCodeAssist`` answering 401 is the request's answer: the gateway refreshes the
    credential and calls again, which discovers the project with the new token."""
    async with TokenStub() as tokens:
        tokens.responder = lambda received, n: (
            200,
            {"access_token": stub.token, "expires_in": 3599},
        )
        write_json(tmp_path / TOKEN_PATH, google_document("ya29.revoked", now_ms() + HOUR_MS))
        node = gemini_node(stub, GEMINI_OAUTH_TOKEN_URL=tokens.url("/token"))
        settings = make_deployment(tmp_path, {TYPE: [node]}, MODEL_PROVIDER=TYPE)
        async with running_gateway(settings) as gw:
            response = await gw.chat("gemini-2.5-pro", stream=True)
            assert response.status == 200, await response.text()
            await response.read()
            assert (await gw.node(NODE, TYPE)).settings.get("PROJECT_ID") == PROJECT
        assert tokens.count == 1
    assert [c.headers["Authorization"] for c in stub.calls[:2]] == [
        "Bearer ya29.revoked",
        f"Bearer {stub.token}",
    ]
    assert stub.methods() == [
        "loadCodeAssist",
        "loadCodeAssist",
        "onboardUser",
        "onboardUser",
        "streamGenerateContent",
    ]


async def test_an_anti_truncation_model_continues_a_stream_cut_at_max_tokens(
    tmp_path: Path, stub: CodeAssistStub
) -> None:
    stub.onboarded = True
    stub.truncated = 1
    contents = [
        {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]},
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"content": "18 C"}}}
            ],
        },
    ]
    settings = file_deployment(tmp_path, stub, PROJECT_ID=PROJECT)
    async with running_gateway(settings) as gw:
        response = await gw.client.post(
            "/v1beta/models/anti-gemini-2.5-pro:streamGenerateContent?alt=sse",
            json={"contents": contents},
            headers={"x-goog-api-key": CLIENT_KEY},
        )
        assert response.status == 200, await response.text()
        parser = SseParser()
        events = [json.loads(e.data) for e in parser.feed(await response.read()) + parser.close()]
    text = "".join(
        p.get("text", "") for e in events for p in e["candidates"][0]["content"]["parts"]
    )
    assert text == CUT_TEXT + ANSWER, stub
    assert [e["candidates"][0].get("finishReason") for e in events].count("MAX_TOKENS") == 1
    first, second = stub.calls
    assert first.method == second.method == "streamGenerateContent"
    assert first.body["model"] == second.body["model"] == "gemini-2.5-pro"
    assert first.body["request"]["contents"] == contents
    assert second.body["request"]["contents"] == [
        *contents,
        {"role": "model", "parts": [{"text": CUT_TEXT}]},
        {"role": "user", "parts": [{"text": "Please continue from where you left off."}]},
    ]
    assert stub.problems == []


async def test_a_spent_quota_cools_the_node_down_until_the_reset_it_names(
    tmp_path: Path, stub: CodeAssistStub
) -> None:
    stub.onboarded = True
    stub.exhausted = "3600.5s"
    settings = file_deployment(tmp_path, stub, PROJECT_ID=PROJECT)
    async with running_gateway(settings) as gw:
        before = now_ms()
        response = await gw.chat("gemini-2.5-pro")
        after = now_ms()
        assert response.status == 429, await response.text()
        node = await gw.node(NODE, TYPE)
        assert node.state.is_healthy is False
        reset = parse_time_ms(node.state.scheduled_recovery_time)
        assert reset is not None and before + 3_600_500 <= reset <= after + 3_600_500
        assert (await gw.chat("gemini-2.5-pro")).status != 200  # cooling down: not called
    assert stub.methods() == ["generateContent"]  # not retried on the same node either


async def test_usage_gives_the_usage_object_of_the_listed_models(
    tmp_path: Path, stub: CodeAssistStub, http: aiohttp.ClientSession
) -> None:
    stub.onboarded = True
    settings = file_deployment(tmp_path, stub)
    async with Store.open(settings) as store:
        node = await store.pools.get_node(TYPE, NODE)
        credential = await store.credentials.get(TYPE, NODE)
        assert node is not None and credential is not None
        call = ModelsCall(
            TYPE, node, await store.config.get(), credential, http, "usage-1", store.pools
        )
        usage = await GEMINI_CLI.usage(call)
    raw = usage["raw"]
    assert raw["tierId"] == TIER and raw["account"] == EMAIL
    assert [b["modelId"] for b in raw["buckets"]][:2] == ["gemini-2.5-pro", "gemini-2.5-flash"]
    assert usage["summary"] == {
        "usedPercent": pytest.approx(45.0),
        "status": "normal",
        "resetAt": "2030-01-02T00:00:00.000Z",
        "plan": TIER,
        "planClass": "plan-standard",
        "unit": "percent",
    }
    assert usage["user"] == {"email": EMAIL}
    assert [(i["id"], round(i["percent"]), i["status"], i["resetAt"]) for i in usage["items"]] == [
        ("gemini-2.5-flash", 10, "normal", "2030-01-02T00:00:00.000Z"),
        ("gemini-2.5-pro", 80, "warning", "2030-01-01T00:00:00.000Z"),
    ]
    assert usage["items"][0]["limit"] == 100 and usage["items"][0]["unit"] == "percent"
    assert stub.methods() == ["loadCodeAssist", "retrieveUserQuota"]


async def test_the_health_check_reaches_code_assist(
    tmp_path: Path, stub: CodeAssistStub, http: aiohttp.ClientSession
) -> None:
    stub.onboarded = True
    settings = file_deployment(tmp_path, stub, PROJECT_ID=PROJECT)
    async with Store.open(settings) as store:
        registry = AdapterRegistry()
        registry.register(GEMINI_CLI)
        checker = HealthChecker(store, registry, http, Refresher(store, http))
        node = await store.pools.get_node(TYPE, NODE)
        assert node is not None
        result = await checker.check_node(TYPE, node, await store.config.get())
    assert result.ok, result.message
    assert result.model == "gemini-3-flash-preview"
    (call,) = stub.calls
    assert call.body["model"] == "gemini-3-flash-preview"
    assert call.body["request"]["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]


# -------------------------------------------------------------- two instances, real Redis


@pytest.fixture
async def namespace(redis_url: str, tmp_path: Path) -> Namespace:
    return await seeded_namespace(redis_url, tmp_path, tag="gcli")


async def seed(namespace: Namespace, node: dict[str, Any], document: dict[str, Any]) -> None:
    async with Store.open(namespace.redis_settings()) as admin:
        config = await admin.config.get()
        settings = {
            **config.document,
            "REQUIRED_API_KEY": CLIENT_KEY,
            "MODEL_PROVIDER": TYPE,
            "REQUEST_MAX_RETRIES": 0,
        }
        await admin.config.put(settings, config.version)
        await admin.pools.add_node(TYPE, node_from_json(node, "test"))
        await admin.credentials.put(Credential(TYPE, NODE, document, TOKEN_PATH), None)


@asynccontextmanager
async def instance(namespace: Namespace, name: str) -> AsyncIterator[tuple[str, Store]]:
    async with (
        Store.open(namespace.instance_settings(name)) as store,
        serving(create_app(store)) as url,
    ):
        try:
            yield url, store
        finally:
            await store.flush()


async def ask(http: aiohttp.ClientSession, url: str, stream: bool = False) -> int:
    body = {"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    async with http.post(f"{url}/v1/chat/completions", json=body, headers=auth()) as response:
        await response.read()
        return response.status


async def test_the_project_is_discovered_once_and_a_second_instance_reuses_it(
    namespace: Namespace, stub: CodeAssistStub
) -> None:
    await seed(namespace, gemini_node(stub), google_document(stub.token, now_ms() + HOUR_MS))
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=WAIT_S * 3)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        async with instance(namespace, "one") as (url, _):
            statuses = await asyncio.gather(
                *(ask(http, url, i % 2 == 1) for i in range(scaled(20, 4)))
            )
            assert set(statuses) == {200}, stub
        assert stub.methods().count("loadCodeAssist") == 1  # one flight for all requests
        async with Store.open(namespace.redis_settings()) as admin:
            stored = await admin.pools.get_node(TYPE, NODE)
            assert stored is not None and stored.settings.get("PROJECT_ID") == PROJECT
        before = len(stub.calls)
        async with instance(namespace, "two") as (url, _):
            assert await ask(http, url) == 200
        assert stub.methods()[before:] == ["generateContent"]  # no loadCodeAssist again
    assert stub.problems == []


async def test_an_expired_token_is_refreshed_once_for_concurrent_requests_on_two_instances(
    namespace: Namespace, stub: CodeAssistStub
) -> None:
    stub.onboarded = True
    async with TokenStub() as tokens:
        tokens.responder = lambda received, n: (
            200,
            {"access_token": stub.token, "expires_in": 3599, "token_type": "Bearer"},
        )
        node = gemini_node(stub, PROJECT_ID=PROJECT, GEMINI_OAUTH_TOKEN_URL=tokens.url("/token"))
        await seed(namespace, node, google_document("ya29.expired", now_ms() - 60_000))
        callers = scaled(200, 4)
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=WAIT_S * 3)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as http,
            instance(namespace, "one") as (one, _),
            instance(namespace, "two") as (two, _),
        ):
            statuses = await asyncio.gather(
                *(ask(http, (one, two)[i % 2], i % 3 == 0) for i in range(callers))
            )
        assert statuses.count(200) == callers, stub
        assert tokens.count == 1
        assert tokens.received[0].fields is not None
        assert tokens.received[0].fields["refresh_token"] == "1//google-refresh-0001"
    assert len(stub.calls) == callers  # every call carried the new token
    assert stub.problems == []


# ------------------------------------------------------------------- reading quota resets


@pytest.mark.parametrize(
    ("status", "body", "headers", "reset"),
    [
        (429, {"error": exhausted("3600s")}, {}, 3_600_000),
        (429, {"error": exhausted("1h2m3.5s")}, {}, 3_723_500),
        (429, {"error": exhausted("250ms")}, {}, 250),
        (429, {"error": {"details": [{"retryDelay": "12s"}]}}, {}, 12_000),
        (429, {"error": {"message": "Please retry after 7s."}}, {}, 7_000),
        (429, {"error": {"message": "busy"}}, {"Retry-After": "30"}, None),  # the gateway's
        (200, {"error": exhausted("3600s")}, {}, None),  # not an error answer
        (
            403,
            {"error": {"status": "RESOURCE_EXHAUSTED", "details": [{"retryDelay": "5s"}]}},
            {},
            5_000,
        ),
        (429, {"error": {"message": "Too many requests"}}, {}, None),  # no reset named
        (500, {"error": exhausted("3600s") | {"status": "INTERNAL"}}, {}, None),
    ],
)
def test_the_reset_an_error_answer_names(
    status: int, body: dict[str, Any], headers: dict[str, str], reset: int | None
) -> None:
    now = 1_000_000
    found = code_assist.quota_reset(status, json.dumps(body).encode(), headers, now)
    assert found == (None if reset is None else now + reset)


def test_a_reset_timestamp_is_taken_as_it_is() -> None:
    stamp = {"metadata": {"quotaResetTimeStamp": "2030-01-01T00:00:00Z"}}
    body = json.dumps({"error": {"code": 429, "details": [stamp]}}).encode()
    assert code_assist.quota_reset(429, body, {}, 0) == parse_time_ms("2030-01-01T00:00:00.000Z")


async def test_the_usage_route_refreshes_a_refused_token_once_and_shows_the_quota(
    tmp_path: Path, stub: CodeAssistStub
) -> None:
    """``GET /api/usage/<type>/<uuid>`` asks ``usage()``; Code Assist refusing the token
    makes the gateway refresh it once and ask again."""
    stub.onboarded = True
    async with TokenStub() as tokens:
        tokens.responder = lambda received, n: (
            200,
            {"access_token": stub.token, "expires_in": 3599},
        )
        write_json(tmp_path / TOKEN_PATH, google_document("ya29.revoked", now_ms() + HOUR_MS))
        node = gemini_node(stub, GEMINI_OAUTH_TOKEN_URL=tokens.url("/token"))
        settings = make_deployment(tmp_path, {TYPE: [node]}, MODEL_PROVIDER=TYPE)
        async with admin_gateway(settings) as anonymous:
            admin = await anonymous.login()
            status, supported = await admin.call("GET", "/api/usage/supported-providers")
            assert status == 200 and TYPE in supported and "gemini-antigravity" in supported
            status, instance = await admin.call("GET", f"/api/usage/{TYPE}/{NODE}")
        assert tokens.count == 1
    assert status == 200 and instance["success"] is True, instance
    assert instance["usage"]["summary"]["plan"] == TIER
    assert [i["id"] for i in instance["usage"]["items"]] == ["gemini-2.5-flash", "gemini-2.5-pro"]
    assert [c.headers["Authorization"] for c in stub.calls] == [
        "Bearer ya29.revoked",
        f"Bearer {stub.token}",
        f"Bearer {stub.token}",
    ]
    assert stub.methods() == ["loadCodeAssist", "loadCodeAssist", "retrieveUserQuota"]
