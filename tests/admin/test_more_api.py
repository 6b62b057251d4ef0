"""``/api/plugins``, ``/api/usage``, ``/api/custom-models``, ``/api/storage/status`` and the
UI's files, over the file backend (the Node service's answer shapes in detail:
``tests/admin/test_node_contract.py``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from cfgstore.model.plugin_config import PluginConfig
from tests.admin.conftest import NODE, PASSWORD, SECRET_KEY, Admin, admin_gateway, file_deployment
from tests.gateway.conftest import CLIENT_KEY, TYPE, auth


async def test_plugins_are_listed_and_toggled(admin: Admin) -> None:
    await admin.store.plugin_config.put(
        PluginConfig({"ai-monitor": {"enabled": False, "description": "watch", "extra": 1}})
    )
    status, body = await admin.call("GET", "/api/plugins")
    assert status == 200
    listed = {plugin["name"]: plugin for plugin in body["plugins"]}
    assert listed["ai-monitor"] == {
        "name": "ai-monitor",
        "enabled": False,
        "description": "watch",
        "extra": 1,
        "priority": 100,
        "builtIn": False,
    }
    assert listed["default-auth"]["enabled"] is True  # the gateway's plugins are listed too
    status, body = await admin.call("POST", "/api/plugins/ai-monitor/toggle")
    assert status == 400  # as in the Node service: "enabled" is required
    assert not (await admin.store.plugin_config.get()).is_enabled("ai-monitor")
    status, body = await admin.call(
        "POST", "/api/plugins/ai-monitor/toggle", json={"enabled": True}
    )
    assert body["plugin"] == {"name": "ai-monitor", "enabled": True}
    stored = await admin.store.plugin_config.get()
    assert stored.plugins["ai-monitor"] == {"enabled": True, "description": "watch", "extra": 1}
    status, body = await admin.call("POST", "/api/plugins/ai-monitor/toggle", json={"enabled": 1})
    assert status == 400 and "enabled" in body["error"]["fields"]
    assert (await admin.store.plugin_config.get()).is_enabled("ai-monitor")


async def test_usage_is_read_and_refreshed_per_type(admin: Admin) -> None:
    await admin.store.pools.record_success(TYPE, NODE)
    await admin.store.flush()
    status, entry = await admin.call("GET", f"/api/usage/{TYPE}?refresh=true")
    assert status == 200 and "fromCache" not in entry and entry["serverTime"]
    assert entry["providerType"] == TYPE and entry["totalCount"] == 1
    (instance,) = entry["instances"]
    assert instance["uuid"] == NODE and instance["usage"]["summary"]["totalUsed"] == 1
    cache = await admin.store.usage_cache.get()
    del entry["serverTime"]
    assert cache is not None and cache.providers[TYPE] == entry
    status, again = await admin.call("GET", f"/api/usage/{TYPE}")
    assert status == 200 and again["fromCache"] is True
    status, _ = await admin.call("GET", "/api/usage/openai-none?refresh=true")
    assert status == 404


async def test_usage_is_computed_when_nothing_is_cached(admin: Admin) -> None:
    assert await admin.store.usage_cache.get() is None
    status, body = await admin.call("GET", "/api/usage")
    assert status == 200 and "fromCache" not in body
    assert body["providers"][TYPE]["instances"][0]["uuid"] == NODE
    status, body = await admin.call("GET", "/api/usage")
    assert status == 200 and body["fromCache"] is True


async def test_custom_models_crud(admin: Admin) -> None:
    model = {"id": "fast", "actualProvider": TYPE, "actualModel": "gpt-4o-mini", "name": "Fast"}
    status, body = await admin.call("POST", "/api/custom-models", json=model)
    assert status == 200 and body == {"success": True, "model": model}
    status, body = await admin.call("POST", "/api/custom-models", json=model)
    assert status == 400 and body["error"]["message"] == "Model ID 'fast' already exists"
    status, body = await admin.call("PUT", "/api/custom-models/fast", json={"name": "Quick"})
    assert status == 200 and body == {"success": True, "model": {**model, "name": "Quick"}}
    status, body = await admin.call("GET", "/api/custom-models")
    assert status == 200 and body == [{**model, "name": "Quick"}]
    status, _ = await admin.call("PUT", "/api/custom-models/fast", json={"id": "other"})
    assert status == 400
    status, body = await admin.call("DELETE", "/api/custom-models/fast")
    assert status == 200 and await admin.store.custom_models.list() == []
    assert body["deletedModel"] == {**model, "name": "Quick"}
    assert (await admin.call("DELETE", "/api/custom-models/fast"))[0] == 404
    assert (await admin.call("PUT", "/api/custom-models/fast", json={"a": 1}))[0] == 404


@pytest.mark.parametrize("payload", [{}, {"id": ""}, {"id": 5}, {"id": "x" * 300}])
async def test_a_custom_model_needs_an_id(admin: Admin, payload: dict[str, Any]) -> None:
    status, body = await admin.call("POST", "/api/custom-models", json=payload)
    assert status == 400 and "id" in body["error"]["fields"]
    assert await admin.store.custom_models.list() == []


async def test_storage_status_on_files(admin: Admin) -> None:
    status, body = await admin.call("GET", "/api/storage/status")
    assert status == 200
    assert body["mode"] == "file" and body["degraded"] is False and body["redis"] is None
    assert body["layers"][0]["name"] == "file" and body["journalDepth"] == 0


async def test_the_ui_is_served_without_a_session_and_holds_no_secret(anonymous: Admin) -> None:
    async with anonymous.client.get("/") as response:
        assert response.status == 200
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
        page = await response.text()
    assert "<html" in page.lower() and CLIENT_KEY not in page
    async with anonymous.client.get("/ui/app.js") as response:
        assert response.status == 200
    for escape in ("/ui/..%2f..%2fpyproject.toml", "/ui/%2e%2e/%2e%2e/pyproject.toml"):
        async with anonymous.client.get(URL(escape, encoded=True)) as response:
            # 401: a path that leaves /ui/ matches no route, so it needs the client key
            assert response.status in (401, 403, 404), escape
            assert "[project]" not in await response.text()


async def test_no_secret_reaches_a_log_line(
    anonymous: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = await anonymous.login()  # first: the wrong one then comes after a success
    await anonymous.call("POST", "/api/login", json={"password": "wrong-" + PASSWORD})
    secret = "sk-brand-new-secret-key-9876543210"
    await admin.call(
        "POST",
        "/api/providers",
        json={"providerType": TYPE, "providerConfig": {"OPENAI_API_KEY": secret}},
    )
    await admin.call("POST", "/api/config", json={"REQUIRED_API_KEY": "rotated-secret-key-1"})
    await admin.call("GET", f"/api/session?token={admin.token}")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/api/providers" in logged  # the request lines are there
    for value in (PASSWORD, admin.token or "", secret, "rotated-secret-key-1", SECRET_KEY):
        assert value not in logged


async def test_ui_enabled_false_turns_the_ui_and_the_admin_api_off(tmp_path: Path) -> None:
    async with admin_gateway(file_deployment(tmp_path, UI_ENABLED=False)) as anonymous:
        off = (("GET", "/"), ("GET", "/ui/app.js"), ("POST", "/api/login"), ("GET", "/api/health"))
        for method, path in off:
            status, _ = await anonymous.call(method, path, json={"password": PASSWORD})
            assert status == 404, path
        async with anonymous.client.get("/health") as response:
            assert response.status == 200
        async with anonymous.client.get("/v1/models", headers=auth()) as response:
            assert response.status == 200
