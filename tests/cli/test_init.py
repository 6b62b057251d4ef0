"""``cfgctl init`` on a real Redis (FR-020, US9).

Every test works in a namespace (key prefix) of its own on the session's Redis. cfgctl runs
its own event loop, so these tests are synchronous and seed or read Redis through
``asyncio.run``; raw snapshots of a namespace use a plain redis client and SCAN.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner, Result

import cfgstore
from cfgstore.adapters import Settings, Store
from cfgstore.cli import init_cmd
from cfgstore.cli.app import build_app
from cfgstore.errors import StorageServerError
from cfgstore.model.config import DEFAULTS
from cfgstore.model.credentials import Credential
from cfgstore.model.defaults import (
    BUILTIN_PLUGINS,
    UI_CONFIG_KEYS,
    WELL_KNOWN_API_KEY,
    default_config,
    default_plugin_config,
    generate_api_key,
)
from cfgstore.model.password import DEFAULT_PASSWORD
from cfgstore.model.timefmt import now_ms, parse_time_ms
from cfgstore.model.versions import SCHEMA_VERSION
from tests.contract.helpers import make_node

Snapshot = dict[bytes, tuple[str, object, bool]]

PASSWORD_LINE = re.compile(r"generated UI password:\s+(\S+)")
API_KEY_LINE = re.compile(r"generated API key \(REQUIRED_API_KEY\):\s+(\S+)")
WRITTEN_BY_INIT = ("config", "plugins", "password", "meta", "rev")
"""Keys (after ``{prefix}:``) init writes; ``rev`` counts every write."""


@pytest.fixture
def prefix(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh namespace on the session's Redis, named to cfgctl through the environment."""
    name = f"init-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("CFGSTORE_REDIS_URL", redis_url)
    monkeypatch.setenv("CFGSTORE_REDIS_PREFIX", name)
    return name


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        yield client
    finally:
        client.close()


def settings(redis_url: str, prefix: str) -> Settings:
    return Settings(backends=("redis",), redis_url=redis_url, redis_prefix=prefix)


def snapshot(client: redis.Redis, prefix: str) -> Snapshot:
    """Every key of the namespace: its type and its content. Content, not DUMP bytes: a
    read (HMGET) may advance an incremental rehash of a large hash, which changes the
    serialisation but not the data."""
    out: Snapshot = {}
    for key in sorted(client.scan_iter(match=f"{{{prefix}}}:*", count=1000)):
        raw_kind = client.type(key)
        kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
        content: object
        if kind == "string":
            content = client.get(key)
        elif kind == "hash":
            content = sorted(client.hgetall(key).items())
        elif kind == "list":
            content = client.lrange(key, 0, -1)
        elif kind == "set":
            content = sorted(client.smembers(key))
        elif kind == "zset":
            content = client.zrange(key, 0, -1, withscores=True)
        else:
            content = client.dump(key)
        out[key] = (kind, content, client.pttl(key) > 0)
    return out


def without_init_keys(snap: Snapshot, prefix: str) -> Snapshot:
    touched = {f"{{{prefix}}}:{name}".encode() for name in WRITTEN_BY_INIT}
    return {key: value for key, value in snap.items() if key not in touched}


def cfgctl(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args))


def printed_secrets(result: Result) -> tuple[str | None, str]:
    password = PASSWORD_LINE.search(result.stdout)
    api_key = API_KEY_LINE.search(result.stdout)
    assert api_key is not None, result.stdout
    return (password.group(1) if password else None), api_key.group(1)


async def read_back(store_settings: Settings) -> dict[str, Any]:
    async with Store.open(store_settings) as store:
        config = await store.config.get()
        plugins = await store.plugin_config.get()
        return {
            "config": config.document,
            "config_version": config.version,
            "plugins": plugins.plugins,
            "meta": await store.meta.get(),
            "pools": (await store.pools.list()).types,
            "password_stored": await store.password.get_stored(),
        }


async def verifies(store_settings: Settings, password: str) -> bool:
    async with Store.open(store_settings) as store:
        return await store.password.verify(password)


async def seed_pools(store_settings: Settings) -> None:
    """Two nodes of one type and a credential: data init must never touch."""
    async with Store.open(store_settings) as store:
        await store.pools.add_node(
            "claude-kiro-oauth",
            make_node("k1", KIRO_OAUTH_CREDS_FILE_PATH="configs/kiro/k1.json", usageCount=7),
        )
        await store.pools.add_node("claude-kiro-oauth", make_node("k2"))
        await store.credentials.put(
            Credential(
                "claude-kiro-oauth",
                "k1",
                {"accessToken": "tok-a", "expiresAt": "2100-01-01T00:00:00.000Z"},
                source_path="configs/kiro/k1.json",
            ),
            None,
        )


async def seed_config(store_settings: Settings) -> None:
    async with Store.open(store_settings) as store:
        await store.config.put({"REQUIRED_API_KEY": "mine", "SERVER_PORT": 4000}, "0")


async def seed_meta(store_settings: Settings, fields: dict[str, str]) -> None:
    async with Store.open(store_settings) as store:
        await store.meta.update(fields)


# -- the default documents ---------------------------------------------------------------


def test_default_config_is_the_ui_shape_with_code_defaults() -> None:
    key = generate_api_key()
    document = default_config(key)
    assert list(document) == list(UI_CONFIG_KEYS)
    assert document["REQUIRED_API_KEY"] == key
    for name, value in document.items():
        if name in DEFAULTS and name not in ("REQUIRED_API_KEY", "SCHEDULED_HEALTH_CHECK"):
            assert value == DEFAULTS[name], name
    assert document["SCHEDULED_HEALTH_CHECK"] == {
        "enabled": False,
        "startupRun": False,
        "interval": 600000,
        "providerTypes": [],
    }
    assert document["LOG_MAX_FILE_SIZE"] == 10485760 and document["TLS_SIDECAR_PORT"] == 9090
    # A fresh document each call: no shared mutable defaults.
    trusted = document["TRUSTED_PROXY_IPS"]
    assert isinstance(trusted, list)
    trusted.append("10.0.0.1")
    assert default_config(key)["TRUSTED_PROXY_IPS"] == ["127.0.0.1", "::1"]


def test_default_config_never_takes_the_well_known_key() -> None:
    with pytest.raises(ValueError):
        default_config(WELL_KNOWN_API_KEY)
    keys = {generate_api_key() for _ in range(20)}
    assert len(keys) == 20 and all(len(k) == 48 for k in keys)


def test_default_plugins_are_the_builtins_with_their_enabled_defaults() -> None:
    plugins = default_plugin_config().plugins
    assert list(plugins) == ["ai-monitor", "api-potluck", "default-auth", "model-usage-stats"]
    assert {name: entry["enabled"] for name, entry in plugins.items()} == {
        "ai-monitor": False,
        "api-potluck": False,
        "default-auth": True,
        "model-usage-stats": False,
    }
    assert all(isinstance(e["description"], str) and e["description"] for e in plugins.values())
    assert set(BUILTIN_PLUGINS) == set(plugins)


def test_init_records_the_schema_the_redis_backend_knows() -> None:
    assert str(SCHEMA_VERSION) == init_cmd.REDIS_SCHEMA


# -- init on an empty namespace ------------------------------------------------------------


def test_init_on_an_empty_namespace_writes_everything(
    prefix: str, redis_url: str, tmp_path: Path
) -> None:
    started = now_ms()
    result = cfgctl("init")
    assert result.exit_code == 0, result.output
    password, api_key = printed_secrets(result)
    assert password is not None
    # Each secret is printed once, nowhere else (stderr included).
    assert result.stdout.count(password) == 1 and password not in result.stderr
    assert result.stdout.count(api_key) == 1 and api_key not in result.stderr
    assert f"initialised namespace {{{prefix}}}" in result.stdout
    assert "provider pools    empty" in result.stdout

    stored = asyncio.run(read_back(settings(redis_url, prefix)))
    config = stored["config"]
    assert list(config) == list(UI_CONFIG_KEYS)
    assert config["REQUIRED_API_KEY"] == api_key != WELL_KNOWN_API_KEY
    assert re.fullmatch(r"[0-9a-f]{48}", api_key)
    assert config["SERVER_PORT"] == 3000 and config["MODEL_PROVIDER"] == "gemini-cli-oauth"
    assert stored["config_version"] != "0"
    assert stored["plugins"] == default_plugin_config().plugins
    assert stored["pools"] == {}
    assert stored["password_stored"].startswith("pbkdf2:")
    assert password not in stored["password_stored"]
    assert asyncio.run(verifies(settings(redis_url, prefix), password))
    assert not asyncio.run(verifies(settings(redis_url, prefix), DEFAULT_PASSWORD))

    meta = stored["meta"]
    assert meta["schema"] == str(SCHEMA_VERSION)
    assert re.fullmatch(r"[0-9a-f]{32}", meta["namespace"])
    assert meta["created_by"] == f"cfgstore {cfgstore.__version__}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", meta["initialized_at"])
    at = parse_time_ms(meta["initialized_at"])
    assert at is not None and started - 1000 <= at <= now_ms()
    assert meta["namespace"] in result.stdout and meta["initialized_at"] in result.stdout


def test_a_store_runs_on_the_initialised_namespace_without_config_files(
    prefix: str, redis_url: str, tmp_path: Path
) -> None:
    result = cfgctl("init")
    assert result.exit_code == 0, result.output
    password, api_key = printed_secrets(result)
    assert password is not None
    nowhere = tmp_path / "no-configs-here"

    async def serve() -> None:
        # The usual Redis chain (memory layer over Redis), with no configs folder at all.
        configured = Settings(configs_dir=nowhere, redis_url=redis_url, redis_prefix=prefix)
        async with Store.open(configured, environ={}) as store:
            assert store.backend_names == ["memory", "redis"]
            config = await store.config.get()
            assert config.get("REQUIRED_API_KEY") == api_key
            assert config.max_error_count == 10
            plugins = await store.plugin_config.get()
            assert plugins.is_enabled("default-auth")
            assert not plugins.is_enabled("api-potluck")
            assert await store.password.verify(password)
            assert (await store.pools.list()).types == {}

    asyncio.run(serve())
    assert not nowhere.exists()


def test_init_json_reports_a_summary_with_the_generated_secrets_once(
    prefix: str, redis_url: str
) -> None:
    result = cfgctl("init", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    password = summary["generated_password"]
    api_key = summary["generated_api_key"]
    assert result.stdout.count(password) == 1 and result.stdout.count(api_key) == 1
    assert summary["initialised"] is True and summary["forced"] is False
    assert summary["redis_prefix"] == prefix and summary["schema"] == str(SCHEMA_VERSION)
    assert summary["password"] == "generated"
    assert summary["plugins"]["default-auth"] is True
    assert summary["kept"] == {"provider_types": 0, "nodes": 0, "credentials": 0}
    meta = asyncio.run(read_back(settings(redis_url, prefix)))["meta"]
    assert summary["namespace_id"] == meta["namespace"]
    assert summary["initialized_at"] == meta["initialized_at"]
    assert asyncio.run(verifies(settings(redis_url, prefix), password))


def test_two_namespaces_get_different_secrets_and_ids(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CFGSTORE_REDIS_URL", redis_url)
    seen = []
    for _ in range(2):
        monkeypatch.setenv("CFGSTORE_REDIS_PREFIX", f"init-{uuid.uuid4().hex[:12]}")
        result = cfgctl("init", "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        seen.append(
            (summary["generated_password"], summary["generated_api_key"], summary["namespace_id"])
        )
    assert all(a != b for a, b in zip(*seen, strict=True))


def test_password_file_is_trimmed_hashed_and_never_printed(
    prefix: str, redis_url: str, tmp_path: Path
) -> None:
    secret_file = tmp_path / "ui-password"
    secret_file.write_text("  correct-horse-battery \n", encoding="utf-8")
    result = cfgctl("init", "--password-file", str(secret_file))
    assert result.exit_code == 0, result.output
    assert "correct-horse-battery" not in result.output
    assert "generated UI password" not in result.stdout
    assert f"UI password       set from {secret_file}" in result.stdout
    assert asyncio.run(verifies(settings(redis_url, prefix), "correct-horse-battery"))
    stored = asyncio.run(read_back(settings(redis_url, prefix)))["password_stored"]
    assert "correct-horse-battery" not in stored

    again = cfgctl("init", "--force", "--yes", "--json", "--password-file", str(secret_file))
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert "generated_password" not in summary and summary["password"] == "from file"
    assert "correct-horse-battery" not in again.output


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read the password file"),
        (" \n\t", "is empty"),
        (b"\xff\xfe\xfa", "not UTF-8"),
    ],
)
def test_unusable_password_file_exits_2_before_anything_is_written(
    prefix: str, raw: redis.Redis, tmp_path: Path, content: str | bytes | None, problem: str
) -> None:
    secret_file = tmp_path / "ui-password"
    if isinstance(content, str):
        secret_file.write_text(content, encoding="utf-8")
    elif isinstance(content, bytes):
        secret_file.write_bytes(content)
    result = cfgctl("init", "--password-file", str(secret_file))
    assert result.exit_code == 2, result.output
    assert problem in result.stderr
    assert snapshot(raw, prefix) == {}


# -- refusal ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "expected"),
    [
        ("pools", ["1 provider type (2 nodes)", "1 credential"]),
        ("config", ["config.json (version"]),
        ("initialised", ["namespace id ", "config.json (version"]),
        ("migrating", ["an unfinished `cfgctl migrate` (started 2026-01-02T03:04:05.006Z)"]),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_init_refuses_a_namespace_with_data_and_writes_nothing(
    prefix: str, redis_url: str, raw: redis.Redis, seed: str, expected: list[str], as_json: bool
) -> None:
    store_settings = settings(redis_url, prefix)
    if seed == "pools":
        asyncio.run(seed_pools(store_settings))
    elif seed == "config":
        asyncio.run(seed_config(store_settings))
    elif seed == "migrating":
        asyncio.run(seed_meta(store_settings, {"migrating": "2026-01-02T03:04:05.006Z"}))
    else:
        assert cfgctl("init").exit_code == 0
    before = snapshot(raw, prefix)
    assert before

    result = cfgctl("init", *(["--json"] if as_json else []))
    assert result.exit_code == 1, result.output
    assert "refusing to initialise" in result.stderr
    assert "--force" in result.stderr and "Nothing was written" in result.stderr
    for item in expected:
        assert item in result.stderr
    assert "generated" not in result.output
    if as_json:
        report = json.loads(result.stdout)
        assert report["initialised"] is False and report["redis_prefix"] == prefix
        assert any(expected[0] in item for item in report["existing"])
    assert snapshot(raw, prefix) == before


def test_init_refuses_a_namespace_with_a_newer_schema(
    prefix: str, redis_url: str, raw: redis.Redis
) -> None:
    raw.hset(f"{{{prefix}}}:meta", "schema", str(SCHEMA_VERSION + 1))
    before = snapshot(raw, prefix)
    for args in (["init"], ["init", "--force"]):
        result = cfgctl(*args)
        assert result.exit_code == 2, result.output
        assert f"schema {SCHEMA_VERSION + 1}" in result.stderr
        assert f"schema {SCHEMA_VERSION}" in result.stderr
    assert snapshot(raw, prefix) == before

    async def opening() -> None:
        async with Store.open(settings(redis_url, prefix)):
            pytest.fail("a newer schema must not open")

    with pytest.raises(StorageServerError):
        asyncio.run(opening())


# -- --force ------------------------------------------------------------------------------


def test_force_rewrites_config_plugins_password_and_keeps_the_rest(
    prefix: str, redis_url: str, raw: redis.Redis
) -> None:
    store_settings = settings(redis_url, prefix)
    first = cfgctl("init", "--json")
    assert first.exit_code == 0, first.output
    old = json.loads(first.stdout)
    asyncio.run(seed_pools(store_settings))

    async def customise() -> None:
        async with Store.open(store_settings) as store:
            config = await store.config.get()
            await store.config.put({**config.document, "SERVER_PORT": 4000}, config.version)
            await store.plugin_config.set_enabled("api-potluck", True)
            await store.system_prompt.put("be brief")
            await store.meta.update({"migrated_at": "2026-01-01T00:00:00.000Z"})

    asyncio.run(customise())
    kept_before = without_init_keys(snapshot(raw, prefix), prefix)

    result = cfgctl("init", "--force", "--yes")
    assert result.exit_code == 0, result.output
    password, api_key = printed_secrets(result)
    assert password is not None and password != old["generated_password"]
    assert api_key != old["generated_api_key"]
    assert f"re-initialised namespace {{{prefix}}}" in result.stdout
    assert "kept as they were: 1 provider type (2 nodes), 1 credential" in result.stdout
    assert f"{old['namespace_id']} (kept)" in result.stdout

    # Pools, credentials, the system prompt (everything but what init writes): unchanged.
    assert without_init_keys(snapshot(raw, prefix), prefix) == kept_before
    stored = asyncio.run(read_back(store_settings))
    assert stored["config"]["SERVER_PORT"] == 3000
    assert stored["config"]["REQUIRED_API_KEY"] == api_key
    assert stored["plugins"] == default_plugin_config().plugins
    assert [n.uuid for n in stored["pools"]["claude-kiro-oauth"]] == ["k1", "k2"]
    meta = stored["meta"]
    assert meta["namespace"] == old["namespace_id"]
    assert meta["initialized_at"] != old["initialized_at"]
    assert meta["migrated_at"] == "2026-01-01T00:00:00.000Z"
    assert asyncio.run(verifies(store_settings, password))
    assert not asyncio.run(verifies(store_settings, old["generated_password"]))


def test_force_on_a_namespace_without_an_id_gives_it_one(
    prefix: str, redis_url: str, raw: redis.Redis
) -> None:
    store_settings = settings(redis_url, prefix)
    asyncio.run(seed_pools(store_settings))  # e.g. data written before ids existed
    kept_before = without_init_keys(snapshot(raw, prefix), prefix)
    result = cfgctl("init", "--force", "--yes", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["forced"] is True and summary["namespace_id_kept"] is False
    assert summary["kept"] == {"provider_types": 1, "nodes": 2, "credentials": 1}
    assert re.fullmatch(r"[0-9a-f]{32}", summary["namespace_id"])
    assert without_init_keys(snapshot(raw, prefix), prefix) == kept_before


def test_force_on_an_empty_namespace_is_a_plain_init(prefix: str) -> None:
    result = cfgctl("init", "--force", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["forced"] is False and summary["namespace_id_kept"] is False


# -- no chain --------------------------------------------------------------------------------


def test_init_without_a_chain_exits_2(tmp_path: Path) -> None:
    """Neither Redis nor --backends: no namespace to guess (never ./configs)."""
    result = cfgctl("init")
    assert result.exit_code == 2, result.output
    # The wording is common.chain_settings'; what matters: the command, the flags, the variables.
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("cfgctl: init needs a backend chain: give --backends")
    assert "CFGSTORE_BACKENDS" in line and "--redis-url" in line and "CFGSTORE_REDIS_URL" in line
    assert result.stdout == ""


def test_init_with_a_malformed_setting_exits_2_in_one_line(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CFGSTORE_REDIS_DB", "zero")
    result = cfgctl("init")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        "cfgctl: CFGSTORE_REDIS_DB: redis_db: expected an integer, got 'zero'"
    ]


def test_init_with_unreachable_redis_exits_2_without_the_password() -> None:
    result = cfgctl("init", "--redis-url", "redis://:hunter2-redis@127.0.0.1:1/0")
    assert result.exit_code == 2, result.output
    assert "127.0.0.1:1" in result.stderr
    assert "hunter2-redis" not in result.output
