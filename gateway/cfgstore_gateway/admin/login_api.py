"""``POST /api/login``, ``/api/logout``, ``GET /api/session``, ``POST /api/admin-password``.

Login checks the password (PBKDF2 in a worker thread: never on the event loop, compared in
constant time) and, per client address, counts failures in the store
(``store.logins``): after ``LOGIN_MAX_ATTEMPTS`` failures the client is locked out for
``LOGIN_LOCKOUT_DURATION`` s on every instance sharing the storage, even with the right
password. A success clears the count and stores a session under a fresh token (32 random
bytes, hex) for ``LOGIN_EXPIRY`` s; on Redis only the token's digest is stored, with a TTL.
"""

from __future__ import annotations

import ipaddress
import secrets

from aiohttp import web

from cfgstore.model.config import MainConfig
from cfgstore.model.password import js_trim
from cfgstore.model.sessions import UiSession
from cfgstore.model.timefmt import now_ms
from cfgstore_gateway.access import PUBLIC_BODY_MAX
from cfgstore_gateway.admin.http import ApiError, invalid, read_json_object, success
from cfgstore_gateway.admin.state import admin_state, current_session
from cfgstore_gateway.services import SERVICES

USERNAME = "admin"
MIN_PASSWORD_LENGTH = 8


async def login(request: web.Request) -> web.StreamResponse:
    services = request.config_dict[SERVICES]
    store = services.store
    body = await read_json_object(request, limit=PUBLIC_BODY_MAX)  # anyone may send it
    password = body.get("password")
    if not isinstance(password, str) or not password:
        raise invalid({"password": "required (a non-empty string)"})
    config = await store.config.get()
    client = client_address(request, config)
    now = now_ms()
    guard = await store.logins.guard(client, now)
    if guard.locked(now):
        raise _locked_out(guard.locked_until_ms, now)
    if not await store.password.verify(password):
        guard = await store.logins.failure(
            client,
            max_attempts=max(1, config.int_value("LOGIN_MAX_ATTEMPTS")),
            lockout_ms=max(1, config.int_value("LOGIN_LOCKOUT_DURATION")) * 1000,
            now=now,
        )
        if guard.locked(now):
            raise _locked_out(guard.locked_until_ms, now)
        raise ApiError(401, "invalid_password", "Wrong password")
    await store.logins.clear(client)
    token = secrets.token_hex(32)
    lifetime_s = max(1, config.int_value("LOGIN_EXPIRY"))
    session = UiSession(USERNAME, now, now + lifetime_s * 1000)
    await store.sessions.add(token, session)
    return success(token=token, expiresAt=session.expiry_time, expiresIn=lifetime_s)


async def logout(request: web.Request) -> web.StreamResponse:
    token, _ = current_session(request)
    await request.config_dict[SERVICES].store.sessions.delete(token)
    admin_state(request).gate.forget(token)
    return success()


async def session_info(request: web.Request) -> web.StreamResponse:
    _, session = current_session(request)
    return web.json_response(
        {
            "username": session.username,
            "loginTime": session.login_time,
            "expiresAt": session.expiry_time,
            "isDefaultPassword": await admin_state(request).gate.is_default_password(),
        }
    )


async def change_password(request: web.Request) -> web.StreamResponse:
    store = request.config_dict[SERVICES].store
    body = await read_json_object(request)
    current, new = body.get("currentPassword"), body.get("newPassword")
    fields: dict[str, str] = {}
    if not isinstance(current, str) or not current:
        fields["currentPassword"] = "required (a non-empty string)"
    if not isinstance(new, str) or len(js_trim(new)) < MIN_PASSWORD_LENGTH:
        fields["newPassword"] = f"at least {MIN_PASSWORD_LENGTH} characters (spaces around trimmed)"
    if fields:
        raise invalid(fields)
    assert isinstance(current, str) and isinstance(new, str)
    if not await store.password.verify(current):
        raise ApiError(401, "invalid_password", "The current password is wrong")
    await store.password.set(new)
    return success()


def client_address(request: web.Request, config: MainConfig) -> str:
    """Who is logging in: the peer address, or the first ``X-Forwarded-For`` entry when
    ``TRUST_PROXY`` is on and the peer is one of ``TRUSTED_PROXY_IPS``."""
    peer = request.remote or "unknown"
    if config.get("TRUST_PROXY") is True:
        trusted = config.get("TRUSTED_PROXY_IPS") or []
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
        if peer in trusted and forwarded and _is_address(forwarded):
            return forwarded
    return peer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _locked_out(until_ms: int | None, now: int) -> ApiError:
    wait_s = max(1, -(-((until_ms or now) - now) // 1000))
    return ApiError(
        429,
        "locked_out",
        f"Too many failed logins: try again in {wait_s} s",
        headers={"Retry-After": str(wait_s)},
    )
