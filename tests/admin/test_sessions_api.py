"""Sign-in and sessions of the admin API over the file backend: login, every endpoint
refused without a valid session, expiry, logout, lockout, password change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import web

from cfgstore.model.password import hash_password
from cfgstore.model.sessions import UiSession
from cfgstore.model.timefmt import now_ms
from cfgstore_gateway.admin import api_routes
from tests.admin.conftest import PASSWORD, Admin, admin_gateway, file_deployment


async def test_login_answers_a_fresh_random_token_valid_for_login_expiry(tmp_path: Path) -> None:
    async with admin_gateway(file_deployment(tmp_path, LOGIN_EXPIRY=120)) as anonymous:
        before = now_ms()
        status, body = await anonymous.call("POST", "/api/login", json={"password": PASSWORD})
        assert status == 200 and body["success"] is True
        assert re.fullmatch(r"[0-9a-f]{64}", body["token"])
        assert body["expiresIn"] == "120 seconds"  # the Node service's wording
        session = await anonymous.store.sessions.get(body["token"])
        assert session is not None
        assert before + 120_000 <= session.expiry_time <= now_ms() + 120_000
        _, again = await anonymous.call("POST", "/api/login", json={"password": PASSWORD})
        assert again["token"] != body["token"]


async def test_a_pbkdf2_password_is_checked(anonymous: Admin) -> None:
    await anonymous.store.password.put_stored(hash_password(PASSWORD))
    await anonymous.login()
    status, _ = await anonymous.call("POST", "/api/login", json={"password": PASSWORD + "x"})
    assert status == 401


async def test_a_wrong_password_is_refused(anonymous: Admin) -> None:
    status, body = await anonymous.call("POST", "/api/login", json={"password": "wrong"})
    assert status == 401 and body["success"] is False
    assert body["messageCode"] == "login.error.incorrectWithRemaining"


@pytest.mark.parametrize("payload", [{}, {"password": ""}, {"password": 7}])
async def test_login_input_is_validated(anonymous: Admin, payload: object) -> None:
    status, body = await anonymous.call("POST", "/api/login", json=payload)
    assert status == 400 and body["messageCode"] == "login.error.empty"


async def test_a_body_that_is_not_a_json_object_is_400(anonymous: Admin) -> None:
    for raw in (b"{not json", b"[1, 2]"):
        status, body = await anonymous.call("POST", "/api/login", data=raw)
        assert status == 400 and body["messageCode"] == "login.error.invalidJson"


async def test_a_body_over_one_mebibyte_is_413(admin: Admin) -> None:
    status, body = await admin.call("POST", "/api/config", data=b"{" + b" " * (1024 * 1024 + 1))
    assert status == 413 and body["error"]["code"] == "too_large"


def admin_routes() -> list[tuple[str, str]]:
    """Every admin route but login and the public health probe, placeholders filled in."""
    router = web.UrlDispatcher()
    api_routes(router)
    routes = []
    for route in router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter", "")
        path = re.sub(r"\{[^}]+\}", "x", path)
        if route.method != "HEAD" and path not in ("/login", "/health"):
            routes.append((route.method, "/api" + path))
    return routes


@pytest.mark.parametrize(("method", "path"), admin_routes())
async def test_every_endpoint_but_login_needs_a_session(
    anonymous: Admin, method: str, path: str
) -> None:
    status, body = await anonymous.call(method, path)
    assert status == 401, (method, path, body)
    assert body["error"]["code"] == "UNAUTHORIZED"  # the Node service's
    bogus = anonymous.headers({"Authorization": "Bearer " + "0" * 64})
    status, _ = await anonymous.call(method, path, headers=bogus)
    assert status == 401


async def test_an_expired_session_is_refused(anonymous: Admin) -> None:
    token = "e" * 64
    now = now_ms()
    await anonymous.store.sessions.add(token, UiSession("admin", now - 10_000, now - 1))
    status, body = await anonymous.call(
        "GET", "/api/session", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"


async def test_a_logged_out_token_is_refused(admin: Admin) -> None:
    status, _ = await admin.call("GET", "/api/session")
    assert status == 200
    status, body = await admin.call("POST", "/api/logout")
    assert status == 200 and body == {"success": True}
    status, _ = await admin.call("GET", "/api/session")
    assert status == 401
    assert await admin.store.sessions.get(admin.token or "") is None


async def test_the_session_reports_the_default_password(tmp_path: Path) -> None:
    async with admin_gateway(file_deployment(tmp_path)) as anonymous:
        admin = await anonymous.login()
        _, body = await admin.call("GET", "/api/session")
        assert body["isDefaultPassword"] is False
        await admin.store.password.put_stored("admin123")
        _, body = await admin.call("GET", "/api/session")
        assert body["isDefaultPassword"] is True


async def test_lockout_after_max_attempts_even_with_the_right_password(tmp_path: Path) -> None:
    settings = file_deployment(
        tmp_path, LOGIN_MAX_ATTEMPTS=3, LOGIN_LOCKOUT_DURATION=600, LOGIN_MIN_INTERVAL=0
    )
    async with admin_gateway(settings) as anonymous:
        statuses = []
        for _ in range(3):
            status, _ = await anonymous.call("POST", "/api/login", json={"password": "wrong"})
            statuses.append(status)
        assert statuses == [401, 401, 401]  # the last one says it locked (Node's answer)
        async with anonymous.client.post("/api/login", json={"password": PASSWORD}) as response:
            assert response.status == 429
            assert 0 < int(response.headers["Retry-After"]) <= 600
            assert (await response.json())["messageCode"] == "login.error.locked"


async def test_a_success_clears_the_failure_count(tmp_path: Path) -> None:
    settings = file_deployment(tmp_path, LOGIN_MAX_ATTEMPTS=3, LOGIN_MIN_INTERVAL=0)
    async with admin_gateway(settings) as anonymous:
        for _ in range(2):
            await anonymous.call("POST", "/api/login", json={"password": "wrong"})
        await anonymous.login()
        for _ in range(2):
            status, _ = await anonymous.call("POST", "/api/login", json={"password": "wrong"})
            assert status == 401


async def test_the_admin_password_changes(tmp_path: Path) -> None:
    async with admin_gateway(file_deployment(tmp_path, LOGIN_MIN_INTERVAL=0)) as anonymous:
        await password_changes(await anonymous.login())


async def password_changes(admin: Admin) -> None:
    wrong = {"currentPassword": "nope", "newPassword": "a-long-new-password"}
    status, body = await admin.call("POST", "/api/admin-password", json=wrong)
    assert status == 401 and body["error"]["code"] == "invalid_password"
    short = {"currentPassword": PASSWORD, "newPassword": "  short-pass  "}  # 10 once trimmed
    status, body = await admin.call("POST", "/api/admin-password", json=short)
    assert status == 400 and "newPassword" in body["error"]["fields"]
    assert body["error"]["messageCode"] == "common.passwordTooShort"
    assert await admin.store.password.verify(PASSWORD)
    good = {"currentPassword": PASSWORD, "newPassword": "a-long-new-password"}
    status, _ = await admin.call("POST", "/api/admin-password", json=good)
    assert status == 200
    assert (await admin.store.password.get_stored() or "").startswith("pbkdf2:")
    status, _ = await admin.call("POST", "/api/login", json={"password": PASSWORD})
    assert status == 401
    await admin.login("a-long-new-password")
