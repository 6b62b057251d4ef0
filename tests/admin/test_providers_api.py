"""``/api/providers…`` and ``/api/cfgstore/upload-oauth-credentials`` over the file
backend: every endpoint, its storage effect, secrets masked, bad input refused with nothing
changed (the Node service's answer shapes: ``tests/admin/test_node_contract.py``)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from cfgstore.model.pools import node_from_json, pools_to_json
from cfgstore.model.timefmt import iso_ms, now_ms
from tests.admin.conftest import NODE, SECRET_KEY, Admin
from tests.gateway.conftest import TYPE, api_node
from tests.gateway.upstream_stub import UpstreamStub

KIRO = "claude-kiro-oauth"


def kiro_token(name: str = "one") -> dict[str, Any]:
    return {
        "accessToken": f"access-{name}-0123456789abcdef",
        "refreshToken": f"refresh-{name}-0123456789abcdef",
        "expiresAt": iso_ms(now_ms() + 3_600_000),
        "authMethod": "social",
        "region": "us-east-1",
    }


async def pools_json(admin: Admin) -> dict[str, Any]:
    return pools_to_json(await admin.store.pools.list())


async def test_the_pools_are_listed_with_secrets_masked(admin: Admin) -> None:
    status, body = await admin.call("GET", "/api/providers")
    assert status == 200
    (node,) = body["providers"][TYPE]
    assert node["uuid"] == NODE and node["customName"] == "first"
    assert node["OPENAI_API_KEY"] == SECRET_KEY[:4] + "****" + SECRET_KEY[-4:]
    assert SECRET_KEY not in json.dumps(body)
    status, one = await admin.call("GET", f"/api/providers/{TYPE}")
    assert status == 200
    assert (one["providerType"], one["totalCount"], one["healthyCount"]) == (TYPE, 1, 1)
    status, empty = await admin.call("GET", "/api/providers/openai-none")
    assert status == 200 and empty["providers"] == []


async def test_supported_types_name_what_the_gateway_can_serve(admin: Admin) -> None:
    status, body = await admin.call("GET", "/api/providers/supported")
    assert status == 200 and TYPE in body and KIRO in body


async def test_a_node_is_added_with_a_generated_uuid_and_default_counters(admin: Admin) -> None:
    config = {
        "OPENAI_API_KEY": "sk-new-0123456789",
        "OPENAI_BASE_URL": "http://x",
        "usageCount": 50,
    }
    status, body = await admin.call(
        "POST", "/api/providers", json={"providerType": TYPE, "providerConfig": config}
    )
    assert status == 200, body
    new = body["provider"]
    assert new["uuid"] and new["uuid"] != NODE and new["OPENAI_API_KEY"] == "sk-n****6789"
    stored = await admin.store.pools.get_node(TYPE, new["uuid"])
    assert stored is not None and stored.state.usage_count == 0
    assert stored.settings["OPENAI_API_KEY"] == "sk-new-0123456789"


async def test_an_oauth_account_is_added_with_its_credential(admin: Admin) -> None:
    token = kiro_token()
    status, body = await admin.call(
        "POST",
        "/api/providers",
        json={"providerType": KIRO, "providerConfig": {"customName": "k"}, "credential": token},
    )
    assert status == 200, body
    uuid = body["provider"]["uuid"]
    credential = await admin.store.credentials.get(KIRO, uuid)
    assert credential is not None and credential.document == token
    assert token["accessToken"] not in json.dumps(body)


async def test_a_credential_the_backend_cannot_keep_leaves_no_node_behind(admin: Admin) -> None:
    before = await pools_json(admin)
    status, body = await admin.call(
        "POST",
        "/api/providers",
        json={"providerType": TYPE, "providerConfig": {}, "credential": kiro_token()},
    )
    assert status == 400 and "credential" in body["error"]["fields"]
    assert await pools_json(admin) == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"providerConfig": {}}, "providerType"),
        ({"providerType": "bad type!", "providerConfig": {}}, "providerType"),
        ({"providerType": TYPE, "providerConfig": []}, "providerConfig"),
        ({"providerType": TYPE, "providerConfig": {"uuid": "a b"}}, "providerConfig.uuid"),
        ({"providerType": TYPE, "providerConfig": {"isDisabled": "yes"}}, "providerConfig"),
        ({"providerType": KIRO, "providerConfig": {}, "credential": "tok"}, "credential"),
    ],
)
async def test_a_bad_add_is_400_and_changes_nothing(
    admin: Admin, payload: dict[str, Any], field: str
) -> None:
    before = await pools_json(admin)
    status, body = await admin.call("POST", "/api/providers", json=payload)
    assert status == 400, body
    assert field in body["error"]["fields"]
    assert await pools_json(admin) == before


async def test_a_taken_uuid_is_409(admin: Admin) -> None:
    status, body = await admin.call(
        "POST", "/api/providers", json={"providerType": TYPE, "providerConfig": {"uuid": NODE}}
    )
    assert status == 409 and body["error"]["code"] == "conflict"


async def test_an_update_merges_and_ignores_masked_echoes_and_counters(admin: Admin) -> None:
    _, listed = await admin.call("GET", "/api/providers")
    echoed = {**listed["providers"][TYPE][0], "customName": "renamed", "usageCount": 99}
    echoed["checkModelName"] = "m"
    status, body = await admin.call(
        "PUT", f"/api/providers/{TYPE}/{NODE}", json={"providerConfig": echoed}
    )
    assert status == 200, body
    node = await admin.store.pools.get_node(TYPE, NODE)
    assert node is not None
    assert node.settings["OPENAI_API_KEY"] == SECRET_KEY
    assert node.settings["customName"] == "renamed" and node.settings["checkModelName"] == "m"
    assert node.state.usage_count == 0
    status, _ = await admin.call(
        "PUT", f"/api/providers/{TYPE}/missing", json={"providerConfig": {"a": 1}}
    )
    assert status == 404
    status, body = await admin.call("PUT", f"/api/providers/{TYPE}/{NODE}", json={"x": 1})
    assert status == 400 and "providerConfig" in body["error"]["fields"]
    assert "activeRequests" not in node.settings  # an echoed answer field is not stored


async def test_disable_enable_and_delete(admin: Admin) -> None:
    assert (await admin.call("POST", f"/api/providers/{TYPE}/{NODE}/disable"))[0] == 200
    node = await admin.store.pools.get_node(TYPE, NODE)
    assert node is not None and node.state.is_disabled
    assert (await admin.call("POST", f"/api/providers/{TYPE}/{NODE}/enable"))[0] == 200
    node = await admin.store.pools.get_node(TYPE, NODE)
    assert node is not None and not node.state.is_disabled
    assert (await admin.call("DELETE", f"/api/providers/{TYPE}/{NODE}"))[0] == 200
    assert TYPE not in await pools_json(admin)  # its last node: the type goes too
    assert (await admin.call("DELETE", f"/api/providers/{TYPE}/{NODE}"))[0] == 404


async def add_unhealthy(admin: Admin, uuid: str) -> None:
    node = node_from_json(api_node(uuid, "http://127.0.0.1:9", "sk-unhealthy-000000"), "test")
    await admin.store.pools.add_node(TYPE, node)
    await admin.store.pools.record_failure(TYPE, uuid, message="boom", max_error_count=1)
    await admin.store.flush()


async def test_reset_health_and_delete_unhealthy(admin: Admin) -> None:
    await add_unhealthy(admin, "sick-1")
    status, body = await admin.call("POST", f"/api/providers/{TYPE}/reset-health")
    assert status == 200 and body["resetCount"] >= 1
    node = await admin.store.pools.get_node(TYPE, "sick-1")
    assert node is not None and node.state.is_healthy and node.state.error_count == 0
    await admin.store.pools.record_failure(TYPE, "sick-1", message="boom", max_error_count=1)
    await admin.store.flush()
    status, body = await admin.call("DELETE", f"/api/providers/{TYPE}/delete-unhealthy")
    assert status == 200 and [d["uuid"] for d in body["deletedProviders"]] == ["sick-1"]
    assert await admin.store.pools.get_node(TYPE, NODE) is not None


async def test_refresh_uuid_moves_the_credential_with_the_node(admin: Admin) -> None:
    token = kiro_token()
    _, added = await admin.call(
        "POST",
        "/api/providers",
        json={"providerType": KIRO, "providerConfig": {}, "credential": token},
    )
    old = added["provider"]["uuid"]
    status, body = await admin.call("POST", f"/api/providers/{KIRO}/{old}/refresh-uuid")
    assert status == 200 and body["oldUuid"] == old and body["newUuid"] != old
    assert await admin.store.pools.get_node(KIRO, old) is None
    moved = await admin.store.credentials.get(KIRO, body["newUuid"])
    assert moved is not None and moved.document == token


async def test_refresh_unhealthy_uuids_renames_only_unhealthy_nodes(admin: Admin) -> None:
    await add_unhealthy(admin, "sick-2")
    status, body = await admin.call("POST", f"/api/providers/{TYPE}/refresh-unhealthy-uuids")
    (renamed,) = body["refreshedProviders"]
    assert status == 200 and renamed["oldUuid"] == "sick-2"
    assert await admin.store.pools.get_node(TYPE, renamed["newUuid"]) is not None
    assert await admin.store.pools.get_node(TYPE, NODE) is not None
    status, _ = await admin.call("POST", "/api/providers/openai-none/refresh-unhealthy-uuids")
    assert status == 404


async def test_a_credential_is_replaced_for_an_existing_node(admin: Admin) -> None:
    _, added = await admin.call(
        "POST",
        "/api/providers",
        json={"providerType": KIRO, "providerConfig": {}, "credential": kiro_token("a")},
    )
    uuid = added["provider"]["uuid"]
    fresh = kiro_token("b")
    status, _ = await admin.call("PUT", f"/api/providers/{KIRO}/{uuid}/credential", json=fresh)
    assert status == 200
    stored = await admin.store.credentials.get(KIRO, uuid)
    assert stored is not None and stored.document == fresh
    status, _ = await admin.call("PUT", f"/api/providers/{KIRO}/nobody/credential", json=fresh)
    assert status == 404
    status, _ = await admin.call("PUT", f"/api/providers/{KIRO}/{uuid}/credential", json={})
    assert status == 400


def upload(fields: dict[str, Any]) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in fields.items():
        if name == "file":
            form.add_field("file", value, filename="token.json", content_type="application/json")
        else:
            form.add_field(name, value)
    return form


UPLOAD = "/api/cfgstore/upload-oauth-credentials"


async def test_an_uploaded_token_file_becomes_a_new_account(admin: Admin) -> None:
    token = kiro_token("up")
    form = upload({"file": json.dumps(token).encode(), "provider": KIRO, "customName": "Ann"})
    status, body = await admin.call("POST", UPLOAD, data=form)
    assert status == 200, body
    uuid = body["provider"]["uuid"]
    assert body["provider"]["customName"] == "Ann"
    stored = await admin.store.credentials.get(KIRO, uuid)
    assert stored is not None and stored.document == token


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"file": b"{nope", "provider": KIRO}, "file"),
        ({"file": b"[]", "provider": KIRO}, "file"),
        ({"provider": KIRO}, "file"),
        ({"file": b'{"accessToken": "a"}', "provider": "bad type"}, "provider"),
    ],
)
async def test_a_bad_upload_is_400_and_changes_nothing(
    admin: Admin, fields: dict[str, Any], field: str
) -> None:
    before = await pools_json(admin)
    status, body = await admin.call("POST", UPLOAD, data=upload(fields))
    assert status == 400 and field in body["error"]["fields"]
    assert await pools_json(admin) == before
    status, body = await admin.call("POST", UPLOAD, json={"a": 1})
    assert status == 400


async def test_a_health_check_from_the_ui_marks_the_node(
    admin: Admin, upstream: UpstreamStub
) -> None:
    await admin.store.pools.update_node(TYPE, NODE, {"OPENAI_BASE_URL": upstream.base_url})
    status, body = await admin.call("POST", f"/api/providers/{TYPE}/{NODE}/health-check")
    assert status == 200, body
    assert (body["uuid"], body["healthy"], body["message"]) == (NODE, True, "Healthy")
    node = await admin.store.pools.get_node(TYPE, NODE)
    assert node is not None and node.state.last_health_check_time is not None
    status, _ = await admin.call("POST", f"/api/providers/{TYPE}/nobody/health-check")
    assert status == 404
    status, body = await admin.call("POST", f"/api/providers/{TYPE}/health-check")
    assert status == 200 and body["results"] == []  # no unhealthy node to check
    assert body["message"] == "No unhealthy providers to check"
