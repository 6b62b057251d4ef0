"""The admin API side by side with the Node service: for every path both have, a request
shaped as the Node UI's JavaScript sends it (``static/app/*.js`` of justlovemaki/
AIClient-2-API) gets the Node service's status and answer shape (``tests/admin/
node_shapes.py``, derived from its handlers), with cfgstore's protections kept (secrets
masked where the Node service would show them). The differences that remain are listed in
``gateway/admin-api.md`` ("Where the answers differ from the Node service's").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from cfgstore.model.plugin_config import PluginConfig
from tests.admin import node_shapes as shapes
from tests.admin.conftest import NODE, PASSWORD, SECRET_KEY, Admin, admin_gateway, file_deployment
from tests.gateway.conftest import CLIENT_KEY, TYPE
from tests.gateway.upstream_stub import UpstreamStub

GEMINI = "gemini-cli-oauth"
GEMINI_TOKEN = {
    "access_token": "ya29.access-token-0123456789abcdef",
    "refresh_token": "1//refresh-token-0123456789abcdef",
    "expiry_date": 1_900_000_000_000,
    "token_type": "Bearer",
}


def conforms(body: Any, shape: Any) -> None:
    problems = shapes.mismatches(body, shape)
    assert not problems, f"{problems}\n{json.dumps(body, indent=2)[:2000]}"


async def expect(
    admin: Admin, method: str, path: str, status: int, shape: Any, **kwargs: Any
) -> Any:
    got, body = await admin.call(method, path, **kwargs)
    assert got == status, (method, path, got, body)
    conforms(body, shape)
    return body


# -------------------------------------------------------------------- sign-in


async def test_login_answers_as_the_node_ui_reads_it(tmp_path: Path) -> None:
    settings = file_deployment(tmp_path, LOGIN_MAX_ATTEMPTS=3, LOGIN_MIN_INTERVAL=0)
    async with admin_gateway(settings) as anonymous:
        # static/app/auth.js login(): {password, rememberMe}
        ok = await expect(
            anonymous,
            "POST",
            "/api/login",
            200,
            shapes.LOGIN_OK,
            json={"password": PASSWORD, "rememberMe": False},
        )
        assert ok["success"] is True and ok["expiresIn"] == "3600 seconds"
        wrong = {"password": "wrong", "rememberMe": True}
        body = await expect(anonymous, "POST", "/api/login", 401, shapes.LOGIN_WRONG, json=wrong)
        assert body["messageCode"] == "login.error.incorrectWithRemaining"
        assert body["messageParams"] == {"count": 2}
        await expect(anonymous, "POST", "/api/login", 401, shapes.LOGIN_WRONG, json=wrong)
        body = await expect(anonymous, "POST", "/api/login", 401, shapes.LOGIN_LOCKING, json=wrong)
        assert body["messageCode"] == "login.error.incorrectWithLock"
        body = await expect(
            anonymous, "POST", "/api/login", 429, shapes.LOGIN_REFUSED, json={"password": PASSWORD}
        )
        assert body["success"] is False and body["messageCode"] == "login.error.locked"
        body = await expect(anonymous, "POST", "/api/login", 400, shapes.LOGIN_REFUSED, json={})
        assert body["messageCode"] == "login.error.empty"


async def test_every_other_path_refuses_without_a_session_as_the_node_service(
    anonymous: Admin,
) -> None:
    body = await expect(anonymous, "GET", "/api/providers", 401, shapes.UNAUTHORIZED)
    assert body["error"]["code"] == "UNAUTHORIZED"
    body = await expect(anonymous, "GET", "/api/health", 200, shapes.HEALTH)
    assert body["status"] == "ok"


# -------------------------------------------------------------------- config


NODE_UI_CONFIG = {
    # static/app/config-manager.js saveConfiguration(): what the form posts, the key
    # echoed masked as GET /api/config showed it, empty fields as the form sends them.
    "REQUIRED_API_KEY": "******",
    "HOST": "127.0.0.1",
    "SERVER_PORT": 3000,
    "MODEL_PROVIDER": "openai-custom",
    "systemPrompt": "Be brief.",
    "SYSTEM_PROMPT_FILE_PATH": "configs/input_system_prompt.txt",
    "SYSTEM_PROMPT_MODE": "append",
    "SYSTEM_PROMPT_REPLACEMENTS": [],
    "PROMPT_LOG_BASE_NAME": "",
    "PROMPT_LOG_MODE": "",
    "REQUEST_MAX_RETRIES": 3,
    "REQUEST_BASE_DELAY": 1000,
    "CREDENTIAL_SWITCH_MAX_RETRIES": 5,
    "RATE_LIMIT_COOLDOWN_ENABLED": False,
    "RATE_LIMIT_COOLDOWN_MS": 30000,
    "CRON_NEAR_MINUTES": 1,
    "CRON_REFRESH_TOKEN": False,
    "LOGIN_EXPIRY": 3600,
    "MAX_ERROR_COUNT": 7,
    "WARMUP_TARGET": 0,
    "REFRESH_CONCURRENCY_PER_PROVIDER": 1,
    "providerFallbackChain": {},
    "modelFallbackMapping": {},
    "PROXY_URL": None,
    "PROXY_ENABLED_PROVIDERS": [],
    "LOG_ENABLED": True,
    "LOG_OUTPUT_MODE": "all",
    "LOG_LEVEL": "info",
    "LOG_DIR": "logs",
    "LOG_INCLUDE_REQUEST_ID": True,
    "LOG_INCLUDE_TIMESTAMP": True,
    "LOG_MAX_FILE_SIZE": 10485760,
    "LOG_MAX_FILES": 10,
    "TLS_SIDECAR_ENABLED": False,
    "TLS_SIDECAR_PORT": 9090,
    "TLS_SIDECAR_PROXY_URL": None,
    "TLS_SIDECAR_ENABLED_PROVIDERS": [],
    "SCHEDULED_HEALTH_CHECK": {
        "enabled": False,
        "startupRun": True,
        "interval": 600000,
        "providerTypes": [],
    },
}


async def test_config_reads_flat_and_takes_the_node_ui_form(admin: Admin) -> None:
    got, flat = await admin.call("GET", "/api/config")
    assert got == 200
    for key in shapes.CONFIG_ALWAYS:
        assert key in flat, key
    assert "config" not in flat and "version" not in flat
    assert flat["REQUIRED_API_KEY"] == "******" and CLIENT_KEY not in json.dumps(flat)
    assert flat["MAX_ERROR_COUNT"] == 3 and flat["isDefaultPassword"] is False
    body = await expect(
        admin, "POST", "/api/config", 200, shapes.CONFIG_UPDATED, json=NODE_UI_CONFIG
    )
    assert body["success"] is True
    stored = (await admin.store.config.get()).document
    assert stored["MAX_ERROR_COUNT"] == 7 and stored["REQUIRED_API_KEY"] == CLIENT_KEY
    assert await admin.store.system_prompt.get() == "Be brief."
    _, flat = await admin.call("GET", "/api/config")
    assert flat["systemPrompt"] == "Be brief." and flat["MAX_ERROR_COUNT"] == 7
    body = await expect(
        admin, "POST", "/api/config", 400, shapes.ERROR, json={"SERVER_PORT": 70000}
    )
    assert list(body["error"]["fields"]) == ["SERVER_PORT"]
    body = await expect(admin, "POST", "/api/reload-config", 200, shapes.RELOADED)
    assert body["details"]["configReloaded"] is True


async def test_the_admin_password_takes_the_node_body(admin: Admin) -> None:
    # config-manager.js: apiClient.post('/admin-password', { password })
    body = await expect(
        admin, "POST", "/api/admin-password", 400, shapes.ERROR, json={"password": "short"}
    )
    assert body["error"]["messageCode"] == "common.passwordTooShort"
    body = await expect(
        admin, "POST", "/api/admin-password", 400, shapes.ERROR, json={"password": "   "}
    )
    assert body["error"]["messageCode"] == "common.passwordEmpty"
    assert await admin.store.password.verify(PASSWORD)
    new = "a-new-admin-password"
    await expect(
        admin, "POST", "/api/admin-password", 200, shapes.PASSWORD_CHANGED, json={"password": new}
    )
    assert await admin.store.password.verify(new)
    await admin.login(new)


# -------------------------------------------------------------------- providers


async def test_provider_reads(admin: Admin) -> None:
    body = await expect(admin, "GET", "/api/providers", 200, shapes.PROVIDERS)
    (node,) = body["providers"][TYPE]
    conforms(node, shapes.NODE)
    assert (node["activeRequests"], node["waitingRequests"]) == (0, 0)
    assert TYPE in body["supportedProviders"] and SECRET_KEY not in json.dumps(body)
    supported = await expect(admin, "GET", "/api/providers/supported", 200, [str])
    assert TYPE in supported
    body = await expect(admin, "GET", f"/api/providers/{TYPE}", 200, shapes.PROVIDER_TYPE)
    assert (body["totalCount"], body["healthyCount"]) == (1, 1)


async def test_what_the_node_service_masks_is_masked(admin: Admin) -> None:
    # provider-api.js sanitizeProviderData(): API_KEY|TOKEN|SSO|SECRET|PASSWORD|CLEARANCE|
    # ACCESS_KEY|credentials, not paths, URLs or regions.
    secrets = {
        "GROK_COOKIE_TOKEN": "sso=cookie-value-0123456789",
        "GROK_CF_CLEARANCE": "cf-clearance-0123456789",
        "AWS_ACCESS_KEY": "AKIA0123456789ABCDEF",
    }
    config = {**secrets, "KIRO_SSO_REGION": "us-east-1", "GROK_BASE_URL": "https://grok.com"}
    added = {"providerType": "grok-web", "providerConfig": config}
    assert (await admin.call("POST", "/api/providers", json=added))[0] == 200
    _, body = await admin.call("GET", "/api/providers")
    (node,) = body["providers"]["grok-web"]
    for key, value in secrets.items():
        assert node[key] == value[:4] + "****" + value[-4:], key
    assert node["KIRO_SSO_REGION"] == "us-east-1"
    assert node["GROK_BASE_URL"] == "https://grok.com"


async def test_provider_edits(admin: Admin) -> None:
    # modal.js addProvider(): {providerType, providerConfig}
    config = {"customName": "two", "OPENAI_API_KEY": "sk-two-0123456789", "OPENAI_BASE_URL": "x"}
    body = await expect(
        admin,
        "POST",
        "/api/providers",
        200,
        shapes.ADDED,
        json={"providerType": TYPE, "providerConfig": config},
    )
    uuid = body["provider"]["uuid"]
    assert body["providerType"] == TYPE and body["provider"]["OPENAI_API_KEY"] == "sk-t****6789"
    await expect(admin, "POST", "/api/providers", 400, shapes.ERROR, json={"providerType": TYPE})
    path = f"/api/providers/{TYPE}/{uuid}"
    # modal.js saveProvider(): {providerConfig}
    updated = {"providerConfig": {"customName": "renamed"}}
    body = await expect(admin, "PUT", path, 200, shapes.UPDATED, json=updated)
    assert body["provider"]["customName"] == "renamed"
    # modal.js toggleProviderStatus(): POST …/{action} with {action}
    for action in ("disable", "enable"):
        body = await expect(
            admin, "POST", f"{path}/{action}", 200, shapes.UPDATED, json={"action": action}
        )
        assert body["provider"]["isDisabled"] is (action == "disable")
    body = await expect(admin, "POST", f"{path}/refresh-uuid", 200, shapes.UUID_REFRESHED)
    assert body["oldUuid"] == uuid
    path = f"/api/providers/{TYPE}/{body['newUuid']}"
    body = await expect(admin, "DELETE", path, 200, shapes.DELETED)
    assert body["deletedProvider"]["OPENAI_API_KEY"] == "sk-t****6789"  # Node: in clear
    for method, missing in (
        ("DELETE", path),
        ("PUT", path),
        ("POST", f"{path}/disable"),
        ("POST", f"{path}/refresh-uuid"),
        ("POST", f"{path}/health-check"),
    ):
        body = await expect(admin, method, missing, 404, shapes.ERROR, json={"providerConfig": {}})
        assert body["error"]["message"] == "Provider not found", method


async def test_pool_wide_actions(admin: Admin) -> None:
    t = f"/api/providers/{TYPE}"
    body = await expect(admin, "POST", f"{t}/reset-health", 200, shapes.RESET)
    assert (body["resetCount"], body["totalCount"]) == (0, 1)
    body = await expect(admin, "DELETE", f"{t}/delete-unhealthy", 200, shapes.NONE_TO_DELETE)
    assert body["deletedCount"] == 0
    body = await expect(admin, "POST", f"{t}/refresh-unhealthy-uuids", 200, shapes.NONE_TO_REFRESH)
    assert body["refreshedCount"] == 0
    body = await expect(admin, "POST", f"{t}/health-check", 200, shapes.TYPE_CHECKED)
    assert body["results"] == []
    for sick in ("sick-1", "sick-2"):
        await admin.store.pools.update_node(TYPE, NODE, {})
        added = {"providerType": TYPE, "providerConfig": {"uuid": sick, "customName": sick}}
        assert (await admin.call("POST", "/api/providers", json=added))[0] == 200
        await admin.store.pools.record_failure(TYPE, sick, message="boom", max_error_count=1)
    await admin.store.flush()
    body = await expect(
        admin, "POST", f"{t}/refresh-unhealthy-uuids", 200, shapes.REFRESHED_UNHEALTHY
    )
    assert sorted(r["oldUuid"] for r in body["refreshedProviders"]) == ["sick-1", "sick-2"]
    body = await expect(admin, "DELETE", f"{t}/delete-unhealthy", 200, shapes.DELETED_UNHEALTHY)
    assert body["deletedCount"] == 2 and body["remainingCount"] == 1
    assert {d["customName"] for d in body["deletedProviders"]} == {"sick-1", "sick-2"}
    body = await expect(admin, "POST", "/api/providers/openai-none/reset-health", 404, shapes.ERROR)
    assert body["error"]["message"] == "No providers found for this type"


async def test_health_checks(admin: Admin, upstream: UpstreamStub) -> None:
    await admin.store.pools.update_node(TYPE, NODE, {"OPENAI_BASE_URL": upstream.base_url})
    body = await expect(
        admin, "POST", f"/api/providers/{TYPE}/{NODE}/health-check", 200, shapes.NODE_CHECKED
    )
    assert (body["healthy"], body["message"], body["isAuthError"]) == (True, "Healthy", False)
    await admin.store.pools.record_failure(TYPE, NODE, message="boom", max_error_count=1)
    await admin.store.flush()
    body = await expect(
        admin, "POST", f"/api/providers/{TYPE}/health-check", 200, shapes.TYPE_CHECKED
    )
    assert (body["successCount"], body["failCount"]) == (1, 0)
    assert body["results"][0]["uuid"] == NODE


# -------------------------------------------------------------------- upload, then link


def node_ui_upload(data: bytes, provider: str, filename: str = "oauth_creds.json") -> Any:
    # file-upload.js uploadFile(): file, provider (the configs/ folder), targetInputId
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type="application/json")
    form.add_field("provider", provider)
    form.add_field("targetInputId", "GEMINI_OAUTH_CREDS_FILE_PATH")
    return form


async def test_upload_list_and_quick_link(admin: Admin) -> None:
    raw = json.dumps(GEMINI_TOKEN).encode()
    body = await expect(
        admin,
        "POST",
        "/api/upload-oauth-credentials",
        200,
        shapes.UPLOADED,
        data=node_ui_upload(raw, "gemini"),
    )
    path = body["filePath"]
    assert path.startswith("configs/gemini/") and path.endswith("_oauth_creds.json")
    assert (body["originalName"], body["provider"]) == ("oauth_creds.json", "gemini")
    assert GEMINI not in (await admin.store.pools.list()).types  # stored, not yet a node

    listed = await expect(admin, "GET", "/api/upload-configs", 200, [shapes.CONFIG_FILE])
    (entry,) = [e for e in listed if e["path"] == path]
    assert (entry["provider"], entry["type"], entry["isUsed"]) == ("gemini", "oauth", False)
    assert entry["expiresAt"] == "2030-03-17T17:46:40.000Z"
    assert GEMINI_TOKEN["access_token"] not in json.dumps(listed)  # Node previews it in clear

    # upload-config-manager.js quickLinkProviderConfig(): {filePath}
    body = await expect(
        admin, "POST", "/api/quick-link-provider", 200, shapes.LINKED, json={"filePath": path}
    )
    (result,) = body["results"]
    assert body["success"] is True and result["providerType"] == GEMINI
    assert result["displayName"] == "Gemini CLI OAuth"
    node = result["provider"]
    assert node["GEMINI_OAUTH_CREDS_FILE_PATH"] == "./" + path
    assert node["checkModelName"] == "gemini-2.5-flash"
    credential = await admin.store.credentials.get(GEMINI, node["uuid"])
    assert credential is not None and credential.document == GEMINI_TOKEN

    listed = await expect(admin, "GET", "/api/upload-configs", 200, [shapes.CONFIG_FILE])
    (entry,) = [e for e in listed if e["path"] == path]
    assert entry["isUsed"] is True and entry["usageInfo"]["usageType"] == "provider_pool"
    assert entry["usageInfo"]["usageDetails"][0]["uuid"] == node["uuid"]

    body = await expect(
        admin, "POST", "/api/quick-link-provider", 200, shapes.LINKED, json={"filePaths": [path]}
    )
    assert body["success"] is False
    assert body["results"][0]["error"] == "This config file is already linked"
    await expect(admin, "POST", "/api/quick-link-provider", 400, shapes.ERROR, json={})


async def test_view_and_delete_uploaded_files(admin: Admin) -> None:
    raw = json.dumps(GEMINI_TOKEN).encode()
    form = node_ui_upload(raw, "gemini")
    linked = (await admin.call("POST", "/api/upload-oauth-credentials", data=form))[1]["filePath"]
    await admin.call("POST", "/api/quick-link-provider", json={"filePath": linked})
    loose = [
        (await admin.call("POST", "/api/upload-oauth-credentials", data=node_ui_upload(raw, d)))[1][
            "filePath"
        ]
        for d in ("gemini", "qwen", "codex")
    ]
    # upload-config-manager.js: the path URI-encoded after /view/ and /delete/
    body = await expect(
        admin, "GET", f"/api/upload-configs/view/{quote(loose[0], safe='')}", 200, shapes.VIEWED
    )
    assert body["path"] == loose[0] and body["size"] == len(raw)
    assert json.loads(body["content"])["expiry_date"] == GEMINI_TOKEN["expiry_date"]
    assert GEMINI_TOKEN["access_token"] not in body["content"]  # Node shows the file as is
    for verb, method in (("view", "GET"), ("delete", "DELETE")):
        body = await expect(
            admin, method, f"/api/upload-configs/{verb}/..%2Fpyproject.toml", 403, shapes.ERROR
        )
        assert body["error"]["message"].startswith("Access denied")
        await expect(
            admin, method, f"/api/upload-configs/{verb}/configs%2Fnone.json", 404, shapes.ERROR
        )
    body = await expect(
        admin,
        "DELETE",
        f"/api/upload-configs/delete/{quote(loose[0], safe='')}",
        200,
        shapes.FILE_DELETED,
    )
    assert body["filePath"] == loose[0]
    # A file a node reads is not deleted from under it (Node deletes it).
    body = await expect(
        admin, "DELETE", f"/api/upload-configs/delete/{quote(linked, safe='')}", 409, shapes.ERROR
    )
    body = await expect(
        admin, "DELETE", "/api/upload-configs/delete-unbound", 200, shapes.UNBOUND_DELETED
    )
    assert sorted(body["deletedFiles"]) == sorted(loose[1:])
    body = await expect(
        admin, "DELETE", "/api/upload-configs/delete-unbound", 200, shapes.NONE_UNBOUND
    )
    assert body["deletedCount"] == 0
    listed = (await admin.call("GET", "/api/upload-configs"))[1]
    assert [e["path"] for e in listed] == [linked]


@pytest.mark.parametrize(
    ("filename", "provider", "message"),
    [
        ("creds.exe", "gemini", "Unsupported file type"),
        ("creds.json", "../up", "Invalid provider format"),
    ],
)
async def test_a_refused_upload_is_400_and_stores_nothing(
    admin: Admin, filename: str, provider: str, message: str
) -> None:
    form = node_ui_upload(b"{}", provider, filename)
    upload = "/api/upload-oauth-credentials"
    body = await expect(admin, "POST", upload, 400, shapes.ERROR, data=form)
    assert body["error"]["message"] == message
    assert await admin.store.kept_files.get() == {}


# -------------------------------------------------------------------- plugins, usage, models


async def test_plugins_usage_and_custom_models(admin: Admin) -> None:
    await admin.store.plugin_config.put(PluginConfig({"ai-monitor": {"enabled": False}}))
    body = await expect(admin, "GET", "/api/plugins", 200, shapes.PLUGINS)
    assert "ai-monitor" in [p["name"] for p in body["plugins"]]  # listed by priority
    # plugin-manager.js togglePlugin(): {enabled}
    body = await expect(
        admin, "POST", "/api/plugins/ai-monitor/toggle", 200, shapes.TOGGLED, json={"enabled": True}
    )
    assert body["plugin"] == {"name": "ai-monitor", "enabled": True}
    await expect(admin, "POST", "/api/plugins/ai-monitor/toggle", 400, shapes.ERROR, json={})

    await expect(admin, "GET", "/api/usage", 200, shapes.USAGE)
    body = await expect(admin, "GET", "/api/usage", 200, shapes.USAGE)
    assert body["fromCache"] is True

    assert await expect(admin, "GET", "/api/custom-models", 200, [dict]) == []
    model = {"id": "fast", "actualProvider": TYPE, "actualModel": "m"}
    body = await expect(admin, "POST", "/api/custom-models", 200, shapes.MODEL_SAVED, json=model)
    assert body["model"] == model
    await expect(admin, "POST", "/api/custom-models", 400, shapes.ERROR, json=model)
    await expect(admin, "POST", "/api/custom-models", 400, shapes.ERROR, json={"name": "x"})
    body = await expect(
        admin, "PUT", "/api/custom-models/fast", 200, shapes.MODEL_SAVED, json={"name": "F"}
    )
    assert body["model"]["name"] == "F"
    body = await expect(admin, "DELETE", "/api/custom-models/fast", 200, shapes.MODEL_DELETED)
    assert body["deletedModel"]["id"] == "fast"
    body = await expect(admin, "DELETE", "/api/custom-models/fast", 404, shapes.ERROR)
    assert body["error"]["message"] == "Model not found"
