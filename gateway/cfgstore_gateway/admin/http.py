"""The admin API's answers and request bodies: the error shape, bounded JSON reads, and
the limits of what an admin write may store.

Errors are ``{"error": {"message", "code"[, "fields"]}}`` (``gateway/admin-api.md``): the
Node service's ``{"error": {"message"}}`` with a machine code (and the fields at fault).
Handlers raise :class:`ApiError`; the admin middleware turns it (and storage errors) into
the answer. Bodies are read whole up to :data:`MAX_BODY_BYTES` and refused (``413``) past
it without reading further, whatever ``Content-Length`` claims. Every JSON body is parsed
by :func:`parse_json`: deeper than the JSON parser goes, or (a request body) holding a
lone UTF-16 surrogate escape such as ``"\\ud800"`` (which no UTF-8 file or hash can take),
it is a ``400 bad_request`` (the admin middleware logs one line, never a traceback);
deeper than the document depth limit, ``400 invalid``. Every document an admin write
stores passes :func:`check_document` first (depth and size, :mod:`cfgstore.model.limits`):
over a limit, ``400 invalid`` naming it, nothing stored. Bad input is ``400`` as in the
Node service (which answers every refused body with ``400``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs
from aiohttp import web

from cfgstore.model.limits import document_problem
from cfgstore_gateway.json_body import JSONTooDeep, parse_client_json

MAX_BODY_BYTES = 1024 * 1024
"""Largest admin request body, JSON or multipart (a token document or a config is a few
KiB; a system prompt may be larger)."""


class ApiError(Exception):
    """An answer other than success: ``status``, a machine ``code`` and a human message;
    ``fields`` maps a request field to what is wrong with it (``400 invalid``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
        message_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message_code = message_code
        """The Node service's ``messageCode`` for this refusal, where it has one."""
        self.details = dict(details or {})
        """Facts for an answer in another shape (the Node login's counts), never shown as
        such."""
        self.status = status
        self.code = code
        self.message = message
        self.fields = dict(fields or {})
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        error: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.message_code:
            error["messageCode"] = self.message_code
        if self.fields:
            error["fields"] = self.fields
        return web.json_response({"error": error}, status=self.status, headers=self.headers)


def invalid(fields: Mapping[str, str], message: str = "Invalid request") -> ApiError:
    """``400 invalid``: the request named fields wrong; nothing was changed."""
    return ApiError(400, "invalid", message, fields=fields)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def refuse_declared_oversize(request: web.Request, limit: int = MAX_BODY_BYTES) -> None:
    """``413`` before reading when ``Content-Length`` already says the body is larger than
    ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)


def refuse_received_oversize(request: web.Request) -> None:
    """``413`` once more than :data:`MAX_BODY_BYTES` of the body arrived (for readers that
    consume the body themselves, such as the multipart reader)."""
    if request.content.total_bytes > MAX_BODY_BYTES:
        raise too_large()


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body; ``413`` past ``limit`` bytes (at most one byte more is read).

    One ``read(n)`` returns what has arrived so far, not ``n`` bytes: read until the end."""
    refuse_declared_oversize(request, limit)
    body = bytearray()
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return bytes(body)


@attrs.frozen
class FormPart:
    """One part of a multipart form: its file name (``None`` for a plain field) and bytes."""

    filename: str | None
    data: bytes

    def text(self) -> str:
        return self.data.decode("utf-8", "replace").strip()


async def read_form(request: web.Request) -> dict[str, FormPart]:
    """A ``multipart/form-data`` body's parts by name (``400`` for another body); ``413``
    once the body (framing included) passes :data:`MAX_BODY_BYTES`, without reading on."""
    if not request.content_type.startswith("multipart/"):
        raise invalid({"body": "expected multipart/form-data"})
    refuse_declared_oversize(request)
    reader = await request.multipart()
    parts: dict[str, FormPart] = {}
    while (part := await reader.next()) is not None:
        refuse_received_oversize(request)
        data = bytearray()
        while chunk := await part.read_chunk():  # type: ignore[union-attr]
            refuse_received_oversize(request)
            data += chunk
        if part.name:  # type: ignore[union-attr]
            parts[part.name] = FormPart(part.filename, bytes(data))  # type: ignore[union-attr]
    refuse_received_oversize(request)
    return parts


def parse_json(raw: bytes, field: str) -> Any:
    """``raw`` as JSON: ``400 bad_request`` when it is nested deeper than the parser
    follows, ``400 invalid`` on ``field`` when it is not JSON or is nested deeper than a
    stored document may be."""
    try:
        value = parse_client_json(raw)
    except JSONTooDeep:
        raise bad_request(f"{field} is JSON nested deeper than the parser follows") from None
    except ValueError as exc:
        raise invalid({field: f"not valid JSON ({exc.args[0]})"}) from None
    problem = document_problem(value, max_bytes=None)
    if problem is not None:
        raise invalid({field: problem}, f"Not saved: {field} is {problem}")
    return value


def check_document(value: Any, field: str) -> None:
    """``400 invalid`` on ``field`` when ``value``, a document about to be stored, is deeper or
    larger than the limits (:mod:`cfgstore.model.limits`). Every admin write calls this
    on what it stores, so nothing stored can break a later read."""
    problem = document_problem(value)
    if problem is not None:
        raise invalid({field: problem}, f"Not saved: {field} is {problem}")


async def read_json_object(
    request: web.Request, *, optional: bool = False, limit: int = MAX_BODY_BYTES
) -> dict[str, Any]:
    """The body (at most ``limit`` bytes) as a JSON object (``{}`` for an empty body when
    ``optional``)."""
    raw = await read_body(request, limit)
    if not raw.strip() and optional:
        return {}
    value = parse_json(raw, "body")
    if not isinstance(value, dict):
        raise invalid({"body": "expected a JSON object"})
    if _SURROGATE_ESCAPE.search(raw) and not _is_unicode_text(value):
        raise bad_request("a lone UTF-16 surrogate (\\ud800-\\udfff) in a string")
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


def bad_request(problem: str) -> ApiError:
    """``400``: a body no handler can take (the admin middleware logs it, one line)."""
    return ApiError(400, "bad_request", f"Request body refused: {problem}")


def success(status: int = 200, **fields: Any) -> web.Response:
    return web.json_response({"success": True, **fields}, status=status)


def too_large(limit: int = MAX_BODY_BYTES) -> ApiError:
    return ApiError(413, "too_large", f"Request body larger than {limit} bytes (the limit)")
