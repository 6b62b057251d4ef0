"""Plugin logs through a Redis outage (memory fallback over a private ``redis-server``
with AOF): appended while Redis is down, an entry stays in the instance's memory (read
back during the outage), is never journaled, and the storage's log is the one read once
Redis is back; clearing is refused while degraded."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfgstore.errors import StorageDegraded
from tests.memory_fallback.conftest import (
    DEGRADE_WAIT_S,
    RECOVER_WAIT_S,
    fallback_settings,
    journal_depth,
    new_prefix,
    open_observed,
    seed_with_nodes,
)
from tests.support.redis_server import RedisServerProcess

PLUGIN = "ai-monitor"


async def test_appends_during_an_outage_stay_in_memory_and_are_not_journaled(
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    settings = fallback_settings(url, prefix, tmp_path / "a", redis_socket_timeout_ms=500)
    async with open_observed(settings) as (store, observer):
        await store.plugin_logs.append(PLUGIN, {"n": 1}, keep=5)
        await store.plugin_logs.append(PLUGIN, {"n": 2}, keep=5)
        assert await store.plugin_logs.recent(PLUGIN, 5) == [{"n": 2}, {"n": 1}]

        aof_server.stop()
        await store.plugin_logs.append(PLUGIN, {"n": 3}, keep=5)  # no error: kept in memory
        await observer.wait(True, within=DEGRADE_WAIT_S)
        await store.plugin_logs.append(PLUGIN, {"n": 4}, keep=5)
        assert await store.plugin_logs.recent(PLUGIN, 5) == [{"n": 4}, {"n": 3}]
        assert await journal_depth(store) == 0  # debug data: never journaled
        await store.plugin_logs.append(PLUGIN, {"n": 6}, keep=2)  # trimmed to the newest
        assert await store.plugin_logs.recent(PLUGIN, 5) == [{"n": 6}, {"n": 4}]
        with pytest.raises(StorageDegraded):
            await store.plugin_logs.clear(PLUGIN)

        aof_server.restart()
        await observer.wait(False, within=RECOVER_WAIT_S, after=1)
        assert await store.plugin_logs.recent(PLUGIN, 5) == [{"n": 2}, {"n": 1}]
        await store.plugin_logs.append(PLUGIN, {"n": 5}, keep=2)
        assert await store.plugin_logs.recent(PLUGIN, 5) == [{"n": 5}, {"n": 2}]
        await store.plugin_logs.clear(PLUGIN)
        assert await store.plugin_logs.recent(PLUGIN, 5) == []
        assert await journal_depth(store) == 0
