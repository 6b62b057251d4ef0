"""Round trips of every file format: byte-exact for Node-written files, semantic for
hand-written ones, with unknown keys and key order kept."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cfgstore.model.config import config_from_json
from cfgstore.model.credentials import credential_path_of, resolve_path
from cfgstore.model.custom_models import custom_models_from_json
from cfgstore.model.jsjson import JSONValue, dump_bytes, dumps, loads
from cfgstore.model.plugin_config import plugin_config_from_json
from cfgstore.model.pools import (
    ProviderNode,
    node_from_json,
    node_to_json,
    pools_from_json,
    pools_to_json,
)
from cfgstore.model.records import Cooldown, Failure, Selected, Success, apply_record
from cfgstore.model.sessions import sessions_from_json, sessions_to_json
from cfgstore.model.usage_cache import usage_cache_from_json
from cfgstore.model.versions import content_version

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "deployment"
VARIANTS = REPO / "examples" / "variants"
SHARED = REPO.parent / "shared" / "fixtures" / "aiclient-2-api"

Codec = Callable[[JSONValue, str], JSONValue]
"""Parse a loaded document with the model and turn it back into a JSON value."""


def _pools(doc: JSONValue, source: str) -> JSONValue:
    return pools_to_json(pools_from_json(doc, source))


def _sessions(doc: JSONValue, source: str) -> JSONValue:
    return sessions_to_json(sessions_from_json(doc, source))


def _usage(doc: JSONValue, source: str) -> JSONValue:
    return usage_cache_from_json(doc, source).to_json()


def _plugins(doc: JSONValue, source: str) -> JSONValue:
    return plugin_config_from_json(doc, source).to_json()


def _custom_models(doc: JSONValue, source: str) -> JSONValue:
    return [m.to_json() for m in custom_models_from_json(doc, source)]


def _config(doc: JSONValue, source: str) -> JSONValue:
    return config_from_json(doc, source, "v").document


def _plain(doc: JSONValue, source: str) -> JSONValue:
    """Credential documents and plugin data are kept verbatim."""
    return doc


def codec_for(path: Path) -> Codec:
    name = path.name
    if name.startswith("provider_pools"):
        return _pools
    return {
        "token-store.json": _sessions,
        "usage-cache.json": _usage,
        "plugins.json": _plugins,
        "custom_models.json": _custom_models,
        "config.json": _config,
    }.get(name, _plain)


def roundtrip(path: Path, raw: bytes) -> bytes:
    source = str(path)
    return dump_bytes(codec_for(path)(loads(raw, source), source))


def _json_files(folder: Path, reason: str) -> list[Any]:
    if not folder.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason))]
    files = sorted(p for p in folder.rglob("*.json") if p.is_file())
    return [pytest.param(p, id=str(p.relative_to(folder))) for p in files]


# ------------------------------------------------------------------------- byte-exact


@pytest.mark.parametrize("path", _json_files(EXAMPLE / "configs", "examples missing"))
def test_example_files_round_trip_byte_exact(path: Path) -> None:
    raw = path.read_bytes()
    assert roundtrip(path, raw) == raw


def test_example_deployment_has_every_format() -> None:
    names = {p.name for p in (EXAMPLE / "configs").rglob("*.json")}
    for expected in (
        "provider_pools.json",
        "token-store.json",
        "usage-cache.json",
        "plugins.json",
        "custom_models.json",
        "config.json",
        "api-potluck-keys.json",
    ):
        assert expected in names
    assert (EXAMPLE / "configs" / "pwd").is_file()
    assert (EXAMPLE / "configs" / "input_system_prompt.txt").is_file()


@pytest.mark.parametrize(
    "path",
    _json_files(SHARED / "deployment", "shared fixtures not present (fresh clone)"),
)
def test_shared_fixture_files_round_trip_byte_exact(path: Path) -> None:
    raw = path.read_bytes()
    assert roundtrip(path, raw) == raw


def test_windows_paths_variant_round_trips_byte_exact() -> None:
    path = VARIANTS / "provider_pools.windows-paths.json"
    raw = path.read_bytes()
    assert roundtrip(path, raw) == raw


def test_example_round_trip_is_content_version_stable() -> None:
    path = EXAMPLE / "configs" / "provider_pools.json"
    raw = path.read_bytes()
    assert content_version(roundtrip(path, raw)) == content_version(raw)


# ------------------------------------------------------------- example deployment facts


UI_SAVED_KEYS = [
    "REQUIRED_API_KEY",
    "SERVER_PORT",
    "HOST",
    "MODEL_PROVIDER",
    "SYSTEM_PROMPT_FILE_PATH",
    "SYSTEM_PROMPT_MODE",
    "SYSTEM_PROMPT_REPLACEMENTS",
    "PROMPT_LOG_BASE_NAME",
    "PROMPT_LOG_MODE",
    "REQUEST_MAX_RETRIES",
    "REQUEST_BASE_DELAY",
    "CREDENTIAL_SWITCH_MAX_RETRIES",
    "RATE_LIMIT_COOLDOWN_ENABLED",
    "RATE_LIMIT_COOLDOWN_MS",
    "RATE_LIMIT_COOLDOWN_JITTER_MS",
    "RATE_LIMIT_COOLDOWN_MAX_MS",
    "CRON_NEAR_MINUTES",
    "CRON_REFRESH_TOKEN",
    "LOGIN_EXPIRY",
    "TRUST_PROXY",
    "TRUSTED_PROXY_IPS",
    "PROVIDER_POOLS_FILE_PATH",
    "MAX_ERROR_COUNT",
    "WARMUP_TARGET",
    "REFRESH_CONCURRENCY_PER_PROVIDER",
    "providerFallbackChain",
    "modelFallbackMapping",
    "PROXY_URL",
    "PROXY_ENABLED_PROVIDERS",
    "LOG_ENABLED",
    "LOG_OUTPUT_MODE",
    "LOG_LEVEL",
    "LOG_DIR",
    "LOG_INCLUDE_REQUEST_ID",
    "LOG_INCLUDE_TIMESTAMP",
    "LOG_MAX_FILE_SIZE",
    "LOG_MAX_FILES",
    "TLS_SIDECAR_ENABLED",
    "TLS_SIDECAR_ENABLED_PROVIDERS",
    "TLS_SIDECAR_PORT",
    "TLS_SIDECAR_PROXY_URL",
    "SCHEDULED_HEALTH_CHECK",
]
"""The keys a Web-UI "save config" writes, in its order (aiclient-formats §2.4)."""


def test_example_deployment_facts() -> None:
    """The counts examples/deployment/README.md promises."""
    configs = EXAMPLE / "configs"
    pools = pools_from_json(loads((configs / "provider_pools.json").read_bytes(), "p"), "p")
    assert len(pools.types) == 12
    assert pools.node_count() == 16
    assert sum(1 for _, n in pools if n.state.is_healthy) == 14
    assert sum(1 for _, n in pools if n.state.is_disabled) == 1
    assert sum(1 for _, n in pools if n.state.needs_refresh) == 1
    assert pools.types["claude-custom-spare"] == []
    with_path = [(t, n) for t, n in pools if credential_path_of(t, n) is not None]
    assert len(with_path) == 11
    for provider_type, node in with_path:
        carrier = credential_path_of(provider_type, node)
        assert carrier is not None
        assert resolve_path(carrier[1], EXAMPLE).is_file(), (provider_type, carrier)

    config = config_from_json(loads((configs / "config.json").read_bytes(), "c"), "c", "v")
    assert config.max_error_count == 3
    keys = list(config.document)
    assert keys[: len(UI_SAVED_KEYS)] == UI_SAVED_KEYS  # Web-UI save order first,
    assert "CUSTOM_MODELS_FILE_PATH" in keys[len(UI_SAVED_KEYS) :]  # then hand-added keys
    assert config.get("MODEL_PROVIDER") == [
        "claude-kiro-oauth",
        "openai-codex-oauth",
        "openai-custom-deepseek",
    ]

    sessions = sessions_from_json(loads((configs / "token-store.json").read_bytes(), "t"), "t")
    now = 1773576000000  # the reference instant 2026-03-15T12:00:00.000Z
    assert len(sessions) == 2
    assert sum(1 for s in sessions.values() if not s.expired(now)) == 1

    plugins = plugin_config_from_json(loads((configs / "plugins.json").read_bytes(), "p"), "p")
    assert len(plugins.plugins) == 5
    assert sorted(n for n in plugins.plugins if plugins.is_enabled(n)) == [
        "api-potluck",
        "default-auth",
        "example-user-plugin",
    ]
    models = custom_models_from_json(loads((configs / "custom_models.json").read_bytes(), "m"), "m")
    assert [m.id for m in models] == ["example-sonnet", "example-deepseek", "example-global"]


# --------------------------------------------------------------------------- semantic

HAND_WRITTEN: dict[str, str] = {
    "provider_pools.json": """{
    "openai-custom": [
        {
            "customName": "手写节点",
            "OPENAI_API_KEY": "sk-FAKE-hand-written",
            "OPENAI_BASE_URL": "https://llm.example.com/v1",
            "uuid": "0b7c6a3e-1111-4222-8333-944455556666",
            "checkModelName": null,
            "isHealthy": true,
            "usageCount": 0,
            "supportedModels": ["gpt-4o"],
            "x-operator-tag": {"team": "infra", "weight": 1.0}
        }
    ],
    "claude-kiro-oauth": [
        {
            "KIRO_OAUTH_CREDS_FILE_PATH": "./configs/kiro/a/a.json",
            "uuid": "0b7c6a3e-aaaa-4bbb-8ccc-ddddeeeeffff",
            "lastRefreshTime": 1773575400000
        }
    ],
    "claude-custom": []
}
""",
    "config.json": """{
    "REQUIRED_API_KEY": "sk-FAKE",
  "SERVER_PORT": 3000,
    "MODEL_PROVIDER": "claude-kiro-oauth,openai-custom",
    "MAX_ERROR_COUNT": 3.0,
    "x-unknown-key": {"nested": [1, 2.5, "三"]}
}
""",
    "custom_models.json": """[
    {
        "id": "hand-gpt",
        "alias": "gpt",
        "temperature": 0.7,
        "topP": 1.0,
        "maxTokens": 4096
    }
]
""",
    "plugins.json": """{
    "plugins": {
        "default-auth": { "enabled": true, "description": "默认" },
        "my-plugin": { "description": "no enabled key", "extra": [1.0] }
    },
    "x-top-level": true
}
""",
    "token-store.json": """{
    "tokens": {
        "aa": { "username": "admin", "loginTime": 1, "expiryTime": 2 }
    }
}
""",
    "usage-cache.json": """{
    "timestamp": "2026-03-15T11:50:00.123Z",
    "providers": { "grok-web": { "instances": [], "totalCount": 0 } },
    "x-extra": 1
}
""",
    "api-potluck-keys.json": """{
    "keys": {}
}
""",
}


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_hand_written_files_round_trip_semantically(name: str) -> None:
    text = HAND_WRITTEN[name]
    path = Path(name)
    codec = codec_for(path)
    first = codec(loads(text, name), name)
    written = dumps(first)
    second = codec(loads(written, name), name)
    assert second == first
    assert second == loads(text, name)  # nothing lost or added (1.0 == 1 in Python)
    # Now in Node's format: stable from here on, 2-space indent, no trailing newline.
    assert dumps(second) == written
    assert not written.endswith("\n")
    second_line = written.splitlines()[1]
    assert second_line.startswith("  ") and not second_line.startswith("   ")


def test_integral_float_in_hand_written_file_dumps_as_integer() -> None:
    text = HAND_WRITTEN["custom_models.json"]
    written = dumps(_custom_models(loads(text, "m"), "m"))
    assert '"topP": 1,\n' in written
    assert "1.0" not in written
    assert '"temperature": 0.7,' in written


def test_hand_written_pools_keep_unknown_keys_and_order() -> None:
    doc = loads(HAND_WRITTEN["provider_pools.json"], "p")
    out = _pools(doc, "p")
    assert isinstance(out, dict)
    assert list(out) == ["openai-custom", "claude-kiro-oauth", "claude-custom"]
    node = out["openai-custom"][0]
    assert list(node) == list(doc["openai-custom"][0])
    assert node["x-operator-tag"] == {"team": "infra", "weight": 1}
    assert '"weight": 1\n' in dumps(out)
    assert node["checkModelName"] is None
    assert out["claude-custom"] == []


@pytest.mark.parametrize(
    "name",
    ["config.json", "provider_pools.json", "custom_models.json", "plugins.json"],
)
def test_shared_upstream_examples_round_trip_semantically(name: str) -> None:
    path = SHARED / "upstream-examples" / name
    if not path.is_file():
        pytest.skip("shared fixtures not present (fresh clone)")
    raw = path.read_bytes()
    codec = codec_for(path)
    first = codec(loads(raw, name), name)
    assert first == loads(raw, name)
    assert codec(loads(dumps(first), name), name) == first


# ----------------------------------------------------------------------- node layout


def test_node_without_hot_fields_gains_none() -> None:
    doc = {"OPENAI_API_KEY": "sk-FAKE", "uuid": "u-1", "x": [1, {"y": None}]}
    node = node_from_json(doc, "p")
    assert node_to_json(node) == doc
    assert list(node_to_json(node)) == ["OPENAI_API_KEY", "uuid", "x"]


def test_uuid_is_placed_where_the_document_had_it() -> None:
    doc = {"customName": "a", "OPENAI_API_KEY": "k", "uuid": "u-2", "isHealthy": False}
    assert list(node_to_json(node_from_json(doc, "p"))) == list(doc)


def _example_node(provider_type: str, index: int) -> tuple[dict[str, Any], ProviderNode]:
    raw = (EXAMPLE / "configs" / "provider_pools.json").read_bytes()
    doc = loads(raw, "p")
    node_doc = doc[provider_type][index]
    return node_doc, node_from_json(node_doc, "p")


def test_changed_node_keeps_key_order_and_appends_new_keys() -> None:
    # The UI-form node has neither _lastSelectionSeq nor scheduledRecoveryTime.
    before, node = _example_node("openai-custom", 0)
    assert "_lastSelectionSeq" not in before and "scheduledRecoveryTime" not in before
    at = 1773576000000
    apply_record(node, Selected("openai-custom", node.uuid, at, seq=42))
    apply_record(
        node,
        Cooldown("openai-custom", node.uuid, at + 1, "429 Too Many Requests", 3, at + 30_000),
    )
    after = node_to_json(node)
    assert list(after) == [*before, "_lastSelectionSeq", "scheduledRecoveryTime"]
    assert after["lastUsed"] == "2026-03-15T12:00:00.001Z"
    assert after["_lastSelectionSeq"] == 42
    assert after["isHealthy"] is False
    assert after["errorCount"] == 3
    assert after["scheduledRecoveryTime"] == "2026-03-15T12:00:30.000Z"
    unchanged = {k for k in before if before[k] == after[k]}
    assert {"customName", "OPENAI_API_KEY", "supportedModels", "uuid"} <= unchanged


def test_bare_node_after_failure_appends_the_assigned_keys_in_node_order() -> None:
    # markProviderUnhealthy assigns errorCount, lastErrorTime, lastUsed, needsRefresh,
    # refreshCount, lastErrorMessage (and isHealthy at the threshold); a JavaScript
    # assignment appends a missing key even when the value is the load default.
    node = node_from_json({"uuid": "u-3", "OPENAI_API_KEY": "k"}, "p")
    apply_record(node, Failure("openai-custom", "u-3", 1773576000000, "500 boom", 3))
    out = node_to_json(node)
    assert list(out) == [
        "uuid",
        "OPENAI_API_KEY",
        "errorCount",
        "lastErrorTime",
        "lastUsed",
        "needsRefresh",
        "refreshCount",
        "lastErrorMessage",
    ]
    assert out["errorCount"] == 1
    assert out["lastErrorMessage"] == "500 boom"


def test_success_keeps_kiro_node_bytes_except_changed_values() -> None:
    before, node = _example_node("claude-kiro-oauth", 0)
    apply_record(node, Success("claude-kiro-oauth", node.uuid, 1773576000000))
    after = node_to_json(node)
    assert list(after) == list(before)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"lastUsed", "usageCount", "lastRefreshTime"}
    assert after["usageCount"] == before["usageCount"] + 1
    assert after["lastRefreshTime"] == 1773576000000
