"""Answers a poll can skip: JSON with an ``ETag``, ``304 Not Modified`` when unchanged.

:func:`json_with_etag` serialises the answer once, names it by a hash of its bytes (a weak
tag: the same JSON may travel gzip-encoded or not) and answers ``304`` with no body when
the request's ``If-None-Match`` lists that tag (or ``*``). A console polling every two
seconds then moves a few hundred bytes of headers while nothing it shows has changed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import hdrs, web


def etag_of(body: bytes) -> str:
    return 'W/"' + hashlib.blake2b(body, digest_size=8).hexdigest() + '"'


def encoded(payload: Any) -> tuple[bytes, str]:
    """``payload`` as the JSON bytes these answers send, and their tag."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return body, etag_of(body)


def json_with_etag(request: web.Request, payload: Any) -> web.Response:
    """``payload`` as JSON with its ``ETag`` (``Cache-Control: no-cache``: always asked
    again), or ``304`` when ``If-None-Match`` already names it."""
    body, tag = encoded(payload)
    headers = {hdrs.ETAG: tag, hdrs.CACHE_CONTROL: "no-cache"}
    if _listed(request.headers.get(hdrs.IF_NONE_MATCH, ""), tag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


def _listed(if_none_match: str, tag: str) -> bool:
    """Whether ``If-None-Match`` lists ``tag`` (weak comparison, RFC 9110 §13.1.2)."""
    opaque = tag.removeprefix("W/")
    for item in if_none_match.split(","):
        item = item.strip()
        if item == "*" or item.removeprefix("W/") == opaque:
            return True
    return False
