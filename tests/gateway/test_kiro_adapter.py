"""The ``claude-kiro-oauth`` adapter (:mod:`cfgstore_gateway.adapters.kiro`).

* The AWS event-stream decoder: property tests over random messages cut anywhere, and any
  corrupted byte refused.
* The ``generateAssistantResponse`` envelope: system text, history, tools, tool results,
  images, model names, ``profileArn`` (unit tests of the builder); the Claude answer built
  from Kiro's payloads (thinking, long tool names, tool calls written as text).
* Through a real gateway in front of a local Kiro stub (:mod:`tests.gateway.kiro_stub`,
  frames encoded there with their CRCs and cut at random bytes): the official ``anthropic``
  and ``openai`` clients make a tool round trip (whole, then streamed) and stream a tool
  call; the stub checks the headers and the envelope it receives. Health checks render
  through the envelope; ``KIRO_REQUEST_MIN_INTERVAL_MS`` spaces request starts.
* Errors: a token-ish 403 refreshes and retries once; a 402 and a 429 naming a reset time
  cool the node down until then (its ``scheduledRecoveryTime``) and switch; an exception
  frame is an HTTP error before any content, a stream error after.
* SC-004 through this adapter: an expired token, 200 concurrent requests (``scaled``) over
  two gateway instances on one real Redis → one refresh, every request served with the new
  token.
* ``usage()`` against the stub: the Node service's usage object, directly and through
  ``/api/usage/<type>/<uuid>`` (a refused token refreshed once).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import struct
import uuid as uuidlib
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from cfgstore.adapters import Store
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import Credential
from cfgstore.model.pools import node_from_json
from cfgstore.model.timefmt import iso_ms, now_ms, parse_time_ms
from cfgstore_gateway.adapters import (
    AdapterRegistry,
    CredentialRejected,
    ModelsCall,
    UpstreamUnavailable,
)
from cfgstore_gateway.adapters.kiro import KIRO_ADAPTER, first_of_next_month_ms, token_refusal
from cfgstore_gateway.adapters.kiro_envelope import build_envelope, short_tool_name
from cfgstore_gateway.adapters.kiro_events import (
    EventStreamDecoder,
    EventStreamError,
    encode_event,
    iter_events,
)
from cfgstore_gateway.adapters.kiro_reply import ClaudeAssembler
from cfgstore_gateway.adapters.openai_compat import OpenAICompatAdapter
from cfgstore_gateway.health_checks import HealthChecker
from cfgstore_gateway.refresh import Refresher
from tests.gateway.conftest import (
    CLIENT_KEY,
    WAIT_S,
    make_deployment,
    running_gateway,
    scaled,
    write_json,
)
from tests.gateway.kiro_stub import HELLO, TOOL_ID, KiroStub, frame
from tests.gateway.redis_instances import Namespace, delete_namespace, seeded_namespace
from tests.gateway.test_acceptance import (
    add_oauth_node,
    admin,
    check_merged_kiro,
    health_fields,
    kiro_document,
    put_config,
    stored_credential,
    stored_node,
    two_instances,
    views_match_redis,
)
from tests.gateway.token_stub import TokenStub
from tests.support.waiting import until

KIRO = "claude-kiro-oauth"
A = "a0000000-0000-4000-8000-00000000000a"
B = "b0000000-0000-4000-8000-00000000000b"
MODEL = "claude-sonnet-4-5"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
QUESTION = "Weather in Paris?"
ANSWER = "It is 18 C in Paris ☀."
HOUR_MS = 3_600_000
ARN = "arn:aws:codewhisperer:us-east-1:000000000000:profile/FAKE"


# -- the event-stream decoder ------------------------------------------------------------------

header_values = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.uuids(),
)
messages = st.lists(
    st.tuples(
        st.dictionaries(st.text(min_size=1, max_size=10), header_values, max_size=4),
        st.binary(max_size=200),
    ),
    min_size=1,
    max_size=6,
)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points})
    edges = [0, *marks, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=150, deadline=None)
@given(messages, st.lists(st.integers(0, 10_000), max_size=30))
def test_decoder_yields_every_message_whatever_the_cuts(
    sent: list[tuple[dict[str, Any], bytes]], points: list[int]
) -> None:
    data = b"".join(encode_event(headers, payload) for headers, payload in sent)
    decoder = EventStreamDecoder()
    got = [event for piece in cut(data, points) for event in decoder.feed(piece)]
    assert decoder.pending == 0
    assert [(dict(e.headers), e.payload) for e in got] == sent


@settings(max_examples=150, deadline=None)
@given(
    messages,
    st.integers(0, 10_000),
    st.integers(1, 255),
    st.lists(st.integers(0, 10_000), max_size=10),
)
def test_any_corrupted_byte_is_refused(
    sent: list[tuple[dict[str, Any], bytes]], where: int, flip: int, points: list[int]
) -> None:
    data = bytearray(b"".join(encode_event(headers, payload) for headers, payload in sent))
    data[where % len(data)] ^= flip
    decoder = EventStreamDecoder()
    with pytest.raises(EventStreamError):
        for piece in cut(bytes(data), points):
            decoder.feed(piece)
        if decoder.pending:
            raise EventStreamError("truncated")


def test_stub_frames_decode_and_a_truncated_stream_is_an_error() -> None:
    """Frames built independently (the stub's ``struct``/``zlib`` encoder) decode; a body
    cut short is refused, not taken for a shorter answer."""
    body = frame({":event-type": "assistantResponseEvent", ":message-type": "event"}, b'{"a":1}')
    (event,) = iter_events(body)
    assert (event.event_type, event.message_type, event.payload) == (
        "assistantResponseEvent",
        "event",
        b'{"a":1}',
    )
    with pytest.raises(EventStreamError, match="truncated"):
        list(iter_events(body[:-1]))
    too_long = struct.pack(">II", 1 << 30, 0)
    with pytest.raises(EventStreamError, match="length"):
        EventStreamDecoder().feed(too_long + struct.pack(">I", zlib.crc32(too_long)))


# -- the envelope ------------------------------------------------------------------------------


def test_envelope_carries_history_tools_results_images_and_the_kiro_model() -> None:
    long_name = "a_tool_with_a_very_long_name_" + "x" * 60
    body = {
        "model": "claude-sonnet-4-5-20250929",
        "system": [{"type": "text", "text": "Be brief."}],
        "tools": [
            {"name": "get_weather", "description": "Weather", "input_schema": SCHEMA},
            {"name": "web_search", "description": "Search", "input_schema": {}},
            {"name": long_name, "description": "d" * 10_000, "input_schema": {}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": QUESTION},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "t1",
                        "name": "get_weather",
                        "input": {"city": "Paris", "": 1},
                    },
                    {"type": "tool_use", "id": "t2", "name": long_name, "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "18 C"},
                    {"type": "tool_result", "tool_use_id": "t1", "content": "again"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "t2",
                        "content": [{"type": "text", "text": "ok"}],
                    },
                ],
            },
        ],
    }
    envelope = build_envelope(body, profile_arn=ARN, conversation_id="c-1")
    short = short_tool_name(long_name)
    assert len(short) == 64 and short.startswith(long_name[:51] + "_")
    assert envelope.tool_names == {short: long_name}
    assert envelope.image_chars == len("iVBOR")
    state = envelope.body["conversationState"]
    assert envelope.body["profileArn"] == ARN
    assert (state["agentTaskType"], state["chatTriggerType"], state["conversationId"]) == (
        "vibe",
        "MANUAL",
        "c-1",
    )
    assert state["history"] == [
        {
            "userInputMessage": {
                "content": f"Be brief.\n\n{QUESTION}",
                "modelId": "claude-sonnet-4.5",
                "origin": "AI_EDITOR",
                "images": [{"format": "png", "source": {"bytes": "iVBOR"}}],
            }
        },
        {
            "assistantResponseMessage": {
                "content": "<thinking>hmm</thinking>\n\nChecking.",
                "toolUses": [
                    {"input": {"city": "Paris"}, "name": "get_weather", "toolUseId": "t1"},
                    {"input": {}, "name": short, "toolUseId": "t2"},
                ],
            }
        },
    ]
    current = state["currentMessage"]["userInputMessage"]
    assert current["content"] == "Tool results provided."
    assert current["modelId"] == "claude-sonnet-4.5"
    context = current["userInputMessageContext"]
    assert context["toolResults"] == [
        {"content": [{"text": "18 C"}], "status": "success", "toolUseId": "t1"},
        {"content": [{"text": "ok"}], "status": "success", "toolUseId": "t2"},
    ]
    specs = [t["toolSpecification"] for t in context["tools"]]
    assert [s["name"] for s in specs] == ["get_weather", short]
    assert specs[0] == {
        "name": "get_weather",
        "description": "Weather",
        "inputSchema": {"json": SCHEMA},
    }
    assert specs[1]["description"] == "d" * 9216 + "..."
    assert "images" not in current


def test_envelope_edge_rules() -> None:
    # A single user turn: the system text goes into the current message; no tools → the
    # placeholder; no profileArn for IdC; thinking mode in front of the system text.
    single = build_envelope(
        {
            "model": "claude-haiku-4-5-20251001",
            "system": "S",
            "thinking": {"type": "enabled", "budget_tokens": 999_999},
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    state = single.body["conversationState"]
    current = state["currentMessage"]["userInputMessage"]
    assert "history" not in state and "profileArn" not in single.body
    assert current["modelId"] == "claude-haiku-4-5-20251001"  # not in the mapping
    assert current["content"] == (
        "<thinking_mode>enabled</thinking_mode><max_thinking_length>24576</max_thinking_length>"
        "\nS\n\nhi"
    )
    assert [
        t["toolSpecification"]["name"] for t in current["userInputMessageContext"]["tools"]
    ] == ["no_tool_available"]
    assert single.thinking
    # Ending with the assistant (a "{" prefill is dropped first): moved to history, Continue.
    ending = build_envelope(
        {
            "model": "claude-opus-4-5",
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "partial"},
                {"role": "assistant", "content": [{"type": "text", "text": "{"}]},
            ],
        }
    )
    state = ending.body["conversationState"]
    assert [list(turn) for turn in state["history"]] == [
        ["userInputMessage"],
        ["assistantResponseMessage"],
    ]
    assert state["history"][0]["userInputMessage"]["content"] == "a\nb"  # merged turns
    assert state["history"][1]["assistantResponseMessage"]["content"] == "partial"
    assert state["currentMessage"]["userInputMessage"]["content"] == "Continue"
    assert state["currentMessage"]["userInputMessage"]["modelId"] == "claude-opus-4.5"
    # Images more than five messages before the last one are counted in a note.
    turns: list[dict[str, Any]] = []
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "x"}}
    for i in range(4):
        turns += [{"role": "user", "content": [image, {"type": "text", "text": f"q{i}"}]}]
        turns += [{"role": "assistant", "content": f"a{i}"}]
    turns.append({"role": "user", "content": [image]})
    history = build_envelope({"model": "m", "messages": turns}).body["conversationState"]["history"]
    users = [t["userInputMessage"] for t in history if "userInputMessage" in t]
    assert ["images" in u for u in users] == [False, False, True, True]
    assert users[0]["content"] == "q0\n[1 image(s) of this message omitted from the history]"
    current = build_envelope({"model": "m", "messages": turns}).body["conversationState"]
    assert current["currentMessage"]["userInputMessage"]["images"] == [
        {"format": "jpeg", "source": {"bytes": "x"}}
    ]


def test_assembler_cuts_thinking_out_and_restores_long_tool_names() -> None:
    long_name = "n" * 80
    assembler = ClaudeAssembler(
        "claude-opus-4-5", tool_names={short_tool_name(long_name): long_name}, thinking=True
    )
    events = []
    for piece in ["<thin", "king>deep ", "thought</thi", "nking>\n\nDone", "."]:
        events += assembler.feed({"content": piece})
    events += assembler.feed({"name": short_tool_name(long_name), "toolUseId": "t", "input": "{}"})
    events += assembler.feed({"contextUsagePercentage": 1.0})
    events += assembler.finish()
    message = assembler.message()
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use"]
    assert message["content"][0]["thinking"] == "deep thought"
    assert message["content"][1]["text"] == "Done."
    assert message["content"][2]["name"] == long_name
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["input_tokens"] == 1_000_000 // 100 - message["usage"]["output_tokens"]
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 3
    # A thinking-only answer: a one-space text block, stop reason max_tokens.
    only = ClaudeAssembler("m", thinking=True)
    only.feed({"content": "<thinking>all thought</thinking>\n"})
    only.finish()
    assert [(b["type"], b.get("text")) for b in only.message()["content"]] == [
        ("thinking", None),
        ("text", " "),
    ]
    assert only.message()["stop_reason"] == "max_tokens"
    # Without thinking asked for, the tags are text; an exact repeat of the previous text
    # event is dropped (as the Node service does).
    plain = ClaudeAssembler("m")
    for piece in ["<thinking>x</thinking>", "ab", "ab", "c"]:
        plain.feed({"content": piece})
    plain.feed({"followupPrompt": {"content": "ignored"}})
    plain.finish()
    assert plain.message()["content"] == [{"type": "text", "text": "<thinking>x</thinking>abc"}]


def test_tool_calls_written_as_text_become_tool_use_blocks() -> None:
    assembler = ClaudeAssembler("m")
    text = (
        'Sure. [Called get_weather with args: {"city": "Paris", "opts": {"u": "C"}}] and '
        '[Called get_weather with args: {"city": "Paris", "opts": {"u": "C"}}] '
        "[Called broken with args: {not json}] done"
    )
    events = []
    for i in range(0, len(text), 7):
        events += assembler.feed({"content": text[i : i + 7]})
    events += assembler.finish()
    message = assembler.message()
    assert [b["type"] for b in message["content"]] == ["text", "tool_use"]
    assert message["content"][0]["text"] == "Sure.  and  [Called broken with args: {not json}] done"
    assert message["content"][1]["name"] == "get_weather"
    assert message["content"][1]["input"] == {"city": "Paris", "opts": {"u": "C"}}
    assert message["stop_reason"] == "tool_use"
    # The stream sent the text as it came, then the call.
    starts = [
        data["content_block"]["type"] for name, data in events if name == "content_block_start"
    ]
    assert starts == ["text", "tool_use"]


# -- through a gateway -------------------------------------------------------------------------


@pytest_asyncio.fixture
async def kiro() -> AsyncIterator[KiroStub]:
    async with KiroStub() as stub:
        yield stub


def credential_document(access: str, **fields: Any) -> dict[str, Any]:
    return {
        "accessToken": access,
        "refreshToken": "kiro-refresh-0001",
        "profileArn": ARN,
        "expiresAt": iso_ms(now_ms() + HOUR_MS),
        "authMethod": "social",
        "region": "us-east-1",
        **fields,
    }


def kiro_node(root: Path, uuid: str, url: str, access: str, **fields: Any) -> dict[str, Any]:
    path = f"./configs/kiro/{uuid}/kiro-auth-token.json"  # one folder each: siblings merge
    write_json(root / path, credential_document(access))
    return {"uuid": uuid, "KIRO_OAUTH_CREDS_FILE_PATH": path, "KIRO_BASE_URL": url, **fields}


async def anthropic_turns(url: str) -> tuple[dict[str, Any], str]:
    client = anthropic.AsyncAnthropic(
        base_url=url, api_key=CLIENT_KEY, max_retries=0, timeout=WAIT_S
    )
    tools: Any = [{"name": "get_weather", "description": "Weather", "input_schema": SCHEMA}]
    messages: Any = [{"role": "user", "content": QUESTION}]
    first = await client.messages.create(
        model=MODEL, max_tokens=100, messages=messages, tools=tools
    )
    assert first.stop_reason == "tool_use"
    assert [b.type for b in first.content] == ["text", "tool_use"]
    (use,) = [block for block in first.content if block.type == "tool_use"]
    assert use.id == TOOL_ID
    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C"}],
        },
    ]
    async with client.messages.stream(
        model=MODEL, max_tokens=100, messages=messages, tools=tools
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert final.stop_reason == "end_turn"
    assert isinstance(use.input, dict)
    return use.input, text


async def openai_turns(url: str) -> tuple[dict[str, Any], str]:
    client = openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=WAIT_S
    )
    tools: Any = [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather", "parameters": SCHEMA},
        }
    ]
    messages: Any = [{"role": "user", "content": QUESTION}]
    first = await client.chat.completions.create(model=MODEL, messages=messages, tools=tools)
    assert first.choices[0].finish_reason == "tool_calls"
    (call,) = first.choices[0].message.tool_calls or []
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 C"},
    ]
    stream = await client.chat.completions.create(
        model=MODEL, messages=messages, tools=tools, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    return json.loads(call.function.arguments), text


def check_headers(received: Any, token: str, node_uuid: str) -> None:
    headers = received.headers
    assert headers["Authorization"] == f"Bearer {token}"
    assert headers["Content-Type"] == "application/json"
    assert headers["amz-sdk-request"] == "attempt=1; max=3"
    assert headers["x-amzn-codewhisperer-optout"] == "true"
    assert headers["x-amzn-kiro-agent-mode"] == "vibe"
    uuidlib.UUID(headers["amz-sdk-invocation-id"])
    machine = hashlib.sha256(node_uuid.encode()).hexdigest()
    assert headers["x-amz-user-agent"] == f"aws-sdk-js/1.0.34 KiroIDE-0.11.63-{machine}"
    assert headers["user-agent"].endswith(f"KiroIDE-0.11.63-{machine}")
    assert CLIENT_KEY not in json.dumps(dict(headers))


@pytest.mark.parametrize("client", ["anthropic", "openai"])
async def test_sdk_clients_make_a_tool_round_trip_through_kiro(
    tmp_path: Path, kiro: KiroStub, client: str
) -> None:
    node = kiro_node(tmp_path, A, kiro.generate_url, "kiro-access-a")
    settings = make_deployment(tmp_path, {KIRO: [node]}, MODEL_PROVIDER=KIRO)
    async with running_gateway(settings) as gw:
        url = str(gw.client._base_url).rstrip("/")
        turns = anthropic_turns if client == "anthropic" else openai_turns
        arguments, text = await turns(url)
        assert arguments == {"city": "Paris"}, kiro
        assert text == ANSWER, kiro
        await gw.store.flush()
        assert (await gw.node(A, KIRO)).state.usage_count == 2
    first, second = kiro.generations()
    for received in (first, second):
        check_headers(received, "kiro-access-a", A)
        state = received.body["conversationState"]
        assert received.body["profileArn"] == ARN
        current = state["currentMessage"]["userInputMessage"]
        assert (current["modelId"], current["origin"]) == ("claude-sonnet-4.5", "AI_EDITOR")
        (spec,) = current["userInputMessageContext"]["tools"]
        assert spec["toolSpecification"]["name"] == "get_weather"
        assert spec["toolSpecification"]["inputSchema"] == {"json": SCHEMA}
    assert "history" not in first.body["conversationState"]
    assert first.body["conversationState"]["currentMessage"]["userInputMessage"]["content"] == (
        QUESTION
    )
    state = second.body["conversationState"]
    assert state["history"][0]["userInputMessage"]["content"] == QUESTION
    assistant = state["history"][1]["assistantResponseMessage"]
    assert assistant["toolUses"] == [
        {"input": {"city": "Paris"}, "name": "get_weather", "toolUseId": TOOL_ID}
    ]
    context = state["currentMessage"]["userInputMessage"]["userInputMessageContext"]
    assert context["toolResults"] == [
        {"content": [{"text": "18 C"}], "status": "success", "toolUseId": TOOL_ID}
    ]


async def test_a_streamed_tool_call_reaches_both_sdks_whole(tmp_path: Path, kiro: KiroStub) -> None:
    """The tool call's arguments, in fragments cut anywhere, accumulate into the call."""
    node = kiro_node(tmp_path, A, kiro.generate_url, "kiro-access-a")
    settings = make_deployment(tmp_path, {KIRO: [node]}, MODEL_PROVIDER=KIRO)
    async with running_gateway(settings) as gw:
        url = str(gw.client._base_url).rstrip("/")
        claude = anthropic.AsyncAnthropic(base_url=url, api_key=CLIENT_KEY, max_retries=0)
        tools: Any = [{"name": "get_weather", "description": "Weather", "input_schema": SCHEMA}]
        async with claude.messages.stream(
            model=MODEL,
            max_tokens=100,
            messages=[{"role": "user", "content": QUESTION}],
            tools=tools,
        ) as stream:
            final = await stream.get_final_message()
        assert final.stop_reason == "tool_use"
        (use,) = [b for b in final.content if b.type == "tool_use"]
        assert (use.id, use.name, use.input) == (TOOL_ID, "get_weather", {"city": "Paris"})
        chat = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0)
        functions: Any = [
            {"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}
        ]
        chunks = await chat.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": QUESTION}],
            tools=functions,
            stream=True,
        )
        arguments, finish = "", None
        async for chunk in chunks:
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    if call.function is not None:
                        arguments += call.function.arguments or ""
                finish = choice.finish_reason or finish
        assert json.loads(arguments) == {"city": "Paris"} and finish == "tool_calls"
    # The OpenAI client gave no description: the tool's name stands in (Kiro wants one).
    spec = kiro.generations()[1].body["conversationState"]["currentMessage"]["userInputMessage"]
    (tool,) = spec["userInputMessageContext"]["tools"]
    assert tool["toolSpecification"]["description"] == "get_weather"


@pytest.mark.parametrize("provider_type", [KIRO, f"{KIRO}-eu"])
async def test_plain_answers_whole_and_streamed_and_the_model_list(
    tmp_path: Path, kiro: KiroStub, provider_type: str
) -> None:
    node = kiro_node(tmp_path, A, kiro.generate_url, "kiro-access-a")
    settings = make_deployment(tmp_path, {provider_type: [node]}, MODEL_PROVIDER=provider_type)
    async with running_gateway(settings) as gw:
        client = anthropic.AsyncAnthropic(
            base_url=str(gw.client._base_url).rstrip("/"), api_key=CLIENT_KEY, max_retries=0
        )
        whole = await client.messages.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )
        assert [(b.type, getattr(b, "text", None)) for b in whole.content] == [("text", HELLO)]
        assert whole.stop_reason == "end_turn" and whole.usage.output_tokens > 0
        # contextUsagePercentage 0.5 of sonnet's 200 000 tokens, less the output.
        assert whole.usage.input_tokens == 1000 - whole.usage.output_tokens
        async with client.messages.stream(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            assert "".join([t async for t in stream.text_stream]) == HELLO
        models = await gw.client.get(
            "/v1/models", headers={"Authorization": f"Bearer {CLIENT_KEY}"}
        )
        ids = [m["id"] for m in (await models.json())["data"]]
        assert "claude-sonnet-4-5" in ids and "claude-opus-4-8" in ids


async def test_a_token_ish_403_refreshes_once_and_retries(tmp_path: Path, kiro: KiroStub) -> None:
    async with TokenStub(
        lambda received, n: (200, {"accessToken": "fresh", "refreshToken": "r2", "expiresIn": 3600})
    ) as tokens:
        node = kiro_node(
            tmp_path, A, kiro.generate_url, "stale", KIRO_REFRESH_URL=tokens.url("/refreshToken")
        )
        settings = make_deployment(tmp_path, {KIRO: [node]}, MODEL_PROVIDER=KIRO)
        kiro.failures.append(
            (403, {"message": "The bearer token included in the request is invalid."}, {})
        )
        async with running_gateway(settings) as gw:
            response = await gw.chat(MODEL)
            assert response.status == 200, await response.text()
            assert (await response.json())["choices"][0]["message"]["content"] == HELLO
        assert kiro.tokens() == ["stale", "fresh"]
        assert tokens.count == 1
        # Another 403 is the account's, not the token's: no refresh.
        kiro.failures.append((403, {"message": "User is not authorized for this profile"}, {}))
        async with running_gateway(settings) as gw:
            assert (await gw.chat(MODEL)).status == 403
        assert tokens.count == 1


def test_which_403s_blame_the_token() -> None:
    assert token_refusal('{"message":"The bearer token included in the request is invalid."}')
    assert token_refusal("Authorization expired")
    assert not token_refusal("User is not authorized for this profile")
    assert not token_refusal("Invalid token: account temporarily suspended, see appeal")
    assert not token_refusal("token quota exceeded (invalid)")
    assert not token_refusal("")


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (
            402,
            {"message": "You have reached the limit.", "reason": "MONTHLY_REQUEST_COUNT"},
            {},
            "month",
        ),
        (429, {"message": "Too many requests"}, {"Retry-After": "7200"}, "retry-after"),
        (
            429,
            {"message": "Too many requests", "resetAt": "2099-01-02T03:04:05Z"},
            {},
            int(datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp() * 1000),
        ),
    ],
)
async def test_a_spent_quota_cools_the_node_down_until_the_named_time(
    tmp_path: Path, kiro: KiroStub, status: int, body: Any, headers: dict[str, str], expected: Any
) -> None:
    pools = {
        KIRO: [
            kiro_node(tmp_path, A, kiro.generate_url, "access-a"),
            kiro_node(tmp_path, B, kiro.generate_url, "access-b"),
        ]
    }
    settings = make_deployment(
        tmp_path, pools, MODEL_PROVIDER=KIRO, RATE_LIMIT_COOLDOWN_ENABLED=False
    )
    kiro.failures.append((status, body, headers))
    async with running_gateway(settings) as gw:
        before = now_ms()
        for _ in range(3):
            response = await gw.chat(MODEL)
            assert response.status == 200, await response.text()
        after = now_ms()
        await gw.store.flush()
        (spent,) = [n for n in (A, B) if not (await gw.node(n, KIRO)).state.is_healthy]
        recovery = parse_time_ms((await gw.node(spent, KIRO)).state.scheduled_recovery_time)
    assert recovery is not None
    if expected == "month":
        assert recovery == first_of_next_month_ms()
    elif expected == "retry-after":
        assert before + 7_200_000 - 1000 <= recovery <= after + 7_200_000 + 1000
    else:
        assert recovery == expected
    tokens = kiro.tokens()
    spent_token = "access-a" if spent == A else "access-b"
    assert tokens[0] == spent_token and tokens.count(spent_token) == 1, (tokens, spent)


async def test_an_exception_frame_before_any_content_is_an_http_error(
    tmp_path: Path, kiro: KiroStub
) -> None:
    node = kiro_node(tmp_path, A, kiro.generate_url, "access-a")
    settings = make_deployment(
        tmp_path, {KIRO: [node]}, MODEL_PROVIDER=KIRO, CREDENTIAL_SWITCH_MAX_RETRIES=0
    )
    kiro.exception = ("ValidationException", "Improperly formed request.")
    async with running_gateway(settings) as gw:
        response = await gw.chat(MODEL, stream=True)
        assert response.status == 400
        assert "Improperly formed request." in await response.text()


async def test_an_exception_frame_after_content_ends_the_answer_with_an_error(
    tmp_path: Path, kiro: KiroStub
) -> None:
    """Streamed: the text so far, then the client protocol's stream error; whole: no
    partial answer passes for a complete one (502, recorded on the node)."""
    node = kiro_node(tmp_path, A, kiro.generate_url, "access-a")
    settings = make_deployment(
        tmp_path, {KIRO: [node]}, MODEL_PROVIDER=KIRO, CREDENTIAL_SWITCH_MAX_RETRIES=0
    )
    async with running_gateway(settings) as gw:
        kiro.broken = ("InternalServerException", "Encountered an unexpected error.")
        body = {
            "model": MODEL,
            "max_tokens": 20,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
        response = await gw.client.post(
            "/v1/messages", json=body, headers={"x-api-key": CLIENT_KEY}
        )
        assert response.status == 200
        text = await asyncio.wait_for(response.text(), WAIT_S)
        events = [
            line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")
        ]
        assert events[0] == "message_start" and events[-1] == "error", text
        assert "message_stop" not in events
        assert "Encountered an unexpected error." in text
        kiro.broken = ("InternalServerException", "Encountered an unexpected error.")
        whole = await gw.chat(MODEL)
        assert whole.status == 502, await whole.text()
        await gw.store.flush()
        state = (await gw.node(A, KIRO)).state
        assert state.error_count == 2
        assert "Encountered an unexpected error." in (state.last_error_message or "")


async def test_a_health_check_renders_through_the_kiro_envelope(
    tmp_path: Path, kiro: KiroStub, http: aiohttp.ClientSession
) -> None:
    node = kiro_node(tmp_path, A, kiro.generate_url, "access-a")
    settings = make_deployment(tmp_path, {KIRO: [node]}, MODEL_PROVIDER=KIRO)
    registry = AdapterRegistry()
    registry.register(KIRO_ADAPTER)
    async with Store.open(settings) as store:
        checker = HealthChecker(store, registry, http, Refresher(store, http))
        (ok,) = await checker.check_now(KIRO, A)
        kiro.failures.append((500, {"message": "Internal error"}, {}))
        (failed,) = await checker.check_now(KIRO, A)
    assert (ok.healthy, ok.model) == (True, "claude-haiku-4-5")
    assert not failed.healthy and "Internal error" in (failed.message or "")
    current = kiro.generations()[0].body["conversationState"]["currentMessage"]
    assert current["userInputMessage"]["modelId"] == "claude-haiku-4.5"
    assert current["userInputMessage"]["content"]


async def test_request_starts_are_spaced_by_the_minimum_interval(
    tmp_path: Path, kiro: KiroStub
) -> None:
    """``KIRO_REQUEST_MIN_INTERVAL_MS``: concurrent requests over two accounts still reach
    Kiro at least that far apart (a lower bound: a busy machine only widens the gaps)."""
    pools = {
        KIRO: [
            kiro_node(tmp_path, A, kiro.generate_url, "access-a"),
            kiro_node(tmp_path, B, kiro.generate_url, "access-b"),
        ]
    }
    settings = make_deployment(
        tmp_path, pools, MODEL_PROVIDER=KIRO, KIRO_REQUEST_MIN_INTERVAL_MS=150
    )
    async with running_gateway(settings) as gw:
        responses = await asyncio.gather(*(gw.chat(MODEL) for _ in range(4)))
        assert [r.status for r in responses] == [200] * 4
    arrivals = sorted(r.at for r in kiro.generations())
    assert len(arrivals) == 4
    assert min(b - a for a, b in itertools.pairwise(arrivals)) >= 0.15 - 0.01


# -- usage -------------------------------------------------------------------------------------

USAGE = {
    "nextDateReset": 1_893_456_000,  # seconds
    "subscriptionInfo": {"subscriptionTitle": "KIRO PRO+"},
    "userInfo": {"email": "dev@example.com"},
    "usageBreakdownList": [
        {
            "resourceType": "CREDIT",
            "displayName": "Credits",
            "currentUsage": 10,
            "currentUsageWithPrecision": 12.5,
            "usageLimit": 100,
            "usageLimitWithPrecision": 50.0,
            "nextDateReset": None,
            "bonuses": [
                {
                    "bonusCode": "WELCOME",
                    "displayName": "Welcome",
                    "currentUsage": 5,
                    "usageLimit": 10,
                    "status": "ACTIVE",
                },
                {
                    "bonusCode": "OLD",
                    "displayName": "Old",
                    "currentUsage": 1,
                    "usageLimit": 1,
                    "status": "EXPIRED",
                },
                {
                    "bonusCode": "FAR",
                    "displayName": "Far",
                    "usageLimit": 1,
                    "expiresAt": "2001-01-01T00:00:00Z",
                },
            ],
            "freeTrialInfo": {
                "currentUsage": 45,
                "usageLimit": 50,
                "freeTrialStatus": "ACTIVE",
            },
        }
    ],
}


async def test_usage_reads_get_usage_limits_into_the_node_usage_object(
    kiro: KiroStub, http: aiohttp.ClientSession
) -> None:
    kiro.usage_document = USAGE
    node = node_from_json({"uuid": A, "KIRO_BASE_URL": kiro.generate_url}, "test")
    credential = Credential(KIRO, A, credential_document("access-a"), "./configs/kiro/a.json")
    call = ModelsCall(KIRO, node, {}, credential, http, "req-1")  # type: ignore[arg-type]
    usage = await KIRO_ADAPTER.usage(call)
    (received,) = kiro.received
    assert received.path == "/getUsageLimits"
    assert received.query == {
        "isEmailRequired": "true",
        "origin": "AI_EDITOR",
        "resourceType": "AGENTIC_REQUEST",
        "profileArn": ARN,
    }
    assert received.headers["Authorization"] == "Bearer access-a"
    assert received.headers["amz-sdk-request"] == "attempt=1; max=1"
    items = usage["items"]
    assert [i["id"] for i in items] == ["CREDIT", "bonus_WELCOME", "bonus_OLD", "freetrial_CREDIT"]
    assert items[0] == {
        "id": "CREDIT",
        "label": "Credits",
        "used": 12.5,
        "limit": 50.0,
        "percent": 25.0,
        "unit": "tokens",
        "status": "normal",
        "resetAt": None,
        "isExpired": False,
    }
    assert items[2]["label"] == "Bonus: Old (Expired)" and items[2]["status"] == "danger"
    assert items[3]["status"] == "warning" and items[3]["percent"] == 90.0
    assert usage["summary"] == {
        "usedPercent": (12.5 + 5 + 45) / (50 + 10 + 50) * 100,
        "status": "normal",
        "resetAt": "2030-01-01T00:00:00.000Z",
        "plan": "PRO+",
        "planClass": "plan-pro-plus",
        "unit": "tokens",
        "totalUsed": 62.5,
        "totalLimit": 110.0,
    }
    assert usage["user"] == {"email": "dev@example.com"}
    assert usage["raw"] == USAGE


async def test_usage_of_an_idc_login_and_an_upstream_refusal(
    kiro: KiroStub, http: aiohttp.ClientSession
) -> None:
    """IdC (builder-id) sends no ``profileArn``; an empty answer is a zero usage; a refusal
    is :class:`UpstreamUnavailable` naming the status."""
    kiro.usage_document = {}
    node = node_from_json({"uuid": A, "KIRO_BASE_URL": kiro.generate_url}, "test")
    document = credential_document(
        "access-i", authMethod="builder-id", clientId="c", clientSecret="s"
    )
    credential = Credential(KIRO, A, document, "./configs/kiro/i.json")
    call = ModelsCall(KIRO, node, {}, credential, http, "req-2")  # type: ignore[arg-type]
    usage = await KIRO_ADAPTER.usage(call)
    assert "profileArn" not in kiro.received[0].query
    assert usage["items"] == [] and usage["summary"]["plan"] == "FREE"
    assert usage["summary"]["usedPercent"] == 0 and usage["user"] == {"email": None}
    kiro.failures.append((403, {"message": "AccessDeniedException"}, {}))
    with pytest.raises(UpstreamUnavailable, match="HTTP 403") as refused:
        await KIRO_ADAPTER.usage(call)
    assert not isinstance(refused.value, CredentialRejected)
    kiro.failures.append((401, {"message": "Unauthorized"}, {}))
    with pytest.raises(CredentialRejected, match="HTTP 401"):
        await KIRO_ADAPTER.usage(call)


async def test_usage_through_the_admin_api_refreshes_a_refused_token_once(
    tmp_path: Path, kiro: KiroStub
) -> None:
    """``GET /api/usage/claude-kiro-oauth/<uuid>``: Kiro refuses the stale token (401), the
    gateway refreshes it once and asks again; the instance carries the Node usage object."""
    from tests.admin.conftest import admin_gateway

    kiro.usage_document = USAGE
    kiro.failures.append((401, {"message": "The bearer token is expired"}, {}))
    async with TokenStub(
        lambda received, n: (200, {"accessToken": "fresh", "refreshToken": "r2", "expiresIn": 3600})
    ) as tokens:
        node = kiro_node(
            tmp_path, A, kiro.generate_url, "stale", KIRO_REFRESH_URL=tokens.url("/refreshToken")
        )
        settings = make_deployment(tmp_path, {KIRO: [node]}, MODEL_PROVIDER=KIRO)
        async with admin_gateway(settings) as anonymous:
            admin = await anonymous.login()
            status, supported = await admin.call("GET", "/api/usage/supported-providers")
            assert status == 200 and KIRO in supported
            status, instance = await admin.call("GET", f"/api/usage/{KIRO}/{A}")
        assert tokens.count == 1
    assert status == 200 and instance["success"] is True, instance
    assert instance["usage"]["summary"]["plan"] == "PRO+"
    assert instance["usage"]["items"][0]["id"] == "CREDIT"
    assert [r.token for r in kiro.received] == ["stale", "fresh"]


# -- SC-004 through the adapter ----------------------------------------------------------------


@pytest_asyncio.fixture
async def namespace(redis_url: str, tmp_path: Path) -> AsyncIterator[Namespace]:
    namespace = await seeded_namespace(redis_url, tmp_path, "kiro-")
    try:
        yield namespace
    finally:
        await asyncio.to_thread(delete_namespace, redis_url, namespace.prefix)


async def test_an_expired_token_is_refreshed_once_for_concurrent_requests_on_two_instances(
    namespace: Namespace, kiro: KiroStub
) -> None:
    callers = scaled(200, minimum=4)
    original = kiro_document("k1")
    async with TokenStub(
        lambda received, n: (
            200,
            {"accessToken": "new-access", "refreshToken": "new-refresh", "expiresIn": 3600},
        ),
        max_hold_s=WAIT_S * 3,
    ) as tokens:
        async with admin(namespace) as store:
            await put_config(store, MODEL_PROVIDER=KIRO)
            await add_oauth_node(
                store,
                KIRO,
                A,
                original,
                KIRO_BASE_URL=kiro.generate_url,
                KIRO_REFRESH_URL=tokens.url("/refreshToken"),
            )
        async with two_instances(namespace) as instances:
            refreshers = [instance.refresher for instance in instances]
            started = now_ms()
            tokens.hold()
            calls = [
                asyncio.create_task(instances[i % 2].chat(MODEL, stream=i % 4 == 0))
                for i in range(callers)
            ]
            try:
                await tokens.wait_for_requests(1, WAIT_S)
                await until(
                    lambda: sum(r.stats.flights + r.stats.joined for r in refreshers) == callers,
                    "every request waits on its instance's refresh",
                )
                assert kiro.generations() == []
            finally:
                tokens.release()
            results = await asyncio.wait_for(asyncio.gather(*calls), WAIT_S * 3)
            finished = now_ms()
            assert [status for status, _ in results] == [200] * callers
            for i, (_, body) in enumerate(results):
                if i % 4 == 0:
                    assert body.rstrip().endswith(b"data: [DONE]"), body[-200:]
                else:
                    assert json.loads(body)["choices"][0]["message"]["content"] == HELLO
            async with admin(namespace) as store:
                await views_match_redis(instances, store, [(KIRO, A)])
        assert tokens.count == 1
    assert kiro.tokens() == ["new-access"] * callers
    # The region of the credential (eu-central-1) does not matter with KIRO_BASE_URL set;
    # the social login's profileArn goes in every envelope.
    assert {r.body["profileArn"] for r in kiro.generations()} == {original["profileArn"]}
    async with admin(namespace) as store:
        credential = await stored_credential(store, KIRO, A)
        check_merged_kiro(credential, original, "new-access", "new-refresh", (started, finished))
        node = await stored_node(store, KIRO, A)
    assert health_fields(node) == {
        "isHealthy": True,
        "usageCount": callers,
        "errorCount": 0,
        "needsRefresh": False,
        "lastErrorMessage": None,
    }


def test_where_a_generation_goes_and_when_a_month_ends() -> None:
    def url(node_fields: dict[str, Any], region: str | None, **config: Any) -> str:
        node = node_from_json({"uuid": A, **node_fields}, "test")
        document = {"accessToken": "t"} | ({"region": region} if region else {})
        return KIRO_ADAPTER.generate_url(KIRO, node, MainConfig(config), document)

    assert url({}, None) == "https://q.us-east-1.amazonaws.com/generateAssistantResponse"
    assert url({}, "eu-central-1") == (
        "https://q.eu-central-1.amazonaws.com/generateAssistantResponse"
    )
    relay = "https://relay.example/{{region}}/generateAssistantResponse"
    assert url({"KIRO_BASE_URL": relay}, "ap-1") == (
        "https://relay.example/ap-1/generateAssistantResponse"
    )
    assert url({"KIRO_BASE_URL": ""}, None, KIRO_BASE_URL=relay) == (  # "" = not set
        "https://q.us-east-1.amazonaws.com/generateAssistantResponse"
    )
    table = {"claude-kiro-oauth": "https://table.example/generateAssistantResponse"}
    assert url({}, None, UPSTREAM_BASE_URLS=table) == table["claude-kiro-oauth"]
    december = int(datetime(2026, 12, 31, 23, 59, tzinfo=UTC).timestamp() * 1000)
    assert first_of_next_month_ms(december) == int(
        datetime(2027, 1, 1, tzinfo=UTC).timestamp() * 1000
    )
    march = int(datetime(2026, 3, 1, 0, 0, tzinfo=UTC).timestamp() * 1000)
    assert first_of_next_month_ms(march) == int(datetime(2026, 4, 1, tzinfo=UTC).timestamp() * 1000)


def test_the_gateway_resolves_kiro_to_this_adapter() -> None:

    registry = AdapterRegistry()
    registry.register(OpenAICompatAdapter())
    registry.register(KIRO_ADAPTER)
    assert registry.for_type(KIRO) is KIRO_ADAPTER
    assert registry.for_type(KIRO + "-eu") is KIRO_ADAPTER
