"""The confirmed-state snapshot file: a byte-stable round trip of everything the sample
deployment serves, and strict rejection (with the JSON path) of anything else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cfgstore.errors import InvalidData
from cfgstore.model import jsjson
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import Credential, TokenFormat
from cfgstore.model.custom_models import CustomModel
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.pools import pools_from_json, pools_to_json
from cfgstore.model.snapshot import (
    StoreSnapshot,
    credential_from_json,
    credential_to_json,
    snapshot_from_bytes,
    snapshot_to_bytes,
)
from cfgstore.model.usage_cache import UsageCache
from tests.support.sample_snapshot import read_sample_snapshot

SAVED_AT_MS = 1773576000123  # 2026-03-15T12:00:00.123Z
SIBLING = "28890a7ab216cb7a67d9e6205acfecc2f4d9640f.json"


async def read_deployment(tmp_path: Path) -> StoreSnapshot:
    """Everything a file-backend store over a copy of the sample deployment serves (the
    copy is ``tmp_path / "app"``)."""
    return await read_sample_snapshot(
        tmp_path, namespace_id="ns-7f3a", prefix="aiclient", revision=4242, saved_at_ms=SAVED_AT_MS
    )


@pytest.fixture
async def deployment(tmp_path: Path) -> StoreSnapshot:
    return await read_deployment(tmp_path)


def small_snapshot() -> StoreSnapshot:
    pools = pools_from_json(
        {"openai-custom": [{"uuid": "n-1", "OPENAI_API_KEY": "sk-FAKE", "usageCount": 3}]}, "t"
    )
    return StoreSnapshot(
        namespace_id="ns-1",
        prefix="aiclient",
        revision=9,
        saved_at_ms=SAVED_AT_MS,
        pools=pools,
        config=MainConfig({"MAX_ERROR_COUNT": 3}, "5"),
        system_prompt=None,
        custom_models=[CustomModel("m-1", {"id": "m-1", "name": "M"})],
        plugins=PluginConfig({"default-auth": {"enabled": True}}),
        password=None,
        usage_cache=None,
        credentials=[
            Credential(
                "claude-kiro-oauth",
                "k-1",
                {"accessToken": "FAKE", "expiresAt": "2026-03-15T13:00:00.000Z"},
                source_path="./configs/kiro/k.json",
                token_format=TokenFormat.KIRO,
                version="v3",
                siblings={"reg.json": {"clientId": "FAKE-id"}},
            )
        ],
    )


def small_doc() -> dict[str, Any]:
    doc = json.loads(snapshot_to_bytes(small_snapshot()))
    assert isinstance(doc, dict)
    return doc


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# ---------------------------------------------------------------------------- round trip


async def test_sample_deployment_round_trips(deployment: StoreSnapshot) -> None:
    snap = deployment
    # The fixture really holds the sample deployment (README "Facts the tests rely on").
    assert len(snap.pools.types) == 12
    assert snap.pools.node_count() == 16
    assert len(snap.credentials) == 11
    assert len(snap.custom_models) == 3
    assert len(snap.plugins.plugins) == 5
    assert snap.config.get("MAX_ERROR_COUNT") == 3
    assert snap.password is not None and snap.password.startswith("pbkdf2:23d96bca")
    assert snap.system_prompt is not None and "回答请简洁" in snap.system_prompt
    assert snap.usage_cache is not None

    data = snapshot_to_bytes(snap)
    back = snapshot_from_bytes(data, "state/snapshot.json")

    assert back == snap
    assert pools_to_json(back.pools) == pools_to_json(snap.pools)
    # Layout and hot fields survive: the pools serialise to the same Node-format bytes.
    assert jsjson.dump_bytes(pools_to_json(back.pools)) == jsjson.dump_bytes(
        pools_to_json(snap.pools)
    )
    assert [list(nodes) for nodes in back.pools.types.values()] == [
        list(nodes) for nodes in snap.pools.types.values()
    ]
    assert back.config.version == snap.config.version != "0"
    assert list(back.config.document) == list(snap.config.document)
    assert snapshot_to_bytes(back) == data


async def test_pools_equal_the_served_file(tmp_path: Path) -> None:
    snap = await read_deployment(tmp_path)
    served = (tmp_path / "app" / "configs" / "provider_pools.json").read_bytes()
    back = snapshot_from_bytes(snapshot_to_bytes(snap), "s")
    assert jsjson.dump_bytes(pools_to_json(back.pools)) == served


async def test_header_fields(deployment: StoreSnapshot) -> None:
    doc = json.loads(snapshot_to_bytes(deployment))
    assert list(doc) == [
        "format",
        "format_version",
        "namespace_id",
        "prefix",
        "revision",
        "saved_at",
        "saved_at_ms",
        "pools",
        "config",
        "system_prompt",
        "custom_models",
        "plugins",
        "password",
        "usage_cache",
        "credentials",
    ]
    assert doc["format"] == "cfgstore-snapshot"
    assert doc["format_version"] == 1
    assert doc["namespace_id"] == "ns-7f3a"
    assert doc["revision"] == 4242
    assert doc["saved_at"] == "2026-03-15T12:00:00.123Z"
    assert doc["saved_at_ms"] == SAVED_AT_MS
    assert set(doc["config"]) == {"version", "document"}
    assert doc["config"]["document"]["MAX_ERROR_COUNT"] == 3


async def test_kiro_credential_with_siblings_survives(deployment: StoreSnapshot) -> None:
    with_siblings = [c for c in deployment.credentials if c.siblings]
    assert len(with_siblings) == 1
    original = with_siblings[0]
    assert original.token_format is TokenFormat.KIRO
    assert list(original.siblings) == [SIBLING]

    back = snapshot_from_bytes(snapshot_to_bytes(deployment), "s")
    [restored] = [c for c in back.credentials if c.uuid == original.uuid]
    assert restored == original
    assert restored.token_format is TokenFormat.KIRO
    assert restored.version == original.version is not None
    assert restored.source_path == original.source_path is not None
    assert restored.siblings[SIBLING]["clientId"] == "FAKE-example-clientId-ide-0003"
    effective = restored.effective()
    assert effective["clientSecret"] == "FAKE-example-clientSecret-ide-0003"
    assert effective["expiresAt"] == "2026-03-15T13:00:00.000Z"
    # Every format the sample uses comes back as the same enum member.
    assert [c.token_format for c in back.credentials] == [
        c.token_format for c in deployment.credentials
    ]
    assert {c.token_format for c in back.credentials} >= {
        TokenFormat.KIRO,
        TokenFormat.GOOGLE,
        TokenFormat.QWEN,
        TokenFormat.IFLOW,
        TokenFormat.CODEX,
    }


def test_large_numbers_and_text_survive_exactly() -> None:
    snap = small_snapshot()
    snap.credentials[0].document.update(
        {
            "big": 2**60,
            "negative": -(2**70),
            "nested": {"ids": [2**64 + 1, 0.1, 1.5e-7]},
            "name": "账号 ☃",
        }
    )
    data = snapshot_to_bytes(snap)
    assert b"1152921504606846976" in data
    assert b"-1180591620717411303424" in data
    assert b"18446744073709551617" in data
    assert b"1.5e-7" in data
    assert "账号 ☃".encode() in data  # raw UTF-8, not \u escapes

    back = snapshot_from_bytes(data, "s")
    document = back.credentials[0].document
    assert document["big"] == 2**60 and isinstance(document["big"], int)
    assert document["negative"] == -(2**70)
    assert document["nested"] == {"ids": [2**64 + 1, 0.1, 1.5e-7]}
    assert document["name"] == "账号 ☃"
    assert back == snap
    assert snapshot_to_bytes(back) == data


def test_credential_json_shape() -> None:
    credential = small_snapshot().credentials[0]
    doc = credential_to_json(credential)
    assert doc == {
        "provider_type": "claude-kiro-oauth",
        "uuid": "k-1",
        "document": {"accessToken": "FAKE", "expiresAt": "2026-03-15T13:00:00.000Z"},
        "source_path": "./configs/kiro/k.json",
        "token_format": "kiro",
        "version": "v3",
        "siblings": {"reg.json": {"clientId": "FAKE-id"}},
    }
    assert credential_from_json(doc, "c") == credential

    plain = Credential("openai-custom", "u-2", {"k": 1})
    assert credential_from_json(credential_to_json(plain), "c") == plain


def test_optional_members_may_be_null_or_set() -> None:
    snap = small_snapshot()
    snap.system_prompt = "be brief"
    snap.password = "legacy-plaintext"
    snap.usage_cache = UsageCache("2026-03-15T12:00:00.000Z", {"gemini-cli-oauth": {"x": 1}})
    back = snapshot_from_bytes(snapshot_to_bytes(snap), "s")
    assert back.system_prompt == "be brief"
    assert back.password == "legacy-plaintext"
    assert back.usage_cache == snap.usage_cache
    assert snapshot_from_bytes(snapshot_to_bytes(small_snapshot()), "s").usage_cache is None


# ---------------------------------------------------------------------------- bad input


def invalid(data: bytes) -> InvalidData:
    with pytest.raises(InvalidData) as caught:
        snapshot_from_bytes(data, "state/snapshot.json")
    assert caught.value.source == "state/snapshot.json"
    return caught.value


def test_not_json_names_line_and_column() -> None:
    assert invalid(b'{"format": ').where == "line 1 column 12"
    assert invalid(b'{\n  "format": "cfgstore-snapshot",\n  oops\n}').where == "line 3 column 3"
    assert invalid(b"\xff\xfe").where == "byte 0"


def test_not_an_object() -> None:
    assert invalid(b"[]").where == "$"


def test_wrong_format_tag() -> None:
    doc = small_doc()
    doc["format"] = "aiclient-backup"
    error = invalid(encode(doc))
    assert error.where == "$.format"
    assert "not a cfgstore snapshot" in error.problem

    del doc["format"]
    assert invalid(encode(doc)).where == "$.format"


def test_unknown_format_version() -> None:
    doc = small_doc()
    doc["format_version"] = 3
    error = invalid(encode(doc))
    assert error.where == "$.format_version"
    assert "unknown snapshot format version 3" in error.problem

    doc["format_version"] = "1"
    assert invalid(encode(doc)).where == "$.format_version"


def test_pools_not_an_object() -> None:
    doc = small_doc()
    doc["pools"] = [{"uuid": "n-1"}]
    error = invalid(encode(doc))
    assert error.where == "$.pools"


def test_nested_model_errors_are_rebased() -> None:
    doc = small_doc()
    doc["pools"]["openai-custom"][0]["usageCount"] = "5"
    assert invalid(encode(doc)).where == '$.pools["openai-custom"][0].usageCount'

    doc = small_doc()
    doc["custom_models"][0]["id"] = ""
    assert invalid(encode(doc)).where == "$.custom_models[0].id"

    doc = small_doc()
    doc["plugins"]["plugins"]["default-auth"]["enabled"] = "yes"
    assert invalid(encode(doc)).where == '$.plugins.plugins["default-auth"].enabled'

    doc = small_doc()
    doc["config"]["document"] = []
    assert invalid(encode(doc)).where == "$.config.document"

    doc = small_doc()
    doc["usage_cache"] = {"timestamp": 5, "providers": {}}
    assert invalid(encode(doc)).where == "$.usage_cache.timestamp"


def test_credential_missing_uuid() -> None:
    doc = small_doc()
    del doc["credentials"][0]["uuid"]
    error = invalid(encode(doc))
    assert error.where == "$.credentials[0].uuid"
    assert error.problem == "missing"


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("uuid", 7, "$.credentials[0].uuid"),
        ("uuid", "", "$.credentials[0].uuid"),
        ("token_format", "bogus", "$.credentials[0].token_format"),
        ("document", [], "$.credentials[0].document"),
        ("version", 3, "$.credentials[0].version"),
        ("siblings", {"reg.json": "x"}, '$.credentials[0].siblings["reg.json"]'),
        ("extra", 1, "$.credentials[0].extra"),
    ],
)
def test_bad_credential_fields(field: str, value: Any, where: str) -> None:
    doc = small_doc()
    doc["credentials"][0][field] = value
    assert invalid(encode(doc)).where == where


def test_duplicate_credential() -> None:
    doc = small_doc()
    doc["credentials"].append(dict(doc["credentials"][0]))
    error = invalid(encode(doc))
    assert error.where == "$.credentials[1].uuid"
    assert "duplicate" in error.problem


def test_revision_a_string() -> None:
    doc = small_doc()
    doc["revision"] = "9"
    error = invalid(encode(doc))
    assert error.where == "$.revision"
    assert error.problem == "expected an integer"


@pytest.mark.parametrize(
    ("key", "value", "where"),
    [
        ("revision", True, "$.revision"),
        ("revision", -1, "$.revision"),
        ("saved_at_ms", 1.5, "$.saved_at_ms"),
        ("namespace_id", None, "$.namespace_id"),
        ("prefix", 1, "$.prefix"),
        ("system_prompt", 1, "$.system_prompt"),
        ("password", {}, "$.password"),
        ("credentials", {}, "$.credentials"),
        ("config", "x", "$.config"),
        ("surprise", 1, "$.surprise"),
    ],
)
def test_wrongly_typed_or_unknown_fields(key: str, value: Any, where: str) -> None:
    doc = small_doc()
    doc[key] = value
    assert invalid(encode(doc)).where == where


@pytest.mark.parametrize("key", ["namespace_id", "pools", "credentials", "usage_cache"])
def test_missing_fields(key: str) -> None:
    doc = small_doc()
    del doc[key]
    error = invalid(encode(doc))
    assert error.where == f"$.{key}"
    assert error.problem == "missing"


def _folder_credentials(tokens: int) -> list[Credential]:
    """``tokens`` Kiro credentials of one folder, each with the others as siblings (the
    sibling documents shared, as the backends hand them out)."""
    files = {
        f"t{i}.json": {"accessToken": f"FAKE-{i}", "refreshToken": f"r-{i}"} for i in range(tokens)
    }
    return [
        Credential(
            "claude-kiro-oauth",
            f"kf-{i}",
            dict(files[f"t{i}.json"]),
            source_path=f"./configs/kiro/all/t{i}.json",
            token_format=TokenFormat.KIRO,
            version=f"v{i}",
            siblings={name: doc for name, doc in files.items() if name != f"t{i}.json"},
        )
        for i in range(tokens)
    ]


def test_a_shared_sibling_folder_is_written_once_and_read_back_exactly() -> None:
    snapshot = small_snapshot()
    shared = _folder_credentials(40)
    odd = Credential(  # in the folder, but its siblings differ: kept verbatim
        "claude-kiro-oauth",
        "k-odd",
        {"accessToken": "FAKE-odd"},
        source_path="./configs/kiro/all/odd.json",
        token_format=TokenFormat.KIRO,
        siblings={"t0.json": {"accessToken": "an older copy"}},
    )
    snapshot.credentials = [*snapshot.credentials, *shared, odd]
    data = snapshot_to_bytes(snapshot)
    doc = json.loads(data)
    assert doc["format_version"] == 2
    assert list(doc["sibling_folders"]) == ["./configs/kiro/all"]
    assert [c["siblings"] for c in doc["credentials"][1:-1]] == ["./configs/kiro/all"] * 40
    assert isinstance(doc["credentials"][-1]["siblings"], dict)
    assert data.count(b'"refreshToken": "r-7"') == 2, "its token file and the folder: once each"

    back = snapshot_from_bytes(data, "s")
    assert back.credentials == snapshot.credentials
    assert [list(c.siblings) for c in back.credentials] == [
        list(c.siblings) for c in snapshot.credentials
    ], "sibling order kept (a later sibling wins in the Kiro merge)"


def test_snapshot_size_is_linear_in_a_folder_of_tokens() -> None:
    def size(tokens: int) -> int:
        snapshot = small_snapshot()
        snapshot.credentials = _folder_credentials(tokens)
        return len(snapshot_to_bytes(snapshot))

    assert size(200) < 2.5 * size(100), "one folder of N tokens must not cost N² documents"


def test_a_reference_to_an_unknown_folder_is_refused() -> None:
    snapshot = small_snapshot()
    snapshot.credentials = _folder_credentials(3)
    doc = json.loads(snapshot_to_bytes(snapshot))
    doc["credentials"][1]["siblings"] = "./configs/kiro/elsewhere"
    error = invalid(encode(doc))
    assert error.where == "$.credentials[1].siblings"
