"""``POST /api/login``, ``/api/logout``, ``GET /api/session``, ``POST /api/admin-password``.

Every password check (a login, or the current password of a change) goes the same way:

1. take a hashing slot (:mod:`~cfgstore_gateway.admin.password_work`): none free, ``429
   busy`` at once, nothing counted;
2. reserve the attempt in the store (``store.logins.reserve``) for the client address
   (:mod:`~cfgstore_gateway.admin.client_address`): check and count in one atomic step on
   every instance sharing the storage, so concurrent guesses cannot all slip past the check.
   Refused with ``429 locked_out`` for ``LOGIN_LOCKOUT_DURATION`` s once
   ``LOGIN_MAX_ATTEMPTS`` attempts were counted (even with the right password), and with
   ``429 too_frequent`` within ``LOGIN_MIN_INTERVAL`` ms of the client's last attempt (0:
   no minimum; the Node service takes 1000 ms then);
3. PBKDF2 in the slot's thread (never on the event loop), compared in constant time. A
   success clears the count.

A login then stores a session under a fresh token (32 random bytes, hex) for
``LOGIN_EXPIRY`` s; on Redis only the token's digest is stored, with a TTL. A password
change ends every other session.

While the storage is degraded (the reservation cannot reach it), the login is checked
against the last confirmed password with a lockout counted in memory, and gives a
read-only session local to this instance (:mod:`~cfgstore_gateway.admin.outage_sign_in`):
the answer then carries ``"readOnly": true`` and a ``message`` saying so.

Answers have the Node service's shapes: a login's are rendered by
:mod:`~cfgstore_gateway.admin.login_shape` (the wrong password that locks the client out
is a ``401`` naming the lock, as there); a password change takes Node's ``{"password"}``
(the session is the proof, as there) or cfgstore's ``{"currentPassword", "newPassword"}``
(the current password then checked as a login), at least :data:`MIN_PASSWORD_LENGTH`
characters, and answers ``{"success": true, "message"}``; too short or empty is ``400``
with Node's ``messageCode``.
"""

from __future__ import annotations

import logging
import secrets

from aiohttp import web

from cfgstore.adapters import Store
from cfgstore.errors import StorageUnavailable
from cfgstore.model.config import MainConfig
from cfgstore.model.login_guard import LoginAttempt, Refusal
from cfgstore.model.password import MIN_PASSWORD_LENGTH, js_trim
from cfgstore.model.sessions import UiSession
from cfgstore.model.timefmt import now_ms
from cfgstore_gateway.access import PUBLIC_BODY_MAX
from cfgstore_gateway.admin.client_address import client_address
from cfgstore_gateway.admin.http import ApiError, invalid, read_json_object, success
from cfgstore_gateway.admin.login_shape import login_success
from cfgstore_gateway.admin.outage_sign_in import NO_CONFIRMED_PASSWORD, READ_ONLY_NOTE
from cfgstore_gateway.admin.password_work import HashingBusy, HashSlot
from cfgstore_gateway.admin.state import admin_state, current_session
from cfgstore_gateway.services import SERVICES

log = logging.getLogger("cfgstore_gateway.admin")

USERNAME = "admin"


async def login(request: web.Request) -> web.StreamResponse:
    store = request.config_dict[SERVICES].store
    body = await read_json_object(request, limit=PUBLIC_BODY_MAX)  # anyone may send it
    password = body.get("password")
    if not isinstance(password, str) or not password:
        raise invalid({"password": "required (a non-empty string)"})
    config = await store.config.get()
    client = client_address(request, config)
    with _hashing_slot(request) as slot:
        try:
            stored = await store.password.get_stored()
        except StorageUnavailable:
            raise ApiError(503, "storage_degraded", NO_CONFIRMED_PASSWORD) from None
        try:
            attempt = await _reserve(store, config, client)
        except StorageUnavailable as exc:
            log.warning("admin login from %s checked locally: %s", client, exc)
            return await _read_only_login(request, slot, password, stored, config, client)
        if not await slot.verify(password, stored):
            raise _wrong(attempt, config, "Wrong password")
    await store.logins.clear(client)
    token = secrets.token_hex(32)
    now = now_ms()
    lifetime_s = max(1, config.int_value("LOGIN_EXPIRY"))
    session = UiSession(USERNAME, now, now + lifetime_s * 1000)
    await store.sessions.add(token, session)
    if await store.password.get_stored() != stored:
        # Changed while this login was checked: the change ended the other sessions,
        # perhaps before this one was stored.
        await store.sessions.delete(token)
        raise ApiError(401, "invalid_password", "The password changed meanwhile: sign in again")
    return login_success(token, lifetime_s)


async def _read_only_login(
    request: web.Request,
    slot: HashSlot,
    password: str,
    stored: str | None,
    config: MainConfig,
    client: str,
) -> web.StreamResponse:
    """A login while the storage is degraded (see the module docstring)."""
    outage = admin_state(request).gate.outage
    attempt = outage.reserve(
        client,
        now_ms(),
        max_attempts=max(1, config.int_value("LOGIN_MAX_ATTEMPTS")),
        lockout_ms=max(1, config.int_value("LOGIN_LOCKOUT_DURATION")) * 1000,
        min_interval_ms=max(0, config.int_value("LOGIN_MIN_INTERVAL")),
    )
    _refuse(attempt, client)
    if not await slot.verify(password, stored):
        raise _wrong(attempt, config, "Wrong password")
    outage.clear(client)
    now = now_ms()
    lifetime_s = max(1, config.int_value("LOGIN_EXPIRY"))
    session = UiSession(USERNAME, now, now + lifetime_s * 1000)
    token = outage.issue(session)
    log.warning("admin signed in read-only from %s: the storage is degraded", client)
    return login_success(token, lifetime_s, READ_ONLY_NOTE)


async def logout(request: web.Request) -> web.StreamResponse:
    token, _ = current_session(request)
    gate = admin_state(request).gate
    if not gate.is_read_only(token):  # a read-only session was never stored
        await request.config_dict[SERVICES].store.sessions.delete(token)
    gate.forget(token)
    return success()


async def session_info(request: web.Request) -> web.StreamResponse:
    token, session = current_session(request)
    gate = admin_state(request).gate
    read_only = gate.is_read_only(token)
    return web.json_response(
        {
            "username": session.username,
            "loginTime": session.login_time,
            "expiresAt": session.expiry_time,
            "isDefaultPassword": await gate.is_default_password(),
            "readOnly": read_only,
            "readOnlyReason": READ_ONLY_NOTE if read_only else None,
        }
    )


async def change_password(request: web.Request) -> web.StreamResponse:
    """Store a new password and end every session but the caller's. Node's body is
    ``{"password"}``; cfgstore's console sends ``{"currentPassword", "newPassword"}``, and a
    current password, when sent, is checked as a login would be (same count and lockout)."""
    token, _ = current_session(request)
    store = request.config_dict[SERVICES].store
    body = await read_json_object(request)
    field = "password" if "password" in body else "newPassword"
    new, current = body.get(field), body.get("currentPassword")
    if not isinstance(new, str) or not js_trim(new):
        raise _password_refused(field, "Password cannot be empty", "common.passwordEmpty")
    if len(js_trim(new)) < MIN_PASSWORD_LENGTH:
        message = f"Password must be at least {MIN_PASSWORD_LENGTH} characters"
        raise _password_refused(field, message, "common.passwordTooShort")
    if current is not None and (not isinstance(current, str) or not current):
        raise invalid({"currentPassword": "a non-empty string when sent"})
    config = await store.config.get()
    client = client_address(request, config)
    with _hashing_slot(request) as slot:
        if current is not None:
            attempt = await _reserve(store, config, client)
            if not await slot.verify(current, await store.password.get_stored()):
                raise _wrong(attempt, config, "The current password is wrong")
        stored = await slot.hash(new)
    if current is not None:
        await store.logins.clear(client)
    await store.password.put_stored(stored)
    ended = await store.sessions.delete_others(token)
    admin_state(request).gate.forget_all_but(token)
    log.info("admin password changed; %d other sessions ended", ended)
    return success(message="Admin password updated successfully")


def _password_refused(field: str, message: str, message_code: str) -> ApiError:
    return ApiError(400, "invalid", message, fields={field: message}, message_code=message_code)


def _hashing_slot(request: web.Request) -> HashSlot:
    try:
        return admin_state(request).password_work.slot()
    except HashingBusy:
        message = "Too many password checks in progress: try again in a moment"
        raise _too_many("busy", message, 1) from None


async def _reserve(store: Store, config: MainConfig, client: str) -> LoginAttempt:
    """Reserve the attempt (see the module docstring); the refusals as ``429``."""
    attempt = await store.logins.reserve(
        client,
        max_attempts=max(1, config.int_value("LOGIN_MAX_ATTEMPTS")),
        lockout_ms=max(1, config.int_value("LOGIN_LOCKOUT_DURATION")) * 1000,
        min_interval_ms=max(0, config.int_value("LOGIN_MIN_INTERVAL")),
    )
    _refuse(attempt, client)
    return attempt


def _refuse(attempt: LoginAttempt, client: str) -> None:
    """The reservation's refusal as ``429``, if it was refused."""
    if attempt.refusal is Refusal.LOCKED:
        log.warning("admin login from %s refused: locked out", client)
        raise _locked_out(attempt.retry_at_ms)
    if attempt.refusal is Refusal.TOO_FREQUENT:
        raise _too_many(
            "too_frequent",
            "Too many login attempts: wait {wait} s between two",
            _wait_s(attempt.retry_at_ms),
        )


def _wrong(attempt: LoginAttempt, config: MainConfig, message: str) -> ApiError:
    """A wrong password: ``401`` with the attempts left, or, when this attempt was the
    last one allowed, with the lock it set (``Retry-After``), as the Node service answers."""
    if attempt.locked(now_ms()):
        wait_s = _wait_s(attempt.locked_until_ms)
        minutes = -(-max(1, config.int_value("LOGIN_LOCKOUT_DURATION")) // 60)
        return ApiError(
            401,
            "invalid_password",
            f"{message}: locked out for {wait_s} s",
            headers={"Retry-After": str(wait_s)},
            details={"lockedMinutes": minutes},
        )
    remaining = max(0, max(1, config.int_value("LOGIN_MAX_ATTEMPTS")) - attempt.failures)
    return ApiError(401, "invalid_password", message, details={"remaining": remaining})


def _locked_out(until_ms: int | None) -> ApiError:
    wait_s = _wait_s(until_ms)
    error = _too_many("locked_out", "Too many failed logins: try again in {wait} s", wait_s)
    error.details["waitSeconds"] = wait_s
    return error


def _too_many(code: str, message: str, wait_s: int) -> ApiError:
    return ApiError(429, code, message.format(wait=wait_s), headers={"Retry-After": str(wait_s)})


def _wait_s(until_ms: int | None) -> int:
    now = now_ms()
    return max(1, -(-((until_ms or now) - now) // 1000))
