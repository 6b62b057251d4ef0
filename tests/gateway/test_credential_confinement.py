"""Security (issue 13, finding 6): a hand-edited ``provider_pools.json`` naming a JSON file
outside the deployment (absolute, ``..``, or a symlink inside ``configs/`` pointing out)
never gets that file's ``access_token`` sent upstream.

A real gateway over the file backend; the upstream is a local stub that records every
``Authorization`` header. The refused node fails like any node whose credential is
unusable (logged, counted, the request goes to the next node); the service keeps serving.
A folder listed in ``credential_roots`` is used normally.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import attrs
import pytest

from cfgstore.adapters import Settings, Store
from cfgstore.errors import CredentialPathOutside
from cfgstore.model.credentials import Credential
from cfgstore.model.timefmt import now_ms
from tests.gateway.conftest import make_deployment, running_gateway, write_json
from tests.gateway.upstream_stub import UpstreamStub

QWEN = "openai-qwen-oauth"
PATH_KEY = "QWEN_OAUTH_CREDS_FILE_PATH"
STOLEN = "stolen-access-token-outside"
GOOD = "good-access-token-inside"
OUTSIDER = "outsider"
INSIDER = "insider"


def token(access: str) -> dict[str, Any]:
    return {
        "access_token": access,
        "token_type": "Bearer",
        "refresh_token": f"rt-{access}",
        "resource_url": "portal.qwen.example.invalid",
        "expiry_date": now_ms() + 3_600_000,
    }


def qwen_node(uuid: str, path: str, base_url: str) -> dict[str, Any]:
    return {"uuid": uuid, PATH_KEY: path, "QWEN_BASE_URL": base_url}


def outside_paths(root: Path, outside: Path) -> dict[str, str]:
    """Attack name → the path string written into the pools by hand."""
    return {
        "absolute": str(outside / "creds.json"),
        "dotdot": "../outside/creds.json",
        "configs-dotdot": "./configs/../../outside/creds.json",
        "symlink": "./configs/qwen/linked.json",
    }


def plant(tmp_path: Path) -> tuple[Path, Path]:
    """The deployment root and an ``outside`` folder holding a token file."""
    root, outside = tmp_path / "deploy", tmp_path / "outside"
    write_json(outside / "creds.json", token(STOLEN))
    write_json(root / "configs" / "qwen" / "good.json", token(GOOD))
    (root / "configs" / "qwen" / "linked.json").symlink_to(outside / "creds.json")
    return root, outside


def deployment(root: Path, path: str, base_url: str, *nodes: dict[str, Any]) -> Settings:
    pools = {QWEN: [qwen_node(OUTSIDER, path, base_url), *nodes]}
    return make_deployment(root, pools, MODEL_PROVIDER=QWEN, MAX_ERROR_COUNT=10)


@pytest.mark.parametrize("attack", ["absolute", "dotdot", "configs-dotdot", "symlink"])
async def test_an_outside_token_file_is_never_sent_upstream(
    tmp_path: Path, upstream: UpstreamStub, caplog: pytest.LogCaptureFixture, attack: str
) -> None:
    root, outside = plant(tmp_path)
    path = outside_paths(root, outside)[attack]
    inside = qwen_node(INSIDER, "./configs/qwen/good.json", upstream.base_url)
    settings = deployment(root, path, upstream.base_url, inside)
    caplog.set_level(logging.ERROR)
    async with running_gateway(settings) as gw:
        for _ in range(4):  # round robin: the outsider is picked too
            response = await gw.chat("qwen3-coder-plus")
            assert response.status == 200, await response.text()
        sent = [r.authorization or "" for r in upstream.received]
        assert sent and all(STOLEN not in header for header in sent), sent
        assert set(upstream.tokens()) == {GOOD}
        outsider = (await gw.node(OUTSIDER, QWEN)).state
        assert outsider.error_count >= 1  # it was picked, and refused
        assert "outside the allowed folders" in (outsider.last_error_message or "")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert OUTSIDER in logged and "outside the folders credential files may live in" in logged
    assert json.loads((outside / "creds.json").read_bytes())["access_token"] == STOLEN


async def test_with_only_an_outside_node_the_client_gets_an_error_not_the_token(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    root, outside = plant(tmp_path)
    settings = deployment(root, str(outside / "creds.json"), upstream.base_url)
    async with running_gateway(settings) as gw:
        response = await gw.chat("qwen3-coder-plus")
        assert response.status == 502, response.status  # as for any unusable credential
        assert STOLEN not in await response.text()
        assert (await gw.client.get("/health")).status == 200  # still serving
    assert upstream.received == []


async def test_a_token_file_in_a_listed_root_is_used(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    root, outside = plant(tmp_path)
    settings = deployment(root, str(outside / "creds.json"), upstream.base_url)
    async with running_gateway(attrs.evolve(settings, credential_roots=(outside,))) as gw:
        response = await gw.chat("qwen3-coder-plus")
        assert response.status == 200, await response.text()
    assert upstream.tokens() == [STOLEN]


async def test_the_file_backend_reads_writes_and_removes_nothing_outside(tmp_path: Path) -> None:
    """The store alone (no admin API in front): each operation raises the typed error,
    naming the path, and the outside file is untouched; listing skips the node."""
    root, outside = plant(tmp_path)
    path = "../outside/creds.json"
    before = (outside / "creds.json").read_bytes()
    settings = attrs.evolve(deployment(root, path, "http://127.0.0.1:9"), backends=("file",))
    async with Store.open(settings) as store:
        with pytest.raises(CredentialPathOutside) as refused:
            await store.credentials.get(QWEN, OUTSIDER)
        assert refused.value.path == path and str(outside / "creds.json") in str(refused.value)
        fresh = Credential(QWEN, OUTSIDER, token("overwrite"))
        with pytest.raises(CredentialPathOutside):
            await store.credentials.put(fresh, expected_version=None)
        with pytest.raises(CredentialPathOutside):
            await store.credentials.delete(QWEN, OUTSIDER)
        assert await store.credentials.list() == []
    assert (outside / "creds.json").read_bytes() == before
