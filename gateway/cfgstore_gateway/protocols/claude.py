"""Anthropic Messages (``/v1/messages``), to and from the neutral model.

Token usage: Anthropic's ``input_tokens`` excludes prompt-cache reads and writes; the
neutral ``input_tokens`` is the whole prompt (as OpenAI and Gemini count it), so reads and
writes are added in and ``cache_read_input_tokens`` becomes ``cached_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cfgstore_gateway.protocols import neutral as n
from cfgstore_gateway.protocols.common import (
    StreamFailed,
    as_dict,
    as_float,
    as_int,
    as_list,
    as_str,
    dump_arguments,
    new_id,
    parse_arguments,
)
from cfgstore_gateway.protocols.sse import SseJsonReader, frame

NAME = "claude"

#: ``max_tokens`` is required by Anthropic; when the client protocol left it out.
DEFAULT_MAX_TOKENS = 8192

_STOPS_IN: dict[str, n.StopReason] = {
    "end_turn": "end",
    "max_tokens": "max_tokens",
    "tool_use": "tool_use",
    "stop_sequence": "stop_sequence",
    "refusal": "content_filter",
    "pause_turn": "end",
}
_STOPS_OUT: dict[n.StopReason, str] = {
    "end": "end_turn",
    "max_tokens": "max_tokens",
    "tool_use": "tool_use",
    "stop_sequence": "stop_sequence",
    "content_filter": "refusal",
}


# ----------------------------------------------------------------------------- requests


def parse_request(body: Mapping[str, Any], model: str | None = None) -> n.ChatRequest:
    system = body.get("system")
    messages: list[n.Message] = []
    for raw in as_list(body.get("messages")):
        message = as_dict(raw)
        role: n.Role = "assistant" if message.get("role") == "assistant" else "user"
        parts = _parts_in(message.get("content"))
        messages.append(n.Message(role, parts))
    thinking = as_dict(body.get("thinking"))
    choice = as_dict(body.get("tool_choice"))
    return n.ChatRequest(
        model=model or as_str(body.get("model")),
        messages=tuple(messages),
        system=(system if isinstance(system, str) else _text_of(system)) or None,
        tools=tuple(
            n.Tool(
                name=as_str(t.get("name")),
                description=as_str(t.get("description")),
                parameters=as_dict(t.get("input_schema")) or {"type": "object"},
            )
            for t in map(as_dict, as_list(body.get("tools")))
            if _is_function_tool(t)
        ),
        tool_choice=_choice_in(choice) if choice else None,
        max_tokens=as_int(body.get("max_tokens")) or None,
        temperature=as_float(body.get("temperature")),
        top_p=as_float(body.get("top_p")),
        stop=tuple(s for s in as_list(body.get("stop_sequences")) if isinstance(s, str)),
        stream=body.get("stream") is True,
        thinking_budget=as_int(thinking.get("budget_tokens")) or None
        if thinking.get("type") == "enabled"
        else None,
    )


def _is_function_tool(tool: Mapping[str, Any]) -> bool:
    if tool.get("type") not in (None, "custom"):
        n.dropped(NAME, f"the server tool {tool.get('type')!r}")
        return False
    return True


def _choice_in(choice: Mapping[str, Any]) -> n.ToolChoice | None:
    kind = choice.get("type")
    if kind == "auto":
        return n.ToolChoice("auto")
    if kind == "any":
        return n.ToolChoice("required")
    if kind == "none":
        return n.ToolChoice("none")
    if kind == "tool":
        return n.ToolChoice("tool", as_str(choice.get("name")))
    return None


def _text_of(blocks: Any) -> str:
    return "\n\n".join(
        as_str(b.get("text")) for b in map(as_dict, as_list(blocks)) if b.get("type") == "text"
    )


def _parts_in(content: Any) -> tuple[n.Part, ...]:
    if isinstance(content, str):
        return (n.Text(content),)
    parts: list[n.Part] = []
    for raw in as_list(content):
        block = as_dict(raw)
        kind = block.get("type")
        if kind == "text":
            parts.append(n.Text(as_str(block.get("text"))))
        elif kind == "image":
            image = _image_in(as_dict(block.get("source")))
            if image is not None:
                parts.append(image)
        elif kind == "thinking":
            signature = block.get("signature")
            parts.append(
                n.Thinking(
                    as_str(block.get("thinking")), signature if isinstance(signature, str) else None
                )
            )
        elif kind == "tool_use":
            parts.append(
                n.ToolCall(
                    id=as_str(block.get("id")) or new_id("toolu_"),
                    name=as_str(block.get("name")),
                    arguments=dump_arguments(block.get("input")),
                )
            )
        elif kind == "tool_result":
            parts.append(_result_in(block))
        else:
            n.dropped(NAME, f"a content block of type {kind!r}")
    return tuple(parts)


def _image_in(source: Mapping[str, Any]) -> n.Image | None:
    if source.get("type") == "base64":
        return n.Image(
            as_str(source.get("media_type")) or "image/png", data=as_str(source.get("data"))
        )
    if source.get("type") == "url":
        return n.Image(url=as_str(source.get("url")))
    n.dropped(NAME, f"an image source of type {source.get('type')!r}")
    return None


def _result_in(block: Mapping[str, Any]) -> n.ToolResult:
    raw = block.get("content")
    content: list[n.Text | n.Image] = []
    if isinstance(raw, str):
        content.append(n.Text(raw))
    for part in _parts_in(raw) if isinstance(raw, list) else ():
        if isinstance(part, n.Text | n.Image):
            content.append(part)
    return n.ToolResult(
        as_str(block.get("tool_use_id")), tuple(content), block.get("is_error") is True
    )


def render_request(request: n.ChatRequest) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        blocks = [b for part in message.parts if (b := _block_out(part)) is not None]
        if not blocks:
            continue
        if messages and messages[-1]["role"] == message.role:
            messages[-1]["content"] += blocks  # Anthropic wants turns to alternate
        else:
            messages.append({"role": message.role, "content": blocks})
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if request.system:
        body["system"] = request.system
    if request.tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
            for t in request.tools
        ]
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = (
            {"type": "tool", "name": choice.name}
            if choice.mode == "tool"
            else {"type": {"required": "any"}.get(choice.mode, choice.mode)}
        )
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.thinking_budget is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": max(1024, request.thinking_budget)}
    if request.stream:
        body["stream"] = True
    return body


def _block_out(part: n.Part) -> dict[str, Any] | None:
    if isinstance(part, n.Text):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, n.Image):
        return {"type": "image", "source": _source_out(part)}
    if isinstance(part, n.Thinking):
        if part.signature is None:
            n.dropped(NAME, "thinking without a signature")
            return None
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    if isinstance(part, n.ToolCall):
        return {
            "type": "tool_use",
            "id": part.id,
            "name": part.name,
            "input": parse_arguments(part.arguments, NAME),
        }
    content: list[dict[str, Any]] = [b for p in part.content if (b := _block_out(p)) is not None]
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.call_id, "content": content}
    if part.is_error:
        block["is_error"] = True
    return block


def _source_out(image: n.Image) -> dict[str, Any]:
    if image.data is not None:
        return {"type": "base64", "media_type": image.media_type, "data": image.data}
    return {"type": "url", "url": image.url or ""}


# ---------------------------------------------------------------------------- responses


def usage_in(raw: Any) -> n.Usage:
    usage = as_dict(raw)
    read = as_int(usage.get("cache_read_input_tokens"))
    written = as_int(usage.get("cache_creation_input_tokens"))
    return n.Usage(
        input_tokens=as_int(usage.get("input_tokens")) + read + written,
        output_tokens=as_int(usage.get("output_tokens")),
        cached_tokens=read,
    )


def usage_out(usage: n.Usage) -> dict[str, Any]:
    return {
        "input_tokens": max(0, usage.input_tokens - usage.cached_tokens),
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": 0,
    }


def parse_response(body: Mapping[str, Any]) -> n.ChatResponse:
    parts = _parts_in(body.get("content"))
    return n.ChatResponse(
        id=as_str(body.get("id")) or new_id("msg_"),
        model=as_str(body.get("model")),
        parts=parts,
        stop=_STOPS_IN.get(as_str(body.get("stop_reason")), "end"),
        usage=usage_in(body.get("usage")),
    )


def render_response(response: n.ChatResponse) -> dict[str, Any]:
    content = [b for part in response.parts if (b := _block_out(part)) is not None]
    return {
        "id": response.id if response.id.startswith("msg_") else f"msg_{response.id}",
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": content,
        "stop_reason": _STOPS_OUT[response.stop],
        "stop_sequence": None,
        "usage": usage_out(response.usage),
    }


# ------------------------------------------------------------------------------ streams


class StreamReader(SseJsonReader):
    """Messages stream events to neutral events."""

    protocol = NAME

    def __init__(self) -> None:
        super().__init__()
        self._started = False
        self._stop: n.StopReason = "end"
        self._input = n.Usage()
        self._output = 0
        self._tools: dict[int, int] = {}  # content block index -> tool call index

    def _end(self) -> list[n.StreamEvent]:
        return self._finish()

    def _read(self, event: Mapping[str, Any]) -> list[n.StreamEvent]:
        kind = event.get("type")
        if kind == "message_start":
            message = as_dict(event.get("message"))
            self._started = True
            self._input = usage_in(message.get("usage"))
            return [
                n.Start(
                    as_str(message.get("id")) or new_id("msg_"),
                    as_str(message.get("model")),
                    self._input,
                )
            ]
        events: list[n.StreamEvent] = [] if self._started else self._start()
        if kind == "content_block_start":
            events += self._block_start(
                as_int(event.get("index")), as_dict(event.get("content_block"))
            )
        elif kind == "content_block_delta":
            events += self._delta(as_int(event.get("index")), as_dict(event.get("delta")))
        elif kind == "message_delta":
            reason = as_dict(event.get("delta")).get("stop_reason")
            if isinstance(reason, str):
                self._stop = _STOPS_IN.get(reason, "end")
            usage = as_dict(event.get("usage"))
            self._output = as_int(usage.get("output_tokens")) or self._output
            if "input_tokens" in usage:  # newer API versions repeat the input counts here
                self._input = usage_in(usage)
        elif kind == "message_stop":
            events += self._finish()
        elif kind == "error":
            error = as_dict(event.get("error"))
            raise StreamFailed(as_str(error.get("message")) or "upstream stream error")
        return events

    def _start(self) -> list[n.StreamEvent]:
        self._started = True
        return [n.Start(new_id("msg_"), "")]

    def _block_start(self, index: int, block: Mapping[str, Any]) -> list[n.StreamEvent]:
        kind = block.get("type")
        if kind == "tool_use":
            ordinal = len(self._tools)
            self._tools[index] = ordinal
            return [
                n.ToolCallStart(
                    ordinal, as_str(block.get("id")) or new_id("toolu_"), as_str(block.get("name"))
                )
            ]
        if kind == "text" and as_str(block.get("text")):
            return [n.TextDelta(as_str(block.get("text")))]
        if kind == "thinking" and as_str(block.get("thinking")):
            return [n.ThinkingDelta(as_str(block.get("thinking")))]
        return []

    def _delta(self, index: int, delta: Mapping[str, Any]) -> list[n.StreamEvent]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [n.TextDelta(as_str(delta.get("text")))]
        if kind == "thinking_delta":
            return [n.ThinkingDelta(as_str(delta.get("thinking")))]
        if kind == "signature_delta":
            return [n.ThinkingDelta("", as_str(delta.get("signature")))]
        if kind == "input_json_delta" and index in self._tools:
            fragment = as_str(delta.get("partial_json"))
            return [n.ToolCallDelta(self._tools[index], fragment)] if fragment else []
        return []

    def _finish(self) -> list[n.StreamEvent]:
        if self._finished:
            return []
        events = [] if self._started else self._start()
        self._finished = True
        usage = n.Usage(
            input_tokens=self._input.input_tokens,
            output_tokens=self._output,
            cached_tokens=self._input.cached_tokens,
        )
        return [*events, n.Finish(self._stop, usage)]


class StreamWriter:
    """Neutral events to Messages stream events: ``message_start``, ``ping``, one
    ``content_block_start`` … ``content_block_stop`` per text, thinking or tool block,
    ``message_delta`` and ``message_stop``."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._id = new_id("msg_")
        self._block = -1
        self._open: tuple[str, int] | None = None  # (kind, tool call index or -1)
        self._input = n.Usage()

    def write(self, event: n.StreamEvent) -> bytes:
        if isinstance(event, n.Start):
            self._input = event.usage or n.Usage()
            message: dict[str, Any] = {
                "id": self._id,
                "type": "message",
                "role": "assistant",
                "model": event.model or self._model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {**usage_out(self._input), "output_tokens": 0},
            }
            return frame({"type": "message_start", "message": message}, "message_start") + frame(
                {"type": "ping"}, "ping"
            )
        if isinstance(event, n.TextDelta):
            return self._ensure("text", -1, {"type": "text", "text": ""}) + self._delta(
                {"type": "text_delta", "text": event.text}
            )
        if isinstance(event, n.ThinkingDelta):
            out = self._ensure(
                "thinking", -1, {"type": "thinking", "thinking": "", "signature": ""}
            )
            if event.text:
                out += self._delta({"type": "thinking_delta", "thinking": event.text})
            if event.signature:
                out += self._delta({"type": "signature_delta", "signature": event.signature})
            return out
        if isinstance(event, n.ToolCallStart):
            block = {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
            return self._close() + self._begin("tool", event.index, block)
        if isinstance(event, n.ToolCallDelta):
            if self._open != ("tool", event.index):
                n.dropped(NAME, "arguments of a tool call whose block was closed")
                return b""
            return self._delta({"type": "input_json_delta", "partial_json": event.arguments})
        usage = {"output_tokens": (event.usage or n.Usage()).output_tokens}
        if event.usage is not None:
            usage.update(usage_out(event.usage))
        delta = {"stop_reason": _STOPS_OUT[event.stop], "stop_sequence": None}
        return (
            self._close()
            + frame({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta")
            + frame({"type": "message_stop"}, "message_stop")
        )

    def _ensure(self, kind: str, index: int, block: dict[str, Any]) -> bytes:
        if self._open == (kind, index):
            return b""
        return self._close() + self._begin(kind, index, block)

    def _begin(self, kind: str, index: int, block: dict[str, Any]) -> bytes:
        self._block += 1
        self._open = (kind, index)
        return frame(
            {"type": "content_block_start", "index": self._block, "content_block": block},
            "content_block_start",
        )

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return frame(
            {"type": "content_block_delta", "index": self._block, "delta": delta},
            "content_block_delta",
        )

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return frame({"type": "content_block_stop", "index": self._block}, "content_block_stop")

    def error(self, status: int, message: str) -> bytes:
        return frame(error_body(status, message), "error")


def error_type(status: int) -> str:
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}
