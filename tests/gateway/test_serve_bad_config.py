"""``cfgctl serve`` over a config that holds unusable values: stored before the admin API
limited documents, or written by hand into ``config.json`` or Redis.

A value nested hundreds of levels deep made every read of the config fail (Python's JSON
parser and ``deepcopy`` recurse): ``cfgctl serve`` crashed at start, a running gateway
answered 500 everywhere. Now the gateway serves with the defaults of the bad keys, logs one
line per bad key, and ``cfgctl status`` names them. Each test writes the config directly
(the file, or the Redis hash), starts the real ``cfgctl serve`` and talks HTTP to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import redis

from cfgstore.adapters import Store
from cfgstore.model.pools import node_from_json
from cfgstore.model.versions import ABSENT_VERSION
from tests.gateway.conftest import (
    CLIENT_KEY,
    TYPE,
    api_node,
    auth,
    make_deployment,
    running_gateway,
)
from tests.gateway.test_serve import (
    MODEL,
    cfgctl,
    cfgctl_serve,
    fresh_connections,
    process_env,
    send_chats,
)
from tests.gateway.test_storage_modes import private_prefix, redis_only
from tests.gateway.upstream_stub import UpstreamStub
from tests.support.deep_json import nested
from tests.support.namespace_seed import seed_namespace
from tests.support.waiting import until

CLI_S = 60.0
NODE = "dddddddd-0000-4000-8000-0000000000d4"


BAD_VALUES = {
    "DEEP_BUT_PARSED": nested(600),  # parses, breaks copying and serialising
    "TOO_DEEP_TO_PARSE": nested(5000),  # the JSON parser itself gives up
    "REQUEST_MAX_RETRIES": '"three"',
    "SCHEDULED_HEALTH_CHECK": '"daily"',
    "SERVER_PORT": "70000",
}


def config_text(**bad: str) -> str:
    """``config.json`` as an operator might have left it: good keys and ``bad`` ones
    (name → JSON text), written by hand (no serialiser could write the deepest)."""
    members = [
        f'"REQUIRED_API_KEY": "{CLIENT_KEY}"',
        f'"MODEL_PROVIDER": "{TYPE}"',
        *(f'"{key}": {text}' for key, text in bad.items()),
        '"MAX_ERROR_COUNT": 3',
    ]
    return "{\n  " + ",\n  ".join(members) + "\n}"


def naming(lines: list[str], key: str) -> list[str]:
    return [line for line in lines if re.search(rf"\b{key}\b", line)]


async def cfgctl_status(*args: str, env: dict[str, str]) -> str:
    """``cfgctl status ARGS`` as a process; its stdout (it must succeed)."""
    process = await asyncio.create_subprocess_exec(
        *cfgctl(),
        "status",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), CLI_S)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def serves(url: str, key: str = CLIENT_KEY) -> None:
    """``/health`` and a keyed chat request both succeed."""
    async with fresh_connections() as client:
        async with client.get(f"{url}/health") as response:
            assert response.status == 200, await response.text()
        await send_chats(client, url, key, 2)


async def test_serve_on_files_survives_a_bad_config_at_start_and_while_running(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    node = api_node(NODE, upstream.base_url, "k", supportedModels=[MODEL])
    configs = make_deployment(tmp_path, {TYPE: [node]}).configs_dir
    text = config_text(**BAD_VALUES)
    (configs / "config.json").write_text(text)

    async with cfgctl_serve(tmp_path, env=process_env()) as served:
        await serves(served.url)
        log = served.log.read_text().splitlines()
        for key in BAD_VALUES:
            assert len(naming(log, key)) == 1, (key, log)
        assert not naming(log, "MAX_ERROR_COUNT")

        # A hand edit while it runs: the gateway keeps serving and names the new bad key.
        text = config_text(**BAD_VALUES, LATE_AND_DEEP=nested(3000))
        temporary = configs / "config.json.tmp"
        temporary.write_text(text)
        os.replace(temporary, configs / "config.json")

        async def noticed() -> bool:
            await serves(served.url)
            return bool(naming(served.log.read_text().splitlines(), "LATE_AND_DEEP"))

        await until(noticed, "the gateway logging the new bad key")
        assert await served.stop() == 0
    log = served.log.read_text().splitlines()
    assert len(naming(log, "LATE_AND_DEEP")) == 1
    assert "Traceback" not in "\n".join(log)
    assert (configs / "config.json").read_text() == text  # nothing rewritten or lost

    status = await cfgctl_status("--configs", str(configs), env=process_env())
    for key in [*BAD_VALUES, "LATE_AND_DEEP"]:
        assert naming(status.splitlines(), key), status
    assert not naming(status.splitlines(), "MAX_ERROR_COUNT")


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    with private_prefix(redis_url) as prefix:
        yield prefix


def overwrite_config_in_redis(redis_url: str, prefix: str, text: str) -> None:
    """Replace the stored config document in its hash, as a hand edit with redis-cli would."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.hset("{" + prefix + "}:config", "doc", text)
    finally:
        client.close()


async def test_serve_on_redis_survives_a_bad_config(
    tmp_path: Path, redis_url: str, redis_prefix: str, upstream: UpstreamStub
) -> None:
    await asyncio.to_thread(seed_namespace, redis_url, redis_prefix)
    settings = redis_only(redis_url, redis_prefix)
    async with Store.open(settings) as store:
        await store.config.put({"REQUIRED_API_KEY": CLIENT_KEY}, ABSENT_VERSION)
        node = api_node(NODE, upstream.base_url, "k", supportedModels=[MODEL])
        await store.pools.add_node(TYPE, node_from_json(node, "test"))
    await asyncio.to_thread(
        overwrite_config_in_redis, redis_url, redis_prefix, config_text(**BAD_VALUES)
    )

    env = process_env(CFGSTORE_REDIS_PREFIX=redis_prefix)
    args = ("--redis-url", redis_url, "--state-dir", str(tmp_path / "state"))
    async with cfgctl_serve(tmp_path, *args, env=env) as served:
        assert served.storage == "redis"
        await serves(served.url)
        assert await served.stop() == 0
    log = served.log.read_text().splitlines()
    for key in BAD_VALUES:
        assert len(naming(log, key)) == 1, (key, log)

    status = await cfgctl_status("--redis-url", redis_url, env=env)
    for key in BAD_VALUES:
        assert naming(status.splitlines(), key), status


async def test_a_wrongly_typed_api_key_refuses_every_keyed_request_instead_of_failing(
    tmp_path: Path,
) -> None:
    """A bad ``REQUIRED_API_KEY`` falls back to "refuse everything", never to the
    well-known default ``123456``."""
    settings = make_deployment(tmp_path, {}, REQUIRED_API_KEY=123456)
    async with running_gateway(settings) as gateway:
        async with gateway.client.get("/health") as response:
            assert response.status == 200
        for key in ("123456", CLIENT_KEY):
            async with gateway.client.get("/v1/models", headers=auth(key)) as response:
                assert response.status == 401, await response.text()


async def test_a_config_that_becomes_unreadable_leaves_the_last_one_in_service(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A hand edit that leaves ``config.json`` not even JSON, while the gateway runs: it
    keeps serving with the config it last read (one error line), until the file is fixed."""
    settings = attrs.evolve(make_deployment(tmp_path, {}), watch_interval_ms=50)
    config_file = settings.configs_dir / "config.json"
    caplog.set_level(logging.ERROR, logger="cfgstore_gateway.config")
    async with running_gateway(settings) as gateway:

        async def status_with(key: str) -> int:
            async with gateway.client.get("/v1/models", headers=auth(key)) as response:
                return response.status

        assert await status_with(CLIENT_KEY) == 200
        config_file.write_text('{"REQUIRED_API_KEY": "half-writ')

        async def noticed() -> bool:
            assert await status_with(CLIENT_KEY) == 200
            return any("config unreadable" in r.getMessage() for r in caplog.records)

        await until(noticed, "the gateway noticing the unreadable config")
        for _ in range(3):
            assert await status_with(CLIENT_KEY) == 200
        unreadable = [r for r in caplog.records if "config unreadable" in r.getMessage()]
        assert len(unreadable) == 1

        config_file.write_text('{"REQUIRED_API_KEY": "fixed-key"}')

        async def fixed() -> bool:
            return await status_with("fixed-key") == 200

        await until(fixed, "the gateway reading the fixed config")
        assert await status_with(CLIENT_KEY) == 401
