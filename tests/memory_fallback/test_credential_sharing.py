"""The memory fallback's Kiro credentials: reads share the sibling documents of the folder
(no copy of the folder per read), and a refresh while degraded journals the token file
alone, replayed exactly: the token written, the folder's other files untouched; the other
tokens of the folder see the written file as their sibling, degraded and after replay."""

from __future__ import annotations

from pathlib import Path

import attrs

from cfgstore.adapters import Store
from cfgstore.model.credentials import Credential
from cfgstore.model.pools import node_from_json
from cfgstore_memory.journal import inspect_file
from cfgstore_memory.replay import CREDENTIAL
from cfgstore_memory.state_dir import JOURNAL_FILE
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
TOKENS = 6


def _token(index: int) -> dict[str, object]:
    return {
        "accessToken": f"at-{index}",
        "refreshToken": f"rt-{index}",
        "expiresAt": "2026-11-26T01:00:00.000Z",
        "authMethod": "social",
    }


async def _seed_folder(url: str, prefix: str) -> dict[str, dict[str, object]]:
    """``TOKENS`` Kiro nodes whose token files share one folder; returns file → document."""
    await seed_with_nodes(url, prefix, "n1")
    files = {f"t{i}.json": _token(i) for i in range(TOKENS)}
    async with Store.open(redis_settings(url, prefix)) as admin:
        for index in range(TOKENS):
            node = {"uuid": f"k{index}", "KIRO_OAUTH_CREDS_FILE_PATH": f"kiro/all/t{index}.json"}
            await admin.pools.add_node(KIRO, node_from_json(node, "test"))
        for index in range(TOKENS):
            own = f"t{index}.json"
            siblings = {name: dict(doc) for name, doc in files.items() if name != own}
            credential = Credential(KIRO, f"k{index}", dict(files[own]), siblings=siblings)
            await admin.credentials.put(credential, None)
    return files


async def test_reads_share_the_sibling_documents_and_copy_the_token(
    redis_url: str, tmp_path: Path
) -> None:
    prefix = new_prefix()
    files = await _seed_folder(redis_url, prefix)
    async with Store.open(fallback_settings(redis_url, prefix, tmp_path / "state")) as store:
        first = await store.credentials.get(KIRO, "k0")
        second = await store.credentials.get(KIRO, "k0")
        assert first is not None and second is not None
        assert first.siblings == {n: d for n, d in files.items() if n != "t0.json"}
        assert all(first.siblings[n] is second.siblings[n] for n in first.siblings), (
            "a read hands out the held sibling documents, not copies of the folder"
        )
        assert first.siblings is not second.siblings  # each reader's own mapping
        assert first.document is not second.document
        first.document["accessToken"] = "changed by a reader"
        first.siblings["t1.json"] = {"clientId": "a reader's own"}
        third = await store.credentials.get(KIRO, "k0")
        assert third is not None
        assert third.document == files["t0.json"]
        assert third.siblings["t1.json"] == files["t1.json"]


async def test_a_degraded_refresh_journals_the_token_file_alone_and_replays_it(
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    url, prefix = aof_server.url, new_prefix()
    files = await _seed_folder(url, prefix)
    state = tmp_path / "state"
    async with open_observed(fallback_settings(url, prefix, state)) as (store, observer):
        current = await store.credentials.get(KIRO, "k2")
        assert current is not None
        assert await store.credentials.get(KIRO, "k3") is not None  # held, t2 a sibling
        await aof_server.astop()
        await store.pools.record_success(TYPE, "n1")  # the outage is noticed
        await observer.wait(True, within=DEGRADE_WAIT_S)
        await store.flush()

        depth = await journal_depth(store)
        refreshed = {**current.document, "accessToken": "at-2-refreshed"}
        version = await store.credentials.put(
            attrs.evolve(current, document=refreshed), current.version
        )
        assert await journal_depth(store) == depth + 1
        (journal,) = state.rglob(JOURNAL_FILE)
        entries = [e for e in inspect_file(journal).entries if e.kind == CREDENTIAL]
        assert len(entries) == 1
        data = entries[0].data
        assert isinstance(data, dict) and isinstance(data["credential"], dict)
        assert data["credential"]["document"] == refreshed
        assert data["credential"]["siblings"] == {}, "the folder's other files are not journaled"

        served = await store.credentials.get(KIRO, "k2")
        assert served is not None and served.version == version
        assert served.document == refreshed
        assert served.siblings == {n: d for n, d in files.items() if n != "t2.json"}
        beside = await store.credentials.get(KIRO, "k3")
        assert beside is not None and beside.document == files["t3.json"]
        assert beside.siblings["t2.json"] == refreshed, "t2's refresh is k3's sibling"
        assert list(beside.siblings) == [n for n in files if n != "t3.json"]

        await aof_server.arestart()
        await observer.wait(False, within=RECOVER_WAIT_S)
        assert await journal_depth(store) == 0
    async with Store.open(redis_settings(url, prefix)) as admin:
        stored = await admin.credentials.get(KIRO, "k2")
        assert stored is not None and stored.document == refreshed
        assert stored.siblings == {n: d for n, d in files.items() if n != "t2.json"}
        other = await admin.credentials.get(KIRO, "k3")
        assert other is not None
        assert other.document == files["t3.json"], "another token of the folder: untouched"
        assert other.siblings["t2.json"] == refreshed, "the replayed refresh is its sibling"
