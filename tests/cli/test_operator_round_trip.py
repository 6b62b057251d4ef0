"""The operator's round trip (issue 20): a deployment migrated to Redis is run and edited
the way an operator does it — through the admin API of a running gateway — then exported,
migrated into a fresh namespace, verified, and exported again. The two exports are the
same files, byte for byte: nothing the running system holds is lost on the way back.

The only stand-ins are the upstream token endpoint and the upstream the health check
calls (local HTTP servers); Redis, the gateway and cfgctl are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.admin.conftest import PASSWORD, Admin
from tests.cli.deployments import (
    Namespace,
    cfgctl,
    describe,
    private_namespace,
    read_json,
    tree_bytes,
)
from tests.cli.test_rollback_fidelity import (
    GEMINI,
    GEMINI_KEY,
    GEMINI_TOKEN,
    GEMINI_UUID,
    admin_edits,
    example,  # noqa: F401 (a fixture)
    export,
    migrate,
)
from tests.gateway.code_assist_stub import CodeAssistStub
from tests.gateway.token_stub import TokenStub

ANTIGRAVITY = "gemini-antigravity"
ANTIGRAVITY_UUID = "1d1764f8-2360-4b93-9787-834f32bfb03b"
MOVED = "./configs/antigravity/moved_oauth_creds.json"
NEW_PASSWORD = "a new admin password"
NEW_ACCOUNT = {"access_token": "ya29.added", "refresh_token": "1//added", "expiry_date": 1}
UPLOADED = {"access_token": "qwen-uploaded", "refresh_token": "qwen-r", "expiry_date": 2}
GEMINI_PROJECT = "example-gcp-project-4711"  # the sample's Gemini node's PROJECT_ID
REFRESHED = {"access_token": "ya29.refreshed-by-a-health-check", "expires_in": 3599}


async def operate(admin: Admin) -> dict[str, Any]:
    """Every kind of edit an operator makes, each through the admin API."""
    done: dict[str, Any] = {}

    async def call(method: str, path: str, expected: int = 200, **kwargs: Any) -> Any:
        status, body = await admin.call(method, path, **kwargs)
        assert status == expected, (method, path, status, body)
        return body

    # An OAuth account with its credential, and an uploaded token file.
    added = await call(
        "POST",
        "/api/providers",
        200,
        json={
            "providerType": GEMINI,
            "providerConfig": {"customName": "added"},
            "credential": NEW_ACCOUNT,
        },
    )
    done["added"] = added["provider"]["uuid"]
    form = aiohttp.FormData()
    form.add_field("file", json.dumps(UPLOADED).encode(), filename="token.json")
    form.add_field("provider", "qwen")  # the Node UI's folder name for openai-qwen-oauth
    uploaded = await call("POST", "/api/upload-oauth-credentials", data=form)
    linked = await call("POST", "/api/quick-link-provider", json={"filePath": uploaded["filePath"]})
    done["uploaded"] = linked["results"][0]["provider"]["uuid"]

    # A credential path edited; a second node naming the Gemini token file (another spelling).
    await call(
        "PUT",
        f"/api/providers/{ANTIGRAVITY}/{ANTIGRAVITY_UUID}",
        json={"providerConfig": {"ANTIGRAVITY_OAUTH_CREDS_FILE_PATH": MOVED}},
    )
    twin = await call(
        "POST",
        "/api/providers",
        200,
        json={
            "providerType": GEMINI,
            "providerConfig": {"customName": "twin", GEMINI_KEY: f"./{GEMINI_TOKEN}"},
        },
    )
    twin_uuid = twin["provider"]["uuid"]

    # The shared token refreshed: a health check of the first node finds it expired.
    code_assist = CodeAssistStub(project=GEMINI_PROJECT, token=REFRESHED["access_token"])
    code_assist.onboarded = True  # by the Node service: the node names its PROJECT_ID
    async with TokenStub(lambda received, n: (200, REFRESHED)) as tokens, code_assist as up:
        endpoints = {"GEMINI_OAUTH_TOKEN_URL": tokens.url("/token"), "GEMINI_BASE_URL": up.base()}
        await call(
            "PUT", f"/api/providers/{GEMINI}/{GEMINI_UUID}", json={"providerConfig": endpoints}
        )
        checked = await call("POST", f"/api/providers/{GEMINI}/{GEMINI_UUID}/health-check")
        assert checked["healthy"] is True, checked
        assert tokens.count == 1
        assert up.methods() == ["generateContent"]  # with the refreshed token: else a 401
        assert up.problems == []

    # The twin renamed; the password changed; a plugin toggled.
    renamed = await call("POST", f"/api/providers/{GEMINI}/{twin_uuid}/refresh-uuid")
    done["twin"] = renamed["newUuid"]
    assert done["twin"] != twin_uuid
    await call(
        "POST",
        "/api/admin-password",
        json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
    )
    toggled = await call("POST", "/api/plugins/ai-monitor/toggle", json={"enabled": True})
    assert toggled["plugin"]["enabled"] is True
    return done


def test_export_migrate_verify_export_round_trips_every_admin_edit(
    example: Path,  # noqa: F811 (the fixture)
    tmp_path: Path,
    ns: Namespace,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    migrated = migrate(ns, example / "configs")
    assert migrated.exit_code == 0, describe(migrated)
    done = admin_edits(ns, operate)

    first = tmp_path / "first"
    exported = export(ns, first)
    assert exported.exit_code == 0, describe(exported)
    check_first_export(first, done)

    with private_namespace(redis_url, monkeypatch) as fresh:
        again = migrate(fresh, first / "configs")
        assert again.exit_code == 0, describe(again)
        verified = cfgctl("verify", "--configs", first / "configs", "--redis-url", fresh.url)
        assert verified.exit_code == 0, describe(verified)
        second = tmp_path / "second"
        exported = export(fresh, second)
        assert exported.exit_code == 0, describe(exported)

    one, two = tree_bytes(first), tree_bytes(second)
    assert sorted(one) == sorted(two)
    differing = [name for name in one if one[name] != two[name]]
    assert differing == [], differing


def check_first_export(root: Path, done: dict[str, Any]) -> None:
    """The first export holds every edit (so the byte comparison compares something)."""
    pools = read_json(root / "configs/provider_pools.json")

    def node(provider_type: str, uuid: str) -> dict[str, Any]:
        found: dict[str, Any] = next(n for n in pools[provider_type] if n["uuid"] == uuid)
        return found

    def token_of(provider_type: str, uuid: str, key: str = GEMINI_KEY) -> Any:
        return read_json(root / node(provider_type, uuid)[key])

    assert token_of(GEMINI, done["added"]) == NEW_ACCOUNT
    qwen = "openai-qwen-oauth"
    assert token_of(qwen, done["uploaded"], "QWEN_OAUTH_CREDS_FILE_PATH") == UPLOADED
    assert node(ANTIGRAVITY, ANTIGRAVITY_UUID)["ANTIGRAVITY_OAUTH_CREDS_FILE_PATH"] == MOVED
    assert (root / MOVED).is_file()
    refreshed = token_of(GEMINI, GEMINI_UUID)
    assert refreshed["access_token"] == REFRESHED["access_token"]
    assert token_of(GEMINI, done["twin"]) == refreshed  # one file, both nodes
    assert node(GEMINI, done["twin"])[GEMINI_KEY] == f"./{GEMINI_TOKEN}"
    assert (root / "configs/pwd").read_text().startswith("pbkdf2:")
    plugins = read_json(root / "configs/plugins.json")["plugins"]
    assert plugins["ai-monitor"]["enabled"] is True
