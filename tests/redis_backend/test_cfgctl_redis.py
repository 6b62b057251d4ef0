"""``cfgctl status`` on Redis: the chain, the counts, warnings — never the password."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from cfgstore.adapters import Settings, Store
from cfgstore.cli.app import build_app
from tests.contract.helpers import make_node
from tests.support.redis_server import RedisServerProcess


async def _seed(server_url: str, url: str) -> None:
    admin = aioredis.Redis.from_url(server_url, decode_responses=True)
    await admin.config_set("requirepass", "very-secret-pw")
    await admin.aclose()
    settings = Settings(configs_dir=Path("unused"), backends=("redis",), redis_url=url)
    async with Store.open(settings) as store:
        await store.pools.add_node("openai-custom", make_node("a"))
        await store.pools.add_node("grok-web", make_node("b"))
        await store.pools.record_failure("grok-web", "b", "x", max_error_count=1)


def test_status_over_redis_hides_the_password(
    redis_server_process: RedisServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"redis://:very-secret-pw@127.0.0.1:{redis_server_process.port}/0"
    asyncio.run(_seed(redis_server_process.url, url))  # cfgctl runs its own event loop
    monkeypatch.setenv("CFGSTORE_REDIS_URL", url)
    result = CliRunner().invoke(build_app(), ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert "very-secret-pw" not in result.output
    report = json.loads(result.output)
    assert report["chain"] == ["redis"]  # tools use the backend alone
    backend = report["backends"][0]
    assert backend["name"] == "redis" and "***" in backend["location"]
    assert backend["counts"]["nodes"] == 2 and backend["counts"]["healthy_nodes"] == 1
    text = CliRunner().invoke(build_app(), ["status"])
    assert text.exit_code == 0 and "very-secret-pw" not in text.output


def test_status_with_unreachable_redis_exits_2_without_the_password() -> None:
    url = "redis://:very-secret-pw@127.0.0.1:1/0"
    result = CliRunner().invoke(build_app(), ["status", "--redis-url", url])
    assert result.exit_code == 2
    assert "very-secret-pw" not in result.output
    assert "127.0.0.1:1" in result.output
