"""Gemini ``generateContent`` / ``streamGenerateContent``, to and from the neutral model.

Both field spellings are read (``systemInstruction`` and ``system_instruction``, as Google's
JSON mapping accepts); camelCase is written. The model is not in a Gemini body but in the
URL: :func:`parse_request` takes it as an argument and :func:`render_request` leaves it out.

Gemini calls may carry no id; a result then answers a call by function name. Reading, a call
without id gets one (``call_<n>``) and a result without id takes the id of the latest call of
its name; writing, results carry their function's name, looked up from the calls before.
"""

from __future__ import annotations

import json
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
    pick,
)
from cfgstore_gateway.protocols.sse import SseJsonReader, frame

NAME = "gemini"

_FILTERED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
_STOPS_OUT: dict[n.StopReason, str] = {
    "end": "STOP",
    "max_tokens": "MAX_TOKENS",
    "tool_use": "STOP",
    "stop_sequence": "STOP",
    "content_filter": "SAFETY",
}


def _stop_in(reason: str) -> n.StopReason:
    if reason == "MAX_TOKENS":
        return "max_tokens"
    return "content_filter" if reason in _FILTERED else "end"


# ----------------------------------------------------------------------------- requests


class _CallIds:
    """Ids for calls that have none, and the call a nameless result answers."""

    def __init__(self) -> None:
        self._count = 0
        self._by_name: dict[str, str] = {}

    def call(self, name: str, given: Any) -> str:
        self._count += 1
        call_id = as_str(given) or f"call_{self._count}"
        self._by_name[name] = call_id
        return call_id

    def result(self, name: str, given: Any) -> str:
        return as_str(given) or self._by_name.get(name, f"call_{name}")


def parse_request(body: Mapping[str, Any], model: str | None = None) -> n.ChatRequest:
    ids = _CallIds()
    messages = tuple(
        n.Message(
            "assistant" if as_dict(c).get("role") == "model" else "user",
            _parts_in(as_list(as_dict(c).get("parts")), ids),
        )
        for c in as_list(body.get("contents"))
    )
    system = as_dict(pick(body, "systemInstruction", "system_instruction"))
    config = as_dict(pick(body, "generationConfig", "generation_config"))
    thinking = as_dict(pick(config, "thinkingConfig", "thinking_config"))
    budget = pick(thinking, "thinkingBudget", "thinking_budget")
    return n.ChatRequest(
        model=model or as_str(body.get("model")),
        messages=messages,
        system="".join(as_str(as_dict(p).get("text")) for p in as_list(system.get("parts")))
        or None,
        tools=_tools_in(body.get("tools")),
        tool_choice=_choice_in(as_dict(pick(body, "toolConfig", "tool_config"))),
        max_tokens=as_int(pick(config, "maxOutputTokens", "max_output_tokens")) or None,
        temperature=as_float(config.get("temperature")),
        top_p=as_float(pick(config, "topP", "top_p")),
        stop=tuple(
            s
            for s in as_list(pick(config, "stopSequences", "stop_sequences"))
            if isinstance(s, str)
        ),
        thinking_budget=as_int(budget) or None if isinstance(budget, int) and budget > 0 else None,
    )


def _parts_in(raw_parts: list[Any] | Any, ids: _CallIds) -> tuple[n.Part, ...]:
    parts: list[n.Part] = []
    for raw in as_list(raw_parts):
        part = as_dict(raw)
        call = as_dict(pick(part, "functionCall", "function_call"))
        result = as_dict(pick(part, "functionResponse", "function_response"))
        inline = as_dict(pick(part, "inlineData", "inline_data"))
        file = as_dict(pick(part, "fileData", "file_data"))
        signature = pick(part, "thoughtSignature", "thought_signature")
        if "text" in part:
            text = as_str(part.get("text"))
            if part.get("thought") is True:
                parts.append(n.Thinking(text, signature if isinstance(signature, str) else None))
            else:
                parts.append(n.Text(text))
        elif call:
            name = as_str(call.get("name"))
            parts.append(
                n.ToolCall(ids.call(name, call.get("id")), name, dump_arguments(call.get("args")))
            )
        elif result:
            name = as_str(result.get("name"))
            parts.append(
                n.ToolResult(
                    ids.result(name, result.get("id")),
                    (n.Text(_result_text(result.get("response"))),),
                    name=name,
                )
            )
        elif inline:
            parts.append(
                n.Image(
                    as_str(pick(inline, "mimeType", "mime_type")) or "image/png",
                    data=as_str(inline.get("data")),
                )
            )
        elif file:
            parts.append(
                n.Image(
                    as_str(pick(file, "mimeType", "mime_type")) or "image/png",
                    url=as_str(pick(file, "fileUri", "file_uri")),
                )
            )
        else:
            n.dropped(NAME, f"a part with {sorted(part)}")
    return tuple(parts)


def _result_text(response: Any) -> str:
    """A function response as text: the string of a lone ``content``/``output``/``result``
    field, else the object as JSON."""
    fields = as_dict(response)
    if len(fields) == 1:
        ((key, value),) = fields.items()
        if key in ("content", "output", "result") and isinstance(value, str):
            return value
    return json.dumps(response, ensure_ascii=False, separators=(",", ":"))


def _tools_in(raw: Any) -> tuple[n.Tool, ...]:
    tools: list[n.Tool] = []
    for item in map(as_dict, as_list(raw)):
        declarations = pick(item, "functionDeclarations", "function_declarations")
        if declarations is None:
            n.dropped(NAME, f"the tool {sorted(item)}")
        for declaration in map(as_dict, as_list(declarations)):
            schema = pick(
                declaration, "parametersJsonSchema", "parameters_json_schema", "parameters"
            )
            tools.append(
                n.Tool(
                    name=as_str(declaration.get("name")),
                    description=as_str(declaration.get("description")),
                    parameters=_schema_in(as_dict(schema)) or {"type": "object"},
                )
            )
    return tuple(tools)


def _schema_in(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Gemini's OpenAPI-style schema (upper-case ``type`` names) as JSON schema."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out[key] = value.lower()
        elif isinstance(value, Mapping):
            out[key] = (
                {k: _schema_in(as_dict(v)) for k, v in value.items()}
                if key == "properties"
                else _schema_in(value)
            )
        else:
            out[key] = value
    return out


def _choice_in(config: Mapping[str, Any]) -> n.ToolChoice | None:
    calling = as_dict(pick(config, "functionCallingConfig", "function_calling_config"))
    mode = as_str(calling.get("mode")).upper()
    allowed = as_list(pick(calling, "allowedFunctionNames", "allowed_function_names"))
    if mode == "ANY":
        return (
            n.ToolChoice("tool", as_str(allowed[0]))
            if len(allowed) == 1
            else n.ToolChoice("required")
        )
    if mode == "NONE":
        return n.ToolChoice("none")
    return n.ToolChoice("auto") if mode == "AUTO" else None


def render_request(request: n.ChatRequest) -> dict[str, Any]:
    names: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    for message in request.messages:
        parts = [p for part in message.parts if (p := _part_out(part, names)) is not None]
        if not parts:
            continue
        role = "model" if message.role == "assistant" else "user"
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"] += parts
        else:
            contents.append({"role": role, "parts": parts})
    body: dict[str, Any] = {"contents": contents}
    if request.system:
        body["systemInstruction"] = {"role": "user", "parts": [{"text": request.system}]}
    if request.tools:
        body["tools"] = [
            {
                "functionDeclarations": [
                    {
                        "name": t.name,
                        "description": t.description,
                        "parametersJsonSchema": dict(t.parameters),
                    }
                    for t in request.tools
                ]
            }
        ]
    if request.tool_choice is not None:
        choice = request.tool_choice
        calling: dict[str, Any] = {"mode": {"auto": "AUTO", "none": "NONE"}.get(choice.mode, "ANY")}
        if choice.mode == "tool" and choice.name:
            calling["allowedFunctionNames"] = [choice.name]
        body["toolConfig"] = {"functionCallingConfig": calling}
    config: dict[str, Any] = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if request.thinking_budget is not None:
        config["thinkingConfig"] = {
            "thinkingBudget": request.thinking_budget,
            "includeThoughts": True,
        }
    if config:
        body["generationConfig"] = config
    return body


def _part_out(part: n.Part, names: dict[str, str]) -> dict[str, Any] | None:
    if isinstance(part, n.Text):
        return {"text": part.text}
    if isinstance(part, n.Thinking):
        out: dict[str, Any] = {"text": part.text, "thought": True}
        if part.signature:
            out["thoughtSignature"] = part.signature
        return out
    if isinstance(part, n.Image):
        if part.data is not None:
            return {"inlineData": {"mimeType": part.media_type, "data": part.data}}
        return {"fileData": {"mimeType": part.media_type, "fileUri": part.url or ""}}
    if isinstance(part, n.ToolCall):
        names[part.id] = part.name
        return {
            "functionCall": {
                "id": part.id,
                "name": part.name,
                "args": parse_arguments(part.arguments, NAME),
            }
        }
    name = part.name or names.get(part.call_id, "")
    return {
        "functionResponse": {
            "id": part.call_id,
            "name": name,
            "response": {"content": part.text()},
        }
    }


# ---------------------------------------------------------------------------- responses


def usage_in(raw: Any) -> n.Usage:
    usage = as_dict(raw)
    thoughts = as_int(usage.get("thoughtsTokenCount"))
    return n.Usage(
        input_tokens=as_int(usage.get("promptTokenCount")),
        output_tokens=as_int(usage.get("candidatesTokenCount")) + thoughts,
        cached_tokens=as_int(usage.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def usage_out(usage: n.Usage) -> dict[str, Any]:
    out = {
        "promptTokenCount": usage.input_tokens,
        "candidatesTokenCount": usage.output_tokens - usage.reasoning_tokens,
        "totalTokenCount": usage.total_tokens,
    }
    if usage.reasoning_tokens:
        out["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cached_tokens:
        out["cachedContentTokenCount"] = usage.cached_tokens
    return out


def parse_response(body: Mapping[str, Any]) -> n.ChatResponse:
    candidates = as_list(body.get("candidates"))
    candidate = as_dict(candidates[0]) if candidates else {}
    parts = _parts_in(as_list(as_dict(candidate.get("content")).get("parts")), _CallIds())
    stop = _stop_in(as_str(candidate.get("finishReason")))
    if stop == "end" and any(isinstance(p, n.ToolCall) for p in parts):
        stop = "tool_use"
    return n.ChatResponse(
        id=as_str(body.get("responseId")) or new_id(""),
        model=as_str(body.get("modelVersion")),
        parts=parts,
        stop=stop,
        usage=usage_in(body.get("usageMetadata")),
    )


def render_response(response: n.ChatResponse) -> dict[str, Any]:
    parts = [p for part in response.parts if (p := _part_out(part, {})) is not None]
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": _STOPS_OUT[response.stop],
                "index": 0,
            }
        ],
        "usageMetadata": usage_out(response.usage),
        "modelVersion": response.model,
        "responseId": response.id,
    }


# ------------------------------------------------------------------------------ streams


class StreamReader(SseJsonReader):
    """``GenerateContentResponse`` chunks (SSE ``data:`` lines) to neutral events."""

    protocol = NAME

    def __init__(self) -> None:
        super().__init__()
        self._ids = _CallIds()
        self._started = False
        self._stop: n.StopReason = "end"
        self._usage: n.Usage | None = None
        self._calls = 0

    def _end(self) -> list[n.StreamEvent]:
        return self._finish()

    def _read(self, chunk: Mapping[str, Any]) -> list[n.StreamEvent]:
        if "error" in chunk:
            error = as_dict(chunk["error"])
            raise StreamFailed(
                as_str(error.get("message")) or "upstream stream error",
                as_int(error.get("code")) or 500,
            )
        events: list[n.StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(
                n.Start(
                    as_str(chunk.get("responseId")) or new_id(""), as_str(chunk.get("modelVersion"))
                )
            )
        if chunk.get("usageMetadata"):
            self._usage = usage_in(chunk.get("usageMetadata"))
        candidates = as_list(chunk.get("candidates"))
        candidate = as_dict(candidates[0]) if candidates else {}
        for part in _parts_in(as_list(as_dict(candidate.get("content")).get("parts")), self._ids):
            if isinstance(part, n.Text) and part.text:
                events.append(n.TextDelta(part.text))
            elif isinstance(part, n.Thinking):
                events.append(n.ThinkingDelta(part.text, part.signature))
            elif isinstance(part, n.ToolCall):
                events.append(n.ToolCallStart(self._calls, part.id, part.name))
                events.append(n.ToolCallDelta(self._calls, part.arguments))
                self._calls += 1
            elif not isinstance(part, n.Text):
                n.dropped(NAME, f"a streamed {type(part).__name__}")
        reason = candidate.get("finishReason")
        if isinstance(reason, str):
            self._stop = _stop_in(reason)
        return events

    def _finish(self) -> list[n.StreamEvent]:
        if self._finished:
            return []
        events: list[n.StreamEvent] = [] if self._started else [n.Start(new_id(""), "")]
        self._started = self._finished = True
        stop: n.StopReason = "tool_use" if self._calls and self._stop == "end" else self._stop
        return [*events, n.Finish(stop, self._usage)]


class StreamWriter:
    """Neutral events to Gemini stream chunks. Tool calls are sent whole (Gemini streams
    calls complete): their arguments are collected until an event that is not part of a
    tool call arrives, then the calls go out in one chunk."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._id = new_id("")
        self._calls: dict[int, tuple[str, str, list[str]]] = {}  # index -> id, name, fragments

    def _chunk(self, parts: list[dict[str, Any]], **more: Any) -> bytes:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        candidate.update({k: v for k, v in more.items() if k == "finishReason"})
        out: dict[str, Any] = {
            "candidates": [candidate],
            "modelVersion": self._model,
            "responseId": self._id,
        }
        if "usageMetadata" in more:
            out["usageMetadata"] = more["usageMetadata"]
        return frame(out)

    def write(self, event: n.StreamEvent) -> bytes:
        if isinstance(event, n.ToolCallStart):
            self._calls[event.index] = (event.id, event.name, [])
            return b""
        if isinstance(event, n.ToolCallDelta):
            if event.index in self._calls:
                self._calls[event.index][2].append(event.arguments)
            return b""
        out = self._flush_calls()
        if isinstance(event, n.Start):
            self._model = event.model or self._model
            return out
        if isinstance(event, n.TextDelta):
            return out + self._chunk([{"text": event.text}])
        if isinstance(event, n.ThinkingDelta):
            part: dict[str, Any] = {"text": event.text, "thought": True}
            if event.signature:
                part["thoughtSignature"] = event.signature
            return out + self._chunk([part])
        usage = usage_out(event.usage) if event.usage is not None else None
        extra: dict[str, Any] = {"finishReason": _STOPS_OUT[event.stop]}
        if usage is not None:
            extra["usageMetadata"] = usage
        return out + self._chunk([], **extra)

    def _flush_calls(self) -> bytes:
        if not self._calls:
            return b""
        parts = [
            {
                "functionCall": {
                    "id": call_id,
                    "name": name,
                    "args": parse_arguments("".join(fragments), NAME),
                }
            }
            for call_id, name, fragments in self._calls.values()
        ]
        self._calls = {}
        return self._chunk(parts)

    def error(self, status: int, message: str) -> bytes:
        return frame(error_body(status, message))


def error_status(status: int) -> str:
    return {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        413: "INVALID_ARGUMENT",
        429: "RESOURCE_EXHAUSTED",
    }.get(status, "INTERNAL" if status >= 500 else "UNKNOWN")


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": error_status(status)}}
