"""The AWS event-stream framing (``application/vnd.amazon.eventstream``) of Kiro's answers.

A message is ``total length`` (4 B, big-endian) + ``headers length`` (4 B) + the prelude's
CRC-32 (of those 8 bytes) + the header block + the payload + the message's CRC-32 (of every
byte before it). A header is its name's length (1 B), the name (UTF-8), a value type (1 B)
and the value: 0 true, 1 false, 2 int8, 3 int16, 4 int32, 5 int64, 6 bytes (2-byte length),
7 string (2-byte length, UTF-8), 8 timestamp (int64 ms), 9 UUID (16 B). CRCs are IEEE
CRC-32 (:func:`zlib.crc32`).

:class:`EventStreamDecoder` takes the body in chunks cut anywhere and yields whole
:class:`Event` values as soon as their last byte arrived; a bad CRC, a length out of range or
a malformed header block raises :class:`EventStreamError` (the stream cannot be resynchronised
after that). :func:`encode_event` builds one message (the test stub's side, and the
decoder's property tests).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Iterator, Mapping

import attrs

PRELUDE = 12
"""Total length, headers length, prelude CRC."""
MIN_MESSAGE = PRELUDE + 4
MAX_MESSAGE = 16 * 1024 * 1024
"""The largest message accepted (AWS's own limit is far smaller); bounds the buffer."""

HeaderValue = bool | int | bytes | str | uuid.UUID


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (CRC mismatch, bad lengths or headers)."""


@attrs.frozen
class Event:
    """One decoded message."""

    headers: Mapping[str, HeaderValue]
    """Shared between the events of one decoder that carry the same header block: read
    it, never change it."""
    payload: bytes

    @property
    def message_type(self) -> str:
        value = self.headers.get(":message-type", "event")
        return value if isinstance(value, str) else "event"

    @property
    def event_type(self) -> str:
        value = self.headers.get(":event-type") or self.headers.get(":exception-type") or ""
        return value if isinstance(value, str) else ""


class EventStreamDecoder:
    """Incremental decoder: :meth:`feed` chunks, get the messages they complete.

    Header blocks repeat from message to message (the same event type, content type and
    message type): each distinct block is parsed once per decoder (up to
    :data:`HEADER_CACHE` of them) and its mapping shared by the events that carry it."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._headers: dict[bytes, Mapping[str, HeaderValue]] = {}

    @property
    def pending(self) -> int:
        """Bytes held for a message not complete yet (non-zero at the end: truncated)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Event]:
        buffer = self._buffer
        buffer += data
        events: list[Event] = []
        start = 0
        size = len(buffer)
        with memoryview(buffer) as view:
            while size - start >= PRELUDE:
                total, headers_length, prelude_crc = _PRELUDE.unpack_from(view, start)
                if zlib.crc32(view[start : start + 8]) != prelude_crc:
                    raise EventStreamError("event stream prelude CRC mismatch")
                if not MIN_MESSAGE <= total <= MAX_MESSAGE or headers_length > total - MIN_MESSAGE:
                    raise EventStreamError(f"event stream message length out of range ({total})")
                if size - start < total:
                    break
                end = start + total
                (message_crc,) = _CRC.unpack_from(view, end - 4)
                if zlib.crc32(view[start : end - 4]) != message_crc:
                    raise EventStreamError("event stream message CRC mismatch")
                header_end = start + PRELUDE + headers_length
                block = bytes(view[start + PRELUDE : header_end])
                headers = self._headers.get(block)
                if headers is None:
                    headers = _headers(block)
                    if len(self._headers) < HEADER_CACHE:
                        self._headers[block] = headers
                events.append(Event(headers, bytes(view[header_end : end - 4])))
                start = end
        if start:
            del buffer[:start]
        return events


_PRELUDE = struct.Struct(">III")
_CRC = struct.Struct(">I")
HEADER_CACHE = 64


def _headers(block: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    at = 0
    try:
        while at < len(block):
            size = block[at]
            name = block[at + 1 : at + 1 + size].decode()
            at += 1 + size
            kind = block[at]
            at += 1
            value: HeaderValue
            if kind in (0, 1):
                value = kind == 0
            elif kind in _FIXED:
                fmt = _FIXED[kind]
                (value,) = struct.unpack_from(fmt, block, at)
                at += struct.calcsize(fmt)
            elif kind in (6, 7):
                (length,) = struct.unpack_from(">H", block, at)
                raw = block[at + 2 : at + 2 + length]
                if len(raw) != length:
                    raise EventStreamError("event stream header value cut short")
                value = raw.decode() if kind == 7 else raw
                at += 2 + length
            elif kind == 9:
                raw = block[at : at + 16]
                if len(raw) != 16:
                    raise EventStreamError("event stream header value cut short")
                value = uuid.UUID(bytes=raw)
                at += 16
            else:
                raise EventStreamError(f"unknown event stream header type {kind}")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed event stream headers: {exc}") from None
    return headers


_FIXED = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}


def encode_event(headers: Mapping[str, HeaderValue], payload: bytes) -> bytes:
    """One message: booleans, ints (as int32 when they fit, else int64), strings, bytes and
    UUIDs as headers."""
    block = bytearray()
    for name, value in headers.items():
        raw_name = name.encode()
        block += bytes([len(raw_name)]) + raw_name
        if isinstance(value, bool):
            block += bytes([0 if value else 1])
        elif isinstance(value, int):
            if -(2**31) <= value < 2**31:
                block += b"\x04" + struct.pack(">i", value)
            else:
                block += b"\x05" + struct.pack(">q", value)
        elif isinstance(value, str):
            data = value.encode()
            block += b"\x07" + struct.pack(">H", len(data)) + data
        elif isinstance(value, bytes):
            block += b"\x06" + struct.pack(">H", len(value)) + value
        else:
            block += b"\x09" + value.bytes
    total = PRELUDE + len(block) + len(payload) + 4
    prelude = struct.pack(">II", total, len(block))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + bytes(block) + payload
    return message + struct.pack(">I", zlib.crc32(message))


def json_event(event_type: str, payload: bytes) -> bytes:
    """An ``event`` message of ``event_type`` carrying JSON, as Kiro sends them."""
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return encode_event(headers, payload)


def iter_events(data: bytes) -> Iterator[Event]:
    """Every message of a whole body; :class:`EventStreamError` when it is truncated."""
    decoder = EventStreamDecoder()
    yield from decoder.feed(data)
    if decoder.pending:
        raise EventStreamError("event stream truncated")
