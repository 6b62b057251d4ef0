"""Coalesced writes: steady traffic is persisted (maximum wait), durability on request,
and other processes' writes are picked up."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from cfgstore.model import jsjson
from tests.file_backend.conftest import OpenStore
from tests.file_backend.observer import watch


def _first(cwd: Path) -> tuple[str, str]:
    doc = json.loads((cwd / "configs" / "provider_pools.json").read_text("utf-8"))
    provider_type, nodes = next((t, n) for t, n in doc.items() if n)
    return provider_type, nodes[0]["uuid"]


async def test_steady_traffic_is_written_within_the_maximum_wait(
    deployment_copy: Path, open_store: OpenStore
) -> None:
    """Records arrive every 10 ms, far more often than the 10 s debounce: a pure
    debounce (the Node service's) would never write; the maximum wait forces a flush."""
    provider_type, uuid = _first(deployment_copy)
    async with open_store(write_debounce_ms=10_000, write_max_wait_ms=100) as store:
        waiter = watch(store)
        stop = asyncio.Event()

        async def traffic() -> None:
            while not stop.is_set():
                await store.pools.record_success(provider_type, uuid)
                await asyncio.sleep(0.01)

        task = asyncio.create_task(traffic())
        try:
            await waiter.wait_for("pools", remote=False, within=10)
        finally:
            stop.set()
            await task


async def test_flush_makes_records_durable_at_once(
    deployment_copy: Path, open_store: OpenStore
) -> None:
    provider_type, uuid = _first(deployment_copy)
    async with open_store(write_debounce_ms=60_000, write_max_wait_ms=60_000) as store:
        before = await store.pools.get_node(provider_type, uuid)
        assert before is not None
        for _ in range(3):
            await store.pools.record_success(provider_type, uuid)
        await asyncio.wait_for(store.flush(), 10)
        doc = json.loads((deployment_copy / "configs" / "provider_pools.json").read_text())
        node = next(n for n in doc[provider_type] if n["uuid"] == uuid)
        assert node["usageCount"] == before.state.usage_count + 3


async def test_concurrent_durable_waiters_share_flushes(
    deployment_copy: Path, open_store: OpenStore
) -> None:
    provider_type, uuid = _first(deployment_copy)
    async with open_store(write_debounce_ms=60_000, write_max_wait_ms=60_000) as store:
        waiter = watch(store)
        base = (await store.pools.get_node(provider_type, uuid)).state.usage_count  # type: ignore[union-attr]

        async def durable_request() -> None:
            await store.pools.record_success(provider_type, uuid)
            await store.flush()

        await asyncio.wait_for(asyncio.gather(*(durable_request() for _ in range(100))), 30)
        flushes = sum(1 for e in waiter.events if e.entity == "pools" and not e.remote)
        assert 1 <= flushes < 100  # group commit: far fewer writes than requests
        node = await store.pools.get_node(provider_type, uuid)
        assert node is not None and node.state.usage_count == base + 100


async def test_another_process_write_is_picked_up_and_pending_records_kept(
    deployment_copy: Path, open_store: OpenStore
) -> None:
    provider_type, uuid = _first(deployment_copy)
    pools_path = deployment_copy / "configs" / "provider_pools.json"
    async with open_store(
        write_debounce_ms=60_000, write_max_wait_ms=60_000, watch_interval_ms=20
    ) as store:
        waiter = watch(store)
        base = (await store.pools.get_node(provider_type, uuid)).state.usage_count  # type: ignore[union-attr]
        await store.pools.record_success(provider_type, uuid)  # pending, not written
        doc = jsjson.loads(pools_path.read_bytes(), "pools")
        doc["openai-custom-external"] = [{"uuid": "added-elsewhere", "customName": None}]
        pools_path.write_bytes(jsjson.dump_bytes(doc))  # "another process" writes
        await waiter.wait_for("pools", remote=True, within=10)
        pools = await store.pools.list()
        assert pools.find("openai-custom-external", "added-elsewhere") is not None
        node = pools.find(provider_type, uuid)
        assert node is not None and node.state.usage_count == base + 1
