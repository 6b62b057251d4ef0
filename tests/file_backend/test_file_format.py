"""The file backend reads and writes the Node service's layout byte for byte."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from cfgstore.adapters import Store
from cfgstore.errors import InvalidData
from cfgstore.model import jsjson
from cfgstore.model.credentials import Credential
from cfgstore.model.sessions import UiSession
from cfgstore.model.timefmt import now_ms
from tests.file_backend.conftest import OpenStore, file_settings, snapshot


def pools_doc(cwd: Path) -> dict[str, list[dict[str, object]]]:
    doc = json.loads((cwd / "configs" / "provider_pools.json").read_text("utf-8"))
    assert isinstance(doc, dict)
    return doc


def first_node(cwd: Path, provider_type: str) -> dict[str, object]:
    return pools_doc(cwd)[provider_type][0]


async def test_open_and_close_change_no_byte(deployment_copy: Path, open_store: OpenStore) -> None:
    before = snapshot(deployment_copy)
    async with open_store() as store:
        await store.pools.list()
        await store.config.get()
        await store.credentials.list()
        await store.sessions.count()
    assert snapshot(deployment_copy) == before


async def test_a_record_rewrites_only_its_node(
    deployment_copy: Path, open_store: OpenStore
) -> None:
    before = snapshot(deployment_copy)
    original = pools_doc(deployment_copy)
    provider_type = next(t for t, nodes in original.items() if nodes)
    target = original[provider_type][0]
    async with open_store() as store:
        await store.pools.record_success(
            provider_type, str(target["uuid"]), at_ms=1_780_128_000_000
        )
        await store.flush()
    after = snapshot(deployment_copy)
    changed = {name for name in before if before[name] != after.get(name)}
    assert changed == {"configs/provider_pools.json"}
    new = pools_doc(deployment_copy)
    assert list(new) == list(original)
    for t, nodes in original.items():
        for index, node in enumerate(nodes):
            if node["uuid"] != target["uuid"] or t != provider_type:
                assert new[t][index] == node
    updated = new[provider_type][0]
    assert updated["usageCount"] == int(target.get("usageCount", 0) or 0) + 1  # type: ignore[call-overload]
    assert updated["lastUsed"] == "2026-05-30T08:00:00.000Z"
    assert list(updated)[: len(target)] == list(target)  # existing keys keep their order
    raw = after["configs/provider_pools.json"]
    assert raw == jsjson.dump_bytes(jsjson.loads(raw, "x"))  # Node's exact write format
    assert not raw.endswith(b"\n")


async def test_written_files_are_private_and_no_temp_files_remain(
    deployment_copy: Path, open_store: OpenStore
) -> None:
    async with open_store() as store:
        await store.config.put({"A": 1}, "*")
        await store.sessions.add("t" * 64, UiSession("admin", now_ms(), now_ms() + 60_000))
        await store.password.set("another-password")
    for name in ("config.json", "token-store.json", "pwd"):
        mode = stat.S_IMODE((deployment_copy / "configs" / name).stat().st_mode)
        assert mode == 0o600, name
    assert not list(deployment_copy.rglob("*.tmp"))


async def test_sessions_file_keeps_the_node_format(
    deployment_copy: Path, open_store: OpenStore
) -> None:
    token = "ab" * 32
    async with open_store() as store:
        await store.sessions.purge_expired(now_ms())
        await store.sessions.add(token, UiSession("admin", 1, 4_102_444_800_000))
    doc = json.loads((deployment_copy / "configs" / "token-store.json").read_text())
    assert doc["tokens"][token] == {
        "username": "admin",
        "loginTime": 1,
        "expiryTime": 4_102_444_800_000,
    }


async def test_cold_start_resets_counters_like_the_node_service(
    deployment_copy: Path, open_store: OpenStore
) -> None:
    async with open_store(reset_counters_on_start=True) as store:
        pools = await store.pools.list()
        assert all(n.state.usage_count == 0 and n.state.error_count == 0 for _, n in pools)
        assert all(n.state.last_used is None and not n.state.needs_refresh for _, n in pools)
    for nodes in pools_doc(deployment_copy).values():
        for node in nodes:
            assert node["usageCount"] == 0 and node["lastUsed"] is None
            for key in (
                "isDisabled",
                "needsRefresh",
                "refreshCount",
                "lastErrorMessage",
                "customName",
            ):
                assert key in node


async def test_counters_kept_when_reset_is_off(
    deployment_copy: Path, open_store: OpenStore
) -> None:
    before = pools_doc(deployment_copy)
    async with open_store(reset_counters_on_start=False) as store:
        pools = await store.pools.list()
    counts = {n.uuid: n.state.usage_count for _, n in pools}
    assert counts == {n["uuid"]: n.get("usageCount", 0) for nodes in before.values() for n in nodes}


@pytest.mark.parametrize("name", ["provider_pools.json", "config.json"])
async def test_malformed_file_names_file_and_position_and_writes_nothing(
    deployment_copy: Path, name: str
) -> None:
    path = deployment_copy / "configs" / name
    text = path.read_text("utf-8")
    broken = text[: len(text) // 2]
    path.write_text(broken, "utf-8")
    before = snapshot(deployment_copy)
    with pytest.raises(InvalidData) as info:
        async with Store.open(file_settings(deployment_copy, reset_counters_on_start=True)):
            pass
    assert info.value.source == str(path)
    assert info.value.where.startswith("line ")
    assert snapshot(deployment_copy) == before


async def test_failed_flush_keeps_pending_records(
    deployment_copy: Path, open_store: OpenStore
) -> None:
    pools_path = deployment_copy / "configs" / "provider_pools.json"
    good = pools_path.read_bytes()
    provider_type, nodes = next((t, n) for t, n in pools_doc(deployment_copy).items() if n)
    uuid = str(nodes[0]["uuid"])
    base = int(nodes[0].get("usageCount", 0) or 0)  # type: ignore[call-overload]
    async with open_store() as store:
        pools_path.write_bytes(b"{ not json")  # an operator's bad edit
        await store.pools.record_success(provider_type, uuid)
        with pytest.raises(InvalidData):
            await store.flush()
        pools_path.write_bytes(good)
        await store.flush()
    count = next(n for n in pools_doc(deployment_copy)[provider_type] if n["uuid"] == uuid)
    assert count["usageCount"] == base + 1


async def test_pools_path_from_config_resolves_against_cwd(deployment_copy: Path) -> None:
    configs = deployment_copy / "configs"
    (deployment_copy / "elsewhere").mkdir()
    os.replace(configs / "provider_pools.json", deployment_copy / "elsewhere" / "pools.json")
    config = json.loads((configs / "config.json").read_text("utf-8"))
    config["PROVIDER_POOLS_FILE_PATH"] = "elsewhere/pools.json"
    (configs / "config.json").write_bytes(jsjson.dump_bytes(config))
    async with Store.open(file_settings(deployment_copy)) as store:
        assert (await store.pools.list()).node_count() > 0


async def test_new_credential_gets_a_path_of_its_own(
    deployment_copy: Path, open_store: OpenStore
) -> None:
    from tests.contract.helpers import make_node

    async with open_store() as store:
        await store.pools.add_node("claude-kiro-oauth", make_node("fresh-kiro"))
        await store.credentials.put(
            Credential("claude-kiro-oauth", "fresh-kiro", {"accessToken": "FAKE"}), None
        )
        node = await store.pools.get_node("claude-kiro-oauth", "fresh-kiro")
    assert node is not None
    path = node.settings["KIRO_OAUTH_CREDS_FILE_PATH"]
    # The Node service's convention (aiclient-formats §3): one timestamped folder each.
    convention = re.fullmatch(
        r"\./configs/kiro/(\d{13})_kiro-auth-token/\1_kiro-auth-token\.json", path
    )
    assert convention is not None, path
    written = deployment_copy / path
    assert written.read_bytes() == b'{\n  "accessToken": "FAKE"\n}'
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
