"""Token usage of a stream passed through untouched (the client speaks the upstream's protocol).

A pass-through writes the upstream's bytes as they come; nothing parses them. The usage is
still wanted (the access log, plugins' :class:`~cfgstore_gateway.plugin_api.Outcome`), so
:class:`UsageSniffer` watches the passing bytes for the events that carry it, at the cost of
one substring search per chunk: only the SSE ``data:`` lines that hold ``sage`` (OpenAI's
and Claude's ``usage``, Gemini's ``usageMetadata``) are handed to the upstream converter's own
:class:`~cfgstore_gateway.protocols.StreamReader`, whose ``Finish`` tells the usage at the
end. Lines split between chunks are joined (only the unfinished tail is kept). A reader that
raises (an error event) or a converter without a reader leaves the usage unknown; nothing
here ever fails the stream.
"""

from __future__ import annotations

import logging

from cfgstore_gateway.protocols import Converter, StreamReader
from cfgstore_gateway.protocols import neutral as n

log = logging.getLogger("cfgstore_gateway.protocols")

_MARK = b"sage"
"""In ``usage``, ``usageMetadata`` and ``Usage``: the events worth reading."""
_MAX_TAIL = 1 << 20
"""An unfinished line longer than this is dropped (a stream that is not SSE)."""


class UsageSniffer:
    """Feed every chunk of a passed-through stream; :meth:`usage` at its end."""

    def __init__(self, upstream: Converter) -> None:
        self._upstream = upstream
        self._reader: StreamReader | None = None
        self._tail = b""
        self._broken = False
        self._finished: n.Finish | None = None

    def feed(self, chunk: bytes) -> None:
        if self._broken:
            return
        data = self._tail + chunk if self._tail else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self._tail = data if len(data) <= _MAX_TAIL else b""
            return
        self._tail = data[cut + 1 :] if cut + 1 < len(data) else b""
        if _MARK in data[: cut + 1]:
            self._read(data[: cut + 1])

    def _read(self, lines: bytes) -> None:
        wanted = [
            line.rstrip(b"\r")
            for line in lines.split(b"\n")
            if _MARK in line and line.startswith(b"data:")
        ]
        if not wanted:
            return
        try:
            if self._reader is None:
                self._reader = self._upstream.stream_reader()
            self._seen(self._reader.feed(b"".join(line + b"\n\n" for line in wanted)))
        except Exception as exc:  # an error event, a converter's bug: usage unknown
            log.debug("no usage from a passed-through stream: %s", exc)
            self._broken = True

    def usage(self) -> n.Usage | None:
        """The usage the stream reported (``None``: it said nothing readable)."""
        if self._broken or (self._reader is None and self._finished is None):
            return None
        if self._tail and _MARK in self._tail:
            self._read(self._tail)
            self._tail = b""
        if self._finished is None and self._reader is not None:
            try:
                self._seen(self._reader.close())
            except Exception as exc:
                log.debug("no usage from a passed-through stream: %s", exc)
                return None
            finally:
                self._reader = None
        return self._finished.usage if self._finished is not None else None

    def _seen(self, events: list[n.StreamEvent]) -> None:
        for event in events:
            if isinstance(event, n.Finish) and self._finished is None:
                self._finished = event
