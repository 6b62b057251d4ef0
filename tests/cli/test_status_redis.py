"""``cfgctl status`` on Redis: server facts, the namespace's markers, counts — never a
secret — and the refusal of a namespace written by a newer cfgstore.

cfgctl runs its own event loop: Redis is seeded and read with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import pytest
import redis
from typer.testing import CliRunner, Result

from cfgstore.adapters import Settings, Store
from cfgstore.cli.app import build_app
from cfgstore.errors import StorageServerError
from cfgstore.model.credentials import Credential
from cfgstore.model.sessions import UiSession
from cfgstore.model.timefmt import now_ms
from cfgstore.model.versions import SCHEMA_VERSION
from tests.contract.helpers import make_node
from tests.support.redis_server import RedisServerProcess

REDIS_PASSWORD = "status-redis-pw-0451"
SESSION_TOKEN = "a" * 32 + "5e55" + "b" * 28
ACCESS_TOKEN = "kiro-access-token-7d1f"
REFRESH_TOKEN = "kiro-refresh-token-93c2"
MIGRATED_AT = "2026-03-04T05:06:07.089Z"


def cfgctl(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args))


@pytest.fixture
def prefix(monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"status-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("CFGSTORE_REDIS_PREFIX", name)
    return name


@pytest.fixture
def private_redis(
    redis_server_process: RedisServerProcess, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A private server with a password and an evicting memory policy; its URL (with the
    password) is cfgctl's ``CFGSTORE_REDIS_URL``."""
    admin = redis.Redis.from_url(redis_server_process.url, socket_timeout=5)
    admin.config_set("maxmemory-policy", "allkeys-lru")
    admin.config_set("requirepass", REDIS_PASSWORD)
    admin.close()
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_server_process.port}/0"
    monkeypatch.setenv("CFGSTORE_REDIS_URL", url)
    yield url


async def seed_secrets(url: str, prefix: str) -> None:
    """A node with a token, a live UI session and a migration marker."""
    async with Store.open(Settings(backends=("redis",), redis_url=url, redis_prefix=prefix)) as s:
        await s.pools.add_node("claude-kiro-oauth", make_node("k1"))
        await s.pools.add_node("claude-kiro-oauth", make_node("k2"))
        await s.pools.record_failure("claude-kiro-oauth", "k2", "boom", max_error_count=1)
        await s.credentials.put(
            Credential(
                "claude-kiro-oauth",
                "k1",
                {"accessToken": ACCESS_TOKEN, "refreshToken": REFRESH_TOKEN},
            ),
            None,
        )
        await s.sessions.add(SESSION_TOKEN, UiSession("admin", now_ms(), now_ms() + 3_600_000))
        await s.meta.update({"migrated_at": MIGRATED_AT})
        await s.flush()


def test_status_shows_server_facts_and_markers_and_no_secret(
    private_redis: str, prefix: str
) -> None:
    init = cfgctl("init", "--json")
    assert init.exit_code == 0, init.output
    summary = json.loads(init.stdout)
    password, api_key = summary["generated_password"], summary["generated_api_key"]
    asyncio.run(seed_secrets(private_redis, prefix))
    server = redis.Redis.from_url(private_redis, socket_timeout=5, decode_responses=True)
    version = server.info("server")["redis_version"]
    stored_hash = server.get(f"{{{prefix}}}:password")
    server.close()
    assert isinstance(stored_hash, str) and stored_hash.startswith("pbkdf2:")

    text = cfgctl("status")
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0] == "backend chain: redis"  # tools use the backend alone
    assert lines[1] == f"redis: redis://:***@127.0.0.1:{private_redis.rsplit(':', 1)[1]} (redis)"
    for expected in (
        f"  key prefix: {{{prefix}}}",
        f"  redis version: {version}",
        "  maxmemory-policy: allkeys-lru",
        f"  schema: {SCHEMA_VERSION}",
        f"  namespace id: {summary['namespace_id']}",
        f"  initialised: {summary['initialized_at']}",
        f"  last migration: {MIGRATED_AT}",
    ):
        assert expected in lines, (expected, text.stdout)
    counts = {line[:18].strip(): line[18:].strip() for line in lines if line.startswith("  ")}
    assert counts["provider types"] == "1" and counts["nodes"] == "2"
    assert counts["healthy nodes"] == "1" and counts["credentials"] == "1"
    assert counts["sessions"] == "1" and counts["plugins"] == "4"
    assert any("allkeys-lru" in line and "warning" in line for line in lines)
    assert "not initialised" not in text.stdout

    as_json = cfgctl("status", "--json")
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    assert report["chain"] == ["redis"] and report["redis_prefix"] == prefix
    [backend] = report["backends"]
    assert backend["mode"] == "redis"
    assert backend["details"] == {
        "redis version": version,
        "maxmemory-policy": "allkeys-lru",
        "schema": str(SCHEMA_VERSION),
        "namespace id": summary["namespace_id"],
        "initialised": summary["initialized_at"],
        "last migration": MIGRATED_AT,
    }
    assert backend["counts"]["sessions"] == 1 and backend["counts"]["credentials"] == 1

    secrets = {
        "UI password": password,
        "API key": api_key,
        "password hash": stored_hash,
        "password salt": stored_hash.split(":")[1],
        "session token": SESSION_TOKEN,
        "access token": ACCESS_TOKEN,
        "refresh token": REFRESH_TOKEN,
        "Redis password": REDIS_PASSWORD,
    }
    for result in (text, as_json):
        for what, secret in secrets.items():
            assert secret not in result.output, f"status printed the {what}"


def test_status_says_when_a_namespace_is_not_initialised(redis_url: str, prefix: str) -> None:
    result = cfgctl("status", "--redis-url", redis_url)
    assert result.exit_code == 0, result.output
    assert "  note: namespace not initialised (`cfgctl init` or `cfgctl migrate`)" in result.stdout
    assert "schema:" not in result.stdout and "namespace id:" not in result.stdout
    assert "redis version:" in result.stdout and "maxmemory-policy:" in result.stdout


def test_status_with_a_malformed_setting_exits_2_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CFGSTORE_REDIS_PORT", "six-three-seven-nine")
    result = cfgctl("status")
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("cfgctl: CFGSTORE_REDIS_PORT: redis_port: expected an integer")


@pytest.mark.parametrize("newer", [str(SCHEMA_VERSION + 1), "10"])
def test_a_newer_schema_is_refused_by_status_and_store(
    redis_url: str, prefix: str, newer: str
) -> None:
    assert cfgctl("init", "--redis-url", redis_url).exit_code == 0
    raw = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        raw.hset(f"{{{prefix}}}:meta", "schema", newer)
    finally:
        raw.close()

    result = cfgctl("status", "--redis-url", redis_url)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("cfgctl: ")
    assert f"{{{prefix}}}" in line
    assert f"has schema {newer}, newer than the schema {SCHEMA_VERSION}" in line
    assert "upgrade cfgstore" in line

    async def opening() -> None:
        settings = Settings(backends=("redis",), redis_url=redis_url, redis_prefix=prefix)
        async with Store.open(settings):
            pytest.fail("a namespace with a newer schema must not open")

    with pytest.raises(
        StorageServerError, match=rf"schema {newer}, newer than the schema {SCHEMA_VERSION}"
    ):
        asyncio.run(opening())
