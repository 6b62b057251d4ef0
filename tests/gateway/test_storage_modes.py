"""The gateway on both storage modes.

* File mode (SC-006): the sample AIClient-2-API deployment the project ships
  (``examples/deployment/``, copied), no Redis anywhere; counts reach the file.
* Redis mode: two gateway instances (memory fallback over the session's Redis, each with
  its own state directory) on one namespace; every request is counted exactly once in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from cfgstore.adapters import Settings, Store
from cfgstore.model.pools import node_from_json
from cfgstore.model.versions import ABSENT_VERSION
from cfgstore_gateway.errors import NO_HEALTHY_PROVIDER
from tests.gateway.conftest import (
    CLIENT_KEY,
    TYPE,
    api_node,
    running_gateway,
    scaled,
)
from tests.gateway.redis_instances import delete_namespace, new_prefix
from tests.gateway.upstream_stub import UpstreamStub
from tests.support.namespace_seed import seed_namespace

KIRO = "claude-kiro-oauth"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "deployment"
EXAMPLE_KEY = "sk-FAKE-example-gateway-key"
OPENAI_NODE = "dccb18cf-3859-4edd-b146-a98dd0c4dc28"
DEEPSEEK_NODE = "f604aa24-2ac7-40b8-9309-cfe199e9f7e0"


async def test_sample_deployment_is_served_from_files_without_redis(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    root = tmp_path / "deployment"
    shutil.copytree(EXAMPLE, root)
    settings = Settings(
        configs_dir=root / "configs", state_dir=tmp_path / "state", watch_interval_ms=0
    )
    assert not settings.redis_configured
    # An operator's edit: the two API-key nodes now point at the local upstream, and the
    # background work that would call the sample's real token and upstream endpoints
    # (proactive refresh, the startup health check) is off.
    async with Store.open(settings) as admin:
        config = await admin.config.get()
        quiet = {**config.document, "CRON_REFRESH_TOKEN": False}
        quiet["SCHEDULED_HEALTH_CHECK"] = {"enabled": False, "providerTypes": []}
        await admin.config.put(quiet, config.version)
        await admin.pools.update_node(TYPE, OPENAI_NODE, {"OPENAI_BASE_URL": upstream.base_url})
        await admin.pools.update_node(
            "openai-custom-deepseek", DEEPSEEK_NODE, {"OPENAI_BASE_URL": upstream.base_url}
        )
        # The sample's Kiro accounts would reach AWS and Kiro's token endpoint: disabled.
        for kiro in (await admin.pools.view()).get(KIRO, ()):
            await admin.pools.update_node(KIRO, kiro.uuid, {"isDisabled": True})
    headers = {"Authorization": f"Bearer {EXAMPLE_KEY}"}
    async with running_gateway(settings) as gw:
        client = gw.client
        assert (await (await client.get("/health")).json())["storage"] == "file"
        assert gw.store.backend_names == ["memory", "file"]

        async def chat(model: str, **extra: str) -> aiohttp.ClientResponse:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            return await client.post(
                "/v1/chat/completions", json=body, headers={**headers, **extra}
            )

        ok = await chat("gpt-4o", **{"model-provider": TYPE})
        assert ok.status == 200
        prefixed = await chat("openai-custom-deepseek:deepseek-chat")
        assert prefixed.status == 200
        assert upstream.tokens() == [
            "sk-FAKE-example-openai-key-0001",
            "sk-FAKE-example-deepseek-key-0001",
        ]
        assert [r.body["model"] for r in upstream.chat_requests()] == ["gpt-4o", "deepseek-chat"]
        # gpt-5 is not in the node's supportedModels.
        refused = await chat("gpt-5", **{"model-provider": TYPE})
        assert refused.status == 503
        assert (await refused.json())["error"]["message"].startswith(NO_HEALTHY_PROVIDER)
        # The default type (MODEL_PROVIDER[0] = claude-kiro-oauth) has only disabled
        # nodes now: a 503 naming what chose the type; its nodes are left alone.
        unconfigured = await chat("claude-sonnet-4-5")
        assert unconfigured.status == 503
        message = (await unconfigured.json())["error"]["message"]
        assert "(type chosen by MODEL_PROVIDER in config.json)" in message
        unserved = await chat("grok-4.1-mini", **{"model-provider": "grok-web"})
        assert unserved.status == 503
        assert (await unserved.json())["error"]["code"] == "provider_unsupported"
        models = await client.get("/v1/models", headers={**headers, "model-provider": TYPE})
        listed = [m["id"] for m in (await models.json())["data"]]
        # The node's supportedModels, then the custom models of no particular type.
        assert listed == ["gpt-4o", "gpt-4o-mini", "example-global"]
        assert (await client.get("/v1/models", params={"key": CLIENT_KEY})).status == 401
    # Closing the store flushed the counts into the Node-format file.
    pools = json.loads((root / "configs" / "provider_pools.json").read_bytes())
    (openai,) = pools[TYPE]
    assert (openai["uuid"], openai["usageCount"]) == (OPENAI_NODE, 1)
    (deepseek,) = pools["openai-custom-deepseek"]
    assert deepseek["usageCount"] == 1


# ----------------------------------------------------------------------------- Redis


@contextlib.contextmanager
def private_prefix(redis_url: str) -> Iterator[str]:
    """A fresh namespace prefix whose keys are deleted afterwards."""
    prefix = new_prefix("gw-")
    try:
        yield prefix
    finally:
        delete_namespace(redis_url, prefix)


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    with private_prefix(redis_url) as value:
        yield value


def redis_only(redis_url: str, prefix: str) -> Settings:
    return Settings(
        configs_dir=Path("unused"), backends=("redis",), redis_url=redis_url, redis_prefix=prefix
    )


def instance(redis_url: str, prefix: str, state_dir: Path) -> Settings:
    """A service instance: the default Redis chain (memory fallback over Redis)."""
    return Settings(
        configs_dir=state_dir / "no-configs",
        redis_url=redis_url,
        redis_prefix=prefix,
        state_dir=state_dir,
    )


async def test_two_instances_on_redis_count_every_request_once(
    redis_url: str, prefix: str, tmp_path: Path, upstream: UpstreamStub
) -> None:
    uuids = [f"{i:08x}-0000-4000-8000-00000000000{i}" for i in range(1, 4)]
    await asyncio.to_thread(seed_namespace, redis_url, prefix)
    async with Store.open(redis_only(redis_url, prefix)) as admin:
        await admin.config.put(
            {"REQUIRED_API_KEY": CLIENT_KEY, "MODEL_PROVIDER": TYPE, "MAX_ERROR_COUNT": 3},
            ABSENT_VERSION,
        )
        for uuid in uuids:
            node = node_from_json(api_node(uuid, upstream.base_url, f"key-{uuid}"), "test")
            await admin.pools.add_node(TYPE, node)
    count = scaled(30, minimum=6)
    first = instance(redis_url, prefix, tmp_path / "state-1")
    second = instance(redis_url, prefix, tmp_path / "state-2")
    async with running_gateway(first) as one, running_gateway(second) as two:
        assert one.store.backend_names == ["memory", "redis"]
        for gw in (one, two):
            health = await (await gw.client.get("/health")).json()
            assert health["storage"] == "redis"
        responses = await asyncio.gather(
            *((one, two)[i % 2].chat("gpt-4o", stream=i % 3 == 0) for i in range(count))
        )
        for response in responses:
            assert response.status == 200
            await response.read()
        await one.store.flush()
        await two.store.flush()
    async with Store.open(redis_only(redis_url, prefix)) as admin:
        usage = []
        for uuid in uuids:
            node = await admin.pools.get_node(TYPE, uuid)
            assert node is not None
            usage.append(node.state.usage_count)
    assert sum(usage) == count, usage
    assert len(upstream.chat_requests()) == count


async def test_failures_on_one_instance_take_the_node_out_everywhere(
    redis_url: str, prefix: str, tmp_path: Path, upstream: UpstreamStub
) -> None:
    """Health is shared: the node one instance marks unhealthy is skipped by the other."""
    bad, good = "aaaaaaaa-0000-4000-8000-00000000000a", "bbbbbbbb-0000-4000-8000-00000000000b"
    await asyncio.to_thread(seed_namespace, redis_url, prefix)
    async with Store.open(redis_only(redis_url, prefix)) as admin:
        await admin.config.put(
            {
                "REQUIRED_API_KEY": CLIENT_KEY,
                "MODEL_PROVIDER": TYPE,
                "MAX_ERROR_COUNT": 1,
                "CREDENTIAL_SWITCH_MAX_RETRIES": 0,
            },
            ABSENT_VERSION,
        )
        await admin.pools.add_node(
            TYPE, node_from_json(api_node(bad, "http://127.0.0.1:9/v1", "key-bad"), "test")
        )
        await admin.pools.add_node(
            TYPE, node_from_json(api_node(good, upstream.base_url, "key-good"), "test")
        )
    first = instance(redis_url, prefix, tmp_path / "state-1")
    second = instance(redis_url, prefix, tmp_path / "state-2")
    async with running_gateway(first) as one, running_gateway(second) as two:
        # The bad node has the smaller uuid: picked first, it fails once (MAX_ERROR_COUNT 1).
        assert (await one.chat("gpt-4o")).status == 502
        assert (await one.node(bad)).state.is_healthy is False
        await one.store.flush()

        for _ in range(500):  # the change feed brings it within milliseconds; 10 s bound
            if not (await two.node(bad)).state.is_healthy:
                break
            await asyncio.sleep(0.02)
        assert (await two.node(bad)).state.is_healthy is False
        for _ in range(3):
            assert (await two.chat("gpt-4o")).status == 200
        assert upstream.tokens() == ["key-good"] * 3
