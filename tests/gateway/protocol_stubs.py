"""One local upstream speaking four vendor protocols, written from their public API
references (never produced by our converters): OpenAI chat completions
(``/v1/chat/completions``), Anthropic Messages (``/v1/messages``), OpenAI Responses
(``/v1/responses``) and Gemini (``/v1beta/models/{model}:generateContent`` and
``:streamGenerateContent``), whole or streamed.

Each plays the same scene: offered tools and no tool result yet, it calls ``get_weather``
with ``{"city": "Paris"}``; given the tool's result, it answers "It is <result> in Paris.".
Usage is always 11 input and 7 output tokens. Every request is kept (:class:`Received`).
Streams go out cut at random byte boundaries (a seeded generator per stub, its seed in
the failure message): inside events, lines and UTF-8 characters, as networks deliver them.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from types import TracebackType
from typing import Any

import attrs
from aiohttp import web

MODEL = "gpt-4o"
ARGUMENTS = '{"city": "Paris"}'


@attrs.frozen
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


def answer_text(result: str) -> str:
    return f"It is {result} in Paris ☀."  # a character of three UTF-8 bytes


def pieces(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


# ------------------------------------------------------------------------ OpenAI chat


def openai_result(body: dict[str, Any]) -> str | None:
    last = body["messages"][-1]
    return last["content"] if last["role"] == "tool" else None


def openai_whole(result: str | None) -> dict[str, Any]:
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    if result is not None:
        message: dict[str, Any] = {"role": "assistant", "content": answer_text(result)}
        finish = "stop"
    else:
        call = {
            "id": "call_w1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ARGUMENTS},
        }
        message, finish = {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
    choice = {"index": 0, "message": message, "finish_reason": finish}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [choice],
        "usage": usage,
    }


def openai_stream(result: str | None) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": MODEL,
                "choices": [choice],
            }
        )

    out = [chunk({"role": "assistant", "content": ""})]
    if result is not None:
        out += [chunk({"content": p}) for p in pieces(answer_text(result))] + [chunk({}, "stop")]
    else:
        start = {
            "index": 0,
            "id": "call_w1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        }
        out.append(chunk({"tool_calls": [start]}))
        out += [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
            for p in pieces(ARGUMENTS, 3)
        ]
        out.append(chunk({}, "tool_calls"))
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    out.append(
        sse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "model": MODEL,
                "choices": [],
                "usage": usage,
            }
        )
    )
    return [*out, b"data: [DONE]\n\n"]


# -------------------------------------------------------------------- Anthropic Messages


def anthropic_result(body: dict[str, Any]) -> str | None:
    content = body["messages"][-1]["content"]
    for block in content if isinstance(content, list) else []:
        if block.get("type") == "tool_result":
            inner = block.get("content")
            return inner if isinstance(inner, str) else "".join(b["text"] for b in inner)
    return None


def anthropic_whole(result: str | None) -> dict[str, Any]:
    if result is not None:
        content: list[dict[str, Any]] = [{"type": "text", "text": answer_text(result)}]
        stop = "end_turn"
    else:
        content = [
            {
                "type": "tool_use",
                "id": "toolu_w1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            }
        ]
        stop = "tool_use"
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 7},
    }


def anthropic_stream(result: str | None) -> list[bytes]:
    message = {
        **anthropic_whole(result),
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 11, "output_tokens": 1},
    }
    out = [sse({"type": "message_start", "message": message}, "message_start")]
    if result is not None:
        block: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in pieces(answer_text(result))]
        stop = "end_turn"
    else:
        block = {"type": "tool_use", "id": "toolu_w1", "name": "get_weather", "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces(ARGUMENTS, 3)]
        stop = "tool_use"
    out.append(
        sse(
            {"type": "content_block_start", "index": 0, "content_block": block},
            "content_block_start",
        )
    )
    out.append(sse({"type": "ping"}, "ping"))
    out += [
        sse({"type": "content_block_delta", "index": 0, "delta": d}, "content_block_delta")
        for d in deltas
    ]
    out.append(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": {"output_tokens": 7},
    }
    return [*out, sse(delta, "message_delta"), sse({"type": "message_stop"}, "message_stop")]


# ------------------------------------------------------------------------- Responses


def responses_result(body: dict[str, Any]) -> str | None:
    items = body["input"] if isinstance(body["input"], list) else []
    outputs = [i["output"] for i in items if i.get("type") == "function_call_output"]
    return outputs[-1] if outputs else None


def responses_items(result: str | None) -> list[dict[str, Any]]:
    if result is not None:
        part = {"type": "output_text", "text": answer_text(result), "annotations": []}
        return [
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [part],
            }
        ]
    return [
        {
            "id": "fc_1",
            "type": "function_call",
            "call_id": "call_w1",
            "name": "get_weather",
            "arguments": ARGUMENTS,
            "status": "completed",
        }
    ]


def responses_whole(result: str | None, status: str = "completed") -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": MODEL,
        "output": responses_items(result) if status == "completed" else [],
        "usage": {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}
        if status == "completed"
        else None,
    }


def responses_stream(result: str | None) -> list[bytes]:
    sequence = iter(range(1000))

    def event(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, "sequence_number": next(sequence), **fields}, kind)

    out = [event("response.created", response=responses_whole(result, "in_progress"))]
    (item,) = responses_items(result)
    if result is not None:
        opened = {**item, "status": "in_progress", "content": []}
        out.append(event("response.output_item.added", output_index=0, item=opened))
        empty = {"type": "output_text", "text": "", "annotations": []}
        out.append(
            event(
                "response.content_part.added",
                item_id="msg_1",
                output_index=0,
                content_index=0,
                part=empty,
            )
        )
        for p in pieces(answer_text(result)):
            out.append(
                event(
                    "response.output_text.delta",
                    item_id="msg_1",
                    output_index=0,
                    content_index=0,
                    delta=p,
                )
            )
        out.append(
            event(
                "response.output_text.done",
                item_id="msg_1",
                output_index=0,
                content_index=0,
                text=answer_text(result),
            )
        )
    else:
        opened = {**item, "arguments": "", "status": "in_progress"}
        out.append(event("response.output_item.added", output_index=0, item=opened))
        for p in pieces(ARGUMENTS, 3):
            out.append(
                event(
                    "response.function_call_arguments.delta",
                    item_id="fc_1",
                    output_index=0,
                    delta=p,
                )
            )
        out.append(
            event(
                "response.function_call_arguments.done",
                item_id="fc_1",
                output_index=0,
                arguments=ARGUMENTS,
            )
        )
    out.append(event("response.output_item.done", output_index=0, item=item))
    return [*out, event("response.completed", response=responses_whole(result))]


# ---------------------------------------------------------------------------- Gemini


def gemini_result(body: dict[str, Any]) -> str | None:
    for part in body["contents"][-1]["parts"]:
        answer = part.get("functionResponse")
        if answer:
            response = answer["response"]
            return str(response.get("content", response.get("output", json.dumps(response))))
    return None


USAGE_METADATA = {"promptTokenCount": 11, "candidatesTokenCount": 7, "totalTokenCount": 18}


def gemini_whole(result: str | None) -> dict[str, Any]:
    if result is not None:
        parts: list[dict[str, Any]] = [{"text": answer_text(result)}]
    else:
        parts = [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]
    candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
    return {"candidates": [candidate], "usageMetadata": USAGE_METADATA, "modelVersion": MODEL}


def gemini_stream(result: str | None) -> list[bytes]:
    if result is None:
        return [sse(gemini_whole(None))]
    chunks = [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": p}]}, "index": 0}]}
        for p in pieces(answer_text(result))
    ]
    last = {"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP"}
    chunks.append({"candidates": [last], "usageMetadata": USAGE_METADATA})
    return [sse(chunk) for chunk in chunks]


PROTOCOLS = {
    "/v1/chat/completions": (openai_result, openai_whole, openai_stream),
    "/v1/messages": (anthropic_result, anthropic_whole, anthropic_stream),
    "/v1/responses": (responses_result, responses_whole, responses_stream),
}


class ProtocolStub:
    """``async with ProtocolStub() as stub``: serves the three protocols on a free port."""

    def __init__(self, seed: int | None = None) -> None:
        self.received: list[Received] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.seed = seed if seed is not None else random.randrange(2**32)
        self._random = random.Random(self.seed)

    def __repr__(self) -> str:
        return f"ProtocolStub(seed={self.seed})"

    async def _write_cut(self, response: web.StreamResponse, chunks: list[bytes]) -> None:
        """The stream's bytes in pieces of 1 to 40 bytes, wherever they fall."""
        data = b"".join(chunks)
        start = 0
        while start < len(data):
            end = start + self._random.randint(1, 40)
            await response.write(data[start:end])
            start = end

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ProtocolStub:
        app = web.Application()
        for path in PROTOCOLS:
            app.router.add_post(path, self._serve)
        app.router.add_post("/v1beta/models/{target}", self._serve_gemini)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await asyncio.wait_for(self._runner.cleanup(), 10)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        received = Received(request.path, dict(request.headers), await request.read())
        self.received.append(received)
        read_result, whole, stream = PROTOCOLS[request.path]
        body = received.body
        result = read_result(body)
        if body.get("stream") is not True:
            return web.json_response(whole(result))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await self._write_cut(response, stream(result))
        await response.write_eof()
        return response

    async def _serve_gemini(self, request: web.Request) -> web.StreamResponse:
        received = Received(request.path, dict(request.headers), await request.read())
        self.received.append(received)
        result = gemini_result(received.body)
        if not request.path.endswith(":streamGenerateContent"):
            return web.json_response(gemini_whole(result))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await self._write_cut(response, gemini_stream(result))
        await response.write_eof()
        return response
