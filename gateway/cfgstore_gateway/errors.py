"""Error responses in the OpenAI error shape, the one every client of the gateway parses:

``{"error": {"message": ..., "type": ..., "param": null, "code": ...}}`` with the HTTP
status. Messages are for humans and never carry a secret (no key, token or query string).
"""

from __future__ import annotations

from aiohttp import web

NO_HEALTHY_PROVIDER = "No healthy provider found in pool"


def error_body(message: str, error_type: str, code: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def error_response(
    status: int,
    message: str,
    error_type: str,
    code: str | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An OpenAI-shaped JSON error with ``status``."""
    return web.json_response(error_body(message, error_type, code), status=status, headers=headers)
