"""The ``gemini-antigravity`` adapter (Google Code Assist as Antigravity calls it) through a
real gateway, in front of the local Code Assist of :mod:`tests.gateway.code_assist_stub`
in its Antigravity flavour (its User-Agent and agent envelope checked, onboarding required
before any generation).

SDK clients make a tool round trip; the base URLs are tried in order (an unreachable one
and one answering 429 without a reset are passed over, a 429 naming a reset is not);
``gemini-claude-X`` goes upstream as ``claude-X`` without tools and with the persona, an
unknown model as ``gemini-3-flash``; a stream keeps ``usageMetadata`` on its last event
only; the model list and ``usage()`` come from ``fetchAvailableModels``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cfgstore.adapters import Settings, Store
from cfgstore.model.config import MainConfig
from cfgstore.model.pools import node_from_json
from cfgstore.model.timefmt import now_ms, parse_time_ms
from cfgstore_gateway.adapters import ModelsCall, antigravity, code_assist, code_assist_projects
from cfgstore_gateway.adapters.antigravity import ANTIGRAVITY, PERSONA
from cfgstore_gateway.protocols.sse import SseParser
from tests.gateway.code_assist_stub import (
    ANTIGRAVITY as FLAVOUR,
)
from tests.gateway.code_assist_stub import (
    EMAIL,
    PROJECT,
    TIER,
    CodeAssistStub,
)
from tests.gateway.conftest import (
    CLIENT_KEY,
    make_deployment,
    running_gateway,
    write_json,
)
from tests.gateway.test_protocol_matrix import ANSWER, CLIENTS

TYPE = "gemini-antigravity"
NODE = "a9a9a9a9-0000-4000-8000-0000000a9a01"
TOKEN_PATH = "./configs/antigravity/a.json"
GEMINI_KEY = {"x-goog-api-key": CLIENT_KEY}


@pytest.fixture(autouse=True)
def quick_onboarding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(code_assist_projects, "ONBOARD_POLL_S", 0.01)


@pytest.fixture
async def stub() -> AsyncIterator[CodeAssistStub]:
    async with CodeAssistStub(FLAVOUR) as running:
        yield running


def deployment(tmp_path: Path, stub: CodeAssistStub, **fields: Any) -> Settings:
    document = {
        "access_token": stub.token,
        "refresh_token": "1//ag-refresh",
        "token_type": "Bearer",
        "expiry_date": now_ms() + 3_600_000,
    }
    write_json(tmp_path / TOKEN_PATH, document)
    node = {"uuid": NODE, "ANTIGRAVITY_OAUTH_CREDS_FILE_PATH": TOKEN_PATH, **fields}
    return make_deployment(tmp_path, {TYPE: [node]}, MODEL_PROVIDER=TYPE)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("client_protocol", ["openai", "claude", "gemini"])
async def test_sdk_clients_make_a_tool_round_trip(
    tmp_path: Path, stub: CodeAssistStub, client_protocol: str
) -> None:
    settings = deployment(tmp_path, stub, ANTIGRAVITY_BASE_URL=stub.base("/override"))
    async with running_gateway(settings) as gw:
        url = str(gw.client._base_url).rstrip("/")
        arguments, text = await CLIENTS[client_protocol](url)
        assert (arguments, text) == ({"city": "Paris"}, ANSWER), stub
        assert (await gw.node(NODE, TYPE)).settings.get("PROJECT_ID") == PROJECT
    assert stub.problems == []
    assert {c.prefix for c in stub.calls} == {"/override"}  # the override replaces the list
    assert stub.methods() == [
        "loadCodeAssist",
        "onboardUser",
        "onboardUser",
        "generateContent",
        "streamGenerateContent",
    ]
    whole, streamed = stub.calls[-2:]
    assert whole.body["model"] == "gemini-3-flash"  # "gpt-4o" is no Antigravity model
    assert whole.body["project"] == PROJECT
    assert whole.body["request"]["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert whole.body["request"]["sessionId"] == streamed.body["request"]["sessionId"]


async def test_base_urls_are_tried_in_order_past_the_unreachable_and_the_busy(
    tmp_path: Path, stub: CodeAssistStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub.onboarded = True
    stub.broken["/sandbox"] = 429  # no reset named: the next URL is tried
    urls = (closed_port_url(), stub.base("/sandbox"), stub.base("/daily"))
    monkeypatch.setattr(antigravity, "BASE_URLS", urls)
    async with running_gateway(deployment(tmp_path, stub)) as gw:
        response = await gw.chat("gemini-2.5-flash")
        assert response.status == 200, await response.text()
        assert (await response.json())["choices"][0]["finish_reason"] == "tool_calls"
    assert [(c.prefix, c.method) for c in stub.calls] == [
        ("/sandbox", "loadCodeAssist"),
        ("/daily", "loadCodeAssist"),
        ("/sandbox", "generateContent"),
        ("/daily", "generateContent"),
    ]
    assert stub.calls[-1].body["model"] == "gemini-2.5-flash"
    assert stub.problems == []


async def test_a_429_naming_a_reset_is_not_passed_to_the_next_base_url(
    tmp_path: Path, stub: CodeAssistStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub.onboarded = True
    stub.exhausted = "90s"
    monkeypatch.setattr(antigravity, "BASE_URLS", (stub.base("/sandbox"), stub.base("/daily")))
    async with running_gateway(deployment(tmp_path, stub, PROJECT_ID=PROJECT)) as gw:
        before = now_ms()
        assert (await gw.chat("gemini-2.5-flash")).status == 429
        reset = parse_time_ms((await gw.node(NODE, TYPE)).state.scheduled_recovery_time)
        assert reset is not None and before + 90_000 <= reset <= now_ms() + 90_000
    assert [(c.prefix, c.method) for c in stub.calls] == [("/sandbox", "generateContent")]


TOOL_ROUND = [
    {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
    {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]},
    {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "18 C"}}}],
    },
]


async def test_a_claude_model_goes_by_its_own_name_without_tools_and_streams_a_whole_answer(
    tmp_path: Path, stub: CodeAssistStub
) -> None:
    """``gemini-claude-X`` is ``claude-X`` upstream, with the persona and no tools; its
    whole answer is asked for as a stream and merged."""
    stub.onboarded = True
    settings = deployment(tmp_path, stub, ANTIGRAVITY_BASE_URL=stub.base(), PROJECT_ID=PROJECT)
    body = {
        "contents": TOOL_ROUND,
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [{"functionDeclarations": [{"name": "get_weather"}]}],
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "generationConfig": {"maxOutputTokens": 100, "temperature": 0.5},
    }
    async with running_gateway(settings) as gw:
        response = await gw.client.post(
            "/v1beta/models/gemini-claude-sonnet-4-6:generateContent", json=body, headers=GEMINI_KEY
        )
        assert response.status == 200, await response.text()
        answer = await response.json()
    (candidate,) = answer["candidates"]
    assert candidate["content"]["parts"] == [{"text": ANSWER}]  # merged from many pieces
    assert candidate["finishReason"] == "STOP"
    assert answer["usageMetadata"]["totalTokenCount"] == 18
    (call,) = stub.calls
    assert (call.method, call.query) == ("streamGenerateContent", "alt=sse")
    assert call.body["model"] == "claude-sonnet-4-6"
    request = call.body["request"]
    assert "tools" not in request and "toolConfig" not in request
    assert "safetySettings" not in request
    assert request["generationConfig"] == {"temperature": 0.5}  # maxOutputTokens dropped
    parts = request["systemInstruction"]["parts"]
    assert [p["text"] for p in parts] == [
        PERSONA,
        f"Please ignore following [ignore]{PERSONA}[/ignore]",
        "Be brief.",
    ]
    assert stub.problems == []


async def test_a_stream_keeps_usage_metadata_on_its_finishing_event_only(
    tmp_path: Path, stub: CodeAssistStub
) -> None:
    stub.onboarded = True
    settings = deployment(tmp_path, stub, ANTIGRAVITY_BASE_URL=stub.base(), PROJECT_ID=PROJECT)
    body = {"contents": TOOL_ROUND}
    async with running_gateway(settings) as gw:
        response = await gw.client.post(
            "/v1beta/models/gemini-3-flash:streamGenerateContent?alt=sse",
            json=body,
            headers=GEMINI_KEY,
        )
        assert response.status == 200, await response.text()
        parser = SseParser()
        events = parser.feed(await response.read()) + parser.close()
    chunks = [json.loads(e.data) for e in events]
    assert len(chunks) > 2
    text = "".join(
        p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"]
    )
    assert text == ANSWER
    for chunk in chunks:
        assert "response" not in chunk
        finished = bool(chunk["candidates"][0].get("finishReason"))
        assert ("usageMetadata" in chunk) == finished, chunk
    assert chunks[-1]["usageMetadata"]["totalTokenCount"] == 18
    assert stub.calls[0].query == "alt=sse"


async def test_models_and_usage_come_from_fetch_available_models(
    tmp_path: Path, stub: CodeAssistStub, http: aiohttp.ClientSession
) -> None:
    stub.onboarded = True
    settings = deployment(tmp_path, stub, ANTIGRAVITY_BASE_URL=stub.base())
    async with Store.open(settings) as store:
        node = await store.pools.get_node(TYPE, NODE)
        credential = await store.credentials.get(TYPE, NODE)
        assert node is not None and credential is not None
        config = await store.config.get()
        call = ModelsCall(TYPE, node, config, credential, http, "models-1", store.pools)
        usage = await ANTIGRAVITY.usage(call)
        models = await ANTIGRAVITY.list_models(call)
    assert models == ["gemini-3-flash", "gemini-claude-sonnet-4-6"]
    assert usage["summary"] == {
        "usedPercent": pytest.approx(37.5),
        "status": "normal",
        "resetAt": "2030-01-02T00:00:00.000Z",
        "plan": TIER,
        "planClass": "plan-standard",
        "unit": "percent",
    }
    assert usage["user"] == {"email": EMAIL}
    assert [(i["id"], i["percent"], i["resetAt"]) for i in usage["items"]] == [
        ("gemini-3-flash", pytest.approx(75.0), "2030-01-02T00:00:00.000Z"),
        ("gemini-claude-sonnet-4-6", pytest.approx(0.0), "2030-01-01T00:00:00.000Z"),
    ]
    assert usage["raw"]["tierId"] == TIER and "models" in usage["raw"]
    assert stub.methods() == ["loadCodeAssist", "fetchAvailableModels", "fetchAvailableModels"]
    assert stub.calls[1].body == {"project": PROJECT}
    assert stub.calls[2].body == {"project": PROJECT}  # remembered from loadCodeAssist


def test_merging_a_stream_joins_neighbouring_texts_and_thoughts() -> None:
    def chunk(*parts: dict[str, Any], **fields: Any) -> dict[str, Any]:
        candidate = {"content": {"role": "model", "parts": list(parts)}, **fields}
        return {"candidates": [candidate]}

    merged = code_assist.merge(
        [
            chunk({"thought": True, "text": "Let me "}),
            chunk({"thought": True, "text": "think.", "thought_signature": "sig-1"}),
            chunk({"text": "It is "}),
            chunk({"text": "sunny."}),
            chunk({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}),
            chunk({"text": " "}),
            chunk({"text": ""}, finishReason="STOP")
            | {"usageMetadata": {"totalTokenCount": 5}, "modelVersion": "claude-x"},
        ]
    )
    assert merged == {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"thought": True, "text": "Let me think.", "thoughtSignature": "sig-1"},
                        {"text": "It is sunny."},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    ],
                },
                "index": 0,
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"totalTokenCount": 5},
        "modelVersion": "claude-x",
    }


def test_tool_parameters_keep_only_googles_schema_subset() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "city": {"type": ["string", "null"], "minLength": 1, "description": "Where"},
            "days": {"type": "integer", "exclusiveMinimum": 0, "enum": [1, 2]},
            "tags": {"type": "array", "items": {"type": "string", "format": "uuid"}},
        },
        "required": ["city"],
    }
    assert antigravity.gemini_schema(schema) == {
        "type": "OBJECT",
        "properties": {
            "city": {"nullable": True, "type": "STRING", "description": "Where"},
            "days": {"type": "INTEGER", "enum": [1, 2]},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
        },
        "required": ["city"],
    }


def test_the_node_ui_daily_and_autopush_keys_replace_their_default_base_urls() -> None:
    adapter = antigravity.AntigravityAdapter()
    config = MainConfig()

    def bases(**settings: str) -> list[str]:
        node = node_from_json({"uuid": "n1", **settings}, "gemini-antigravity")
        return adapter.base_urls("gemini-antigravity", node, config)

    assert bases() == list(antigravity.BASE_URLS)
    assert bases(ANTIGRAVITY_BASE_URL_DAILY="", ANTIGRAVITY_BASE_URL_AUTOPUSH="") == list(
        antigravity.BASE_URLS
    )
    assert bases(ANTIGRAVITY_BASE_URL_DAILY="https://d.example/") == [
        "https://d.example",
        antigravity.BASE_URLS[2],
    ]
    assert bases(ANTIGRAVITY_BASE_URL_AUTOPUSH="https://a.example") == [
        *antigravity.BASE_URLS[:2],
        "https://a.example",
    ]
    assert bases(  # the one URL key still replaces the whole list
        ANTIGRAVITY_BASE_URL="https://one.example/", ANTIGRAVITY_BASE_URL_DAILY="https://d.example"
    ) == ["https://one.example"]
