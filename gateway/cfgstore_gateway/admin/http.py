"""The admin API's answers and request bodies: the error shape, bounded JSON reads.

Errors are ``{"error": {"message", "code"[, "fields"]}}`` (``gateway/admin-api.md``).
Handlers raise :class:`ApiError`; the admin middleware turns it (and storage errors) into
the answer. Bodies are read with a hard limit, whatever ``Content-Length`` claims. A body
nested deeper than the JSON parser goes, or holding a lone UTF-16 surrogate escape such as
``"\\ud800"`` (which no UTF-8 file or hash can take), is a ``400 bad_request`` and one log
line, never a traceback.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

log = logging.getLogger("cfgstore_gateway.admin")

MAX_BODY_BYTES = 1024 * 1024
"""Largest admin request body (a token document or a config is a few KiB)."""


class ApiError(Exception):
    """An answer other than success: ``status``, a machine ``code`` and a human message;
    ``fields`` maps a request field to what is wrong with it (``422``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = dict(fields or {})
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        error: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.fields:
            error["fields"] = self.fields
        return web.json_response({"error": error}, status=self.status, headers=self.headers)


def invalid(fields: Mapping[str, str], message: str = "Invalid request") -> ApiError:
    """``422``: the request named fields wrong; nothing was changed."""
    return ApiError(422, "invalid", message, fields=fields)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, refused with ``413`` past ``limit`` bytes (checked while reading)."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise _too_large(limit)
    return body


async def read_json_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object (``{}`` for an empty body when ``optional``)."""
    raw = await read_body(request)
    if not raw.strip() and optional:
        return {}
    try:
        value = json.loads(raw)
    except RecursionError:
        raise _bad_request(request, "JSON nested too deeply") from None
    except ValueError as exc:
        raise invalid({"body": f"not valid JSON ({exc.args[0]})"}) from None
    if not isinstance(value, dict):
        raise invalid({"body": "expected a JSON object"})
    if _SURROGATE_ESCAPE.search(raw) and not _is_unicode_text(value):
        raise _bad_request(request, "a lone UTF-16 surrogate (\\ud800-\\udfff) in a string")
    return value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""Only a body with such an escape can decode to a lone surrogate (a valid pair too)."""


def _is_unicode_text(value: Any) -> bool:
    """Whether every string in ``value`` (keys too) can be encoded as UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bad_request(request: web.Request, problem: str) -> ApiError:
    log.warning("%s %s refused: request body holds %s", request.method, request.path, problem)
    return ApiError(400, "bad_request", f"Request body refused: {problem}")


def success(status: int = 200, **fields: Any) -> web.Response:
    return web.json_response({"success": True, **fields}, status=status)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"Request body larger than {limit} bytes")
