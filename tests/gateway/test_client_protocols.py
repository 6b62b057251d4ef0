"""Anthropic, Gemini and Responses clients through the gateway, driven by the official SDKs
(``anthropic``, ``google-genai``, ``openai``) against an OpenAI-protocol upstream stub:
whole and streamed answers, a tool call round trip, errors in each protocol's own shape,
and one usage count per request in the store."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import pytest_asyncio
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.gateway.conftest import (
    CLIENT_KEY,
    TYPE,
    WAIT_S,
    Gateway,
    api_node,
    make_deployment,
    running_gateway,
)
from tests.gateway.upstream_stub import Received, Reply, UpstreamStub, completion

NODE = "c1c1c1c1-0000-4000-8000-00000000c1c1"
MODEL = "gpt-4o"
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def _frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return _frame(
        {"id": "c", "object": "chat.completion.chunk", "model": MODEL, "choices": [choice]}
    )


def weather_upstream(received: Received) -> Reply:
    """An OpenAI upstream that calls ``get_weather`` when offered tools, and answers from
    the tool's result once it has one (streamed in small fragments when asked)."""
    body = received.body
    last = body["messages"][-1]
    stream = body.get("stream") is True
    if last["role"] == "tool":
        text = f"It is {last['content']} in Paris."
        if not stream:
            return Reply(body={**completion(MODEL, text), "usage": USAGE})
        words = [text[i : i + 4] for i in range(0, len(text), 4)]
        chunks = [_chunk({"role": "assistant", "content": ""})]
        chunks += [_chunk({"content": w}) for w in words]
        chunks += [_chunk({}, "stop"), _frame({"id": "c", "choices": [], "usage": USAGE})]
        return Reply(chunks=(*chunks, b"data: [DONE]\n\n"))
    assert body.get("tools"), "the client's tools reach the upstream"
    arguments = '{"city": "Paris"}'
    call = {
        "id": "call_w1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }
    if not stream:
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        return Reply(
            body={
                "id": "c",
                "object": "chat.completion",
                "model": MODEL,
                "choices": [choice],
                "usage": USAGE,
            }
        )
    start = {**call, "index": 0, "function": {"name": "get_weather", "arguments": ""}}
    chunks = [_chunk({"role": "assistant", "tool_calls": [start]})]
    chunks += [
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + 3]}}]})
        for i in range(0, len(arguments), 3)
    ]
    chunks += [_chunk({}, "tool_calls"), _frame({"id": "c", "choices": [], "usage": USAGE})]
    return Reply(chunks=(*chunks, b"data: [DONE]\n\n"))


@pytest_asyncio.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, str, UpstreamStub]]:
    async with UpstreamStub(weather_upstream) as upstream:
        settings = make_deployment(tmp_path, {TYPE: [api_node(NODE, upstream.base_url, "k")]})
        async with running_gateway(settings) as gw:
            yield gw, str(gw.client._base_url).rstrip("/"), upstream


async def usage_count(gw: Gateway) -> int:
    await gw.store.flush()
    return (await gw.node(NODE)).state.usage_count


async def counted(gw: Gateway, call: Callable[[], Any]) -> Any:
    """Run ``call``; assert the node's usage count rose by exactly one."""
    before = await usage_count(gw)
    result = await call()
    assert await usage_count(gw) == before + 1
    return result


# ------------------------------------------------------------------------- Anthropic


def anthropic_client(url: str, key: str = CLIENT_KEY) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0, timeout=WAIT_S)


ANTHROPIC_TOOLS: Any = [
    {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}
]
QUESTION: Any = [{"role": "user", "content": "Weather in Paris?"}]


async def test_anthropic_sdk_tool_round_trip(gateway: tuple[Gateway, str, UpstreamStub]) -> None:
    gw, url, upstream = gateway
    client = anthropic_client(url)
    first = await counted(
        gw,
        lambda: client.messages.create(
            model=MODEL, max_tokens=100, messages=QUESTION, tools=ANTHROPIC_TOOLS
        ),
    )
    assert first.stop_reason == "tool_use"
    (use,) = first.content
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"}
    assert first.usage.input_tokens == 11 and first.usage.output_tokens == 7
    follow_up: Any = [
        *QUESTION,
        {"role": "assistant", "content": [use.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C"}],
        },
    ]
    second = await counted(
        gw,
        lambda: client.messages.create(
            model=MODEL, max_tokens=100, messages=follow_up, tools=ANTHROPIC_TOOLS
        ),
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "It is 18 C in Paris."
    sent = upstream.chat_requests()[-1].body["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": use.id, "content": "18 C"}


async def test_anthropic_sdk_streams_text_and_tool_arguments(
    gateway: tuple[Gateway, str, UpstreamStub],
) -> None:
    gw, url, _ = gateway
    client = anthropic_client(url)

    async def tool_stream() -> Any:
        async with client.messages.stream(
            model=MODEL, max_tokens=100, messages=QUESTION, tools=ANTHROPIC_TOOLS
        ) as stream:
            return await stream.get_final_message()

    message = await counted(gw, tool_stream)
    assert message.stop_reason == "tool_use"
    assert message.content[0].input == {"city": "Paris"}
    follow_up: Any = [
        *QUESTION,
        {"role": "assistant", "content": [message.content[0].model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_w1", "content": "18 C"}],
        },
    ]

    async def text_stream() -> tuple[str, Any]:
        async with client.messages.stream(
            model=MODEL, max_tokens=100, messages=follow_up, tools=ANTHROPIC_TOOLS
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
            return text, await stream.get_final_message()

    text, final = await counted(gw, text_stream)
    assert text == "It is 18 C in Paris."
    assert final.usage.output_tokens == 7


async def test_anthropic_errors_have_the_anthropic_shape(
    gateway: tuple[Gateway, str, UpstreamStub],
) -> None:
    _, url, _ = gateway
    with pytest.raises(anthropic.AuthenticationError) as refused:
        await anthropic_client(url, "wrong").messages.create(
            model=MODEL, max_tokens=5, messages=QUESTION
        )
    assert refused.value.body == {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": "Unauthorized: API key is invalid or missing.",
        },
    }
    with pytest.raises(anthropic.APIStatusError) as nowhere:
        await anthropic_client(url).messages.create(
            model=MODEL,
            max_tokens=5,
            messages=QUESTION,
            extra_headers={"Model-Provider": "claude-custom"},
        )
    assert nowhere.value.status_code == 503
    assert isinstance(nowhere.value.body, dict) and nowhere.value.body["type"] == "error"


async def test_count_tokens_is_an_estimate(gateway: tuple[Gateway, str, UpstreamStub]) -> None:
    _, url, upstream = gateway
    counted_tokens = await anthropic_client(url).messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "x" * 400}]
    )
    assert 100 <= counted_tokens.input_tokens <= 120
    assert upstream.chat_requests() == []


# --------------------------------------------------------------------- OpenAI Responses


def openai_client(url: str, key: str = CLIENT_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=WAIT_S)


RESPONSES_TOOLS: Any = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather",
        "parameters": WEATHER_SCHEMA,
    }
]


async def test_responses_sdk_tool_round_trip(gateway: tuple[Gateway, str, UpstreamStub]) -> None:
    gw, url, _ = gateway
    client = openai_client(url)
    first = await counted(
        gw,
        lambda: client.responses.create(
            model=MODEL, input="Weather in Paris?", tools=RESPONSES_TOOLS
        ),
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert first.usage is not None and first.usage.input_tokens == 11
    follow_up: Any = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 C"},
    ]
    second = await counted(
        gw, lambda: client.responses.create(model=MODEL, input=follow_up, tools=RESPONSES_TOOLS)
    )
    assert second.output_text == "It is 18 C in Paris."


async def test_responses_sdk_stream(gateway: tuple[Gateway, str, UpstreamStub]) -> None:
    gw, url, _ = gateway
    client = openai_client(url)

    async def tool_stream() -> Any:
        async with client.responses.stream(
            model=MODEL, input="Weather in Paris?", tools=RESPONSES_TOOLS
        ) as stream:
            return await stream.get_final_response()

    final = await counted(gw, tool_stream)
    (call,) = [item for item in final.output if item.type == "function_call"]
    assert json.loads(call.arguments) == {"city": "Paris"}
    follow_up: Any = [
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 C"},
    ]

    async def text_stream() -> tuple[str, Any]:
        deltas: list[str] = []
        async with client.responses.stream(
            model=MODEL, input=follow_up, tools=RESPONSES_TOOLS
        ) as stream:
            async for event in stream:
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
            return "".join(deltas), await stream.get_final_response()

    text, response = await counted(gw, text_stream)
    assert text == response.output_text == "It is 18 C in Paris."
    assert response.usage is not None and response.usage.output_tokens == 7


async def test_responses_errors_have_the_openai_shape(
    gateway: tuple[Gateway, str, UpstreamStub],
) -> None:
    _, url, _ = gateway
    with pytest.raises(openai.AuthenticationError) as refused:
        await openai_client(url, "wrong").responses.create(model=MODEL, input="hi")
    body = refused.value.body
    assert (
        isinstance(body, dict) and body["message"] == "Unauthorized: API key is invalid or missing."
    )


# ------------------------------------------------------------------------------ Gemini


def gemini_client(url: str, key: str = CLIENT_KEY, api_version: str = "v1beta") -> genai.Client:
    options = genai_types.HttpOptions(
        base_url=url, api_version=api_version, timeout=int(WAIT_S * 1000)
    )
    return genai.Client(api_key=key, http_options=options)


GEMINI_TOOLS = genai_types.GenerateContentConfig(
    tools=[
        genai_types.Tool(
            function_declarations=[
                genai_types.FunctionDeclaration(
                    name="get_weather", description="Weather", parameters_json_schema=WEATHER_SCHEMA
                )
            ]
        )
    ],
    automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True),
)


def gemini_follow_up(call: genai_types.FunctionCall) -> list[genai_types.Content]:
    return [
        genai_types.Content(role="user", parts=[genai_types.Part(text="Weather in Paris?")]),
        genai_types.Content(role="model", parts=[genai_types.Part(function_call=call)]),
        genai_types.Content(
            role="user",
            parts=[
                genai_types.Part.from_function_response(
                    name="get_weather", response={"content": "18 C"}
                )
            ],
        ),
    ]


async def test_gemini_sdk_tool_round_trip(gateway: tuple[Gateway, str, UpstreamStub]) -> None:
    gw, url, upstream = gateway
    client = gemini_client(url).aio
    first = await counted(
        gw,
        lambda: client.models.generate_content(
            model=MODEL, contents="Weather in Paris?", config=GEMINI_TOOLS
        ),
    )
    (call,) = first.function_calls or []
    assert call.name == "get_weather" and call.args == {"city": "Paris"}
    assert first.usage_metadata is not None and first.usage_metadata.prompt_token_count == 11
    second = await counted(
        gw,
        lambda: client.models.generate_content(
            model=MODEL, contents=gemini_follow_up(call), config=GEMINI_TOOLS
        ),
    )
    assert second.text == "It is 18 C in Paris."
    sent = upstream.chat_requests()[-1].body["messages"]
    assert sent[-1]["role"] == "tool" and sent[-1]["content"] == "18 C"


async def test_gemini_sdk_stream(gateway: tuple[Gateway, str, UpstreamStub]) -> None:
    gw, url, _ = gateway
    client = gemini_client(url).aio

    async def tool_stream() -> list[genai_types.FunctionCall]:
        calls: list[genai_types.FunctionCall] = []
        async for chunk in await client.models.generate_content_stream(
            model=MODEL, contents="Weather in Paris?", config=GEMINI_TOOLS
        ):
            calls += chunk.function_calls or []
        return calls

    (call,) = await counted(gw, tool_stream)
    assert call.args == {"city": "Paris"}

    async def text_stream() -> str:
        texts: list[str] = []
        async for chunk in await client.models.generate_content_stream(
            model=MODEL, contents=gemini_follow_up(call), config=GEMINI_TOOLS
        ):
            texts.append(chunk.text or "")
        return "".join(texts)

    assert await counted(gw, text_stream) == "It is 18 C in Paris."


async def test_gemini_errors_and_model_list(gateway: tuple[Gateway, str, UpstreamStub]) -> None:
    _, url, _ = gateway
    with pytest.raises(genai_errors.ClientError) as refused:
        await gemini_client(url, "wrong").aio.models.generate_content(model=MODEL, contents="hi")
    assert refused.value.code == 401 and refused.value.status == "UNAUTHENTICATED"
    listed = [m.name async for m in await gemini_client(url).aio.models.list()]
    assert "models/stub-model-a" in listed
    # google-genai's default API version with a custom base URL is v1: served the same.
    answer = await gemini_client(url, api_version="v1").aio.models.generate_content(
        model=MODEL, contents="Weather in Paris?", config=GEMINI_TOOLS
    )
    assert [c.name for c in answer.function_calls or []] == ["get_weather"]


async def test_token_usage_is_logged_with_the_request(
    gateway: tuple[Gateway, str, UpstreamStub], caplog: pytest.LogCaptureFixture
) -> None:
    _, url, _ = gateway
    with caplog.at_level(logging.INFO, logger="cfgstore_gateway.app"):
        await anthropic_client(url).messages.create(
            model=MODEL, max_tokens=100, messages=QUESTION, tools=ANTHROPIC_TOOLS
        )
    (line,) = [r for r in caplog.records if "/v1/messages" in r.getMessage()]
    assert "tokens=11/7" in line.getMessage()
    assert (line.__dict__["input_tokens"], line.__dict__["output_tokens"]) == (11, 7)
