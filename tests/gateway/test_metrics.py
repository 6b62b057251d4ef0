"""``GET /metrics``: Prometheus text scraped over HTTP from a running gateway.

File mode: request / selection / latency counts by labels, the storage-mode gauge, the
endpoint is public, one registry per application, and no secret in the output or the
logs. Redis mode (memory fallback): a node going unhealthy is one health transition.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from cfgstore.adapters import Store
from cfgstore.model.pools import node_from_json
from cfgstore.model.versions import ABSENT_VERSION
from tests.gateway.conftest import (
    CLIENT_KEY,
    TYPE,
    Gateway,
    api_node,
    make_deployment,
    running_gateway,
)
from tests.gateway.test_storage_modes import instance, prefix, redis_only  # noqa: F401
from tests.gateway.upstream_stub import UpstreamStub, default_responder, error
from tests.support.namespace_seed import seed_namespace

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(gw: Gateway) -> tuple[str, Samples]:
    """``/metrics`` without any key: its text and its samples by (name, labels)."""
    response = await gw.client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_requests_selections_latency_and_storage_mode_are_exported(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    settings = make_deployment(tmp_path, {TYPE: [api_node(A, upstream.base_url, "sk-node-a")]})
    async with running_gateway(settings) as gw:
        for _ in range(3):
            assert (await gw.chat("gpt-4o")).status == 200
        assert (await gw.chat("gpt-4o", headers={"Authorization": "Bearer wrong"})).status == 401
        _, samples = await scrape(gw)
    requests = "cfgstore_gateway_requests_total"
    assert value(samples, requests, type=TYPE, status="200") == 3
    assert value(samples, requests, type="none", status="401") == 1
    assert value(samples, "cfgstore_gateway_selections_total", type=TYPE) == 3
    assert value(samples, "cfgstore_gateway_upstream_latency_seconds_count", type=TYPE) == 3
    assert value(samples, "cfgstore_gateway_storage_mode", mode="file") == 1
    assert value(samples, "cfgstore_gateway_storage_mode", mode="redis") == 0
    assert value(samples, "cfgstore_gateway_storage_mode", mode="degraded") == 0
    # File mode has no journal; the refresher's counters are all zero.
    assert not any(name == "cfgstore_gateway_journal_depth" for name, _ in samples)
    assert value(samples, "cfgstore_gateway_refresh_events_total", event="refreshed") == 0
    assert not any(name == "cfgstore_gateway_health_transitions_total" for name, _ in samples)


async def test_each_application_has_its_own_registry(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    first = make_deployment(tmp_path / "1", {TYPE: [api_node(A, upstream.base_url, "sk-a")]})
    second = make_deployment(tmp_path / "2", {TYPE: [api_node(A, upstream.base_url, "sk-a")]})
    async with running_gateway(first) as one, running_gateway(second) as two:
        for _ in range(2):
            assert (await one.chat("gpt-4o")).status == 200
        assert (await two.chat("gpt-4o")).status == 200
        _, ones = await scrape(one)
        _, twos = await scrape(two)
    assert value(ones, "cfgstore_gateway_requests_total", type=TYPE, status="200") == 2
    assert value(twos, "cfgstore_gateway_requests_total", type=TYPE, status="200") == 1


async def test_no_secret_in_the_metrics_or_the_logs(
    tmp_path: Path, upstream: UpstreamStub, caplog: pytest.LogCaptureFixture
) -> None:
    pools = {
        TYPE: [
            api_node(A, upstream.base_url, "sk-secret-node-a"),
            api_node(B, upstream.base_url, "sk-secret-node-b"),
        ]
    }
    upstream.responder = lambda received: (
        error(500, "key sk-secret-node-a refused")
        if received.token == "sk-secret-node-a"
        else default_responder(received)
    )
    caplog.set_level(logging.DEBUG)
    async with running_gateway(make_deployment(tmp_path, pools)) as gw:
        for _ in range(2):
            assert (await gw.chat("gpt-4o")).status == 200
        metrics_with_key = await gw.client.get("/metrics", params={"key": CLIENT_KEY})
        assert metrics_with_key.status == 200
        text, samples = await scrape(gw)
    assert value(samples, "cfgstore_gateway_requests_total", type=TYPE, status="200") == 2
    logs = "\n".join(record.getMessage() for record in caplog.records)
    assert "/metrics" in logs
    for secret in (CLIENT_KEY, "sk-secret-node-a", "sk-secret-node-b"):
        assert secret not in text
        assert secret not in logs
    for uuid in (A, B):
        assert uuid not in text  # node uuids are not labels (unbounded)


async def test_a_node_going_unhealthy_is_one_health_transition(
    redis_url: str,
    prefix: str,  # noqa: F811
    tmp_path: Path,
    upstream: UpstreamStub,
) -> None:
    bad, good = "aaaaaaaa-0000-4000-8000-00000000000a", "bbbbbbbb-0000-4000-8000-00000000000b"
    await asyncio.to_thread(seed_namespace, redis_url, prefix)
    async with Store.open(redis_only(redis_url, prefix)) as admin:
        await admin.config.put(
            {
                "REQUIRED_API_KEY": CLIENT_KEY,
                "REQUEST_MAX_RETRIES": 0,
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
    async with running_gateway(instance(redis_url, prefix, tmp_path / "state")) as gw:
        # The bad node has the smaller uuid: picked first, it fails once (MAX_ERROR_COUNT 1).
        assert (await gw.chat("gpt-4o")).status == 502
        await gw.store.flush()
        assert (await gw.node(bad)).state.is_healthy is False
        for _ in range(2):
            assert (await gw.chat("gpt-4o")).status == 200
        await gw.store.flush()
        text, samples = await scrape(gw)
    transitions = "cfgstore_gateway_health_transitions_total"
    assert value(samples, transitions, type=TYPE, direction="unhealthy") == 1
    assert value(samples, transitions, type=TYPE, direction="healthy") is None
    assert value(samples, "cfgstore_gateway_storage_mode", mode="redis") == 1
    assert value(samples, "cfgstore_gateway_storage_mode", mode="file") == 0
    assert value(samples, "cfgstore_gateway_journal_depth") == 0
    assert value(samples, "cfgstore_gateway_pending_records") == 0
    assert value(samples, "cfgstore_gateway_storage_rollbacks_total") == 0
    assert value(samples, "cfgstore_gateway_requests_total", type=TYPE, status="502") == 1
    assert value(samples, "cfgstore_gateway_requests_total", type=TYPE, status="200") == 2
    for secret in (CLIENT_KEY, "key-bad", "key-good", redis_url):
        assert secret not in text


async def test_a_scrape_asks_redis_nothing_per_node(
    redis_url: str,
    prefix: str,  # noqa: F811
    redis_client: Redis,
    tmp_path: Path,
    upstream: UpstreamStub,
) -> None:
    """``/metrics`` and ``/health`` are public and scraped often: over the memory fallback
    they answer from memory, so the Redis commands a scrape costs do not grow with the pool
    (before: about three per node on every scrape)."""
    nodes = 200
    await asyncio.to_thread(seed_namespace, redis_url, prefix)
    async with Store.open(redis_only(redis_url, prefix)) as admin:
        await admin.config.put(
            {"REQUIRED_API_KEY": CLIENT_KEY, "MODEL_PROVIDER": TYPE}, ABSENT_VERSION
        )
        for i in range(nodes):
            uuid = f"{i:08x}-0000-4000-8000-000000000000"
            node = node_from_json(api_node(uuid, upstream.base_url, f"key-{i}"), "test")
            await admin.pools.add_node(TYPE, node)
    scrapes = 10
    async with running_gateway(instance(redis_url, prefix, tmp_path / "state")) as gw:
        before = await _commands_processed(redis_client)
        reads_before = await _read_commands(redis_client)
        for _ in range(scrapes):
            _, samples = await scrape(gw)
            assert (await gw.client.get("/health")).status == 200
        spent = await _commands_processed(redis_client) - before
        reads = await _read_commands(redis_client) - reads_before
    assert value(samples, "cfgstore_gateway_storage_mode", mode="redis") == 1
    assert value(samples, "cfgstore_gateway_pending_records") == 0
    # Not one read of the namespace (the background's heartbeat writes aside): the scrapes
    # were answered from memory. Before, each cost about three reads per node.
    assert reads == 0, f"{reads} Redis reads for {scrapes} scrapes of {nodes} nodes"
    assert spent < nodes, f"{spent} Redis commands for {scrapes} scrapes of {nodes} nodes"


READ_COMMANDS = ("hmget", "hget", "hgetall", "lrange", "get", "mget", "exists", "smembers")
"""What reading nodes, credentials, documents or the namespace head sends."""


async def _commands_processed(client: Redis) -> int:
    """Commands the server has processed so far, not counting this ``INFO`` itself."""
    return int((await client.info("stats"))["total_commands_processed"])


async def _read_commands(client: Redis) -> int:
    """Read commands (:data:`READ_COMMANDS`) the server has processed so far."""
    stats = await client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in READ_COMMANDS)
