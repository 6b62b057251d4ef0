"""Compressed admin answers: a JSON answer of :data:`MIN_COMPRESSED_BYTES` or more goes
out gzip- (or deflate-) encoded when the client accepts it (``Accept-Encoding``), with
``Vary: Accept-Encoding``. The console's polls of a large pool are mostly repeated keys,
so they shrink several times over. aiohttp compresses a body larger than a few KiB in its
executor, not on the event loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

MIN_COMPRESSED_BYTES = 1024
"""Smaller answers go as they are: gzip's framing would eat most of the gain."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def compress_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if (
        isinstance(response, web.Response)
        and response.content_type == "application/json"
        and isinstance(response.body, bytes)
        and len(response.body) >= MIN_COMPRESSED_BYTES
    ):
        response.headers.add(hdrs.VARY, hdrs.ACCEPT_ENCODING)
        response.enable_compression()
    return response
