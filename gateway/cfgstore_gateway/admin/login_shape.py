"""The Node service's answers to ``POST /api/login``, which differ from every other admin
answer: ``{"success": true, "message", "token", "expiresIn": "<n> seconds"}``, and on a
refusal ``{"success": false, "message", "messageCode"[, "messageParams"]}`` (no ``error``
object; its UI and scripts read ``success``, ``message`` and ``messageCode``).

:func:`login_refusal` renders an :class:`~cfgstore_gateway.admin.http.ApiError` raised
while a login was handled in that shape, keeping its status and headers (``Retry-After``).
The message codes are the Node service's (``src/ui-modules/auth.js``), plus
``login.error.busy`` and ``login.error.storageDegraded`` for refusals only cfgstore makes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cfgstore_gateway.admin.http import ApiError

LOGIN_OK = "Login successful"


def login_success(token: str, lifetime_s: int, read_only_note: str | None = None) -> web.Response:
    """Node's login answer; a read-only session (signed in while the storage is degraded)
    adds ``"readOnly": true`` and says so in ``message``."""
    body: dict[str, Any] = {
        "success": True,
        "message": read_only_note or LOGIN_OK,
        "token": token,
        "expiresIn": f"{lifetime_s} seconds",
    }
    if read_only_note is not None:
        body["readOnly"] = True
    return web.json_response(body)


def login_refusal(error: ApiError) -> web.Response:
    body: dict[str, Any] = {"success": False, "message": error.message}
    status = error.status
    details = error.details
    match error.code:
        case "invalid" if "password" in error.fields:
            body["message"], code = "Password cannot be empty", "login.error.empty"
        case "invalid" | "bad_request":
            code = "login.error.invalidJson"
        case "invalid_password" if "lockedMinutes" in details:
            minutes = details["lockedMinutes"]
            body["message"] = f"Incorrect password. Account locked for {minutes} minutes."
            code, body["messageParams"] = "login.error.incorrectWithLock", {"time": minutes}
        case "invalid_password" if "remaining" in details:
            remaining = details["remaining"]
            body["message"] = f"Incorrect password. {remaining} attempts remaining."
            code, body["messageParams"] = "login.error.incorrectWithRemaining", {"count": remaining}
        case "invalid_password":
            code = "login.error.incorrect"
        case "locked_out":
            wait = details.get("waitSeconds")
            body["message"] = (
                "Account temporarily locked due to too many failed attempts. "
                f"Please try again in {wait} seconds."
            )
            code, body["messageParams"] = "login.error.locked", {"time": wait}
        case "too_frequent":
            body["message"] = "Too many requests, please slow down."
            code = "login.error.tooFrequent"
        case "too_large":
            body["message"], code = "Request body too large", "login.error.bodyTooLarge"
        case "busy":
            code = "login.error.busy"
        case "storage_degraded":
            code = "login.error.storageDegraded"
        case _:
            code = ""
    if code:
        body["messageCode"] = code
    return web.json_response(body, status=status, headers=error.headers)
