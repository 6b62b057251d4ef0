"""The client API key check (aiclient-formats §2.2 ``REQUIRED_API_KEY``).

A request is let in when one of the places a client may put its key holds exactly the
configured key: ``Authorization: Bearer <key>``, ``x-api-key``, ``x-goog-api-key`` or the
query parameter ``key``. Keys are compared in constant time (``hmac.compare_digest`` on the
UTF-8 bytes), every offered key is compared, so the time taken tells nothing about which
place or how much of a key matched. An empty configured key lets nobody in (and the app
says so in the log once); the Node default ``"123456"`` works, with a warning at start.

Public paths (``/health``) skip the check. A refusal is ``401`` in the OpenAI error shape;
the offered key is never logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from aiohttp import web

from cfgstore_gateway.errors import error_response

PUBLIC_PATHS = frozenset({"/health"})


def offered_keys(request: web.Request) -> Iterator[str]:
    """Every key the request offers, in the places clients put one."""
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            yield value.strip()
    for header in ("x-api-key", "x-goog-api-key"):
        offered = request.headers.get(header)
        if offered:
            yield offered.strip()
    query_key = request.query.get("key")
    if query_key:
        yield query_key


def key_matches(request: web.Request, required: str | None) -> bool:
    """Whether the request offers ``required`` (constant-time per comparison)."""
    if not required:
        return False
    expected = required.encode()
    matched = False
    for key in offered_keys(request):
        matched |= hmac.compare_digest(key.encode(), expected)
    return matched


def unauthorized() -> web.Response:
    return error_response(
        401,
        "Unauthorized: API key is invalid or missing.",
        "invalid_request_error",
        "invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )
