"""``/api/cfgstore/config`` (the console's) and ``/api/config`` (the Node service's shapes:
``tests/admin/test_node_contract.py``): masked reads with a version, merged validated
writes, If-Match, the system prompt, and the request path following a change at once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.admin.conftest import Admin
from tests.gateway.conftest import CLIENT_KEY

CFG = "/api/cfgstore/config"


async def stored(admin: Admin) -> dict[str, Any]:
    return dict((await admin.store.config.get()).document)


async def test_the_config_is_read_masked_with_its_version_as_etag(admin: Admin) -> None:
    async with admin.client.get(CFG, headers=admin.headers()) as response:
        assert response.status == 200
        body = await response.json()
        version = (await admin.store.config.get()).version
        assert response.headers["ETag"] == f'"{version}"' and body["version"] == version
    assert body["config"]["REQUIRED_API_KEY"] == "******"
    assert CLIENT_KEY not in str(body)
    assert body["config"]["MAX_ERROR_COUNT"] == 3
    assert body["isDefaultPassword"] is False


async def test_an_update_merges_keeps_unknown_keys_removes_nulls_and_ignores_masks(
    admin: Admin,
) -> None:
    before = await stored(admin)
    change = {
        "REQUEST_MAX_RETRIES": 7,
        "MY_OWN_KEY": {"kept": True},
        "CREDENTIAL_SWITCH_MAX_RETRIES": None,
        "REQUIRED_API_KEY": "******",
        "PROXY_URL": "http://user:secret-pass@proxy.local:8080",
    }
    status, body = await admin.call("POST", CFG, json=change)
    assert status == 200, body
    after = await stored(admin)
    assert after["REQUEST_MAX_RETRIES"] == 7
    assert after["MY_OWN_KEY"] == {"kept": True}
    assert "CREDENTIAL_SWITCH_MAX_RETRIES" not in after
    assert after["REQUIRED_API_KEY"] == before["REQUIRED_API_KEY"] == CLIENT_KEY
    assert after["PROXY_URL"] == "http://user:secret-pass@proxy.local:8080"
    assert body["config"]["PROXY_URL"] == "http://user:****@proxy.local:8080"
    assert body["version"] == (await admin.store.config.get()).version != ""


async def test_put_is_the_same_update(admin: Admin) -> None:
    status, _ = await admin.call("PUT", CFG, json={"MAX_ERROR_COUNT": 9})
    assert status == 200 and (await stored(admin))["MAX_ERROR_COUNT"] == 9


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"SERVER_PORT": 70000}, "SERVER_PORT"),
        ({"SERVER_PORT": "3000"}, "SERVER_PORT"),
        ({"REQUEST_MAX_RETRIES": -1}, "REQUEST_MAX_RETRIES"),
        ({"REQUEST_MAX_RETRIES": 101}, "REQUEST_MAX_RETRIES"),
        ({"SYSTEM_PROMPT_MODE": "prepend"}, "SYSTEM_PROMPT_MODE"),
        ({"SYSTEM_PROMPT_FILE_PATH": "../../etc/passwd"}, "SYSTEM_PROMPT_FILE_PATH"),
        ({"SYSTEM_PROMPT_FILE_PATH": "/etc/passwd"}, "SYSTEM_PROMPT_FILE_PATH"),
        ({"PROVIDER_POOLS_FILE_PATH": "/tmp/pools.json"}, "PROVIDER_POOLS_FILE_PATH"),
        ({"CUSTOM_MODELS_FILE_PATH": "C:\\models.json"}, "CUSTOM_MODELS_FILE_PATH"),
        ({"LOG_DIR": "/var/log"}, "LOG_DIR"),
        ({"CRON_REFRESH_TOKEN": "yes"}, "CRON_REFRESH_TOKEN"),
        ({"PROXY_URL": "ftp://x"}, "PROXY_URL"),
        ({"providerFallbackChain": {"a": "b"}}, "providerFallbackChain"),
        ({"REQUIRED_API_KEY": None}, "REQUIRED_API_KEY"),
        ({"REQUIRED_API_KEY": ""}, "REQUIRED_API_KEY"),
        ({"systemPrompt": 5}, "systemPrompt"),
        ({"SCHEDULED_HEALTH_CHECK": {"enabled": "no"}}, "SCHEDULED_HEALTH_CHECK"),
    ],
)
@pytest.mark.parametrize("path", ["/api/config", CFG])
async def test_a_bad_value_is_400_with_its_field_and_nothing_changes(
    admin: Admin, change: dict[str, Any], field: str, path: str
) -> None:
    before = await admin.store.config.get()
    status, body = await admin.call("POST", path, json={"MAX_ERROR_COUNT": 4, **change})
    assert status == 400 and body["error"]["code"] == "invalid"
    assert list(body["error"]["fields"]) == [field]
    after = await admin.store.config.get()
    assert (after.document, after.version) == (before.document, before.version)


async def test_if_match_guards_against_a_lost_update(admin: Admin) -> None:
    _, first = await admin.call("GET", CFG)
    status, _ = await admin.call(
        "POST", "/api/config", json={"MAX_ERROR_COUNT": 5}, headers={"If-Match": '"x"'}
    )
    assert status == 412  # the Node path honours If-Match too
    etag = {"If-Match": f'"{first["version"]}"'}
    status, second = await admin.call("POST", CFG, json={"MAX_ERROR_COUNT": 5}, headers=etag)
    assert status == 200
    status, body = await admin.call("POST", CFG, json={"MAX_ERROR_COUNT": 6}, headers=etag)
    assert status == 412 and body["error"]["code"] == "version_conflict"
    assert (await stored(admin))["MAX_ERROR_COUNT"] == 5
    assert second["version"] != first["version"]


async def test_the_system_prompt_is_stored_apart(admin: Admin) -> None:
    status, body = await admin.call("POST", CFG, json={"systemPrompt": "Be brief."})
    assert status == 200 and body["systemPrompt"] == "Be brief."
    _, flat = await admin.call("GET", "/api/config")
    assert flat["systemPrompt"] == "Be brief."
    assert await admin.store.system_prompt.get() == "Be brief."
    assert "systemPrompt" not in await stored(admin)


async def test_a_new_client_key_applies_to_the_next_request(admin: Admin) -> None:
    async with admin.client.get(
        "/v1/models", headers={"Authorization": f"Bearer {CLIENT_KEY}"}
    ) as r:
        assert r.status == 200
    status, _ = await admin.call(
        "POST", "/api/config", json={"REQUIRED_API_KEY": "new-key-123456789"}
    )
    assert status == 200
    async with admin.client.get(
        "/v1/models", headers={"Authorization": f"Bearer {CLIENT_KEY}"}
    ) as r:
        assert r.status == 401
    async with admin.client.get(
        "/v1/models", headers={"Authorization": "Bearer new-key-123456789"}
    ) as r:
        assert r.status == 200


async def test_reload_config_answers(admin: Admin) -> None:
    status, body = await admin.call("POST", "/api/reload-config")
    assert status == 200 and body["success"] is True
    assert body["details"]["configReloaded"] is True
