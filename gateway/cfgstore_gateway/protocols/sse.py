"""Server-sent events: an incremental parser and the frame writer.

The parser takes bytes as they arrive, split anywhere (inside a line, inside a UTF-8
character, between ``\\r`` and ``\\n``), and returns each complete event once its blank line
has arrived. Comment lines (``:``) and fields other than ``event`` and ``data`` are ignored;
several ``data`` lines of one event are joined with ``\\n``, as the specification says.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from typing import Any

import attrs

from cfgstore_gateway.protocols.neutral import dropped


@attrs.frozen
class ServerEvent:
    event: str | None
    data: str


class SseParser:
    """Feed bytes, get the events they complete."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[ServerEvent]:
        self._pending += self._decoder.decode(chunk)
        return self._drain(final=False)

    def close(self) -> list[ServerEvent]:
        """The events completed by the end of the stream (a last event without its blank
        line counts)."""
        self._pending += self._decoder.decode(b"", final=True)
        events = self._drain(final=True)
        if self._pending:
            events += self._line(self._pending)
            self._pending = ""
        return events + self._dispatch()

    def _drain(self, *, final: bool) -> list[ServerEvent]:
        events: list[ServerEvent] = []
        while True:
            cut = _line_end(self._pending, final=final)
            if cut is None:
                return events
            line, self._pending = self._pending[: cut[0]], self._pending[cut[1] :]
            events += self._line(line)

    def _line(self, line: str) -> list[ServerEvent]:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return []
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return []

    def _dispatch(self) -> list[ServerEvent]:
        if not self._data and self._event is None:
            return []
        event = ServerEvent(self._event, "\n".join(self._data))
        self._event, self._data = None, []
        return [event] if event.data or event.event else []


def _line_end(text: str, *, final: bool) -> tuple[int, int] | None:
    """(end of the first line, start of the next) in ``text``, or ``None`` when the first
    line is not complete yet (a trailing ``\\r`` may still be followed by ``\\n``). Searched
    with ``str.find`` (a character loop cost more than the JSON of the events)."""
    newline = text.find("\n")
    carriage = text.find("\r", 0, newline if newline >= 0 else len(text))
    if carriage < 0:
        return (newline, newline + 1) if newline >= 0 else None
    if carriage + 1 < len(text):
        return carriage, carriage + (2 if text[carriage + 1] == "\n" else 1)
    return (carriage, carriage + 1) if final else None


def frame(data: Any, event: str | None = None) -> bytes:
    """One event: ``event: <name>`` when named, then ``data: <compact JSON>`` (a string is
    written as it is), then the blank line."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


class SseJsonReader:
    """What every stream reader shares: SSE bytes in, each event's data read as a JSON
    object by :meth:`_read` (the protocol's), once the stream is finished nothing more, and
    :meth:`_end` at the end of the bytes. Data that is not JSON is left out with a debug
    line (:data:`protocol` names the protocol in it)."""

    protocol = ""

    def __init__(self) -> None:
        self._sse = SseParser()
        self._finished = False

    def feed(self, chunk: bytes) -> list[Any]:
        return [e for event in self._sse.feed(chunk) for e in self._data(event.data)]

    def close(self) -> list[Any]:
        return [e for event in self._sse.close() for e in self._data(event.data)] + self._end()

    def _data(self, data: str) -> list[Any]:
        if self._finished:
            return []
        try:
            value = json.loads(data)
        except ValueError:
            dropped(self.protocol, "a stream event that is not JSON")
            return []
        return self._read(value if isinstance(value, Mapping) else {})

    def _read(self, event: Mapping[str, Any]) -> list[Any]:
        raise NotImplementedError

    def _end(self) -> list[Any]:
        raise NotImplementedError
