"""OpenAI Responses (``/v1/responses``), to and from the neutral model.

Output items map to neutral parts: ``message`` (its ``output_text`` parts) to text,
``function_call`` to a tool call (``call_id`` is the id results answer), ``reasoning`` (its
summary texts) to thinking. Items of built-in tools (web search, code interpreter, …) are
dropped with a debug line. A request's ``previous_response_id`` cannot be honoured by a
gateway that stores no responses: it is dropped, so clients must send the whole input.
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
    budget_effort,
    effort_budget,
    image_from_url,
    new_id,
    now_s,
)
from cfgstore_gateway.protocols.sse import SseJsonReader, frame

NAME = "openaiResponses"


# ----------------------------------------------------------------------------- requests


def parse_request(body: Mapping[str, Any], model: str | None = None) -> n.ChatRequest:
    system: list[str] = [as_str(body.get("instructions"))]
    messages: list[n.Message] = []

    def add(role: n.Role, part: n.Part) -> None:
        if messages and messages[-1].role == role:
            messages[-1] = n.Message(role, (*messages[-1].parts, part))
        else:
            messages.append(n.Message(role, (part,)))

    raw_input = body.get("input")
    if isinstance(raw_input, str):
        add("user", n.Text(raw_input))
    for raw in as_list(raw_input):
        item = as_dict(raw)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role in ("system", "developer"):
                system.append(_content_text(item.get("content")))
                continue
            for part in _content_in(item.get("content")):
                add("assistant" if role == "assistant" else "user", part)
        elif kind == "function_call":
            add(
                "assistant",
                n.ToolCall(
                    as_str(item.get("call_id")) or new_id("call_"),
                    as_str(item.get("name")),
                    as_str(item.get("arguments")) or "{}",
                ),
            )
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _content_text(output)
            add("user", n.ToolResult(as_str(item.get("call_id")), (n.Text(text),)))
        elif kind == "reasoning":
            summary = "".join(as_str(as_dict(s).get("text")) for s in as_list(item.get("summary")))
            add("assistant", n.Thinking(summary))
        else:
            n.dropped(NAME, f"an input item of type {kind!r}")
    if body.get("previous_response_id"):
        n.dropped(NAME, "previous_response_id (no stored responses)")
    reasoning = as_dict(body.get("reasoning"))
    return n.ChatRequest(
        model=model or as_str(body.get("model")),
        messages=tuple(messages),
        system="\n\n".join(s for s in system if s) or None,
        tools=_tools_in(body.get("tools")),
        tool_choice=_choice_in(body.get("tool_choice")),
        max_tokens=as_int(body.get("max_output_tokens")) or None,
        temperature=as_float(body.get("temperature")),
        top_p=as_float(body.get("top_p")),
        stream=body.get("stream") is True,
        thinking_budget=effort_budget(reasoning.get("effort")),
    )


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(
        as_str(as_dict(p).get("text"))
        for p in as_list(content)
        if as_dict(p).get("type") in ("input_text", "output_text", "text")
    )


def _content_in(content: Any) -> tuple[n.Part, ...]:
    if isinstance(content, str):
        return (n.Text(content),)
    parts: list[n.Part] = []
    for raw in as_list(content):
        part = as_dict(raw)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append(n.Text(as_str(part.get("text"))))
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            parts.append(image_from_url(part["image_url"]))
        elif kind == "refusal":
            parts.append(n.Text(as_str(part.get("refusal"))))
        else:
            n.dropped(NAME, f"a content part of type {kind!r}")
    return tuple(parts)


def _tools_in(raw: Any) -> tuple[n.Tool, ...]:
    tools: list[n.Tool] = []
    for tool in map(as_dict, as_list(raw)):
        if tool.get("type") != "function":
            n.dropped(NAME, f"the built-in tool {tool.get('type')!r}")
            continue
        tools.append(
            n.Tool(
                as_str(tool.get("name")),
                as_str(tool.get("description")),
                as_dict(tool.get("parameters")) or {"type": "object"},
            )
        )
    return tuple(tools)


def _choice_in(raw: Any) -> n.ToolChoice | None:
    if raw in ("auto", "none", "required"):
        return n.ToolChoice(raw)
    choice = as_dict(raw)
    if choice.get("type") == "function" and as_str(choice.get("name")):
        return n.ToolChoice("tool", as_str(choice.get("name")))
    return None


def render_request(request: n.ChatRequest) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for message in request.messages:
        items += _items_out(message)
    body: dict[str, Any] = {"model": request.model, "input": items}
    if request.system:
        body["instructions"] = request.system
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
                "strict": False,
            }
            for t in request.tools
        ]
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = (
            {"type": "function", "name": choice.name} if choice.mode == "tool" else choice.mode
        )
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        n.dropped(NAME, "stop sequences")
    effort = budget_effort(request.thinking_budget)
    if effort is not None:
        body["reasoning"] = {"effort": effort}
    if request.stream:
        body["stream"] = True
    return body


def _items_out(message: n.Message) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    text_type = "output_text" if message.role == "assistant" else "input_text"

    def flush() -> None:
        if content:
            items.append({"type": "message", "role": message.role, "content": list(content)})
            content.clear()

    for part in message.parts:
        if isinstance(part, n.Text):
            content.append({"type": text_type, "text": part.text})
        elif isinstance(part, n.Image) and message.role == "user":
            content.append({"type": "input_image", "image_url": part.data_url(), "detail": "auto"})
        elif isinstance(part, n.ToolCall):
            flush()
            items.append(
                {
                    "type": "function_call",
                    "call_id": part.id,
                    "name": part.name,
                    "arguments": part.arguments,
                }
            )
        elif isinstance(part, n.ToolResult):
            flush()
            items.append(
                {"type": "function_call_output", "call_id": part.call_id, "output": part.text()}
            )
        else:
            n.dropped(NAME, f"a {type(part).__name__} in an input message")
    flush()
    return items


# ---------------------------------------------------------------------------- responses


def usage_in(raw: Any) -> n.Usage:
    usage = as_dict(raw)
    return n.Usage(
        input_tokens=as_int(usage.get("input_tokens")),
        output_tokens=as_int(usage.get("output_tokens")),
        cached_tokens=as_int(as_dict(usage.get("input_tokens_details")).get("cached_tokens")),
        reasoning_tokens=as_int(
            as_dict(usage.get("output_tokens_details")).get("reasoning_tokens")
        ),
    )


def usage_out(usage: n.Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _output_parts(output: Any) -> tuple[n.Part, ...]:
    parts: list[n.Part] = []
    for item in map(as_dict, as_list(output)):
        kind = item.get("type")
        if kind == "message":
            parts += [p for p in _content_in(item.get("content"))]
        elif kind == "function_call":
            parts.append(
                n.ToolCall(
                    as_str(item.get("call_id")) or new_id("call_"),
                    as_str(item.get("name")),
                    as_str(item.get("arguments")) or "{}",
                )
            )
        elif kind == "reasoning":
            text = "".join(as_str(as_dict(s).get("text")) for s in as_list(item.get("summary")))
            parts.append(n.Thinking(text))
        else:
            n.dropped(NAME, f"an output item of type {kind!r}")
    return tuple(parts)


def _stop_in(body: Mapping[str, Any], parts: tuple[n.Part, ...]) -> n.StopReason:
    if body.get("status") == "incomplete":
        reason = as_dict(body.get("incomplete_details")).get("reason")
        return "content_filter" if reason == "content_filter" else "max_tokens"
    return "tool_use" if any(isinstance(p, n.ToolCall) for p in parts) else "end"


def parse_response(body: Mapping[str, Any]) -> n.ChatResponse:
    parts = _output_parts(body.get("output"))
    return n.ChatResponse(
        id=as_str(body.get("id")) or new_id("resp_"),
        model=as_str(body.get("model")),
        parts=parts,
        stop=_stop_in(body, parts),
        usage=usage_in(body.get("usage")),
    )


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": []}]
        if status == "completed"
        else [],
    }


def _call_item(item_id: str, call: n.ToolCall, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": status,
    }


def _reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def _response_object(
    response_id: str,
    model: str,
    output: list[dict[str, Any]],
    stop: n.StopReason | None,
    usage: n.Usage | None,
) -> dict[str, Any]:
    if stop is None:
        status, incomplete = "in_progress", None
    elif stop in ("max_tokens", "content_filter"):
        reason = "max_output_tokens" if stop == "max_tokens" else "content_filter"
        status, incomplete = "incomplete", {"reason": reason}
    else:
        status, incomplete = "completed", None
    return {
        "id": response_id,
        "object": "response",
        "created_at": now_s(),
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage_out(usage) if usage is not None else None,
    }


def render_response(response: n.ChatResponse) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    thinking = "".join(p.text for p in response.parts if isinstance(p, n.Thinking))
    if thinking:
        output.append(_reasoning_item(new_id("rs_"), thinking))
    text = response.text()
    if text or not response.tool_calls():
        output.append(_message_item(new_id("msg_"), text))
    output += [_call_item(new_id("fc_"), call) for call in response.tool_calls()]
    response_id = response.id if response.id.startswith("resp_") else f"resp_{response.id}"
    return _response_object(response_id, response.model, output, response.stop, response.usage)


# ------------------------------------------------------------------------------ streams


class StreamReader(SseJsonReader):
    """Responses stream events (``response.*``) to neutral events."""

    protocol = NAME

    def __init__(self) -> None:
        super().__init__()
        self._started = False
        self._calls: dict[int, int] = {}  # output index -> tool call index

    def _end(self) -> list[n.StreamEvent]:
        return self._finish("tool_use" if self._calls else "end", None)

    def _read(self, event: Mapping[str, Any]) -> list[n.StreamEvent]:
        kind = as_str(event.get("type"))
        response = as_dict(event.get("response"))
        if kind == "response.created":
            self._started = True
            return [
                n.Start(
                    as_str(response.get("id")) or new_id("resp_"), as_str(response.get("model"))
                )
            ]
        events: list[n.StreamEvent] = [] if self._started else self._start()
        if kind == "response.output_text.delta":
            events.append(n.TextDelta(as_str(event.get("delta"))))
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            events.append(n.ThinkingDelta(as_str(event.get("delta"))))
        elif (
            kind == "response.output_item.added"
            and as_dict(event.get("item")).get("type") == "function_call"
        ):
            item = as_dict(event.get("item"))
            index = len(self._calls)
            self._calls[as_int(event.get("output_index"))] = index
            events.append(
                n.ToolCallStart(
                    index, as_str(item.get("call_id")) or new_id("call_"), as_str(item.get("name"))
                )
            )
            if as_str(item.get("arguments")):
                events.append(n.ToolCallDelta(index, as_str(item.get("arguments"))))
        elif kind == "response.function_call_arguments.delta":
            call = self._calls.get(as_int(event.get("output_index")))
            if call is not None and as_str(event.get("delta")):
                events.append(n.ToolCallDelta(call, as_str(event.get("delta"))))
        elif kind in ("response.completed", "response.incomplete"):
            parts = tuple(n.ToolCall("", "") for _ in self._calls)
            events += self._finish(_stop_in(response, parts), usage_in(response.get("usage")))
        elif kind in ("response.failed", "error"):
            error = as_dict(response.get("error")) or event
            raise StreamFailed(as_str(error.get("message")) or "upstream stream error")
        return events

    def _start(self) -> list[n.StreamEvent]:
        self._started = True
        return [n.Start(new_id("resp_"), "")]

    def _finish(self, stop: n.StopReason, usage: n.Usage | None) -> list[n.StreamEvent]:
        if self._finished:
            return []
        events = [] if self._started else self._start()
        self._finished = True
        return [*events, n.Finish(stop, usage)]


class StreamWriter:
    """Neutral events to Responses stream events, each with its ``sequence_number``:
    ``response.created``/``in_progress``, per output item ``output_item.added`` … ``done``
    (messages with ``content_part`` and ``output_text`` events, reasoning with summary
    events, function calls with ``function_call_arguments`` events), then
    ``response.completed`` carrying the whole response."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._id = new_id("resp_")
        self._sequence = 0
        self._output: list[dict[str, Any]] = []  # finished items
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._text: list[str] = []
        self._call_items: dict[int, int] = {}  # tool call index -> output index

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return frame(data, kind)

    def write(self, event: n.StreamEvent) -> bytes:
        if isinstance(event, n.Start):
            self._model = event.model or self._model
            snapshot = _response_object(self._id, self._model, [], None, None)
            return self._event("response.created", response=snapshot) + self._event(
                "response.in_progress", response=snapshot
            )
        if isinstance(event, n.TextDelta):
            out = self._ensure("message")
            self._text.append(event.text)
            return out + self._event(
                "response.output_text.delta",
                item_id=self._open_id(),
                output_index=len(self._output),
                content_index=0,
                delta=event.text,
                logprobs=[],
            )
        if isinstance(event, n.ThinkingDelta):
            if not event.text:
                return b""
            out = self._ensure("reasoning")
            self._text.append(event.text)
            return out + self._event(
                "response.reasoning_summary_text.delta",
                item_id=self._open_id(),
                output_index=len(self._output),
                summary_index=0,
                delta=event.text,
            )
        if isinstance(event, n.ToolCallStart):
            out = self._close()
            item = _call_item(new_id("fc_"), n.ToolCall(event.id, event.name, ""), "in_progress")
            self._open = item
            self._call_items[event.index] = len(self._output)
            return out + self._event(
                "response.output_item.added", output_index=len(self._output), item=item
            )
        if isinstance(event, n.ToolCallDelta):
            if self._open is None or self._call_items.get(event.index) != len(self._output):
                n.dropped(NAME, "arguments of a tool call whose item was closed")
                return b""
            self._text.append(event.arguments)
            return self._event(
                "response.function_call_arguments.delta",
                item_id=self._open_id(),
                output_index=len(self._output),
                delta=event.arguments,
            )
        out = self._close()
        final = _response_object(
            self._id, self._model, self._output, event.stop, event.usage or n.Usage()
        )
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return out + self._event(kind, response=final)

    def _open_id(self) -> str:
        return as_str((self._open or {}).get("id"))

    def _ensure(self, kind: str) -> bytes:
        if self._open is not None and self._open["type"] == kind:
            return b""
        out = self._close()
        index = len(self._output)
        if kind == "message":
            self._open = _message_item(new_id("msg_"), "", "in_progress")
            part = {"type": "output_text", "text": "", "annotations": []}
            return (
                out
                + self._event("response.output_item.added", output_index=index, item=self._open)
                + self._event(
                    "response.content_part.added",
                    item_id=self._open_id(),
                    output_index=index,
                    content_index=0,
                    part=part,
                )
            )
        self._open = {"id": new_id("rs_"), "type": "reasoning", "summary": []}
        return (
            out
            + self._event("response.output_item.added", output_index=index, item=self._open)
            + self._event(
                "response.reasoning_summary_part.added",
                item_id=self._open_id(),
                output_index=index,
                summary_index=0,
                part={"type": "summary_text", "text": ""},
            )
        )

    def _close(self) -> bytes:
        item = self._open
        if item is None:
            return b""
        text = "".join(self._text)
        self._open, self._text = None, []
        index = len(self._output)
        item_id = as_str(item.get("id"))
        out = b""
        if item["type"] == "message":
            done = _message_item(item_id, text)
            part = done["content"][0]
            out += self._event(
                "response.output_text.done",
                item_id=item_id,
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            )
            out += self._event(
                "response.content_part.done",
                item_id=item_id,
                output_index=index,
                content_index=0,
                part=part,
            )
        elif item["type"] == "reasoning":
            done = _reasoning_item(item_id, text)
            out += self._event(
                "response.reasoning_summary_text.done",
                item_id=item_id,
                output_index=index,
                summary_index=0,
                text=text,
            )
            out += self._event(
                "response.reasoning_summary_part.done",
                item_id=item_id,
                output_index=index,
                summary_index=0,
                part={"type": "summary_text", "text": text},
            )
        else:
            done = {**item, "arguments": text, "status": "completed"}
            out += self._event(
                "response.function_call_arguments.done",
                item_id=item_id,
                output_index=index,
                arguments=text,
            )
        self._output.append(done)
        return out + self._event("response.output_item.done", output_index=index, item=done)

    def error(self, status: int, message: str) -> bytes:
        return self._event("error", code=error_code(status), message=message, param=None)


def error_code(status: int) -> str:
    if status == 401:
        return "invalid_api_key"
    if status == 429:
        return "rate_limit_exceeded"
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(status: int, message: str) -> dict[str, Any]:
    from cfgstore_gateway.protocols.openai_chat import error_type

    return {
        "error": {
            "type": error_type(status),
            "message": message,
            "code": error_code(status),
            "param": None,
        }
    }
