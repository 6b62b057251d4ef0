"""The ``openai-codex-oauth`` adapter (:mod:`cfgstore_gateway.adapters.codex`) against a
local Codex backend (:mod:`tests.gateway.codex_stub`) that insists on what the backend
insists on (token, account header, instructions, ``stream: true``, ``store: false``) and
cuts its streams anywhere.

Through a real gateway: the official ``openai`` (chat and Responses) and ``anthropic``
SDKs make a tool round trip (a whole answer, then a streamed one); a spent quota (HTTP 429
with ``resets_at``, or an ``insufficient_quota`` event before any output) cools the node
down until the named time and switches; an expired token is refreshed once for many
concurrent requests over two gateway instances on one Redis. Then the health check, the
usage query in the Node service's shape, and the body rules of §2.4.5/§3.7.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from cfgstore.adapters import Store
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import Credential
from cfgstore.model.pools import node_from_json
from cfgstore.model.timefmt import iso_ms, now_ms, parse_time_ms
from cfgstore_gateway.adapters import AdapterRegistry, ModelsCall, UpstreamUnavailable
from cfgstore_gateway.adapters.codex import (
    MAX_SESSIONS,
    MODELS,
    CodexAdapter,
    PromptCacheKeys,
    account_id_of,
    codex_body,
    format_usage,
    upstream_model,
)
from cfgstore_gateway.adapters.codex_sse import CodexEvents
from cfgstore_gateway.adapters.openai_compat import OpenAICompatAdapter
from cfgstore_gateway.health_checks import HealthChecker
from cfgstore_gateway.refresh import Refresher
from tests.gateway.codex_stub import USAGE, CodexStub, answer_events
from tests.gateway.conftest import (
    CLIENT_KEY,
    WAIT_S,
    auth,
    make_deployment,
    running_gateway,
    scaled,
    write_json,
)
from tests.gateway.redis_instances import seeded_namespace
from tests.gateway.test_protocol_matrix import (
    ANSWER,
    anthropic_messages,
    openai_chat,
    openai_responses,
)
from tests.gateway.token_stub import Received as TokenRequest
from tests.gateway.token_stub import TokenStub

CODEX = "openai-codex-oauth"
A = "c0dec0de-0000-4000-8000-00000000000a"
B = "c0dec0de-0000-4000-8000-00000000000b"
HOUR_MS = 3_600_000
CALLERS = scaled(200, minimum=4)


def fake_jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def codex_document(token: str, account: str, *, expired_ms: int | None = None) -> dict[str, Any]:
    """A Codex credential whose account is only in its id token's claim."""
    claims = {"sub": "user-1", "https://api.openai.com/auth": {"chatgpt_account_id": account}}
    return {
        "id_token": fake_jwt(claims),
        "access_token": token,
        "refresh_token": f"refresh-{token}",
        "last_refresh": iso_ms(now_ms()),
        "email": f"{account}@example.com",
        "type": "codex",
        "expired": iso_ms(expired_ms if expired_ms is not None else now_ms() + HOUR_MS),
    }


def codex_node(uuid: str, stub: CodexStub) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "CODEX_OAUTH_CREDS_FILE_PATH": f"./configs/codex/{uuid}.json",
        "CODEX_BASE_URL": stub.base_url,
    }


def deployment(
    tmp_path: Path, stub: CodexStub, accounts: dict[str, tuple[str, str]], **config: Any
) -> Any:
    """Nodes by uuid → (token, account), their credential files written."""
    for uuid, (token, account) in accounts.items():
        write_json(tmp_path / "configs" / "codex" / f"{uuid}.json", codex_document(token, account))
    pools = {CODEX: [codex_node(uuid, stub) for uuid in accounts]}
    return make_deployment(tmp_path, pools, MODEL_PROVIDER=CODEX, **config)


@pytest_asyncio.fixture
async def stub() -> AsyncIterator[CodexStub]:
    async with CodexStub({"tok-a": "acct-a", "tok-b": "acct-b"}) as running:
        yield running


# ------------------------------------------------------------------------ SDK clients


@pytest.mark.parametrize(
    "turn",
    [openai_chat, openai_responses, anthropic_messages],
    ids=["openai-chat", "openai-responses", "anthropic"],
)
async def test_sdk_clients_make_a_tool_round_trip_whole_and_streamed(
    tmp_path: Path, stub: CodexStub, turn: Any
) -> None:
    settings = deployment(tmp_path, stub, {A: ("tok-a", "acct-a")})
    async with running_gateway(settings) as gw:
        arguments, text = await turn(str(gw.client._base_url).rstrip("/"))
        assert arguments == {"city": "Paris"}, stub
        assert text == ANSWER, stub  # reassembled from pieces cut anywhere
        await gw.store.flush()
        assert (await gw.node(A, CODEX)).state.usage_count == 2
    first, second = stub.responses()
    for received in (first, second):
        assert received.headers["Authorization"] == "Bearer tok-a"
        assert received.headers["chatgpt-account-id"] == "acct-a"  # from the id token
        assert received.headers["Session_id"] == received.body["prompt_cache_key"]
        assert CLIENT_KEY not in json.dumps(received.headers)
        body = received.body
        assert (body["stream"], body["store"], body["model"]) == (True, False, "gpt-5.2")
        assert body["instructions"].strip()
        assert body["include"] == ["reasoning.encrypted_content"]
        assert [t.get("name", t["type"]) for t in body["tools"]] == [
            "get_weather",
            "web_search",
            "image_generation",
        ]
        assert not {"max_output_tokens", "temperature", "metadata"} & body.keys()
    # One session: the same cache key for both turns.
    assert first.body["prompt_cache_key"] == second.body["prompt_cache_key"]
    outputs = [i for i in second.body["input"] if i["type"] == "function_call_output"]
    assert [o["call_id"] for o in outputs] == ["call_c1"]


# ------------------------------------------------------------------------ spent quota


@pytest.mark.parametrize(
    ("how", "stream"),
    [("429", False), ("429", True), ("event", False), ("event", True)],
)
async def test_a_spent_quota_cools_the_node_down_until_its_reset_and_switches(
    tmp_path: Path, stub: CodexStub, how: str, stream: bool
) -> None:
    reset_s = now_ms() // 1000 + 5 * 3600
    stub.spent["acct-a"] = (how, reset_s)
    settings = deployment(tmp_path, stub, {A: ("tok-a", "acct-a"), B: ("tok-b", "acct-b")})
    async with running_gateway(settings) as gw:
        for _ in range(2):
            response = await gw.chat("gpt-5.4", stream=stream, tools=weather_tool())
            assert response.status == 200, await response.text()
            body = await asyncio.wait_for(response.read(), WAIT_S)
            assert b"get_weather" in body
        a = await gw.node(A, CODEX)
        assert a.state.is_healthy is False
        assert parse_time_ms(a.state.scheduled_recovery_time) == reset_s * 1000
        assert a.state.last_error_message == f"Quota exhausted until {iso_ms(reset_s * 1000)}"
        assert (await gw.node(B, CODEX)).state.usage_count == 2
    tokens = [r.headers["Authorization"] for r in stub.responses()]
    assert tokens == ["Bearer tok-a", "Bearer tok-b", "Bearer tok-b"]  # a: once, not retried


def weather_tool() -> list[dict[str, Any]]:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    return [{"type": "function", "function": {"name": "get_weather", "parameters": schema}}]


@pytest.mark.parametrize(
    ("how", "status"),
    [("event", 429), ("failed", 502)],
    ids=["quota-without-reset", "other-error"],
)
async def test_an_error_event_before_output_without_a_reset_is_a_failure_and_switches(
    tmp_path: Path, stub: CodexStub, how: str, status: int
) -> None:
    """``insufficient_quota`` naming no time is a 429 (the cooldown settings decide: here
    off, so a failure); any other error event before output a 502. Both switch."""
    stub.spent["acct-a"] = (how, None)
    accounts = {A: ("tok-a", "acct-a"), B: ("tok-b", "acct-b")}
    settings = deployment(tmp_path, stub, accounts, RATE_LIMIT_COOLDOWN_ENABLED=False)
    async with running_gateway(settings) as gw:
        response = await gw.chat("gpt-5.4", stream=True, tools=weather_tool())
        assert response.status == 200, await response.text()
        assert "get_weather" in await asyncio.wait_for(response.text(), WAIT_S)
        a = await gw.node(A, CODEX)
        assert (a.state.error_count, a.state.scheduled_recovery_time) == (1, None)
        assert a.state.last_error_message is not None
        assert a.state.last_error_message.startswith(f"HTTP {status}: Codex API error: ")
        assert (await gw.node(B, CODEX)).state.usage_count == 1


# ------------------------------------------------------------------------ refresh


async def test_an_expired_token_is_refreshed_once_for_concurrent_requests_on_two_gateways(
    redis_url: str, tmp_path: Path, stub: CodexStub
) -> None:
    namespace = await seeded_namespace(redis_url, tmp_path)
    new_token = fake_jwt({"sub": "user-1", "n": "new"})
    stub.accounts = {new_token: "acct-new"}  # the old token is refused (401)
    id_token = fake_jwt({"https://api.openai.com/auth": {"chatgpt_account_id": "acct-new"}})

    def answer(received: TokenRequest, number: int) -> tuple[int, Any]:
        return 200, {
            "id_token": id_token,
            "access_token": new_token,
            "refresh_token": "refresh-new",
            "expires_in": 3600,
        }

    async with TokenStub(answer) as tokens, Store.open(namespace.redis_settings()) as admin:
        config = await admin.config.get()
        await admin.config.put(
            {
                **config.document,
                "REQUIRED_API_KEY": CLIENT_KEY,
                "MODEL_PROVIDER": CODEX,
                "REQUEST_MAX_RETRIES": 0,
                "CODEX_OAUTH_TOKEN_URL": tokens.url("/oauth/token"),
            },
            config.version,
        )
        fields = codex_node(A, stub)
        await admin.pools.add_node(CODEX, node_from_json(fields, "test"))
        expired = codex_document("tok-old", "acct-old", expired_ms=now_ms() - 60_000)
        await admin.credentials.put(
            Credential(CODEX, A, expired, fields["CODEX_OAUTH_CREDS_FILE_PATH"]),
            expected_version=None,
        )
        async with (
            running_gateway(namespace.instance_settings("a")) as one,
            running_gateway(namespace.instance_settings("b")) as two,
        ):
            tokens.hold()  # the refresh stays in flight while the requests pile up
            calls = [asyncio.create_task((one, two)[i % 2].chat("gpt-5.5")) for i in range(CALLERS)]
            try:
                await tokens.wait_for_requests(1, WAIT_S)
            finally:
                tokens.release()
            responses = await asyncio.wait_for(asyncio.gather(*calls), WAIT_S * 3)
            statuses = [r.status for r in responses]
            texts = [await r.text() for r in responses]
            assert statuses == [200] * CALLERS, texts[:3]
        stored = await admin.credentials.get(CODEX, A)
    assert tokens.count == 1
    assert stored is not None and stored.document["access_token"] == new_token
    assert stored.document["account_id"] == "acct-new"
    received = stub.responses()
    assert len(received) == CALLERS
    assert {r.headers["Authorization"] for r in received} == {f"Bearer {new_token}"}
    assert {r.headers["chatgpt-account-id"] for r in received} == {"acct-new"}


async def test_a_refused_token_is_refreshed_and_the_request_retried_once(
    tmp_path: Path, stub: CodexStub
) -> None:
    """A 401 from the backend (a token revoked before its expiry): the gateway refreshes
    the credential and retries the node with the new token."""
    stub.accounts = {"tok-new": "acct-a"}

    def answer(received: TokenRequest, number: int) -> tuple[int, Any]:
        return 200, {"access_token": "tok-new", "refresh_token": "r2", "expires_in": 3600}

    async with TokenStub(answer) as tokens:
        settings = deployment(
            tmp_path,
            stub,
            {A: ("tok-a", "acct-a")},
            CODEX_OAUTH_TOKEN_URL=tokens.url("/oauth/token"),
        )
        async with running_gateway(settings) as gw:
            response = await gw.chat("gpt-5.4")
            assert response.status == 200, await response.text()
            assert (await gw.node(A, CODEX)).state.error_count == 0
    assert tokens.count == 1
    assert tokens.received[0].fields is not None
    assert tokens.received[0].fields["refresh_token"] == "refresh-tok-a"
    tried = [r.headers["Authorization"] for r in stub.responses()]
    assert tried == ["Bearer tok-a", "Bearer tok-new"]
    # The account stays the id token's: the answer had no id token to say otherwise.
    assert {r.headers["chatgpt-account-id"] for r in stub.responses()} == {"acct-a"}


async def test_the_model_list_is_the_node_services(tmp_path: Path, stub: CodexStub) -> None:
    settings = deployment(tmp_path, stub, {A: ("tok-a", "acct-a")})
    async with running_gateway(settings) as gw:
        response = await gw.client.get("/v1/models", headers=auth())
        assert response.status == 200
        ids = [m["id"] for m in (await response.json())["data"]]
    assert set(MODELS) <= {i.split(":", 1)[-1] for i in ids}, ids
    assert stub.received == []  # a fixed list: the backend is not asked


def test_where_calls_go() -> None:
    adapter = CodexAdapter()

    def node(**fields: Any) -> Any:
        return node_from_json({"uuid": A, **fields}, "test")

    empty = MainConfig({})
    assert adapter.base_url(CODEX, node(), empty) == "https://chatgpt.com/backend-api/codex"
    assert adapter.usage_url(CODEX, node(), empty) == "https://chatgpt.com/backend-api/wham/usage"
    relay = node(CODEX_BASE_URL="https://relay.example/backend-api/codex/")
    assert adapter.base_url(CODEX, relay, empty) == "https://relay.example/backend-api/codex"
    assert adapter.usage_url(CODEX, relay, empty) == "https://relay.example/backend-api/wham/usage"
    table = MainConfig({"UPSTREAM_BASE_URLS": {CODEX: "https://table.example/v1"}})
    assert adapter.base_url(CODEX, node(), table) == "https://table.example/v1"
    assert adapter.usage_url(CODEX, node(), table) == "https://chatgpt.com/backend-api/wham/usage"
    socks = MainConfig({"PROXY_URL": "socks5://p:1080", "PROXY_ENABLED_PROVIDERS": [CODEX]})
    with pytest.raises(UpstreamUnavailable, match="socks"):
        adapter.check_node(CODEX, node(), socks)
    assert adapter.static_models(CODEX)[:2] == ("gpt-5.2", "gpt-5.3-codex")
    assert "gpt-5.5-fast" in adapter.static_models(CODEX)
    registry = AdapterRegistry()
    registry.register(OpenAICompatAdapter())
    registry.register(adapter)
    assert registry.for_type(CODEX) is adapter
    assert registry.for_type(f"{CODEX}-plus") is adapter


# ------------------------------------------------------------------------ health, usage


async def test_the_health_check_request_is_answered(tmp_path: Path, stub: CodexStub) -> None:
    settings = deployment(tmp_path, stub, {A: ("tok-a", "acct-a")})
    registry = AdapterRegistry()
    registry.register(CodexAdapter())
    async with Store.open(settings) as store, aiohttp.ClientSession() as http:
        node = await store.pools.get_node(CODEX, A)
        assert node is not None
        checker = HealthChecker(store, registry, http, Refresher(store, http))
        result = await checker.check_node(CODEX, node, await store.config.get())
    assert result.ok, result
    assert result.model == MODELS[0]
    (received,) = stub.responses()
    assert received.body["input"][0]["content"] == [{"type": "input_text", "text": "Hi"}]
    assert "max_output_tokens" not in received.body


async def test_usage_is_the_node_services_usage_object(stub: CodexStub) -> None:
    node = node_from_json(codex_node(A, stub), "test")
    credential = Credential(CODEX, A, codex_document("tok-a", "acct-a"), "./a.json")
    async with aiohttp.ClientSession() as http:
        call = ModelsCall(CODEX, node, MainConfig({}), credential, http, "req-usage")
        usage = await CodexAdapter().usage(call)
    (received,) = stub.received
    assert received.path == "/backend-api/wham/usage"
    assert received.headers["chatgpt-account-id"] == "acct-a"
    assert usage == {
        "summary": {
            "usedPercent": 93,
            "status": "danger",
            "resetAt": "2030-03-23T12:40:00.000Z",
            "plan": "plus",
            "planClass": "plan-plus",
            "unit": "percent",
        },
        "user": {"email": "acct-a@example.com"},
        "items": [
            {
                "id": "primary_window",
                "label": "Request Quota (5h)",
                "used": 76,
                "limit": 100,
                "percent": 76,
                "unit": "percent",
                "status": "warning",
                "resetAt": "2030-03-17T17:46:40.000Z",
            },
            {
                "id": "secondary_window",
                "label": "Weekly Limit",
                "used": 93,
                "limit": 100,
                "percent": 93,
                "unit": "percent",
                "status": "danger",
                "resetAt": "2030-03-23T12:40:00.000Z",
            },
        ],
        "raw": {**USAGE, "account": "acct-a@example.com"},
    }


def test_usage_of_the_node_services_own_example() -> None:
    """The Node service's formatter test: ISO reset times, the fuller window summarised."""
    usage = format_usage(
        {
            "account": "plus@example.com",
            "plan_type": "PLUS",
            "rate_limit": {
                "primary_window": {"used_percent": 26, "reset_at": "2030-01-01T05:00:00.000Z"},
                "secondary_window": {"used_percent": 4, "reset_at": "2030-01-08T00:00:00.000Z"},
            },
        }
    )
    assert usage["summary"]["usedPercent"] == 26
    assert usage["summary"]["resetAt"] == "2030-01-01T05:00:00.000Z"
    assert (usage["summary"]["plan"], usage["summary"]["planClass"]) == ("PLUS", "plan-plus")
    assert [(i["id"], i["percent"], i["resetAt"]) for i in usage["items"]] == [
        ("primary_window", 26, "2030-01-01T05:00:00.000Z"),
        ("secondary_window", 4, "2030-01-08T00:00:00.000Z"),
    ]
    empty = format_usage({"account": None})
    assert empty["items"] == [] and empty["summary"]["plan"] == "FREE"


# ------------------------------------------------------------------------ body rules


def test_the_body_is_rewritten_for_codex() -> None:
    body = {
        "model": "gpt-5.4-fast",
        "input": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        ],
        "max_output_tokens": 5,
        "temperature": 0.3,
        "top_p": 0.9,
        "user": "u",
        "metadata": {"session_id": "s1"},
        "service_tier": "flex",
        "text": {"format": "json_object", "verbosity": "low"},
        "reasoning": {"effort": "low"},
    }
    model, fast = upstream_model(body["model"])
    out = codex_body(body, model, "key-1")
    assert fast and out["model"] == "gpt-5.4"
    assert out["instructions"] == "Be brief."
    assert out["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    ]
    assert out["service_tier"] == "priority"
    assert out["reasoning"] == {"effort": "xhigh", "summary": "auto"}
    assert out["text"] == {"verbosity": "low"}  # json_object removed
    assert out["tools"] == [{"type": "image_generation", "output_format": "png"}]  # JSON mode
    assert (out["stream"], out["store"], out["parallel_tool_calls"]) == (True, False, True)
    assert out["prompt_cache_key"] == "key-1"
    for dropped in ("max_output_tokens", "temperature", "top_p", "user", "metadata"):
        assert dropped not in out

    plain = codex_body(
        {"input": "hello", "instructions": "Do it.", "reasoning": {"effort": "minimal"}},
        "gpt-5.3-codex-spark",
        "k",
    )
    assert plain["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}
    ]
    assert plain["reasoning"]["effort"] == "none"
    assert plain["tools"] == [{"type": "web_search"}]  # no image tool for spark
    assert "service_tier" not in plain

    image = codex_body({"input": "a cat", "_imageSize": "1024x1024"}, "gpt-image-2", "k")
    assert image["model"] == "gpt-5.4"
    assert image["tools"] == [{"type": "image_generation", "size": "1024x1024"}]
    assert image["instructions"] == "You are a helpful assistant."
    assert upstream_model("gpt-4o") == ("gpt-5.2", False)


def test_prompt_cache_keys_last_an_hour_per_node_and_session() -> None:
    now = [0]
    keys = PromptCacheKeys(lambda: now[0])
    first = keys.key("n1", "s")
    assert keys.key("n1", "s") == first
    assert keys.key("n2", "s") != first and keys.key("n1", "t") != first
    now[0] = 3_600_001
    assert keys.key("n1", "s") != first
    for index in range(MAX_SESSIONS + 5):
        keys.key("n1", f"many-{index}")
    assert len(keys._keys) == MAX_SESSIONS


def test_the_account_comes_from_the_credential_or_its_id_token() -> None:
    assert account_id_of({"account_id": "acct-1", "id_token": "x"}) == "acct-1"
    claims = {"sub": "user-9", "https://api.openai.com/auth": {"chatgpt_account_id": "acct-2"}}
    assert account_id_of({"id_token": fake_jwt(claims)}) == "acct-2"
    assert account_id_of({"id_token": fake_jwt({"sub": "user-9"})}) == "user-9"
    assert account_id_of({"id_token": "not-a-jwt"}) is None


# ------------------------------------------------------------------------ stream reading


def cut(data: bytes, rng: random.Random) -> list[bytes]:
    out, start = [], 0
    while start < len(data):
        end = start + rng.randint(1, 17)
        out.append(data[start:end])
        start = end
    return out


def collect(events: list[bytes], seed: int) -> dict[str, Any] | None:
    reader = CodexEvents()
    for piece in cut(b"".join(events), random.Random(seed)):
        reader.feed(piece)
    reader.close()
    return reader.whole()


@pytest.mark.parametrize("seed", range(5))
def test_a_stream_cut_anywhere_is_collected_with_the_done_items(seed: int) -> None:
    whole = collect(answer_events("18 C", "gpt-5.4"), seed)
    assert whole is not None and whole["status"] == "completed"
    (message,) = whole["output"]  # completed came with [] and is filled from the items
    assert message["content"][0]["text"] == ANSWER
    called = collect(answer_events(None, "gpt-5.4"), seed)
    assert called is not None
    assert [(i["type"], i["call_id"], i["arguments"]) for i in called["output"]] == [
        ("function_call", "call_c1", '{"city": "Paris"}')
    ]


def test_a_stream_without_completion_is_made_whole_or_is_nothing() -> None:
    events = answer_events("18 C", "gpt-5.4")
    without_end = collect(events[:-2], 1)  # no output_item.done, no completion
    assert without_end is not None and without_end["status"] == "completed"
    assert without_end["output"][0]["content"][0]["text"] == ANSWER  # from the deltas
    assert collect(events[:2], 1) is None  # created and in_progress only


def test_malformed_output_items_are_dropped_and_call_ids_completed() -> None:
    reader = CodexEvents()
    items = [
        {"type": "function_call", "id": "fc_9", "name": "f", "arguments": "{}"},
        {"type": "function_call", "id": "fc_8", "arguments": "{}"},  # no name: dropped
        {"id": "x"},  # no type: dropped
    ]
    done = [
        {"type": "response.output_item.done", "output_index": i, "item": item}
        for i, item in enumerate(items)
    ]
    lines = [f"data: {json.dumps(event)}\n\n" for event in done]
    lines.append("data: not json\n\n")
    lines.append('data: {"type":"response.completed","response":{"id":"r","output":[]}}\n\n')
    handed = reader.feed("".join(lines).encode()) + reader.close()
    assert [e["type"] for e in handed] == ["response.output_item.done", "response.completed"]
    whole = reader.whole()
    assert whole is not None
    assert whole["output"] == [
        {"type": "function_call", "id": "fc_9", "call_id": "fc_9", "name": "f", "arguments": "{}"}
    ]
