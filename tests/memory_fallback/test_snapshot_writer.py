"""The snapshot file encoded a chunk of nodes per loop turn is byte for byte the file the
whole-document encoder writes (the one :func:`snapshot_from_bytes` reads back)."""

from __future__ import annotations

import asyncio

import attrs
import pytest

from cfgstore.model.pools import ProviderPools, pools_from_json
from cfgstore.model.snapshot import snapshot_from_bytes, snapshot_to_bytes
from cfgstore_memory.snapshot_writer import ENCODE_CHUNK as CHUNK
from cfgstore_memory.snapshot_writer import snapshot_pieces
from tests.model.test_snapshot import small_snapshot


def many_pools() -> ProviderPools:
    nodes = [
        {
            "customName": f"账号 ☃ {i}",
            "uuid": f"{i:08x}-0000-4000-8000-000000000000",
            "OPENAI_API_KEY": f"sk-{i}",
            "usageCount": i,
            "weight": 1.5e-7 if i % 7 == 0 else 0.25,
            "big": 2**64 + i,
            "notSupportedModels": [] if i % 2 else ["gpt-4o", "o1"],
            "nested": {"a": {"b": [1, {"c": None}]}, "empty": {}},
            "lastUsed": "2026-03-15T12:00:00.000Z" if i % 3 else None,
            "isHealthy": i % 5 != 0,
        }
        for i in range(2 * CHUNK + 3)
    ]
    return pools_from_json(
        {"openai-custom": nodes[:CHUNK], "empty type": [], 'odd "key" \\ ü': nodes[CHUNK:]}, "t"
    )


def flat_pools() -> ProviderPools:
    """Nodes of strings, integers, booleans, nulls and lists of those (the writer's fast
    path), with what a JSON string can hold: escapes, non-ASCII, a lone surrogate."""
    nodes = [
        {
            "KIRO_OAUTH_CREDS_FILE_PATH": f"./configs/kiro/{i}\\token.json",
            "uuid": f"{i:08x}-0000-4000-8000-000000000000",
            "customName": f'账号 ☃ "q" \t\n {i}' + ("\ud800" if i == 5 else ""),
            "checkHealth": i % 2 == 0,
            "usageCount": i,
            "big": 2**70 + i,
            "negative": -i,
            "lastUsed": "2026-03-15T12:00:00.000Z" if i % 3 else None,
            "supportedModels": [] if i % 2 else ["claude-haiku-4-5", "模型", 3, True, None],
            "isHealthy": i % 5 != 0,
        }
        for i in range(CHUNK + 7)
    ]
    return pools_from_json({"claude-kiro-oauth": nodes}, "t")


@pytest.mark.parametrize(
    "pools",
    [
        pytest.param(ProviderPools(), id="no types"),
        pytest.param(pools_from_json({"openai-custom": []}, "t"), id="one empty type"),
        pytest.param(None, id="small"),
        pytest.param(many_pools(), id="chunks, odd keys, floats, unicode"),
        pytest.param(flat_pools(), id="flat nodes: the fast writer"),
    ],
)
async def test_the_pieces_are_the_whole_documents_bytes(pools: ProviderPools | None) -> None:
    snapshot = small_snapshot() if pools is None else attrs.evolve(small_snapshot(), pools=pools)
    expected = snapshot_to_bytes(snapshot)
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.ensure_future(count_turns())
    pieces = await snapshot_pieces(snapshot)
    counter.cancel()
    assert b"".join(pieces) == expected
    assert snapshot_from_bytes(b"".join(pieces), "t") == snapshot
    if pools is not None and pools.node_count() > CHUNK:
        assert turns >= 2  # the event loop ran while it encoded
