"""A credential refresh during an outage (DESIGN §3): the service keeps refreshing — the
lock is this process's, the compare-and-set is against the version held in memory — and
the write is journaled against the version it read, then replayed when Redis is back.
(Replay's conflict rule — the later expiry wins — is tested with cfgctl journal replay.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from cfgstore.adapters import Store
from cfgstore.errors import VersionConflict
from cfgstore.model.credentials import Credential
from cfgstore.model.pools import node_from_json
from tests.memory_fallback.conftest import (
    DEGRADE_WAIT_S,
    RECOVER_WAIT_S,
    TYPE,
    fallback_settings,
    journal_depth,
    new_prefix,
    open_observed,
    redis_settings,
    seed_with_nodes,
)
from tests.support.redis_server import RedisServerProcess

KIRO = "claude-kiro-oauth"


def kiro(refresh_token: str, expires_at: str) -> dict[str, object]:
    return {
        "accessToken": f"at-{refresh_token}",
        "refreshToken": refresh_token,
        "expiresAt": expires_at,
    }


async def test_refresh_while_degraded_is_local_journaled_and_replayed(
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    async with Store.open(redis_settings(url, prefix)) as admin:
        node = {"uuid": "k1", "KIRO_OAUTH_CREDS_FILE_PATH": "kiro/k1.json"}
        await admin.pools.add_node(KIRO, node_from_json(node, "test"))
        old = kiro("r1", "2026-11-26T01:00:00.000Z")
        await admin.credentials.put(Credential(KIRO, "k1", old), None)
    settings = fallback_settings(url, prefix, tmp_path / "state")
    async with open_observed(settings) as (store, observer):
        held = await store.credentials.get(KIRO, "k1")
        assert held is not None and held.document == old
        await aof_server.astop()
        await store.pools.record_success(TYPE, "n1")  # the outage is noticed
        await observer.wait(True, within=DEGRADE_WAIT_S)
        await store.flush()  # the record is in the journal

        token = await store.credentials.lock(KIRO, "k1", 30_000)
        assert token is not None and token.startswith("local-")
        assert await store.credentials.lock(KIRO, "k1", 30_000) is None  # single flight
        fresh = kiro("r2", "2026-11-26T02:00:00.000Z")
        depth = await journal_depth(store)
        version = await store.credentials.put(Credential(KIRO, "k1", fresh), held.version)
        assert await journal_depth(store) == depth + 1
        with pytest.raises(VersionConflict):  # a second writer against the old version
            await store.credentials.put(Credential(KIRO, "k1", fresh), held.version)
        served = await store.credentials.get(KIRO, "k1")
        assert served is not None and (served.version, served.document) == (version, fresh)
        assert await store.credentials.unlock(KIRO, "k1", token)

        await aof_server.arestart()
        await observer.wait(False, within=RECOVER_WAIT_S)
        assert await journal_depth(store) == 0
    async with Store.open(redis_settings(url, prefix)) as admin:
        stored = await admin.credentials.get(KIRO, "k1")
        assert stored is not None and stored.document == fresh


async def test_leases_while_degraded_are_this_process_s(
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    settings = fallback_settings(url, prefix, tmp_path / "state")
    async with open_observed(settings) as (store, observer):
        shared = await store.leases.take("usage:all", 30_000)
        assert shared is not None and not shared.startswith("local-")
        await aof_server.astop()
        await store.pools.record_success(TYPE, "n1")  # the outage is noticed
        await observer.wait(True, within=DEGRADE_WAIT_S)
        local = await store.leases.take("usage:type:t", 30_000)
        assert local is not None and local.startswith("local-")
        assert await store.leases.take("usage:type:t", 30_000) is None  # single flight
        assert await store.leases.release("usage:type:t", local) is True
        assert await store.leases.release("usage:all", shared) is False  # cannot say
        await aof_server.arestart()
        await observer.wait(False, within=RECOVER_WAIT_S)
        assert await store.leases.release("usage:all", shared) is True  # still Redis's
