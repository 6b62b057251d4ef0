"""Attacks on the admin API's writes with oversized documents and bodies.

* A value nested hundreds of levels deep, once stored, broke every later read of its
  document (Python walks JSON recursively): every endpoint answered 500. Every admin
  write now refuses a body deeper than the limit, and a stored document deeper or larger
  than the limits, with a 400 naming the limit and nothing stored.
* A JSON body of more than ~512 KiB was cut short into a "not valid JSON" 422 although
  the cap is 1 MiB: a body up to the cap is now read whole, one over it is a 413.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cfgstore.model.limits import MAX_DOCUMENT_BYTES, MAX_DOCUMENT_DEPTH
from cfgstore.model.pools import pools_to_json
from cfgstore_gateway.admin.http import MAX_BODY_BYTES
from tests.admin.conftest import NODE, Admin, admin_gateway, file_deployment
from tests.gateway.conftest import CLIENT_KEY, TYPE, auth
from tests.support.deep_json import nested

KIRO = "claude-kiro-oauth"
PLUGIN = "some-plugin"
KEPT_MODEL = {"id": "kept", "actualProvider": TYPE, "actualModel": "gpt-4o-mini"}
JSON = {"Content-Type": "application/json"}
BOUNDARY = "cfgstore-test-boundary-5b1f"
DEPTH_LIMIT_TEXT = f"{MAX_DOCUMENT_DEPTH} levels"
SIZE_LIMIT_TEXT = f"{MAX_DOCUMENT_BYTES} bytes"


def multipart(fields: dict[str, bytes]) -> bytes:
    """A multipart/form-data body (``file`` as a JSON file part) with :data:`BOUNDARY`."""
    out = bytearray()
    for name, value in fields.items():
        filename = '; filename="token.json"' if name == "file" else ""
        out += f"--{BOUNDARY}\r\n".encode()
        out += f'Content-Disposition: form-data; name="{name}"{filename}\r\n\r\n'.encode()
        out += value + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def upload_of(file_text: str, padding: int = 0) -> bytes:
    fields = {"provider": KIRO.encode(), "file": file_text.encode()}
    if padding:
        fields["padding"] = b"p" * padding  # a part the endpoint ignores
    return multipart(fields)


WRITES: dict[str, tuple[str, str, str]] = {
    # name: (method, path, body text; the attacker's value replaces VALUE)
    "config": ("POST", "/api/config", '{"DEEP": VALUE}'),
    "new node": (
        "POST",
        "/api/providers",
        f'{{"providerType": "{TYPE}", "providerConfig": {{"OPENAI_API_KEY": "sk-x", '
        '"OPENAI_BASE_URL": "http://127.0.0.1:9", "extra": VALUE}}',
    ),
    "new node's credential": (
        "POST",
        "/api/providers",
        f'{{"providerType": "{KIRO}", "providerConfig": {{}}, '
        '"credential": {"accessToken": "a", "extra": VALUE}}',
    ),
    "node update": ("PUT", f"/api/providers/{TYPE}/{NODE}", '{"providerConfig": {"x": VALUE}}'),
    "credential": ("PUT", f"/api/providers/{TYPE}/{NODE}/credential", '{"token": VALUE}'),
    "credential upload": (
        "UPLOAD",
        "/api/cfgstore/upload-oauth-credentials",
        '{"accessToken": VALUE}',
    ),
    "custom model": ("POST", "/api/custom-models", '{"id": "new", "extra": VALUE}'),
    "custom model update": ("PUT", "/api/custom-models/kept", '{"extra": VALUE}'),
    "plugin toggle": ("POST", f"/api/plugins/{PLUGIN}/toggle", '{"enabled": true, "x": VALUE}'),
}


async def send(admin: Admin, write: str, value_text: str) -> tuple[int, Any]:
    method, path, template = WRITES[write]
    text = template.replace("VALUE", value_text)
    if method == "UPLOAD":
        return await admin.call("POST", path, data=upload_of(text), headers=MULTIPART)
    return await admin.call(method, path, data=text.encode(), headers=JSON)


async def everything(admin: Admin) -> dict[str, Any]:
    """What an admin write could have changed."""
    store = admin.store
    config = await store.config.get()
    credential = await store.credentials.get(TYPE, NODE)
    return {
        "config": (config.version, config.document),
        "pools": pools_to_json(await store.pools.list()),
        "credential": credential.document if credential else None,
        "models": [m.to_json() for m in await store.custom_models.list()],
        "plugins": (await store.plugin_config.get()).plugins,
    }


async def still_serving(admin: Admin) -> None:
    async with admin.client.get("/health") as response:
        assert response.status == 200
    async with admin.client.get("/v1/models", headers=auth()) as response:
        assert response.status == 200, await response.text()
    status, _ = await admin.call("GET", "/api/config")
    assert status == 200


@pytest.fixture
async def target(admin: Admin) -> Admin:
    """The signed-in admin with one custom model (``kept``) to update."""
    status, body = await admin.call("POST", "/api/custom-models", json=KEPT_MODEL)
    assert status == 200, body
    return admin


def names_the_limit(body: Any, limit_text: str) -> bool:
    return limit_text in json.dumps(body["error"])


# ----------------------------------------------------------------------------- depth


@pytest.mark.parametrize("depth", [MAX_DOCUMENT_DEPTH, 600, 5000])
@pytest.mark.parametrize("write", list(WRITES))
async def test_a_deeply_nested_value_is_refused_naming_the_limit_and_nothing_is_stored(
    target: Admin, write: str, depth: int
) -> None:
    """Deeper than a stored document may be: 400 naming the limit. Deeper than the JSON
    parser follows (5000): 400, the body cannot be read at all."""
    before = await everything(target)
    status, body = await send(target, write, nested(depth))
    if depth < 1000:
        assert status == 400, body
        assert names_the_limit(body, DEPTH_LIMIT_TEXT), body
    else:
        assert status == 400 and body["error"]["code"] == "bad_request", body
    assert await everything(target) == before
    await still_serving(target)


async def test_a_config_value_within_the_depth_limit_is_stored(admin: Admin) -> None:
    status, body = await send(admin, "config", nested(MAX_DOCUMENT_DEPTH - 1))
    assert status == 200, body
    assert (await admin.store.config.get()).document["DEEP"] == json.loads(
        nested(MAX_DOCUMENT_DEPTH - 1)
    )
    await still_serving(admin)


# ----------------------------------------------------------------------------- size

STORED_WRITES = [w for w in WRITES if w != "plugin toggle"]  # a toggle stores one boolean


@pytest.mark.parametrize("write", STORED_WRITES)
async def test_a_document_over_the_size_limit_is_400_naming_the_limit(
    target: Admin, write: str
) -> None:
    before = await everything(target)
    status, body = await send(target, write, json.dumps("x" * MAX_DOCUMENT_BYTES))
    assert status == 400, body
    assert names_the_limit(body, SIZE_LIMIT_TEXT), body
    assert await everything(target) == before
    await still_serving(target)


@pytest.mark.parametrize(
    ("method", "path", "body_of"),
    [
        ("POST", "/api/config", lambda key, text: {key: text}),
        ("PUT", f"/api/providers/{TYPE}/{NODE}", lambda key, text: {"providerConfig": {key: text}}),
        ("PUT", "/api/custom-models/kept", lambda key, text: {key: text}),
    ],
    ids=["config", "node", "custom model"],
)
async def test_a_document_cannot_outgrow_the_size_limit_one_merge_at_a_time(
    target: Admin, method: str, path: str, body_of: Any
) -> None:
    half = "y" * (MAX_DOCUMENT_BYTES * 3 // 5)
    status, body = await target.call(method, path, json=body_of("FIRST", half))
    assert status == 200, body
    before = await everything(target)
    status, body = await target.call(method, path, json=body_of("SECOND", half))
    assert status == 400, body
    assert names_the_limit(body, SIZE_LIMIT_TEXT), body
    assert await everything(target) == before


# ----------------------------------------------------------------------------- body cap


def prompt_body(total: int) -> bytes:
    """A config update setting ``systemPrompt``, exactly ``total`` bytes long."""
    empty = len(json.dumps({"systemPrompt": ""}).encode())
    return json.dumps({"systemPrompt": "p" * (total - empty)}).encode()


async def in_chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """The body without a Content-Length (chunked transfer encoding)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_a_json_body_as_large_as_the_cap_is_read_whole(admin: Admin) -> None:
    body = prompt_body(MAX_BODY_BYTES)
    status, answer = await admin.call("POST", "/api/config", data=body, headers=JSON)
    assert status == 200, answer
    assert await admin.store.system_prompt.get() == json.loads(body)["systemPrompt"]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_json_body_one_byte_over_the_cap_is_413(admin: Admin, framing: str) -> None:
    before = await admin.store.system_prompt.get()
    body = prompt_body(MAX_BODY_BYTES + 1)
    data: Any = body if framing == "content-length" else in_chunks(body)
    status, answer = await admin.call("POST", "/api/config", data=data, headers=JSON)
    assert status == 413, answer
    assert answer["error"]["code"] == "too_large"
    assert str(MAX_BODY_BYTES) in answer["error"]["message"]
    assert await admin.store.system_prompt.get() == before


def upload_sized(total: int, token: dict[str, Any]) -> bytes:
    """A credential upload exactly ``total`` bytes long (padded by an ignored part)."""
    bare = len(upload_of(json.dumps(token), padding=1)) - 1
    return upload_of(json.dumps(token), padding=total - bare)


async def test_an_upload_as_large_as_the_cap_is_read_whole(admin: Admin) -> None:
    token = {"accessToken": "a" * 1000, "refreshToken": "r" * 1000, "authMethod": "social"}
    data = upload_sized(MAX_BODY_BYTES, token)
    assert len(data) == MAX_BODY_BYTES
    status, body = await admin.call(
        "POST", "/api/cfgstore/upload-oauth-credentials", data=data, headers=MULTIPART
    )
    assert status == 200, body
    stored = await admin.store.credentials.get(KIRO, body["provider"]["uuid"])
    assert stored is not None and stored.document == token


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_an_upload_one_byte_over_the_cap_is_413(admin: Admin, framing: str) -> None:
    before = await everything(admin)
    data = upload_sized(MAX_BODY_BYTES + 1, {"accessToken": "a"})
    sent: Any = data if framing == "content-length" else in_chunks(data)
    status, body = await admin.call(
        "POST", "/api/cfgstore/upload-oauth-credentials", data=sent, headers=MULTIPART
    )
    assert status == 413, body
    assert str(MAX_BODY_BYTES) in body["error"]["message"]
    assert await everything(admin) == before


# ----------------------------------------------------------------------------- stored before


async def test_a_bad_stored_config_is_served_with_defaults_and_named_in_the_storage_status(
    tmp_path: Path,
) -> None:
    """A config stored before the limits (or edited by hand): the admin API and the
    request path keep working, the storage status names the ignored keys, and an edit of
    another key keeps the wrongly typed value as it was."""
    settings = file_deployment(tmp_path)
    (settings.configs_dir / "config.json").write_text(
        f'{{"REQUIRED_API_KEY": "{CLIENT_KEY}", "MODEL_PROVIDER": "{TYPE}", '
        f'"DEEP": {nested(600)}, "SERVER_PORT": "three"}}'
    )
    async with admin_gateway(settings) as anonymous:
        admin = await anonymous.login()
        await still_serving(admin)
        status, body = await admin.call("GET", "/api/storage/status")
        assert status == 200, body
        assert set(body["configProblems"]) == {"DEEP", "SERVER_PORT"}
        assert DEPTH_LIMIT_TEXT in body["configProblems"]["DEEP"]

        status, body = await admin.call("POST", "/api/config", json={"MAX_ERROR_COUNT": 4})
        assert status == 200, body
    stored = json.loads((settings.configs_dir / "config.json").read_bytes())
    assert stored["SERVER_PORT"] == "three" and stored["MAX_ERROR_COUNT"] == 4
    assert "DEEP" not in stored  # unusable, and nothing could copy it: the edit drops it
