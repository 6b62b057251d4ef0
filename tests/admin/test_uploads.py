"""Upload, then link (the Node service's flow) as stored: the uploaded file lands where the
Node service keeps it (file backend: ``configs/<folder>/``, private) or in the shared store
(Redis: every instance sees it); linking makes a node that reads that document, and a
path that leads out of the credential folders is refused, nothing added."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import aiohttp

from cfgstore.adapters import Settings
from tests.admin.conftest import Admin
from tests.admin.test_shared_state import namespace, two  # noqa: F401 (fixture)
from tests.gateway.redis_instances import Namespace

TOKEN = {"access_token": "ya29.token-0123456789abcdef", "refresh_token": "1//r-0123456789ab"}
KIRO_TOKEN = {"accessToken": "kiro-access-0123456789", "refreshToken": "kiro-refresh-012345"}


async def upload(admin: Admin, folder: str, document: object, name: str = "creds.json") -> str:
    form = aiohttp.FormData()
    form.add_field("file", json.dumps(document).encode(), filename=name)
    form.add_field("provider", folder)
    status, body = await admin.call("POST", "/api/upload-oauth-credentials", data=form)
    assert status == 200, body
    path: str = body["filePath"]
    return path


async def link(admin: Admin, *paths: str) -> dict[str, object]:
    status, body = await admin.call("POST", "/api/quick-link-provider", json={"filePaths": paths})
    assert status == 200, body
    result: dict[str, object] = body
    return result


def settings_root(admin: Admin) -> Path:
    settings: Settings = admin.store.settings
    return settings.working_dir


async def test_an_upload_lands_in_its_private_folder_and_linking_reads_it(admin: Admin) -> None:
    path = await upload(admin, "gemini", TOKEN)
    on_disk = settings_root(admin) / path
    assert json.loads(on_disk.read_bytes()) == TOKEN
    assert stat.S_IMODE(on_disk.stat().st_mode) == 0o600
    assert stat.S_IMODE(on_disk.parent.stat().st_mode) == 0o700
    body = await link(admin, path)
    uuid = body["results"][0]["provider"]["uuid"]  # type: ignore[index]
    credential = await admin.store.credentials.get("gemini-cli-oauth", uuid)
    assert credential is not None and credential.document == TOKEN
    assert on_disk.is_file()  # now the node's token file: no longer a loose upload
    assert path not in await admin.store.kept_files.get()


async def test_a_kiro_token_gets_a_folder_of_its_own(admin: Admin) -> None:
    first = await upload(admin, "kiro", KIRO_TOKEN, "kiro-auth-token.json")
    second = await upload(admin, "kiro", KIRO_TOKEN, "kiro-auth-token.json")
    assert first.startswith("configs/kiro/") and first.count("/") == 3
    assert first.rsplit("/", 1)[0] != second.rsplit("/", 1)[0]
    body = await link(admin, first, second)
    assert body["successCount"] == 2
    types = (await admin.store.pools.list()).types
    assert len(types["claude-kiro-oauth"]) == 2


async def test_linking_refuses_unknown_and_outside_paths(admin: Admin, tmp_path: Path) -> None:
    before = await admin.store.pools.list()
    outside = tmp_path.parent / "elsewhere" / "gemini" / "creds.json"
    body = await link(admin, "configs/misc/creds.json", str(outside), "../gemini/creds.json")
    assert body["success"] is False and body["failCount"] == 3
    errors = [r["error"] for r in body["results"]]  # type: ignore[attr-defined]
    assert errors[0] == "Unable to identify provider type for config file"
    assert all("outside" in e for e in errors[1:]), errors
    assert await admin.store.pools.list() == before


async def test_over_redis_an_upload_is_seen_and_linked_by_another_instance(
    namespace: Namespace,  # noqa: F811 (the fixture)
) -> None:
    async with two(namespace) as (one, other):
        one, other = await one.login(), await other.login()
        path = await upload(one, "codex", {"tokens": {"access_token": "a-0123456789"}})
        status, listed = await other.call("GET", "/api/upload-configs")
        assert status == 200 and [e["path"] for e in listed] == [path]
        assert listed[0]["provider"] == "codex" and listed[0]["isUsed"] is False
        body = await link(other, path)
        uuid = body["results"][0]["provider"]["uuid"]  # type: ignore[index]
        credential = await one.store.credentials.get("openai-codex-oauth", uuid)
        assert credential is not None
        assert credential.document == {"tokens": {"access_token": "a-0123456789"}}
        assert await one.store.kept_files.get() == {}
        status, listed = await one.call("GET", "/api/upload-configs")
        assert [(e["path"], e["isUsed"]) for e in listed] == [(path, True)]


async def test_deleting_an_upload_removes_its_file(admin: Admin) -> None:
    path = await upload(admin, "qwen", TOKEN)
    on_disk = settings_root(admin) / path
    assert on_disk.is_file()
    status, _ = await admin.call("DELETE", f"/api/upload-configs/delete/{path}")
    assert status == 200
    assert not on_disk.exists()
    assert await admin.store.kept_files.get() == {}


async def test_over_redis_a_node_form_naming_an_upload_takes_its_token(
    namespace: Namespace,  # noqa: F811 (the fixture)
) -> None:
    """The Node UI's provider form: upload (the path lands in the form), then add the node
    with that path; later upload another file and save the node with the new path."""
    gemini, key = "gemini-cli-oauth", "GEMINI_OAUTH_CREDS_FILE_PATH"
    async with two(namespace) as (one, other):
        one, other = await one.login(), await other.login()
        first = await upload(one, "gemini", TOKEN)
        status, body = await other.call(
            "POST", "/api/providers", json={"providerType": gemini, "providerConfig": {key: first}}
        )
        assert status == 200, body
        uuid = body["provider"]["uuid"]
        credential = await one.store.credentials.get(gemini, uuid)
        assert credential is not None and credential.document == TOKEN
        fresh = {**TOKEN, "access_token": "ya29.fresh-0123456789abcdef"}
        second = await upload(one, "gemini", fresh)
        status, body = await other.call(
            "PUT", f"/api/providers/{gemini}/{uuid}", json={"providerConfig": {key: second}}
        )
        assert status == 200, body
        credential = await one.store.credentials.get(gemini, uuid)
        assert credential is not None and credential.document == fresh
        assert await one.store.kept_files.get() == {}


async def test_in_files_a_node_form_naming_an_upload_reads_the_file(admin: Admin) -> None:
    gemini, key = "gemini-cli-oauth", "GEMINI_OAUTH_CREDS_FILE_PATH"
    path = await upload(admin, "gemini", TOKEN)
    status, body = await admin.call(
        "POST", "/api/providers", json={"providerType": gemini, "providerConfig": {key: path}}
    )
    assert status == 200, body
    credential = await admin.store.credentials.get(gemini, body["provider"]["uuid"])
    assert credential is not None and credential.document == TOKEN
    on_disk = settings_root(admin) / path
    assert json.loads(on_disk.read_bytes()) == TOKEN  # the uploaded file is the token file
    assert await admin.store.kept_files.get() == {}
