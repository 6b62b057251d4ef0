"""``model-usage-stats`` end to end: two gateway instances (memory fallback over one real
Redis) serve 2 × N chat requests (N = ``scaled(5000)``: the issue's 2 × 5,000 at the default
scale; 100 in flight at once; streams among them) to a stub
upstream that reports different token counts for each; the statistics every instance
answers equal exactly what the stub reported, in every scope. Then a token reset through
one instance (counts kept), a full reset through the other, and the statistics exported
as Node's file, migrated into another namespace and exported again, byte for byte."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest_asyncio

from cfgstore.adapters import Store
from cfgstore.cli.export_cmd import model_files
from cfgstore.cli.snapshot import read_store
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.pools import node_from_json
from cfgstore.model.timefmt import now_ms
from cfgstore.model.usage_stats import USAGE_STATS_FILE, beijing_day, read_node_file
from cfgstore.model.versions import ABSENT_VERSION
from cfgstore_gateway.app import create_app
from cfgstore_gateway.hookspecs import plugins_hookimpl
from cfgstore_gateway.plugin_api import Outcome
from tests.admin.conftest import PASSWORD, set_password
from tests.gateway.conftest import CLIENT_KEY, TYPE, WAIT_S, auth, scaled, serving
from tests.gateway.redis_instances import Namespace, delete_namespace, seeded_namespace
from tests.gateway.upstream_stub import Received, Reply, UpstreamStub, completion

N = scaled(5000, minimum=10)
"""Requests per instance."""
IN_FLIGHT = 100
COUNTED_S = WAIT_S + N / 50
"""Bound of the wait for every outcome to be counted (the plugin works off the request path)."""
NODE = "5a5a5a5a-0000-4000-8000-00000000005a"
MODEL = "stats-model"
STATS = "/api/model-usage-stats"


@attrs.define
class Ledger:
    """What the stub reported, summed: the statistics must say exactly this."""

    requests: int = 0
    prompt: int = 0
    completion: int = 0
    cached: int = 0

    def reply(self, received: Received) -> Reply:
        body = received.body if isinstance(received.body, dict) else {}
        index = int(str(body["messages"][0]["content"]).removeprefix("q"))
        usage = {
            "prompt_tokens": 3 + index % 11,
            "completion_tokens": 1 + index % 5,
            "total_tokens": 4 + index % 11 + index % 5,
            "prompt_tokens_details": {"cached_tokens": index % 3},
        }
        self.requests += 1
        self.prompt += usage["prompt_tokens"]
        self.completion += usage["completion_tokens"]
        self.cached += index % 3
        if body.get("stream") is not True:
            return Reply(body={**completion(MODEL), "usage": usage})
        delta = {"object": "chat.completion.chunk", "model": MODEL}
        chunks = [
            {**delta, "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": None}]},
            {**delta, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**delta, "choices": [], "usage": usage},
        ]
        events = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks]
        return Reply(chunks=(*events, b"data: [DONE]\n\n"))

    @property
    def sums(self) -> tuple[int, int, int, int, int]:
        total = self.prompt + self.completion
        return (self.requests, self.prompt, self.completion, total, self.cached)


def sums(block: dict[str, Any]) -> tuple[int, ...]:
    names = ("requestCount", "promptTokens", "completionTokens", "totalTokens", "cachedTokens")
    return tuple(block[name] for name in names)


class Counted:
    """Runs after model-usage-stats (priority 9000): its outcomes mean the plugin counted."""

    name = "after-usage-stats"
    description = "Marks the end of the statistics plugin's work"
    priority = 9500
    enabled_by_default = True

    def __init__(self) -> None:
        self.seen = 0
        self._changed = asyncio.Event()

    async def finished(self, outcome: Outcome) -> None:
        self.seen += 1
        self._changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(COUNTED_S):
            while self.seen < count:
                self._changed.clear()
                await self._changed.wait()

    @plugins_hookimpl
    def cfgstore_gateway_plugins(self, register: Callable[[Any], None]) -> None:
        register(self)


@attrs.frozen
class Instance:
    client: aiohttp.ClientSession
    store: Store
    counted: Counted

    async def stats(self, method: str = "GET", path: str = STATS, **kw: Any) -> dict[str, Any]:
        async with self.client.request(method, path, **kw) as response:
            body: dict[str, Any] = await response.json()
            assert response.status == 200, body
            assert body["success"] is True
            return body


@asynccontextmanager
async def instance(namespace: Namespace, name: str) -> AsyncIterator[Instance]:
    async with Store.open(namespace.instance_settings(name)) as store:
        counted = Counted()
        store.plugins.manager.register(counted, name="after-usage-stats")
        async with (
            serving(create_app(store)) as url,
            aiohttp.ClientSession(
                url,
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=WAIT_S * 3),
            ) as client,
        ):
            yield Instance(client, store, counted)


@pytest_asyncio.fixture
async def namespace(redis_url: str, tmp_path: Path) -> AsyncIterator[Namespace]:
    namespace = await seeded_namespace(redis_url, tmp_path, "mus-")
    try:
        yield namespace
    finally:
        await asyncio.to_thread(delete_namespace, redis_url, namespace.prefix)


async def deploy(namespace: Namespace, upstream: UpstreamStub) -> None:
    async with Store.open(namespace.redis_settings()) as store:
        config = {"REQUIRED_API_KEY": CLIENT_KEY, "MODEL_PROVIDER": TYPE, "REQUEST_MAX_RETRIES": 0}
        await store.config.put(config, ABSENT_VERSION)
        node = {"uuid": NODE, "OPENAI_API_KEY": "sk-up", "OPENAI_BASE_URL": upstream.base_url}
        await store.pools.add_node(TYPE, node_from_json(node, "test"))
        await store.plugin_config.put(PluginConfig({"model-usage-stats": {"enabled": True}}))
        await set_password(store)


async def chat(gateway: Instance, index: int, slots: asyncio.Semaphore) -> int:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": f"q{index}"}]}
    if index % 4 == 0:
        body["stream"] = True
    async with (
        slots,
        gateway.client.post("/v1/chat/completions", json=body, headers=auth()) as response,
    ):
        await response.read()
        return response.status


async def test_two_instances_count_every_request_and_token_the_upstream_reported(
    namespace: Namespace, redis_url: str, tmp_path: Path
) -> None:
    ledger = Ledger()
    async with UpstreamStub(ledger.reply) as upstream:
        await deploy(namespace, upstream)
        async with instance(namespace, "one") as one, instance(namespace, "two") as two:
            slots = asyncio.Semaphore(IN_FLIGHT)
            statuses = await asyncio.gather(
                *(chat((one, two)[i % 2], i, slots) for i in range(2 * N))
            )
            assert statuses == [200] * (2 * N)
            await asyncio.gather(one.counted.wait_for(N), two.counted.wait_for(N))
            await asyncio.gather(one.store.flush(), two.store.flush())
            assert ledger.requests == 2 * N

            for gateway in (one, two):
                data = (await gateway.stats(headers={"x-api-key": CLIENT_KEY}))["data"]
                provider = data["providers"][TYPE]
                for block in (
                    data["summary"],
                    provider["summary"],
                    provider["models"][MODEL],
                    data["daily"][beijing_day(now_ms())],
                ):
                    assert sums(block) == ledger.sums
                assert list(provider["models"]) == [MODEL]
                assert data["summary"]["maxRpm"] > 0 and "qps" in data["summary"]

            # export (Node's file from the store) → migrate (into another namespace) →
            # export again: byte for byte
            async with Store.open(namespace.redis_settings()) as admin:
                exported = model_files(await read_store(admin), tmp_path).files
            node_file = exported[tmp_path / "configs" / USAGE_STATS_FILE]
            (tmp_path / "configs").mkdir()
            (tmp_path / "configs" / USAGE_STATS_FILE).write_bytes(node_file)
            other = await seeded_namespace(redis_url, tmp_path, "mus2-")
            try:
                async with Store.open(other.redis_settings()) as target:
                    migrated = read_node_file(tmp_path / "configs" / USAGE_STATS_FILE)
                    assert migrated is not None
                    await target.usage_stats.replace(migrated)
                    again = model_files(await read_store(target), tmp_path / "again").files
                assert again[tmp_path / "again" / "configs" / USAGE_STATS_FILE] == node_file
            finally:
                await asyncio.to_thread(delete_namespace, redis_url, other.prefix)

            body = await two.stats("POST", f"{STATS}/reset-tokens", headers=auth())
            assert body["message"] and sums(body["data"]["summary"]) == (2 * N, 0, 0, 0, 0)
            data = (await one.stats(headers=auth()))["data"]
            assert sums(data["providers"][TYPE]["models"][MODEL]) == (2 * N, 0, 0, 0, 0)
            assert data["summary"]["lastUsedAt"] is not None

            async with two.client.post("/api/login", json={"password": PASSWORD}) as response:
                session = (await response.json())["token"]  # an admin session, not the key
            await one.stats("DELETE", f"{STATS}/reset", headers=auth(session))
            data = (await two.stats(headers=auth()))["data"]
            assert data["providers"] == {} and data["daily"] == {}
            assert sums(data["summary"]) == (0, 0, 0, 0, 0)
            async with one.client.get("/static/plugins/model-usage-stats.js") as script:
                assert script.status == 200  # the console tab's module
                assert b"export async function render" in await script.read()
            async with one.client.get(STATS, headers=auth("not-a-session-nor-the-key")) as refused:
                assert refused.status == 401
                assert (await refused.json())["error"]["code"] == "UNAUTHORIZED"
