"""The change feed: a namespace revision and one pub/sub message per flush or edit,
relayed to other instances as remote change events (their caches drop stale entries)."""

from __future__ import annotations

import asyncio
import json
import uuid as uuidlib
from pathlib import Path
from typing import Any

import attrs
import redis.asyncio as aioredis

from cfgstore.adapters import Settings, Store
from cfgstore.model.versions import ABSENT_VERSION
from tests.contract.helpers import make_node
from tests.file_backend.observer import watch
from tests.support.namespace_seed import seed_namespace


def settings_for(redis_url: str, prefix: str, state_dir: Path) -> Settings:
    """An instance with its own state directory on an initialised namespace."""
    seed_namespace(redis_url, prefix)
    return Settings(
        configs_dir=Path("unused"),
        backends=("memory", "redis"),
        redis_url=redis_url,
        redis_prefix=prefix,
        state_dir=state_dir,
    )


async def _collect(pubsub: Any, until: int, within: float = 10.0) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def read() -> None:
        while len(messages) < until:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                messages.append(json.loads(message["data"]))

    await asyncio.wait_for(read(), within)
    return messages


async def test_one_message_per_flush_and_per_edit(redis_url: str, tmp_path: Path) -> None:
    prefix = f"t{uuidlib.uuid4().hex[:12]}"
    listener = aioredis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = listener.pubsub()
    await pubsub.subscribe(f"{{{prefix}}}:changes")
    # The backend alone: its own group-commit writer makes the batches.
    alone = attrs.evolve(settings_for(redis_url, prefix, tmp_path / "a"), backends=("redis",))
    async with Store.open(alone) as store:
        await store.pools.add_node("openai-custom", make_node("n"))
        backend = store._chain.layers[-1].instance
        batches_before = backend.writer.batches  # type: ignore[attr-defined]
        for _ in range(100):  # submitted before the flusher runs: one batch
            await store.pools.record_success("openai-custom", "n")
        await store.flush()
        batches = backend.writer.batches - batches_before  # type: ignore[attr-defined]
        await store.config.put({"A": 1}, ABSENT_VERSION)
        messages = await _collect(pubsub, 1 + batches + 1)
    assert batches == 1
    assert [m["entity"] for m in messages] == ["pools", "pools", "config"]
    assert messages[0]["ids"] == ["openai-custom/n"]
    revisions = [m["rev"] for m in messages]
    assert revisions == sorted(revisions) and len(set(revisions)) == 3
    assert len({m["origin"] for m in messages}) == 1
    assert await listener.get(f"{{{prefix}}}:rev") == str(revisions[-1])
    await pubsub.aclose()
    await listener.aclose()


async def test_another_instance_sees_edits_through_its_cache(
    redis_url: str, tmp_path: Path
) -> None:
    prefix = f"t{uuidlib.uuid4().hex[:12]}"
    async with (
        Store.open(settings_for(redis_url, prefix, tmp_path / "a")) as first,
        Store.open(settings_for(redis_url, prefix, tmp_path / "b")) as second,
    ):
        own = watch(first)
        version = await first.config.put({"MAX_ERROR_COUNT": 3}, ABSENT_VERSION)
        await first.plugin_config.set_enabled("api-potluck", False)
        waiter = watch(second)
        assert (await second.config.get()).max_error_count == 3  # cached now
        assert not (await second.plugin_config.get()).is_enabled("api-potluck")
        await first.config.put({"MAX_ERROR_COUNT": 7}, version)
        await first.plugin_config.set_enabled("api-potluck", True)
        await waiter.wait_for("config", remote=True)
        await waiter.wait_for("plugin_config", remote=True)
        assert (await second.config.get()).max_error_count == 7  # US3-2
        assert (await second.plugin_config.get()).is_enabled("api-potluck")  # US8-2
        # An instance hears its own writes locally, never back as remote events.
        assert [e.entity for e in own.events if not e.remote].count("config") == 2
        assert not any(e.remote for e in own.events)
