"""The Redis scripts apply hot-path records exactly as the Python model does.

Records are applied in Lua on the server (atomically, to the current state), and by
:func:`cfgstore.model.records.apply_record` everywhere else (file backend, memory state,
journal replay). Both must give the same document, byte for byte, for any sequence —
including the per-node merging the group-commit writer does.
"""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfgstore.adapters import Settings, Store
from cfgstore.model import jsjson
from cfgstore.model import records as rec
from cfgstore.model.pools import node_from_json, node_to_json

T0 = 1_780_128_000_000
TYPE = "claude-kiro-oauth"

start_docs = st.sampled_from(
    [
        {"uuid": "n", "customName": None},
        {
            "KIRO_OAUTH_CREDS_FILE_PATH": "./k.json",
            "uuid": "n",
            "isHealthy": True,
            "lastUsed": None,
            "usageCount": 5,
            "errorCount": 0,
            "lastErrorTime": None,
        },
        {
            "uuid": "n",
            "isHealthy": False,
            "errorCount": 2,
            "lastErrorTime": "2026-05-30T07:59:55.000Z",
            "lastErrorMessage": "old",
            "scheduledRecoveryTime": "2026-06-01T00:00:00.000Z",
            "lastRefreshTime": T0 - 5000,
        },
        {"uuid": "n", "lastErrorTime": "not a date", "errorCount": 4, "needsRefresh": True},
    ]
)


@st.composite
def record_lists(draw: st.DrawFn) -> list[rec.NodeRecord]:
    at = T0
    out: list[rec.NodeRecord] = []
    for _ in range(draw(st.integers(1, 12))):
        at += draw(st.sampled_from([0, 1, 9_000, 10_000, 10_001, 15_000, 29_999, 31_000]))
        kind = draw(st.integers(0, 6))
        max_errors = draw(st.sampled_from([0, 1, 3]))
        message = draw(st.sampled_from(["", "boom", '引号"\\\n']))
        if kind == 0:
            out.append(rec.Selected(TYPE, "n", at, draw(st.integers(0, 50))))
        elif kind == 1:
            out.append(rec.Success(TYPE, "n", at))
        elif kind == 2:
            out.append(rec.Failure(TYPE, "n", at, message, max_errors, draw(st.booleans())))
        elif kind == 3:
            out.append(rec.Cooldown(TYPE, "n", at, message, max_errors, at + 60_000))
        elif kind == 4:
            out.append(rec.NeedRefresh(TYPE, "n", at))
        elif kind == 5:
            out.append(rec.Recovered(TYPE, "n", at))
        else:
            out.append(
                rec.HealthCheckResult(
                    TYPE,
                    "n",
                    at,
                    draw(st.booleans()),
                    draw(st.sampled_from([None, "", "m-1"])),
                    draw(st.sampled_from([None, "bad"])),
                    max_errors,
                    draw(st.booleans()),
                    draw(st.booleans()),
                )
            )
    return out


async def _through_redis(
    redis_url: str, doc: dict[str, Any], records: list[rec.NodeRecord], batched: bool
) -> bytes:
    store_settings = Settings(
        configs_dir=Path("unused"),
        backends=("redis",),
        redis_url=redis_url,
        redis_prefix=f"p{uuidlib.uuid4().hex[:10]}",
    )
    async with Store.open(store_settings) as store:
        await store.pools.add_node(TYPE, node_from_json(doc, "test"))
        if batched:
            await store.pools.apply_records(records)  # one batch: merged per node
        else:
            for record in records:
                await store.pools.apply_records([record])
                await store.flush()
        node = await store.pools.get_node(TYPE, "n")
        assert node is not None
        return jsjson.dump_bytes(node_to_json(node))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=start_docs, records=record_lists(), batched=st.booleans())
def test_lua_and_python_agree(
    redis_url: str, doc: dict[str, Any], records: list[rec.NodeRecord], batched: bool
) -> None:
    expected = node_from_json(doc, "test")
    for record in records:
        rec.apply_record(expected, record)
    got = asyncio.run(_through_redis(redis_url, doc, records, batched))
    assert got == jsjson.dump_bytes(node_to_json(expected))


F = rec.Failure
SCENARIOS = {
    "window restarts after 10 s": [F(TYPE, "n", T0, "a", 0), F(TYPE, "n", T0 + 15_000, "b", 0)],
    "window counts within 10 s": [
        F(TYPE, "n", T0, "a", 3),
        F(TYPE, "n", T0 + 10_000, "", 3),
        F(TYPE, "n", T0 + 19_000, "c", 3),
    ],
    "unhealthy at the limit, then success": [
        F(TYPE, "n", T0, "a", 2),
        F(TYPE, "n", T0 + 1, "b", 2),
        rec.Success(TYPE, "n", T0 + 2),
    ],
    "cooldown then recovery": [
        rec.Cooldown(TYPE, "n", T0, "429", 3, T0 + 30_000),
        rec.Recovered(TYPE, "n", T0 + 30_000),
    ],
    "need refresh within and after grace": [
        rec.Success(TYPE, "n", T0),
        rec.NeedRefresh(TYPE, "n", T0 + 29_999),
        rec.NeedRefresh(TYPE, "n", T0 + 30_000),
    ],
    "health check reset usage": [
        rec.Success(TYPE, "n", T0),
        rec.HealthCheckResult(TYPE, "n", T0 + 5, True, "m", None, 3, reset_usage=True),
    ],
    "many successes merge": [rec.Success(TYPE, "n", T0 + i) for i in range(50)],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize(
    "doc",
    [{"uuid": "n"}, {"uuid": "n", "lastErrorTime": "garbage", "errorCount": 1}],
    ids=["bare", "bad-time"],
)
def test_known_sequences_agree(redis_url: str, name: str, doc: dict[str, Any]) -> None:
    records = SCENARIOS[name]
    expected = node_from_json(doc, "test")
    for record in records:
        rec.apply_record(expected, record)
    for batched in (True, False):
        got = asyncio.run(_through_redis(redis_url, doc, records, batched))
        assert got == jsjson.dump_bytes(node_to_json(expected)), (name, batched)
