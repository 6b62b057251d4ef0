"""Protocol converters: every client and upstream wire protocol, through one neutral model.

A :class:`Converter` reads and writes one protocol — requests, whole responses, streams and
error bodies — to and from the neutral model of :mod:`.neutral`. Converting a request from
protocol A to protocol B is ``B.render_request(A.parse_request(body))``; a stream is read by
B's :class:`StreamReader` and written by A's :class:`StreamWriter`, event by event as the
bytes arrive (:class:`StreamTranslator`), never buffered to the end. So N protocols take N
converters, and a request costs at most one conversion each way; the gateway passes bodies
of the same protocol through untouched.

Built in: ``openai`` (Chat Completions), ``claude`` (Anthropic Messages), ``gemini``
(generateContent) and ``openaiResponses`` (Responses). Third parties add protocols with the
hook ``cfgstore_gateway_converters`` (entry-point group ``cfgstore``, like adapters); a
converter registered under a built-in name replaces it.

What a protocol cannot express is dropped with a debug log line, never an error: converters
accept any JSON value (wrong types read as absent) and never raise on content, except a
stream reader, which raises :class:`~.common.StreamFailed` when the upstream stream carries
an error event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import attrs

from cfgstore_gateway.protocols import claude, gemini, openai_chat, responses
from cfgstore_gateway.protocols.common import StreamFailed
from cfgstore_gateway.protocols.neutral import ChatRequest, ChatResponse, Finish, StreamEvent, Usage

__all__ = [
    "BUILT_IN",
    "Converter",
    "ConverterRegistry",
    "StreamFailed",
    "StreamReader",
    "StreamTranslator",
    "StreamWriter",
]

log = logging.getLogger("cfgstore_gateway.protocols")


class StreamReader(Protocol):
    """An upstream stream's bytes, as they arrive, to neutral events. The events of one
    stream start with one ``Start`` and end with one ``Finish`` (made up when the
    upstream left them out)."""

    def feed(self, chunk: bytes) -> list[StreamEvent]: ...

    def close(self) -> list[StreamEvent]:
        """The events left at the end of the stream, the ``Finish`` included."""
        ...


class StreamWriter(Protocol):
    """Neutral events to a client stream's bytes (b"" when an event shows nothing)."""

    def write(self, event: StreamEvent) -> bytes: ...

    def error(self, status: int, message: str) -> bytes:
        """An error event in this protocol's shape; the stream ends after it."""
        ...


@runtime_checkable
class Converter(Protocol):
    """One wire protocol, to and from the neutral model (see the module docstring)."""

    @property
    def name(self) -> str: ...

    def parse_request(self, body: Mapping[str, Any], model: str | None = None) -> ChatRequest:
        """A request body as a neutral request; ``model`` when the protocol carries it
        outside the body (Gemini's URL)."""
        ...

    def render_request(self, request: ChatRequest) -> dict[str, Any]: ...

    def parse_response(self, body: Mapping[str, Any]) -> ChatResponse: ...

    def render_response(self, response: ChatResponse) -> dict[str, Any]: ...

    def stream_reader(self) -> StreamReader: ...

    def stream_writer(self, model: str) -> StreamWriter: ...

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """An error answer in this protocol's shape, for HTTP status ``status``."""
        ...


@attrs.frozen
class ModuleConverter:
    """A converter whose functions and stream classes live in one module (the built-ins)."""

    name: str
    module: ModuleType

    def parse_request(self, body: Mapping[str, Any], model: str | None = None) -> ChatRequest:
        result: ChatRequest = self.module.parse_request(body, model)
        return result

    def render_request(self, request: ChatRequest) -> dict[str, Any]:
        result: dict[str, Any] = self.module.render_request(request)
        return result

    def parse_response(self, body: Mapping[str, Any]) -> ChatResponse:
        result: ChatResponse = self.module.parse_response(body)
        return result

    def render_response(self, response: ChatResponse) -> dict[str, Any]:
        result: dict[str, Any] = self.module.render_response(response)
        return result

    def stream_reader(self) -> StreamReader:
        reader: StreamReader = self.module.StreamReader()
        return reader

    def stream_writer(self, model: str) -> StreamWriter:
        writer: StreamWriter = self.module.StreamWriter(model)
        return writer

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        result: dict[str, Any] = self.module.error_body(status, message)
        return result


BUILT_IN: tuple[Converter, ...] = (
    ModuleConverter(openai_chat.NAME, openai_chat),
    ModuleConverter(claude.NAME, claude),
    ModuleConverter(gemini.NAME, gemini),
    ModuleConverter(responses.NAME, responses),
)


class ConverterRegistry:
    """Converters by protocol name: the built-ins, then registered ones (a later one of
    the same name wins, with a log line)."""

    def __init__(self, converters: tuple[Converter, ...] = BUILT_IN) -> None:
        self._by_name: dict[str, Converter] = {}
        for converter in converters:
            self.register(converter)

    def register(self, converter: Converter) -> None:
        if not isinstance(converter, Converter) or not isinstance(converter.name, str):
            raise TypeError(f"{converter!r} does not implement the gateway Converter protocol")
        if converter.name in self._by_name:
            log.info("protocol converter %s replaced by %r", converter.name, converter)
        self._by_name[converter.name] = converter

    def get(self, name: str) -> Converter | None:
        return self._by_name.get(name)

    def __getitem__(self, name: str) -> Converter:
        return self._by_name[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)


class StreamTranslator:
    """An upstream stream in protocol B to a client stream in protocol A, chunk by chunk."""

    def __init__(self, reader: StreamReader, writer: StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.finished = False
        self.usage: Usage | None = None  # the Finish event's usage, once seen

    def feed(self, chunk: bytes) -> bytes:
        return self._write(self._reader.feed(chunk))

    def close(self) -> bytes:
        return self._write(self._reader.close())

    def _write(self, events: list[StreamEvent]) -> bytes:
        out = bytearray()
        for event in events:
            if self.finished:
                break
            out += self._writer.write(event)
            if isinstance(event, Finish):
                self.finished = True
                self.usage = event.usage
        return bytes(out)
