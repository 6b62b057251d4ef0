"""An upstream answer already read whole, for every adapter: an error body read off the
wire, an error the adapter builds itself (a failure event turned into an HTTP error) or a
stream it collected into one document.

It satisfies :class:`~cfgstore_gateway.adapters.UpstreamReply` and carries
``quota_reset_ms`` (:func:`~cfgstore_gateway.adapters.quota_reset_of`) when the upstream
named when its quota comes back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

JSON_HEADERS: Mapping[str, str] = {"Content-Type": "application/json"}


class BufferedReply:
    """``body`` as bytes (a mapping is sent as JSON) with ``status`` and ``headers``
    (default: JSON's content type only; given ones are kept as they are, even empty) and the
    quota's reset time in epoch ms, ``None`` when none was named."""

    def __init__(
        self,
        status: int,
        body: Mapping[str, Any] | bytes,
        quota_reset_ms: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self._body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.headers: Mapping[str, str] = dict(JSON_HEADERS if headers is None else headers)
        self.quota_reset_ms = quota_reset_ms

    async def read(self) -> bytes:
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._body

    def close(self) -> None:
        pass
