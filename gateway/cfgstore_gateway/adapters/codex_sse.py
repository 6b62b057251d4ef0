"""Reading the ChatGPT Codex backend's answers (aiclient-protocols §3.7): its Responses SSE
stream into the replies the gateway hands on.

The backend always streams. :class:`CodexEvents` reads the stream event by event (chunks
cut anywhere: :class:`~cfgstore_gateway.protocols.sse.SseParser`), drops what the Node
service drops (data that is not a JSON object with a ``type``, output items without a type,
function calls without a name or an id), gives a function call without ``call_id`` its
``id`` (and the other way round), keeps every ``response.output_item.done`` item and puts
them into ``response.completed``'s ``output`` when the backend left that empty.

* :func:`stream_reply`: the stream as Responses SSE, event by event. Events before the
  first output are held back: an ``error`` (or ``response.failed``) event there, or a
  stream that ends before any output, makes the reply an error answer instead (so the
  gateway can still switch to another account), 429 with the quota's reset time when the
  error says the account's quota is spent (:func:`quota_error`).
* :func:`whole_reply`: the whole stream collected into one Responses object: the
  ``response.completed`` event's, else one made of the collected items and text deltas;
  no completion and no output at all is an error answer
  (``stream error: stream disconnected before completion: …``, as the Node service says).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from cfgstore.model.timefmt import now_ms
from cfgstore_gateway.adapters import UpstreamReply, UpstreamUnavailable
from cfgstore_gateway.adapters.buffered_reply import BufferedReply
from cfgstore_gateway.adapters.openai_compat import AiohttpReply, describe_error
from cfgstore_gateway.protocols.common import new_id, now_s
from cfgstore_gateway.protocols.sse import ServerEvent, SseParser, frame

log = logging.getLogger("cfgstore_gateway.codex")

QUOTA_CODES = frozenset({"insufficient_quota", "usage_limit_reached"})
"""Error ``code``/``type`` values saying the account's quota is spent: the node is switched."""

BEFORE_OUTPUT = frozenset({"response.created", "response.in_progress", "response.queued"})
"""Events that come before any output: held back until the stream shows it will answer
(as are events outside ``response.*``, such as the backend's rate-limit notices)."""


def is_output(kind: str) -> bool:
    """Whether an event of this type commits the stream (the answer has begun)."""
    return kind.startswith("response.") and kind not in BEFORE_OUTPUT


DISCONNECTED = "stream error: stream disconnected before completion: "
MAX_ERROR_BYTES = 256 * 1024


# ------------------------------------------------------------------------------ events


def output_item(item: Any) -> dict[str, Any] | None:
    """An output item fit to hand on (a function call with both ids), ``None`` when the
    Node service would drop it."""
    if not isinstance(item, Mapping) or not isinstance(item.get("type"), str) or not item["type"]:
        return None
    if item["type"] != "function_call":
        return dict(item)
    name, item_id, call_id = (_text(item.get(k)) for k in ("name", "id", "call_id"))
    if not name or not (item_id or call_id):
        return None
    return {**item, "id": item_id or call_id, "call_id": call_id or item_id}


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


class CodexEvents:
    """Codex SSE bytes in, the events to hand on out (see the module docstring)."""

    def __init__(self) -> None:
        self._sse = SseParser()
        self._done_items: dict[int, dict[str, Any]] = {}
        self._unindexed: list[dict[str, Any]] = []
        self._added: dict[str, dict[str, Any]] = {}
        self._texts: dict[str, str] = {}
        self.completed: dict[str, Any] | None = None
        """The ``response`` of the ``response.completed`` (or ``.incomplete``) event, its
        output patched."""

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        return self._read(self._sse.feed(chunk))

    def close(self) -> list[dict[str, Any]]:
        return self._read(self._sse.close())

    def _read(self, events: list[ServerEvent]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event in events:
            if event.data.strip() in ("", "[DONE]"):
                continue
            try:
                data = json.loads(event.data)
            except ValueError:
                log.debug("codex: stream data that is not JSON dropped")
                continue
            if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                log.debug("codex: stream event without a type dropped")
                continue
            kept = self._event(data)
            if kept is not None:
                out.append(kept)
        return out

    def _event(self, data: dict[str, Any]) -> dict[str, Any] | None:
        kind = data["type"]
        if kind in ("response.output_item.added", "response.output_item.done"):
            item = output_item(data.get("item"))
            if item is None:
                log.warning("codex: malformed output item dropped from %s", kind)
                return None
            data = {**data, "item": item}
            key = _text(item.get("id")) or _text(item.get("call_id"))
            if kind == "response.output_item.added" and key:
                self._added[key] = item
            elif kind == "response.output_item.done":
                index = data.get("output_index")
                if isinstance(index, int) and not isinstance(index, bool):
                    self._done_items[index] = item
                else:
                    self._unindexed.append(item)
        elif kind == "response.output_text.delta":
            item_id, delta = data.get("item_id"), data.get("delta")
            if isinstance(item_id, str) and isinstance(delta, str):
                self._texts[item_id] = self._texts.get(item_id, "") + delta
        elif kind == "response.output_text.done":
            item_id, text = data.get("item_id"), data.get("text")
            if isinstance(item_id, str) and isinstance(text, str) and text:
                self._texts[item_id] = text
        elif kind in ("response.completed", "response.incomplete"):
            response = data.get("response")
            response = dict(response) if isinstance(response, Mapping) else {}
            self._patch(response)
            self.completed = response
            data = {**data, "response": response}
        return data

    @property
    def has_output(self) -> bool:
        return bool(self._done_items or self._unindexed or self._added or self._texts)

    def _collected(self) -> list[dict[str, Any]]:
        return [self._done_items[i] for i in sorted(self._done_items)] + self._unindexed

    def _patch(self, response: dict[str, Any]) -> None:
        output = response.get("output")
        if isinstance(output, list):
            kept = [item for item in map(output_item, output) if item is not None]
            if len(kept) != len(output):
                log.warning("codex: malformed output items dropped from response.completed")
            response["output"] = output = kept
        if not output:
            collected = self._collected()
            if collected or not isinstance(output, list):
                response["output"] = collected

    def whole(self) -> dict[str, Any] | None:
        """The collected answer (``None`` when there is none: no completion, no output)."""
        response = self.completed
        if response is None:
            if not self.has_output:
                return None
            log.warning("codex: no response.completed; the answer is made of what arrived")
            response = {
                "id": new_id("resp_"),
                "object": "response",
                "created_at": now_s(),
                "status": "completed",
                "model": "unknown",
                "output": self._collected() or list(self._added.values()),
            }
        self._fill_texts(response)
        return response

    def _fill_texts(self, response: dict[str, Any]) -> None:
        """Assistant messages without text get the text their deltas carried."""
        output = response.get("output")
        if not isinstance(output, list):
            return
        for index, item in enumerate(output):
            if not isinstance(item, Mapping) or item.get("type") != "message":
                continue
            text = self._texts.get(_text(item.get("id")))
            if text is None:
                continue
            content = item.get("content")
            if not isinstance(content, list) or not content:
                content = [{"type": "output_text", "text": text, "annotations": []}]
            else:
                content = [
                    {**part, "text": text}
                    if isinstance(part, Mapping)
                    and part.get("type") == "output_text"
                    and not part.get("text")
                    else part
                    for part in content
                ]
            output[index] = {**item, "content": content}


# ------------------------------------------------------------------------------ errors


def quota_reset_ms(error: Mapping[str, Any], now: int) -> int | None:
    """When the account's quota comes back, from Codex's ``resets_at`` (epoch seconds, or
    ms) or ``resets_in_seconds``; ``None`` when the error names no time."""
    at = error.get("resets_at")
    if isinstance(at, (int, float)) and not isinstance(at, bool) and at > 0:
        return int(at * 1000) if at < 1e11 else int(at)
    within = error.get("resets_in_seconds")
    if isinstance(within, (int, float)) and not isinstance(within, bool) and within >= 0:
        return now + int(within * 1000)
    return None


def error_of(document: Any) -> Mapping[str, Any]:
    """The error object of an error body or an ``error`` / ``response.failed`` event."""
    if not isinstance(document, Mapping):
        return {}
    response = document.get("response")
    error = response.get("error") if isinstance(response, Mapping) else None
    if isinstance(error, Mapping):
        return error
    error = document.get("error")
    return error if isinstance(error, Mapping) else document


def is_quota_error(error: Mapping[str, Any]) -> bool:
    return error.get("code") in QUOTA_CODES or error.get("type") in QUOTA_CODES


def quota_error(error: Mapping[str, Any]) -> BufferedReply:
    """The reply for an error event or body: 429 (with the reset time when named) when the
    account's quota is spent, else 502, the upstream's message kept."""
    message = error.get("message") if isinstance(error.get("message"), str) else None
    if is_quota_error(error):
        reset = quota_reset_ms(error, now_ms())
        text = message or "the account's Codex quota is spent"
        body = {"error": {**error, "message": f"Codex API error: {text}"}}
        return BufferedReply(429, body, reset)
    text = message or json.dumps(dict(error))[:500]
    return BufferedReply(502, api_error(f"Codex API error: {text}"))


def api_error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "api_error"}}


async def error_answer(response: aiohttp.ClientResponse) -> UpstreamReply:
    """A non-2xx answer: read whole; its quota reset time (``usage_limit_reached`` with
    ``resets_at``/``resets_in_seconds``) on the reply."""
    try:
        body = await response.content.read(MAX_ERROR_BYTES)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamUnavailable(describe_error(exc)) from None
    finally:
        response.release()
    reset = None
    if response.status in (429, 403):
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        error = error_of(document)
        if response.status == 429 or is_quota_error(error):
            reset = quota_reset_ms(error, now_ms())
    kept = {k: v for k in ("Content-Type", "Retry-After") if (v := response.headers.get(k))}
    return BufferedReply(response.status, body, reset, kept or None)


# ------------------------------------------------------------------------------ replies


async def whole_reply(response: aiohttp.ClientResponse) -> UpstreamReply:
    """The stream read to its end, one Responses object (see the module docstring)."""
    events = CodexEvents()
    try:
        async for chunk in response.content.iter_any():
            failure = _failure(events.feed(chunk))
            if failure is not None:
                return failure
        failure = _failure(events.close())
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamUnavailable(describe_error(exc)) from None
    finally:
        response.release()
    if failure is not None:
        return failure
    whole = events.whole()
    if whole is None:
        message = DISCONNECTED + "stream closed before response.completed"
        return BufferedReply(502, api_error(message))
    return BufferedReply(200, whole)


def _failure(events: list[dict[str, Any]]) -> BufferedReply | None:
    for event in events:
        if event["type"] in ("error", "response.failed"):
            return quota_error(error_of(event))
    return None


async def stream_reply(response: aiohttp.ClientResponse) -> UpstreamReply:
    """The stream handed on event by event; its start held back until the first output
    (see the module docstring)."""
    events = CodexEvents()
    held: list[dict[str, Any]] = []
    chunks = response.content.iter_any()
    try:
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                arrived, ended = events.close(), True
            else:
                arrived, ended = events.feed(chunk), False
            for index, event in enumerate(arrived):
                if event["type"] in ("error", "response.failed"):
                    response.release()
                    return quota_error(error_of(event))
                if is_output(event["type"]):
                    held += arrived[index:]
                    return CodexStream(response, chunks, events, held, ended)
                held.append(event)
            if ended:
                response.release()
                message = DISCONNECTED + "stream closed before any output"
                return BufferedReply(502, api_error(message))
    except (aiohttp.ClientError, TimeoutError) as exc:
        response.release()
        raise UpstreamUnavailable(describe_error(exc)) from None


class CodexStream(AiohttpReply):
    """The committed stream: the held events, then each chunk's events as they complete,
    re-framed as ``event: <type>`` + ``data: <json>``."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        chunks: AsyncIterator[bytes],
        events: CodexEvents,
        held: list[dict[str, Any]],
        ended: bool,
    ) -> None:
        super().__init__(response)
        self._chunks = chunks
        self._events = events
        self._held = held
        self._ended = ended

    @property
    def headers(self) -> Mapping[str, str]:
        return {"Content-Type": "text/event-stream"}

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        held, self._held = self._held, []
        yield _frames(held)
        if self._ended:
            return
        try:
            async for chunk in self._chunks:
                out = _frames(self._events.feed(chunk))
                if out:
                    yield out
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(describe_error(exc)) from None
        out = _frames(self._events.close())
        if out:
            yield out


def _frames(events: list[dict[str, Any]]) -> bytes:
    return b"".join(frame(event, event["type"]) for event in events)
