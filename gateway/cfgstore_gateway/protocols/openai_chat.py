"""OpenAI Chat Completions (``/v1/chat/completions``), to and from the neutral model."""

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
    budget_effort,
    effort_budget,
    image_from_url,
    new_id,
    now_s,
)
from cfgstore_gateway.protocols.sse import SseJsonReader, frame

NAME = "openai"

_STOPS_IN: dict[str, n.StopReason] = {
    "stop": "end",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "content_filter",
}
_STOPS_OUT: dict[n.StopReason, str] = {
    "end": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "stop_sequence": "stop",
    "content_filter": "content_filter",
}


# ----------------------------------------------------------------------------- requests


def parse_request(body: Mapping[str, Any], model: str | None = None) -> n.ChatRequest:
    system: list[str] = []
    messages: list[n.Message] = []
    for raw in as_list(body.get("messages")):
        message = as_dict(raw)
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_plain_text(message.get("content")))
        elif role == "user":
            messages.append(n.Message("user", _user_parts(message.get("content"))))
        elif role == "assistant":
            messages.append(n.Message("assistant", _assistant_parts(message)))
        elif role in ("tool", "function"):
            result = n.ToolResult(
                call_id=as_str(message.get("tool_call_id")),
                content=(n.Text(_plain_text(message.get("content"))),),
                name=as_str(message.get("name")) or None,
            )
            if messages and messages[-1].role == "user" and _only_results(messages[-1]):
                messages[-1] = n.Message("user", (*messages[-1].parts, result))
            else:
                messages.append(n.Message("user", (result,)))
        else:
            n.dropped(NAME, f"a message of role {role!r}")
    stop = body.get("stop")
    return n.ChatRequest(
        model=model or as_str(body.get("model")),
        messages=tuple(messages),
        system="\n\n".join(s for s in system if s) or None,
        tools=_tools_in(body.get("tools")),
        tool_choice=_choice_in(body.get("tool_choice")),
        max_tokens=as_int(body.get("max_completion_tokens") or body.get("max_tokens")) or None,
        temperature=as_float(body.get("temperature")),
        top_p=as_float(body.get("top_p")),
        stop=(stop,)
        if isinstance(stop, str)
        else tuple(s for s in as_list(stop) if isinstance(s, str)),
        stream=body.get("stream") is True,
        thinking_budget=effort_budget(body.get("reasoning_effort")),
    )


def _only_results(message: n.Message) -> bool:
    return all(isinstance(part, n.ToolResult) for part in message.parts)


def _plain_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(
        as_str(as_dict(p).get("text")) for p in as_list(content) if as_dict(p).get("type") == "text"
    )


def _user_parts(content: Any) -> tuple[n.Part, ...]:
    if isinstance(content, str):
        return (n.Text(content),)
    parts: list[n.Part] = []
    for raw in as_list(content):
        part = as_dict(raw)
        kind = part.get("type")
        if kind == "text":
            parts.append(n.Text(as_str(part.get("text"))))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image if isinstance(image, str) else as_str(as_dict(image).get("url"))
            parts.append(image_from_url(url))
        else:
            n.dropped(NAME, f"a content part of type {kind!r}")
    return tuple(parts)


def _assistant_parts(message: Mapping[str, Any]) -> tuple[n.Part, ...]:
    parts: list[n.Part] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        parts.append(n.Thinking(reasoning))
    text = _plain_text(message.get("content"))
    if text:
        parts.append(n.Text(text))
    for raw in as_list(message.get("tool_calls")):
        call = as_dict(raw)
        function = as_dict(call.get("function"))
        parts.append(
            n.ToolCall(
                id=as_str(call.get("id")) or new_id("call_"),
                name=as_str(function.get("name")),
                arguments=as_str(function.get("arguments")) or "{}",
            )
        )
    return tuple(parts)


def _tools_in(raw: Any) -> tuple[n.Tool, ...]:
    tools: list[n.Tool] = []
    for item in as_list(raw):
        tool = as_dict(item)
        if tool.get("type") != "function":
            n.dropped(NAME, f"a tool of type {tool.get('type')!r}")
            continue
        function = as_dict(tool.get("function"))
        tools.append(
            n.Tool(
                name=as_str(function.get("name")),
                description=as_str(function.get("description")),
                parameters=as_dict(function.get("parameters")) or {"type": "object"},
            )
        )
    return tuple(tools)


def _choice_in(raw: Any) -> n.ToolChoice | None:
    if raw in ("auto", "none", "required"):
        return n.ToolChoice(raw)
    name = as_str(as_dict(as_dict(raw).get("function")).get("name"))
    return n.ToolChoice("tool", name) if name else None


def render_request(request: n.ChatRequest) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for message in request.messages:
        messages += _messages_out(message)
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": dict(t.parameters),
                },
            }
            for t in request.tools
        ]
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}}
            if choice.mode == "tool"
            else choice.mode
        )
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = list(request.stop)
    effort = budget_effort(request.thinking_budget)
    if effort is not None:
        body["reasoning_effort"] = effort
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _messages_out(message: n.Message) -> list[dict[str, Any]]:
    if message.role == "assistant":
        out: dict[str, Any] = {"role": "assistant", "content": message.text() or None}
        calls = [p for p in message.parts if isinstance(p, n.ToolCall)]
        if calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in calls
            ]
        thinking = "".join(p.text for p in message.parts if isinstance(p, n.Thinking))
        if thinking:
            out["reasoning_content"] = thinking
        return [out]
    results = [
        {"role": "tool", "tool_call_id": p.call_id, "content": p.text()}
        for p in message.parts
        if isinstance(p, n.ToolResult)
    ]
    content: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, n.Text):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, n.Image):
            content.append({"type": "image_url", "image_url": {"url": part.data_url()}})
        elif not isinstance(part, n.ToolResult):
            n.dropped(NAME, f"a {type(part).__name__} in a user message")
    if not content:
        return results
    if len(content) == 1 and content[0]["type"] == "text":
        return [*results, {"role": "user", "content": content[0]["text"]}]
    return [*results, {"role": "user", "content": content}]


# ---------------------------------------------------------------------------- responses


def parse_response(body: Mapping[str, Any]) -> n.ChatResponse:
    choice = as_dict(as_list(body.get("choices"))[0] if as_list(body.get("choices")) else {})
    message = as_dict(choice.get("message"))
    parts = _assistant_parts(message)
    stop = _STOPS_IN.get(as_str(choice.get("finish_reason")), "end")
    if stop == "end" and any(isinstance(p, n.ToolCall) for p in parts):
        stop = "tool_use"
    return n.ChatResponse(
        id=as_str(body.get("id")) or new_id("chatcmpl-"),
        model=as_str(body.get("model")),
        parts=parts,
        stop=stop,
        usage=usage_in(body.get("usage")),
    )


def usage_in(raw: Any) -> n.Usage:
    usage = as_dict(raw)
    return n.Usage(
        input_tokens=as_int(usage.get("prompt_tokens")),
        output_tokens=as_int(usage.get("completion_tokens")),
        cached_tokens=as_int(as_dict(usage.get("prompt_tokens_details")).get("cached_tokens")),
        reasoning_tokens=as_int(
            as_dict(usage.get("completion_tokens_details")).get("reasoning_tokens")
        ),
    )


def usage_out(usage: n.Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def render_response(response: n.ChatResponse) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": response.text() or None}
    calls = response.tool_calls()
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    thinking = "".join(p.text for p in response.parts if isinstance(p, n.Thinking))
    if thinking:
        message["reasoning_content"] = thinking
    if any(isinstance(p, n.Image) for p in response.parts):
        n.dropped(NAME, "an image in an assistant reply")
    return {
        "id": response.id if response.id.startswith("chatcmpl") else f"chatcmpl-{response.id}",
        "object": "chat.completion",
        "created": now_s(),
        "model": response.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _STOPS_OUT[response.stop],
                "logprobs": None,
            }
        ],
        "usage": usage_out(response.usage),
    }


# ------------------------------------------------------------------------------ streams


class StreamReader(SseJsonReader):
    """``chat.completion.chunk`` events (and ``[DONE]``) to neutral events."""

    protocol = NAME

    def __init__(self) -> None:
        super().__init__()
        self._started = False
        self._stop: n.StopReason = "end"
        self._usage: n.Usage | None = None
        self._calls: set[int] = set()

    def _data(self, data: str) -> list[n.StreamEvent]:
        if data.strip() == "[DONE]":
            return self._finish()
        return super()._data(data)

    def _end(self) -> list[n.StreamEvent]:
        return self._finish()

    def _read(self, chunk: Mapping[str, Any]) -> list[n.StreamEvent]:
        if "error" in chunk:
            error = as_dict(chunk["error"])
            raise StreamFailed(as_str(error.get("message")) or "upstream stream error")
        events: list[n.StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(
                n.Start(as_str(chunk.get("id")) or new_id("chatcmpl-"), as_str(chunk.get("model")))
            )
        if chunk.get("usage"):
            self._usage = usage_in(chunk.get("usage"))
        for raw in as_list(chunk.get("choices")):
            choice = as_dict(raw)
            delta = as_dict(choice.get("delta"))
            reasoning = delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                events.append(n.ThinkingDelta(reasoning))
            content = delta.get("content")
            if isinstance(content, str) and content:
                events.append(n.TextDelta(content))
            for raw_call in as_list(delta.get("tool_calls")):
                events += self._tool_call(as_dict(raw_call))
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                self._stop = _STOPS_IN.get(reason, "end")
        return events

    def _tool_call(self, call: Mapping[str, Any]) -> list[n.StreamEvent]:
        index = as_int(call.get("index"))
        function = as_dict(call.get("function"))
        events: list[n.StreamEvent] = []
        if index not in self._calls:
            self._calls.add(index)
            events.append(
                n.ToolCallStart(
                    index, as_str(call.get("id")) or new_id("call_"), as_str(function.get("name"))
                )
            )
        arguments = as_str(function.get("arguments"))
        if arguments:
            events.append(n.ToolCallDelta(index, arguments))
        return events

    def _finish(self) -> list[n.StreamEvent]:
        if self._finished:
            return []
        self._finished = True
        events: list[n.StreamEvent] = [] if self._started else [n.Start(new_id("chatcmpl-"), "")]
        self._started = True
        stop = "tool_use" if self._calls and self._stop == "end" else self._stop
        return [*events, n.Finish(stop, self._usage)]


class StreamWriter:
    """Neutral events to ``chat.completion.chunk`` events, ending with ``[DONE]``."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._id = new_id("chatcmpl-")
        self._created = now_s()

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return frame(
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                ],
            }
        )

    def write(self, event: n.StreamEvent) -> bytes:
        if isinstance(event, n.Start):
            self._model = event.model or self._model
            return self._chunk({"role": "assistant", "content": ""})
        if isinstance(event, n.TextDelta):
            return self._chunk({"content": event.text})
        if isinstance(event, n.ThinkingDelta):
            return self._chunk({"reasoning_content": event.text}) if event.text else b""
        if isinstance(event, n.ToolCallStart):
            call = {
                "id": event.id,
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            return self._chunk({"tool_calls": [{"index": event.index, **call}]})
        if isinstance(event, n.ToolCallDelta):
            return self._chunk(
                {"tool_calls": [{"index": event.index, "function": {"arguments": event.arguments}}]}
            )
        last = self._chunk({}, _STOPS_OUT[event.stop])
        if event.usage is not None:
            last += frame(
                {
                    "id": self._id,
                    "object": "chat.completion.chunk",
                    "created": self._created,
                    "model": self._model,
                    "choices": [],
                    "usage": usage_out(event.usage),
                }
            )
        return last + b"data: [DONE]\n\n"

    def error(self, status: int, message: str) -> bytes:
        return frame({"error": {"message": message, "type": error_type(status), "code": None}})


def error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = error_type(status)
    return {"error": {"message": message, "type": kind, "code": kind}}
