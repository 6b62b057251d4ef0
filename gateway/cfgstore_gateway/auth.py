"""The client API key check (aiclient-formats §2.2 ``REQUIRED_API_KEY``).

A request is let in when one of the places a client may put its key holds exactly the
configured key: ``Authorization: Bearer <key>``, ``x-api-key``, ``x-goog-api-key`` or the
query parameter ``key``. Keys are compared in constant time (``hmac.compare_digest`` on the
UTF-8 bytes), every offered key is compared, so the time taken tells nothing about which
place or how much of a key matched. A key that is not UTF-8 matches nothing (a ``401``,
never an error). An empty configured key lets nobody in (and the app says so in the log
once), and so does a config that names no key (:func:`required_key`: the key absent, or
no config stored at all): the Node default ``"123456"`` is never what a missing key
means. A config that sets ``"123456"`` itself is obeyed, with a warning at start.

Which routes need the key is the route's mark (:mod:`cfgstore_gateway.access`). A refusal
is ``401`` in the OpenAI error shape; the offered key is never logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from aiohttp import web

from cfgstore.model.config import MainConfig
from cfgstore_gateway.errors import error_response

KEY = "REQUIRED_API_KEY"


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


def required_key(config: MainConfig) -> str | None:
    """The client key ``config`` requires, or ``None`` (nobody is let in) when it names
    none: unlike the Node service, an absent ``REQUIRED_API_KEY`` never reads as its
    well-known default ``123456``. An unusable stored value reads as empty (nobody)."""
    if KEY not in config.document and KEY not in config.problems:
        return None
    value = config.get(KEY)
    return value if isinstance(value, str) else None


def key_matches(request: web.Request, required: str | None) -> bool:
    """Whether the request offers ``required`` (constant-time per comparison)."""
    if not required:
        return False
    expected = _utf8(required)
    matched = False
    for key in offered_keys(request):
        matched |= hmac.compare_digest(_utf8(key), expected)
    return matched


def _utf8(value: str) -> bytes:
    """``value`` as UTF-8, whatever it holds: aiohttp decodes a header byte that is not
    UTF-8 to a lone surrogate, which strict encoding refuses; kept as itself, it matches
    no key a config can hold."""
    return value.encode("utf-8", "surrogatepass")


def unauthorized() -> web.Response:
    return error_response(
        401,
        "Unauthorized: API key is invalid or missing.",
        "invalid_request_error",
        "invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )
