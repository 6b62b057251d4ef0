"""Every client protocol against every API-key upstream: the official SDKs of OpenAI
(chat and Responses), Anthropic and Google GenAI as clients; ``openai-custom``,
``claude-custom``, ``openaiResponses-custom`` and ``forward-api`` nodes in front of one
stub speaking each vendor's protocol (:mod:`tests.gateway.protocol_stubs`). Each pair makes
a tool round trip: a whole answer that calls ``get_weather``, then a streamed answer to the
tool's result; each request counts once on the node, reaches the vendor's path with the
vendor's authentication, and a client of the upstream's own protocol is passed through
untouched."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import pytest_asyncio
from google import genai
from google.genai import types as gt

from tests.gateway.conftest import CLIENT_KEY, WAIT_S, Gateway, make_deployment, running_gateway
from tests.gateway.protocol_stubs import MODEL, ProtocolStub

NODE = "abcdabcd-0000-4000-8000-00000000abcd"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
QUESTION = "Weather in Paris?"
ANSWER = "It is 18 C in Paris ☀."

UPSTREAMS = {
    "openai-custom": (
        {"OPENAI_API_KEY": "sk-openai-up"},
        "OPENAI_BASE_URL",
        "/v1/chat/completions",
    ),
    "claude-custom": ({"CLAUDE_API_KEY": "sk-claude-up"}, "CLAUDE_BASE_URL", "/v1/messages"),
    "openaiResponses-custom": (
        {"OPENAI_API_KEY": "sk-resp-up"},
        "OPENAI_BASE_URL",
        "/v1/responses",
    ),
}


# ---------------------------------------------------------------------------- clients
# Each: ask (whole) → the tool call's arguments; then answer the call (streamed) → text.

Turn = Callable[[str], Awaitable[tuple[dict[str, Any], str]]]


async def openai_chat(url: str) -> tuple[dict[str, Any], str]:
    client = openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=WAIT_S
    )
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
    messages: Any = [{"role": "user", "content": QUESTION}]
    first = await client.chat.completions.create(model=MODEL, messages=messages, tools=tools)
    (call,) = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls"
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 C"},
    ]
    stream = await client.chat.completions.create(
        model=MODEL, messages=messages, tools=tools, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    return json.loads(call.function.arguments), text


async def anthropic_messages(url: str) -> tuple[dict[str, Any], str]:
    client = anthropic.AsyncAnthropic(
        base_url=url, api_key=CLIENT_KEY, max_retries=0, timeout=WAIT_S
    )
    tools: Any = [{"name": "get_weather", "description": "Weather", "input_schema": SCHEMA}]
    messages: Any = [{"role": "user", "content": QUESTION}]
    first = await client.messages.create(
        model=MODEL, max_tokens=100, messages=messages, tools=tools
    )
    assert first.stop_reason == "tool_use"
    (use,) = [block for block in first.content if block.type == "tool_use"]
    messages += [
        {"role": "assistant", "content": [use.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C"}],
        },
    ]
    async with client.messages.stream(
        model=MODEL, max_tokens=100, messages=messages, tools=tools
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert isinstance(use.input, dict)
    return use.input, text


async def gemini(url: str) -> tuple[dict[str, Any], str]:
    options = gt.HttpOptions(base_url=url, api_version="v1beta", timeout=int(WAIT_S * 1000))
    client = genai.Client(api_key=CLIENT_KEY, http_options=options).aio
    declaration = gt.FunctionDeclaration(name="get_weather", parameters_json_schema=SCHEMA)
    config = gt.GenerateContentConfig(
        tools=[gt.Tool(function_declarations=[declaration])],
        automatic_function_calling=gt.AutomaticFunctionCallingConfig(disable=True),
    )
    first = await client.models.generate_content(model=MODEL, contents=QUESTION, config=config)
    (call,) = first.function_calls or []
    contents = [
        gt.Content(role="user", parts=[gt.Part(text=QUESTION)]),
        gt.Content(role="model", parts=[gt.Part(function_call=call)]),
        gt.Content(
            role="user",
            parts=[
                gt.Part.from_function_response(name="get_weather", response={"content": "18 C"})
            ],
        ),
    ]
    texts = [
        chunk.text or ""
        async for chunk in await client.models.generate_content_stream(
            model=MODEL, contents=contents, config=config
        )
    ]
    return dict(call.args or {}), "".join(texts)


async def openai_responses(url: str) -> tuple[dict[str, Any], str]:
    client = openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=WAIT_S
    )
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": SCHEMA}]
    first = await client.responses.create(model=MODEL, input=QUESTION, tools=tools)
    (call,) = [item for item in first.output if item.type == "function_call"]
    follow_up: Any = [
        {"role": "user", "content": QUESTION},
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 C"},
    ]
    async with client.responses.stream(model=MODEL, input=follow_up, tools=tools) as stream:
        final = await stream.get_final_response()
    return json.loads(call.arguments), final.output_text


CLIENTS: dict[str, Turn] = {
    "openai": openai_chat,
    "claude": anthropic_messages,
    "gemini": gemini,
    "openaiResponses": openai_responses,
}


@pytest_asyncio.fixture
async def stub() -> AsyncIterator[ProtocolStub]:
    async with ProtocolStub() as running:
        yield running


@pytest.mark.parametrize("upstream_type", list(UPSTREAMS))
@pytest.mark.parametrize("client_protocol", list(CLIENTS))
async def test_tool_round_trip_for_every_client_and_upstream(
    tmp_path: Path, stub: ProtocolStub, client_protocol: str, upstream_type: str
) -> None:
    fields, base_key, vendor_path = UPSTREAMS[upstream_type]
    node = {"uuid": NODE, **fields, base_key: f"{stub.url}/v1"}
    settings = make_deployment(tmp_path, {upstream_type: [node]}, MODEL_PROVIDER=upstream_type)
    turn = CLIENTS[client_protocol]
    async with running_gateway(settings) as gw:
        url = str(gw.client._base_url).rstrip("/")
        arguments, text = await turn(url)
        assert arguments == {"city": "Paris"}, stub
        assert text == ANSWER, stub  # reassembled from pieces cut anywhere
        assert await usage_count(gw) == 2
    assert [r.path for r in stub.received] == [vendor_path, vendor_path]
    secret = next(iter(fields.values()))
    for received in stub.received:
        if upstream_type == "claude-custom":
            assert received.headers["x-api-key"] == secret
            assert received.headers["anthropic-version"] == "2023-06-01"
        else:
            assert received.headers["Authorization"] == f"Bearer {secret}"
        assert CLIENT_KEY not in json.dumps(received.headers)
    assert [r.body.get("stream") is True for r in stub.received] == [False, True]


async def usage_count(gw: Gateway) -> int:
    await gw.store.flush()
    return (await gw.node(NODE, next(iter(await gw.store.pools.view())))).state.usage_count


async def test_a_client_of_the_upstreams_protocol_is_passed_through_byte_for_byte(
    tmp_path: Path, stub: ProtocolStub
) -> None:
    node = {"uuid": NODE, "CLAUDE_API_KEY": "sk-claude-up", "CLAUDE_BASE_URL": f"{stub.url}/v1"}
    settings = make_deployment(tmp_path, {"claude-custom": [node]}, MODEL_PROVIDER="claude-custom")
    sent = json.dumps(
        {
            "model": MODEL,
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user_id": "u1"},
        },
        indent=1,
    ).encode()
    async with running_gateway(settings) as gw:
        response = await gw.client.post(
            "/v1/messages", data=sent, headers={"x-api-key": CLIENT_KEY}
        )
        assert response.status == 200, await response.text()
        assert (await response.json())["content"][0]["type"] == "tool_use"
    (received,) = stub.received
    assert received.raw == sent  # not even re-serialized: one protocol, no conversion


GEMINI_PATH = f"/v1beta/models/{MODEL}"


@pytest.mark.parametrize(
    ("client_protocol", "vendor_paths"),
    [
        ("openai", ["/v1/chat/completions"] * 2),
        ("claude", ["/v1/messages"] * 2),
        ("openaiResponses", ["/v1/responses"] * 2),
        ("gemini", [f"{GEMINI_PATH}:generateContent", f"{GEMINI_PATH}:streamGenerateContent"]),
    ],
)
async def test_forward_api_sends_every_protocol_to_the_clients_own_path(
    tmp_path: Path, stub: ProtocolStub, client_protocol: str, vendor_paths: list[str]
) -> None:
    """``forward-api`` converts nothing: each client reaches ``<base><its own path>``
    with the configured header, and its answers come back as the upstream sent them."""
    node = {
        "uuid": NODE,
        "FORWARD_API_KEY": "relay-key",
        "FORWARD_BASE_URL": stub.url,  # the root, as the Node service takes it
        "FORWARD_HEADER_NAME": "x-relay-key",
        "FORWARD_HEADER_VALUE_PREFIX": "",
    }
    settings = make_deployment(tmp_path, {"forward-api": [node]}, MODEL_PROVIDER="forward-api")
    async with running_gateway(settings) as gw:
        arguments, text = await CLIENTS[client_protocol](str(gw.client._base_url).rstrip("/"))
        assert (arguments, text) == ({"city": "Paris"}, ANSWER)
        assert await usage_count(gw) == 2
    assert [r.path for r in stub.received] == vendor_paths
    assert all(r.headers["x-relay-key"] == "relay-key" for r in stub.received)
