"""Kiro's answer (AWS event-stream frames of JSON payloads) as an Anthropic Messages answer.

:class:`ClaudeAssembler` takes the decoded payloads in order and produces the Claude stream's
events (``message_start``; ``content_block_start``/``_delta``/``_stop`` for text, thinking
and ``tool_use`` with ``input_json_delta``; ``message_delta`` with ``stop_reason`` and
``usage``; ``message_stop``) and, at the end, the whole message. Payloads are classified by
their keys as the Node service does (aiclient-protocols §3.2): ``content`` is text (an exact
repeat of the previous text event is dropped; ``followupPrompt`` ones are ignored), ``name``
+ ``toolUseId`` start or continue a tool call, ``input`` continues it, ``stop`` ends it,
``contextUsagePercentage`` gives the input token count; anything else is ignored. Tool
calls Kiro wrote as text (``[Called <name> with args: {…}]``) become ``tool_use`` blocks at
the end (a whole answer drops their text). When the
client asked for thinking, ``<thinking>…</thinking>`` at the start of the text becomes a
``thinking`` block (the blank line after it dropped).

Token counts are estimates (about four characters a token): output from the text and tool
inputs; input from ``contextUsagePercentage`` of the model's context window when Kiro sent
one, else from the request's size.

:class:`KiroReply` is the gateway's :class:`~cfgstore_gateway.adapters.UpstreamReply` over
the upstream response: ``chunks()`` yields Claude SSE as frames arrive (whatever the
network cut), ``read()`` the Claude JSON message. An ``exception``/``error`` frame in the
middle of a stream ends it: ``chunks()`` raises
:class:`~cfgstore_gateway.protocols.common.StreamFailed` (the gateway records the failure
and ends the client's stream with its protocol's error), ``read()``
:class:`~cfgstore_gateway.adapters.UpstreamUnavailable` (no partial answer passes for a
whole one).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import aiohttp

from cfgstore_gateway.adapters import UpstreamUnavailable
from cfgstore_gateway.adapters.kiro_events import Event, EventStreamDecoder, EventStreamError
from cfgstore_gateway.adapters.openai_compat import describe_error
from cfgstore_gateway.protocols.common import StreamFailed

THINK_OPEN, THINK_CLOSE = "<thinking>", "</thinking>"
LONG_CONTEXT = 1_000_000
DEFAULT_CONTEXT = 200_000

ClaudeEvent = tuple[str, dict[str, Any]]


def context_window(model: str) -> int:
    """Opus 4.5 to 4.8 have a million tokens of context; others 200 000."""
    if any(
        f"claude-opus-4-{minor}" in model or f"claude-opus-4.{minor}" in model for minor in "5678"
    ):
        return LONG_CONTEXT
    return DEFAULT_CONTEXT


class ClaudeAssembler:
    """Kiro payloads in, Claude events out (see the module docstring)."""

    def __init__(
        self,
        model: str,
        *,
        tool_names: Mapping[str, str] | None = None,
        thinking: bool = False,
        input_estimate: int = 0,
    ) -> None:
        self.model = model
        self.message_id = f"msg_{uuid.uuid4().hex[:24]}"
        self._names = dict(tool_names or {})
        self._think_state = "start" if thinking else "text"
        """``start`` (the text may open with ``<thinking>``), ``inside`` (thinking),
        ``after`` (right after ``</thinking>``: its line break is dropped), ``text``."""
        self._pending = ""
        self._input_estimate = input_estimate
        self._context_percent: float | None = None
        self._started = False
        self._index = -1
        self._open: str | None = None
        """Kind of the open block: text, thinking, tool_use."""
        self._tool_id: str | None = None
        self._last_content: str | None = None
        self._output_chars = 0
        self.blocks: list[dict[str, Any]] = []
        self._tool_inputs: dict[int, str] = {}
        self._saw_tool = False
        self.stop_reason = "end_turn"
        """Set by :meth:`finish`."""

    # -- events ---------------------------------------------------------------------------

    def start(self) -> list[ClaudeEvent]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_estimate, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def feed(self, payload: Mapping[str, Any]) -> list[ClaudeEvent]:
        events = self.start()
        if "followupPrompt" in payload:
            return events
        if "contextUsagePercentage" in payload:
            percent = payload.get("contextUsagePercentage")
            if isinstance(percent, int | float) and not isinstance(percent, bool):
                self._context_percent = float(percent)
        if isinstance(payload.get("content"), str) and "toolUseId" not in payload:
            content = payload["content"]
            if content == self._last_content:
                return events
            self._last_content = content
            events += self._text(content)
        elif "toolUseId" in payload or "input" in payload or "stop" in payload:
            events += self._tool(payload)
        return events

    def finish(self) -> list[ClaudeEvent]:
        events = self.start()
        pending, self._pending = self._pending, ""
        if self._think_state == "after":
            pending = ""  # the line break after </thinking>
        if pending:
            events += self._delta("thinking" if self._think_state == "inside" else "text", pending)
        events += self._close()
        events += self._bracket_calls()
        only_thinking = bool(self.blocks) and all(b["type"] == "thinking" for b in self.blocks)
        if only_thinking:
            events += self._delta("text", " ")
            events += self._close()
        stop = "tool_use" if self._saw_tool else ("max_tokens" if only_thinking else "end_turn")
        self.stop_reason = stop
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": self.usage(),
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def usage(self) -> dict[str, int]:
        output = (self._output_chars + 3) // 4
        if self._context_percent is not None:
            used = round(context_window(self.model) * self._context_percent / 100)
            input_tokens = max(0, used - output)
        else:
            input_tokens = self._input_estimate
        return {"input_tokens": input_tokens, "output_tokens": output}

    def _bracket_calls(self) -> list[ClaudeEvent]:
        """Tool calls Kiro wrote as text become ``tool_use`` blocks after the text (once per
        name and arguments, none repeating a structured call); a stream has sent their
        text already, a whole answer drops it (:meth:`message`)."""
        text = "".join(b["text"] for b in self.blocks if b["type"] == "text")
        if "[Called" not in text:
            return []
        seen = {
            (b["name"], self._tool_inputs.get(i, ""))
            for i, b in enumerate(self.blocks)
            if b["type"] == "tool_use"
        }
        events: list[ClaudeEvent] = []
        for _, _, name, arguments in bracket_calls(text):
            name = self._names.get(name, name)
            raw = json.dumps(arguments, ensure_ascii=False)
            if (name, raw) in seen:
                continue
            seen.add((name, raw))
            tool_id = f"toolu_{uuid.uuid4().hex[:24]}"
            events += self._tool({"name": name, "toolUseId": tool_id, "input": raw})
            events += self._close()
        return events

    def message(self) -> dict[str, Any]:
        """The whole message (after :meth:`finish`)."""
        content: list[dict[str, Any]] = []
        for index, block in enumerate(self.blocks):
            if block["type"] == "text" and "[Called" in block["text"]:
                text = block["text"]
                for start, end, _, _ in reversed(bracket_calls(text)):
                    text = text[:start] + text[end:]
                if text.strip():
                    content.append({"type": "text", "text": text.strip()})
                continue
            if block["type"] == "tool_use":
                raw = self._tool_inputs.get(index, "")
                try:
                    parsed = json.loads(raw) if raw.strip() else {}
                except ValueError:
                    parsed = {}
                content.append({**block, "input": parsed if isinstance(parsed, dict) else {}})
            else:
                content.append(dict(block))
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason,
            "stop_sequence": None,
            "usage": self.usage(),
        }

    # -- text and thinking ---------------------------------------------------------------

    def _text(self, content: str) -> list[ClaudeEvent]:
        if self._think_state == "text":
            return self._delta("text", content)
        self._pending += content
        events: list[ClaudeEvent] = []
        while self._pending:
            if self._think_state == "start":
                stripped = self._pending.lstrip()
                if stripped.startswith(THINK_OPEN):
                    self._pending = stripped[len(THINK_OPEN) :]
                    self._think_state = "inside"
                elif THINK_OPEN.startswith(stripped):
                    return events  # maybe the tag, cut
                else:
                    self._think_state = "text"
                    pending, self._pending = self._pending, ""
                    return events + self._delta("text", pending)
            elif self._think_state == "inside":
                end = self._pending.find(THINK_CLOSE)
                if end < 0:
                    keep = _partial_suffix(self._pending, THINK_CLOSE)
                    cut = len(self._pending) - keep
                    if cut:
                        events += self._delta("thinking", self._pending[:cut])
                        self._pending = self._pending[cut:]
                    return events
                if end:
                    events += self._delta("thinking", self._pending[:end])
                rest = self._pending[end + len(THINK_CLOSE) :]
                if rest in ("", "\n"):
                    self._pending = rest
                    self._think_state = "after"
                    return events
                self._pending = rest.removeprefix("\n\n")
                self._think_state = "text"
                events += self._close()
            elif self._think_state == "after":
                self._pending = self._pending.removeprefix("\n\n").removeprefix("\n")
                self._think_state = "text"
                events += self._close()
            else:
                pending, self._pending = self._pending, ""
                events += self._delta("text", pending)
        return events

    def _delta(self, kind: str, text: str) -> list[ClaudeEvent]:
        if not text:
            return []
        events: list[ClaudeEvent] = []
        if self._open != kind:
            events += self._close()
            self._index += 1
            self._open = kind
            block: dict[str, Any] = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
            self.blocks.append(block)
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": self._index,
                        "content_block": block.copy(),
                    },
                )
            )
        self._output_chars += len(text)
        delta: dict[str, Any]
        if kind == "text":
            self.blocks[-1]["text"] += text
            delta = {"type": "text_delta", "text": text}
        else:
            self.blocks[-1]["thinking"] += text
            delta = {"type": "thinking_delta", "thinking": text}
        events.append(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": self._index, "delta": delta},
            )
        )
        return events

    def _close(self) -> list[ClaudeEvent]:
        if self._open is None:
            return []
        self._open = None
        self._tool_id = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self._index})]

    # -- tools ----------------------------------------------------------------------------

    def _tool(self, payload: Mapping[str, Any]) -> list[ClaudeEvent]:
        events: list[ClaudeEvent] = []
        tool_id = payload.get("toolUseId")
        name = payload.get("name")
        if isinstance(tool_id, str) and tool_id and tool_id != self._tool_id:
            if self._pending and self._think_state != "inside":
                pending, self._pending = self._pending, ""
                events += self._delta("text", pending)
            events += self._close()
            self._index += 1
            self._open = "tool_use"
            self._tool_id = tool_id
            self._saw_tool = True
            client_name = self._names.get(str(name or ""), str(name or ""))
            block = {"type": "tool_use", "id": tool_id, "name": client_name, "input": {}}
            self.blocks.append(block)
            self._tool_inputs[self._index] = ""
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": self._index, "content_block": block},
                )
            )
        fragment = payload.get("input")
        if self._open == "tool_use" and isinstance(fragment, str | Mapping) and fragment != "":
            text = fragment if isinstance(fragment, str) else json.dumps(fragment)
            self._tool_inputs[self._index] += text
            self._output_chars += len(text)
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": self._index,
                        "delta": {"type": "input_json_delta", "partial_json": text},
                    },
                )
            )
        if payload.get("stop") is True and self._open == "tool_use":
            events += self._close()
        return events


_CALLED = re.compile(r"\[Called\s+(\w+)\s+with\s+args:\s*", re.IGNORECASE)
_DECODER = json.JSONDecoder()


def bracket_calls(text: str) -> list[tuple[int, int, str, dict[str, Any]]]:
    """The legacy tool calls written as text, ``[Called <name> with args: {…}]``: each as
    ``(start, end, name, arguments)`` (``text[start:end]`` is the whole bracket); ones whose
    arguments are not a JSON object are left as text."""
    found: list[tuple[int, int, str, dict[str, Any]]] = []
    at = 0
    while (match := _CALLED.search(text, at)) is not None:
        at = match.end()
        try:
            arguments, end = _DECODER.raw_decode(text, at)
        except ValueError:
            continue
        close = end
        while close < len(text) and text[close].isspace():
            close += 1
        if not isinstance(arguments, dict) or close >= len(text) or text[close] != "]":
            continue
        found.append((match.start(), close + 1, match.group(1), arguments))
        at = close + 1
    return found


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that begins ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


def status_of_exception(text: str) -> int:
    """The HTTP status an ``exception`` frame stands for (by its type and message)."""
    lowered = text.lower()
    if "throttl" in lowered or "toomanyrequests" in lowered:
        return 429
    if "quota" in lowered or "monthly" in lowered:
        return 402
    if "validation" in lowered:
        return 400
    if "accessdenied" in lowered:
        return 403
    return 500


def sse(events: Iterable[ClaudeEvent]) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
        for name, data in events
    )


def exception_text(event: Event) -> str:
    """The message of an ``exception``/``error`` frame."""
    message = event.headers.get(":error-message")
    if isinstance(message, str) and message:
        return message
    try:
        body = json.loads(event.payload)
    except ValueError:
        return event.payload.decode("utf-8", "replace")[:500]
    if isinstance(body, Mapping):
        for key in ("message", "Message", "errorMessage"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return event.payload.decode("utf-8", "replace")[:500]


class KiroReply:
    """A successful Kiro answer as Claude (see the module docstring). ``first`` holds the
    events the adapter already decoded (it looks at the first frame before answering)."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        decoder: EventStreamDecoder,
        first: list[Event],
        assembler: ClaudeAssembler,
        stream: bool,
    ) -> None:
        self._response = response
        self._decoder = decoder
        self._first = first
        self._assembler = assembler
        self._stream = stream

    @property
    def status(self) -> int:
        return 200

    @property
    def headers(self) -> Mapping[str, str]:
        return {"Content-Type": "text/event-stream" if self._stream else "application/json"}

    async def _events(self) -> AsyncIterator[list[ClaudeEvent]]:
        assembler = self._assembler
        batches: list[list[Event]] = [self._first]
        self._first = []
        failed: str | None = None
        try:
            yield assembler.start()
            for batch in batches:
                out, failed = self._convert(batch)
                yield out
                if failed is not None:
                    break
            if failed is None:
                async for data in self._response.content.iter_any():
                    out, failed = self._convert(self._decoder.feed(data))
                    yield out
                    if failed is not None:
                        break
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(describe_error(exc)) from None
        except EventStreamError as exc:
            raise UpstreamUnavailable(f"bad Kiro event stream: {exc}") from None
        if failed is not None:
            raise StreamFailed(failed, status_of_exception(failed))
        if self._decoder.pending:
            raise UpstreamUnavailable("Kiro event stream truncated")
        yield assembler.finish()

    def _convert(self, events: list[Event]) -> tuple[list[ClaudeEvent], str | None]:
        out: list[ClaudeEvent] = []
        for event in events:
            if event.message_type != "event":
                kind = event.event_type or event.message_type
                return out, f"{kind}: {exception_text(event)}"
            try:
                payload = json.loads(event.payload) if event.payload else {}
            except ValueError:
                continue
            if isinstance(payload, Mapping):
                out += self._assembler.feed(payload)
        return out, None

    async def chunks(self) -> AsyncIterator[bytes]:
        async for batch in self._events():
            if batch:
                yield sse(batch)

    async def read(self) -> bytes:
        try:
            async for _ in self._events():
                pass
        except StreamFailed as exc:
            raise UpstreamUnavailable(f"Kiro answer broke off: {exc}") from None
        return json.dumps(self._assembler.message(), ensure_ascii=False).encode()

    def close(self) -> None:
        self._response.release()
