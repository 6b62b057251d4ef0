"""The gateway plugins' routes and admission, attacked from outside: admin routes without
a session (or with a ``maki_`` key, the client key, a logged-out session, a spelled-out
path), a disabled plugin's routes under any spelling, a refused potluck key sent beside
the client key, the owner's usage route leaking other keys, hostile potluck bodies, the
model statistics' reset without auth, a usage refresh without a session, every
authenticator off, cross-origin preflights, and secrets in less obvious places of the
ai-monitor's log.

**The admission rule** (potluck and the client key): a ``maki_`` key, wherever offered, is
the request's credential and ``api-potluck`` judges it; its refusal (unknown, disabled,
over the limit) is final, whatever else the request carries (the client key included), so
a key that is refused is never let in by also sending another one, and an operator's proxy
that adds the client key to every request cannot lift the keys' limits. A value that is
not a ``maki_`` key never refuses: the client key, in any of its places, still admits.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web

from cfgstore.model import potluck as pl
from cfgstore.model.sessions import UiSession
from cfgstore.model.timefmt import now_ms
from cfgstore_gateway.gateway_plugins.ai_monitor import AiMonitor
from cfgstore_gateway.plugin_api import Exchange, Outcome, PluginRoute
from cfgstore_gateway.plugin_runtime import PluginRuntime
from tests.admin.conftest import Admin
from tests.gateway.conftest import CLIENT_KEY, WAIT_S, make_deployment
from tests.gateway.test_gateway_plugins import gateway, openai_node

ALL_ON = {"api-potluck": True, "model-usage-stats": True, "ai-monitor": True}


@asynccontextmanager
async def plugins_gateway(
    tmp_path: Path, enabled: dict[str, bool] | None = None
) -> AsyncIterator[tuple[Admin, Admin, PluginRuntime]]:
    """(anonymous, signed in, runtime) of a gateway with the shipped plugins as ``enabled``."""
    settings = make_deployment(tmp_path, {"openai-custom": [openai_node("http://127.0.0.1:9")]})
    async with gateway(settings, [], ALL_ON if enabled is None else enabled) as (anon, runtime):
        yield anon, await anon.login(), runtime


POTLUCK_ADMIN = [
    ("GET", "/api/potluck/stats"),
    ("POST", "/api/potluck/stats/reset-tokens"),
    ("GET", "/api/potluck/keys"),
    ("POST", "/api/potluck/keys"),
    ("POST", "/api/potluck/keys/apply-limit"),
    ("GET", "/api/potluck/keys/{id}"),
    ("DELETE", "/api/potluck/keys/{id}"),
    ("PUT", "/api/potluck/keys/{id}/limit"),
    ("POST", "/api/potluck/keys/{id}/reset"),
    ("POST", "/api/potluck/keys/{id}/reset-tokens"),
    ("POST", "/api/potluck/keys/{id}/toggle"),
    ("PUT", "/api/potluck/keys/{id}/name"),
    ("POST", "/api/potluck/keys/{id}/regenerate"),
    ("GET", "/api/ai-monitor/recent"),
    ("GET", "/api/usage?refresh=true"),
    ("GET", "/api/usage/openai-custom?refresh=true"),
    ("GET", "/api/usage/openai-custom/0a0a0a0a-0000-4000-8000-00000000000a"),
    ("GET", "/api/usage/supported-providers"),
    ("GET", "/api/cfgstore/plugin-tabs"),
    ("POST", "/api/plugins/default-auth/toggle"),
]


async def test_plugin_admin_routes_refuse_every_credential_but_a_session(tmp_path: Path) -> None:
    async with plugins_gateway(tmp_path) as (anon, admin, _):
        key = await admin.store.potluck.create("victim", 10, now=now_ms())
        ended = await anon.login()
        assert (await ended.call("POST", "/api/logout"))[0] == 200
        credentials: list[dict[str, str]] = [
            {},
            {"Authorization": f"Bearer {key['id']}"},
            {"x-api-key": key["id"]},
            {"Authorization": f"Bearer {CLIENT_KEY}"},
            {"x-api-key": CLIENT_KEY, "x-goog-api-key": CLIENT_KEY},
            {"Authorization": f"Bearer {ended.token}"},
            {"Authorization": f"Basic {admin.token}"},
            {"Cookie": f"token={admin.token}"},
        ]
        for method, path in POTLUCK_ADMIN:
            path = path.replace("{id}", key["id"])
            by_query = f"{path}{'&' if '?' in path else '?'}token={admin.token}"
            encoded = f"/api/%{ord(path[5]):02X}{path[6:]}"  # /api/%70otluck/...
            for spelled in (path, encoded, by_query):
                for headers in credentials:
                    status, body = await anon.call(
                        method, spelled, json={"enabled": False}, headers=headers
                    )
                    assert status == 401, (method, spelled, headers, body)
        # Nothing changed: the key is whole, enabled, not regenerated; no refresh ran.
        stored = await admin.store.potluck.get(key["id"], now_ms())
        assert stored is not None and pl.is_enabled(stored) and stored["name"] == "victim"
        assert await admin.store.usage_cache.get() is None
        assert (await admin.call("GET", "/api/potluck/keys"))[0] == 200
        assert (await admin.call("GET", "/api/%70otluck/keys"))[0] == 200  # the same route


async def test_a_disabled_plugins_routes_are_404_under_any_spelling(tmp_path: Path) -> None:
    async with plugins_gateway(tmp_path, {"api-potluck": False}) as (anon, admin, _):
        key = await admin.store.potluck.create("k", 10, now=now_ms())
        for path in (
            "/api/potluck/keys",
            "/api/%70otluck/keys",
            "/api/potluck/%6Beys",
            "/api/potluck/keys/",
            "/api/potluck/keys?x=1",
        ):
            status, _ = await admin.call("GET", path)
            assert status == 404, path
        for path in ("/api/potluckuser/usage", "/api/%70otluckuser/usage"):
            status, _ = await anon.call("GET", path, headers={"x-api-key": key["id"]})
            assert status == 404, path
        for headers in ({"Authorization": f"Bearer {key['id']}"}, {"x-api-key": key["id"]}):
            status, _ = await anon.call("GET", "/v1/models", headers=headers)
            assert status == 401  # the plugin is off: the key is nobody's
        status, _ = await anon.call("GET", "/static/plugins/api-potluck.js")
        assert status == 404
        status, _ = await anon.call("GET", "/static/plugins/%61pi-potluck.js")
        assert status == 404


async def models(anon: Admin, headers: dict[str, str], query: str = "") -> tuple[int, Any]:
    return await anon.call("GET", f"/v1/models{query}", headers=headers)


async def test_a_refused_potluck_key_stays_refused_beside_the_client_key(tmp_path: Path) -> None:
    async with plugins_gateway(tmp_path) as (anon, admin, _):
        potluck = admin.store.potluck
        over = (await potluck.create("over", 1, now=now_ms()))["id"]
        off = (await potluck.create("off", 10, now=now_ms()))["id"]
        await potluck.toggle(off)
        good = (await potluck.create("good", 10, now=now_ms()))["id"]
        assert (await models(anon, {"x-api-key": over}))[0] == 200  # its one request
        unknown = pl.KEY_PREFIX + "0" * 32
        for refused, status, code in (
            (over, 429, "quota_exceeded"),
            (off, 403, "disabled"),
            (unknown, 401, "not_found"),
        ):
            for headers, query in (
                ({"Authorization": f"Bearer {refused}", "x-api-key": CLIENT_KEY}, ""),
                ({"Authorization": f"Bearer {CLIENT_KEY}", "x-api-key": refused}, ""),
                ({"x-goog-api-key": CLIENT_KEY}, f"?key={refused}"),
                ({"Authorization": f"Bearer {CLIENT_KEY}"}, f"?key={refused}"),
                ({"x-api-key": f"  {refused}  ", "x-goog-api-key": CLIENT_KEY}, ""),
            ):
                got, body = await models(anon, headers, query)
                assert (got, body["error"]["code"]) == (status, code), (headers, query, body)
                assert CLIENT_KEY not in json.dumps(body) and good not in json.dumps(body)
        # Junk that is no potluck key never refuses the client key, in any place.
        for headers, query in (
            ({"Authorization": "Bearer junk", "x-api-key": CLIENT_KEY}, ""),
            ({"Authorization": "Basic am9objpwdw==", "x-goog-api-key": CLIENT_KEY}, ""),
            ({"Authorization": f"Bearer {CLIENT_KEY}", "x-api-key": "MAKI_0"}, "?key=sk-junk"),
        ):
            assert (await models(anon, headers, query))[0] == 200, headers
        # Case or spacing never turns a refused key into "no potluck key".
        for spelled in (over.upper(), f"Maki_{over[5:]}"):
            assert (await models(anon, {"x-api-key": spelled}))[0] == 401
        stored = await potluck.get(off, now_ms())
        assert stored is not None and pl.as_int(stored.get("todayUsage")) == 0


async def test_the_owners_usage_shows_only_the_offered_key(tmp_path: Path) -> None:
    async with plugins_gateway(tmp_path) as (anon, admin, _):
        mine = await admin.store.potluck.create("mine", 7, now=now_ms())
        other = await admin.store.potluck.create("other-secret-name", 9, now=now_ms())
        off = await admin.store.potluck.create("off", 9, now=now_ms())
        await admin.store.potluck.toggle(off["id"])
        async with anon.client.get(
            "/api/potluckuser/usage", headers={"x-api-key": mine["id"]}
        ) as response:
            assert response.status == 200
            text = await response.text()
        assert other["id"] not in text and "other-secret-name" not in text
        assert off["id"] not in text and mine["id"] not in text  # masked, even its own
        assert json.loads(text)["data"]["usage"]["limit"] == 7
        for headers in (
            {},
            {"x-api-key": CLIENT_KEY},
            {"Authorization": f"Bearer {admin.token}"},
            {"x-api-key": off["id"]},
            {"x-api-key": pl.KEY_PREFIX + "f" * 32},
            {"x-api-key": pl.KEY_PREFIX + "*"},
        ):
            async with anon.client.get("/api/potluckuser/usage", headers=headers) as response:
                assert response.status == 401, headers
                text = await response.text()
            for leaked in (mine["id"], other["id"], off["id"], "other-secret-name"):
                assert leaked not in text


async def test_potluck_bodies_are_validated(tmp_path: Path) -> None:
    async with plugins_gateway(tmp_path) as (_, admin, _runtime):

        async def raw(method: str, path: str, text: str) -> tuple[int, Any]:
            headers = admin.headers({"Content-Type": "application/json"})
            async with admin.client.request(method, path, data=text, headers=headers) as reply:
                return reply.status, await reply.json(content_type=None)

        for limit in ("-1", '"5"', "true", "1e400", "NaN", "Infinity", "1e300", "[5]"):
            status, body = await raw("POST", "/api/potluck/keys", f'{{"dailyLimit": {limit}}}')
            assert status == 400 and body["success"] is False, (limit, body)
        key = (await admin.store.potluck.create("k", 5, now=now_ms()))["id"]
        for limit in ("-1", "1e400", "NaN", "-Infinity", "1e300"):
            status, body = await raw(
                "PUT", f"/api/potluck/keys/{key}/limit", f'{{"dailyLimit": {limit}}}'
            )
            assert status == 400, (limit, body)
            status, body = await raw(
                "POST", "/api/potluck/keys/apply-limit", f'{{"dailyLimit": {limit}}}'
            )
            assert status == 400, (limit, body)
        for name in ("x" * 100_000, "evil\nreq=forged status=200", "\x1b[31mred", "a\u2028b"):
            status, body = await admin.call(
                "PUT", f"/api/potluck/keys/{key}/name", json={"name": name}
            )
            assert status == 400, (name[:20], body)
            status, body = await admin.call("POST", "/api/potluck/keys", json={"name": name})
            assert status == 400, (name[:20], body)
        status, body = await raw("POST", "/api/potluck/keys", "[" * 100_000 + "]" * 100_000)
        assert status in (400, 413), body
        status, body = await raw("POST", "/api/potluck/keys", "{" + " " * (1024 * 1024) + "}")
        assert status == 413, body
        # Mass assignment: only name and dailyLimit are taken.
        status, body = await admin.call(
            "POST",
            "/api/potluck/keys",
            json={
                "name": "ok",
                "dailyLimit": 2.9,
                "id": "maki_chosen",
                "enabled": False,
                "todayUsage": -100,
                "totalUsage": 10**9,
                "usageHistory": {"x": 1},
            },
        )
        assert status == 201, body
        created = body["data"]
        assert created["id"] != "maki_chosen" and created["dailyLimit"] == 2
        assert created["enabled"] is True and created["todayUsage"] == 0
        assert created["totalUsage"] == 0 and created.get("usageHistory") in (None, {})
        assert await admin.store.potluck.get("maki_chosen", now_ms()) is None


async def test_model_usage_stats_need_a_session_or_the_client_key(tmp_path: Path) -> None:
    async with plugins_gateway(tmp_path) as (anon, admin, _):
        key = (await admin.store.potluck.create("k", 10, now=now_ms()))["id"]
        admin.store.usage_stats.record("openai-custom", "m", prompt_tokens=3)
        await admin.store.usage_stats.flush()
        ended = await anon.login()
        assert (await ended.call("POST", "/api/logout"))[0] == 200
        for method, path in (
            ("GET", "/api/model-usage-stats"),
            ("POST", "/api/model-usage-stats/reset"),
            ("DELETE", "/api/model-usage-stats/reset"),
            ("POST", "/api/model-usage-stats/reset-tokens"),
            ("DELETE", "/api/%6Dodel-usage-stats/reset"),
        ):
            for headers in (
                {},
                {"Authorization": f"Bearer {key}"},
                {"x-api-key": key},
                {"Authorization": f"Bearer {ended.token}"},
                {"x-api-key": CLIENT_KEY[:-1]},
                {"x-api-key": CLIENT_KEY + " x"},
            ):
                status, body = await anon.call(method, path, headers=headers)
                assert status == 401 and body["error"]["code"] == "UNAUTHORIZED", (path, headers)
        big = b"x" * (1024 * 1024)
        async with anon.client.post("/api/model-usage-stats/reset", data=big) as response:
            assert response.status == 413  # a public route: the small-body limit
        stats = await admin.store.usage_stats.read()
        assert json.dumps(stats).count('"m"') >= 1  # the count survived every attempt
        status, _ = await anon.call("GET", f"/api/model-usage-stats?key={CLIENT_KEY}")
        assert status == 200
        assert (await admin.call("GET", "/api/model-usage-stats"))[0] == 200


async def test_with_every_authenticator_off_nobody_gets_in(tmp_path: Path) -> None:
    async with plugins_gateway(tmp_path, {"default-auth": False}) as (anon, admin, runtime):
        assert not runtime.is_enabled("default-auth")
        key = (await admin.store.potluck.create("k", 10, now=now_ms()))["id"]
        for headers in ({"x-api-key": CLIENT_KEY}, {"x-api-key": key}, {}):
            status, _ = await models(anon, headers)
            assert status == 401, headers
        changed = runtime.changed()
        await admin.store.plugin_config.set_enabled("api-potluck", True)
        await asyncio.wait_for(changed, WAIT_S)
        assert (await models(anon, {"x-api-key": key}))[0] == 200
        assert (await models(anon, {"x-api-key": CLIENT_KEY}))[0] == 401


async def test_cross_origin_preflights_get_no_cors_grant(tmp_path: Path) -> None:
    async with plugins_gateway(tmp_path) as (anon, _admin, _):
        for path in ("/api/potluck/keys", "/api/model-usage-stats/reset", "/api/plugins"):
            async with anon.client.options(
                path,
                headers={
                    "Origin": "https://evil.example",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization",
                },
            ) as response:
                assert "Access-Control-Allow-Origin" not in response.headers, path
                assert "Access-Control-Allow-Headers" not in response.headers, path
            # A form post from another site carries no session header: refused.
            async with anon.client.post(
                path,
                data="enabled=false",
                headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
            ) as response:
                assert response.status == 401, path
                assert "Access-Control-Allow-Origin" not in response.headers


# ------------------------------------------------------------------ ai-monitor's masking

OFFERED = "maki_0123456789abcdef0123456789abcdef"


def monitored_outcome(
    request_id: str,
    client_request: bytes,
    truncated: bool = False,
    keys: tuple[str, ...] = (),
    headers: dict[str, str] | None = None,
) -> Outcome:
    return Outcome(
        request_id=request_id,
        path="/v1/chat/completions",
        protocol="openai",
        status=200,
        stream=False,
        latency_ms=1.0,
        model="m",
        provider_type="openai-custom",
        node="n",
        upstream_protocol="openai",
        usage=None,
        admitted_by=None,
        admission={},
        exchange=Exchange(client_request, None, None, None, truncated),
        headers=headers or {},
        keys=keys,
    )


async def finished_entry(monitor: AiMonitor, outcome: Outcome) -> str:
    await monitor.finished(outcome)
    return json.dumps(monitor.recent[-1], ensure_ascii=False)


async def test_ai_monitor_masks_secrets_in_less_obvious_places(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = AiMonitor()
    secrets = {
        "list": "sk-in-a-list-0123456789",
        "nested": "nested-credential-value-42",
        "cookie": "session=abcdef0123456789",
        "goog": "AIzaSyD-google-key-0123456789",
        "anthropic": "sk-ant-api03-anthropic-0123",
        "x-auth": "custom-auth-header-value-77",
        "passphrase": "correct horse battery staple",
    }
    headers = {
        "x-goog-api-key": secrets["goog"],
        "X-Api-Key": secrets["anthropic"],
        "Cookie": secrets["cookie"],
        "Proxy-Authorization": "Basic dXNlcjpwYXNz",
        "X-Auth": secrets["x-auth"],
    }
    body = {
        "messages": [{"role": "user", "content": f"my key is {OFFERED}"}],
        "api_keys": [secrets["list"]],
        "credentials": [{"value": secrets["nested"]}],
        "ssh": {"passphrase": secrets["passphrase"]},
        "max_tokens": 5,
    }
    with caplog.at_level(logging.INFO, "cfgstore_gateway.ai_monitor"):
        entry = await finished_entry(
            monitor, monitored_outcome("r1", json.dumps(body).encode(), False, (OFFERED,), headers)
        )
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (*secrets.values(), OFFERED, "dXNlcjpwYXNz"):
        assert secret not in entry and secret not in logged, secret
    assert '"max_tokens": 5' in logged  # numbers kept

    # A body cut in the middle of a secret field shows none of it.
    cut = b'{"messages": [], "api_key": "sk-cut-in-the-middle-01234'
    entry = await finished_entry(monitor, monitored_outcome("r2", cut, truncated=True))
    assert "sk-cut-in-the-middle" not in entry


async def test_ai_monitor_masks_each_requests_keys_when_request_ids_collide() -> None:
    """X-Request-Id is the client's to choose: requests sharing one are each masked with
    their own keys (they travel with the outcome, nothing is kept by request id)."""
    monitor = AiMonitor()
    victim, other = "victim-key-0123456789", "other-key-9876543210"
    text = json.dumps({"messages": [{"role": "user", "content": f"{victim} {other}"}]})
    for keys in ((victim,), (other,)):
        entry = await finished_entry(monitor, monitored_outcome("same", text.encode(), keys=keys))
        assert keys[0] not in entry
    assert not hasattr(monitor, "admit")  # nothing remembered between admission and the end


async def test_model_usage_stats_take_no_session_once_the_admin_api_is_off(
    tmp_path: Path,
) -> None:
    """With ``UI_ENABLED`` false the admin API is off, and so are its sessions: a session
    issued before (or an expired one) cannot reset the statistics; the client key can."""
    settings = make_deployment(
        tmp_path, {"openai-custom": [openai_node("http://127.0.0.1:9")]}, UI_ENABLED=False
    )
    async with gateway(settings, [], {"model-usage-stats": True}) as (anon, _):
        now = now_ms()
        live, expired = "ab" * 32, "cd" * 32
        await anon.store.sessions.add(live, UiSession("admin", now, now + 3_600_000))
        await anon.store.sessions.add(expired, UiSession("admin", now - 10_000, now - 1))
        for token in (live, expired):
            for method, path in (
                ("GET", "/api/model-usage-stats"),
                ("POST", "/api/model-usage-stats/reset"),
            ):
                status, body = await anon.call(
                    method, path, headers={"Authorization": f"Bearer {token}"}
                )
                assert status == 401, (token, path, body)
        status, _ = await anon.call(
            "GET", "/api/model-usage-stats", headers={"x-api-key": CLIENT_KEY}
        )
        assert status == 200


async def test_the_last_authenticating_plugin_is_not_turned_off(tmp_path: Path) -> None:
    """``default-auth`` may be off while ``api-potluck`` admits; turning ``api-potluck`` off
    then would leave nothing to let a client in: refused like ``default-auth`` alone."""
    async with plugins_gateway(tmp_path, {"api-potluck": True}) as (_, admin, runtime):
        changed = runtime.changed()
        off = {"enabled": False}
        status, body = await admin.call("POST", "/api/plugins/default-auth/toggle", json=off)
        assert status == 200, body
        await asyncio.wait_for(changed, WAIT_S)
        status, body = await admin.call("POST", "/api/plugins/api-potluck/toggle", json=off)
        assert status == 400, body
        assert "authenticating" in body["error"]["message"]
        assert (await admin.store.plugin_config.get()).is_enabled("api-potluck")
        status, body = await admin.call(
            "POST", "/api/plugins/default-auth/toggle", json={"enabled": True}
        )
        assert status == 200
        status, body = await admin.call("POST", "/api/plugins/api-potluck/toggle", json=off)
        assert status == 200, body


async def test_ai_monitor_lines_cannot_be_forged(caplog: pytest.LogCaptureFixture) -> None:
    """A client's model name or a body that is no JSON cannot start a log line of its own."""
    monitor = AiMonitor()
    forged = "\n[AI Monitor][forged] openai -> openai | admin | 200"
    outcome = attrs.evolve(
        monitored_outcome("r1", f"not json{forged}\x1b[2J".encode(), headers={"X-Note": "a\rb"}),
        model=f"m{forged}",
    )
    with caplog.at_level(logging.INFO, "cfgstore_gateway.ai_monitor"):
        await monitor.finished(outcome)
    lines = [r.getMessage() for r in caplog.records if r.name == "cfgstore_gateway.ai_monitor"]
    assert len(lines) >= 3
    for line in lines:
        assert "\n" not in line and "\r" not in line and "\x1b" not in line, line
    assert any("[forged]" in line for line in lines)  # shown, escaped, not dropped


class Shadow:
    """A third party whose routes spell the shipped and built-in ones with other
    placeholder names (a public twin of an admin route would be a door if it won)."""

    name = "shadow"
    description = "Collides"
    priority = 50
    enabled_by_default = True

    def __init__(self) -> None:
        self.routes = (
            PluginRoute("GET", "/api/potluck/keys/{key}", self._open, "public"),
            PluginRoute("GET", "/api/providers/{kind}", self._open, "public"),
            PluginRoute("GET", "/api/shadow/{a}/{b:[0-9]+}", self._open, "public"),
            PluginRoute("GET", "/api/shadow/{c}/{d:[0-9]+}", self._open, "public"),
        )

    async def _open(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"open": True})


async def test_colliding_plugin_routes_are_refused_whatever_their_placeholder_names(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_deployment(tmp_path, {"openai-custom": [openai_node("http://127.0.0.1:9")]})
    with caplog.at_level(logging.ERROR, "cfgstore_gateway.plugins"):
        async with gateway(settings, [Shadow()], {"api-potluck": True}) as (anon, _):
            for path in ("/api/potluck/keys/maki_x", "/api/providers/openai-custom"):
                status, body = await anon.call("GET", path)
                assert status == 401, (path, body)
            assert (await anon.call("GET", "/api/shadow/x/1"))[1] == {"open": True}
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    for path in ("/api/potluck/keys/{key}", "/api/providers/{kind}", "/api/shadow/{c}/"):
        assert any(path in line for line in refused), (path, refused)
