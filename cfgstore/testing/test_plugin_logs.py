"""Plugin logs (:mod:`cfgstore.hookspecs.plugin_logs`): newest first, trimmed to ``keep``,
read back equal, capped before they are stored, cleared per plugin, kept across a reopen
when the chain stores them, and (``shared``) one log for every instance on the storage,
concurrent appenders losing nothing."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import pytest

from cfgstore.adapters import Store
from cfgstore.model.plugin_logs import MAX_ENTRY_BYTES, encode_entry
from cfgstore.testing.deployment import Deployment
from cfgstore.testing.fixtures import deployment_fixture, store_fixture  # noqa: F401
from cfgstore.testing.rules import rule

pytestmark = pytest.mark.asyncio

PLUGIN = "ai-monitor"


def entry(n: int, **extra: Any) -> dict[str, Any]:
    return {"n": n, "text": f"exchange {n} ✓", "nested": {"list": [n, None, True]}, **extra}


async def test_a_log_is_newest_first_trimmed_to_keep_and_cleared_per_plugin(
    store: Store,
) -> None:
    for n in range(7):
        await store.plugin_logs.append(PLUGIN, entry(n), keep=5)
    await store.plugin_logs.append("other.plugin_2", entry(100), keep=3)
    with rule("cfgstore_plugin_log_recent", "newest first, equal to what was appended"):
        assert await store.plugin_logs.recent(PLUGIN, 3) == [entry(6), entry(5), entry(4)]
    with rule("cfgstore_plugin_log_append", "the log keeps its keep newest entries"):
        assert [e["n"] for e in await store.plugin_logs.recent(PLUGIN, 50)] == [6, 5, 4, 3, 2]
    with rule("cfgstore_plugin_log_append", "a smaller keep trims the log at the next append"):
        await store.plugin_logs.append(PLUGIN, entry(7), keep=2)
        assert [e["n"] for e in await store.plugin_logs.recent(PLUGIN, 50)] == [7, 6]
    with rule("cfgstore_plugin_log_clear", "clears that plugin's log only"):
        await store.plugin_logs.clear(PLUGIN)
        assert await store.plugin_logs.recent(PLUGIN, 50) == []
        assert await store.plugin_logs.recent("other.plugin_2", 50) == [entry(100)]
    with rule("cfgstore_plugin_log_recent", "a log never written reads empty"):
        assert await store.plugin_logs.recent("never-written", 10) == []
    reused = entry(8)
    await store.plugin_logs.append(PLUGIN, reused, keep=5)
    reused["nested"]["list"].append("changed after the append")
    with rule("cfgstore_plugin_log_recent", "what was appended, not the caller's later edits"):
        assert await store.plugin_logs.recent(PLUGIN, 50) == [entry(8)]
    with pytest.raises(ValueError):
        await store.plugin_logs.append("../escape", entry(0), keep=5)
    with pytest.raises(ValueError):
        await store.plugin_logs.append(PLUGIN, entry(0), keep=0)


async def test_an_entry_is_capped_before_it_is_stored(store: Store) -> None:
    huge = "x" * (MAX_ENTRY_BYTES * 3)
    await store.plugin_logs.append(PLUGIN, {"id": "big", "body": huge, "small": "kept"}, keep=5)
    many = {f"k{i}": "y" * 100 for i in range(2000)}  # 200 kB of short strings
    await store.plugin_logs.append(PLUGIN, many, keep=5)
    newest, big = await store.plugin_logs.recent(PLUGIN, 5)
    with rule("cfgstore_plugin_log_append", "an entry is at most MAX_ENTRY_BYTES"):
        for stored in (newest, big):
            assert len(encode_entry(stored).encode()) <= MAX_ENTRY_BYTES
        assert big["id"] == "big" and big["small"] == "kept"
        assert isinstance(big["body"], str) and big["body"].startswith("xxx")
        assert "more characters" in big["body"]
        assert newest["truncated"] is True and newest["bytes"] > MAX_ENTRY_BYTES


async def test_a_stored_log_survives_a_reopen(deployment: Deployment) -> None:
    async with deployment.open() as store:
        if not store.plugin_logs.stored:
            pytest.skip("the chain keeps no plugin logs (cfgstore.hookspecs.plugin_logs)")
        for n in range(3):
            await store.plugin_logs.append(PLUGIN, entry(n), keep=10)
    async with deployment.open() as again:
        with rule("cfgstore_plugin_log_append", "appended entries are stored (flushed on close)"):
            assert await again.plugin_logs.recent(PLUGIN, 10) == [entry(2), entry(1), entry(0)]


async def test_one_log_for_every_instance_and_no_append_lost(deployment: Deployment) -> None:
    if not deployment.shared:
        pytest.skip(f"{deployment.name} is not shared by several instances")
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(deployment.open())
        two = await stack.enter_async_context(deployment.open())
        if not one.plugin_logs.stored:
            pytest.skip("the chain keeps no plugin logs (cfgstore.hookspecs.plugin_logs)")
        await one.plugin_logs.append(PLUGIN, entry(1, by="one"), keep=100)
        await one.flush()
        await two.plugin_logs.append(PLUGIN, entry(2, by="two"), keep=100)
        await two.flush()
        with rule("cfgstore_plugin_log_recent", "every instance reads every instance's entries"):
            expected = [entry(2, by="two"), entry(1, by="one")]
            assert await one.plugin_logs.recent(PLUGIN, 10) == expected
            assert await two.plugin_logs.recent(PLUGIN, 10) == expected
        await asyncio.gather(
            *(one.plugin_logs.append(PLUGIN, entry(10 + n, by="one"), keep=100) for n in range(20)),
            *(two.plugin_logs.append(PLUGIN, entry(40 + n, by="two"), keep=100) for n in range(20)),
        )
        await one.flush()
        await two.flush()
        with rule("cfgstore_plugin_log_append", "concurrent appenders in many processes lose none"):
            found = await one.plugin_logs.recent(PLUGIN, 100)
            assert sorted(e["n"] for e in found) == [1, 2, *range(10, 30), *range(40, 60)]
        await two.plugin_logs.append(PLUGIN, entry(99, by="two"), keep=4)
        await two.flush()
        with rule("cfgstore_plugin_log_append", "the trim keeps the newest across instances"):
            assert await one.plugin_logs.recent(PLUGIN, 100) == [entry(99, by="two"), *found[:3]]
