"""Token usage of a stream passed through untouched (the client speaks the upstream's protocol).

A pass-through writes the upstream's bytes as they come; nothing parses them. The usage is
still wanted (the access log, plugins' :class:`~cfgstore_gateway.plugin_api.Outcome`), so
:class:`UsageSniffer` watches the passing bytes for the events that carry it at the cost of
one substring search per chunk: the SSE ``data:`` lines that hold ``usage`` (OpenAI's,
Claude's and Responses' ``usage``, Gemini's ``usageMetadata``) are kept, and only once the
stream is over (:meth:`UsageSniffer.usage`, after the client has its last byte) handed to
the upstream converter's own :class:`~cfgstore_gateway.protocols.StreamReader`, whose
``Finish`` tells the usage. Lines split between chunks are joined (only the unfinished tail
is kept). A reader that raises (an error event) leaves the usage unknown; nothing here ever
fails the stream.
"""

from __future__ import annotations

import logging

from cfgstore_gateway.protocols import Converter
from cfgstore_gateway.protocols import neutral as n

log = logging.getLogger("cfgstore_gateway.protocols")

_MARK = b"usage"
_MAX_KEPT = 1 << 20
"""Bytes of usage lines (and of an unfinished line) kept at most: past it, a stream that is
not SSE or one that repeats its usage endlessly gives what was kept."""


class UsageSniffer:
    """Feed every chunk of a passed-through stream; :meth:`usage` at its end."""

    def __init__(self, upstream: Converter) -> None:
        self._upstream = upstream
        self._tail = b""
        self._lines: list[bytes] = []
        self._kept = 0

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self._tail = data if len(data) <= _MAX_KEPT else b""
            return
        self._tail = data[cut + 1 :] if cut + 1 < len(data) else b""
        found = data.find(_MARK, 0, cut)
        while found >= 0 and self._kept < _MAX_KEPT:  # only the lines around a mark
            start = data.rfind(b"\n", 0, found) + 1
            end = data.find(b"\n", found)
            if data.startswith(b"data:", start):
                self._lines.append(data[start:end].rstrip(b"\r"))
                self._kept += end - start
            found = data.find(_MARK, end, cut)

    def usage(self) -> n.Usage | None:
        """The usage the stream reported (``None``: it said nothing readable)."""
        if self._tail.startswith(b"data:") and _MARK in self._tail:
            self._lines.append(self._tail.rstrip(b"\r"))
        if not self._lines:
            return None
        try:
            reader = self._upstream.stream_reader()
            events = reader.feed(b"".join(line + b"\n\n" for line in self._lines))
            events += reader.close()
        except Exception as exc:  # an error event, a converter's bug: usage unknown
            log.debug("no usage from a passed-through stream: %s", exc)
            return None
        for event in events:
            if isinstance(event, n.Finish):
                return event.usage
        return None
