"""The memory fallback's credentials of a 1,000-token Kiro folder: reads and journaled refreshes.

``fallback-credentials`` — :data:`TOKENS` Kiro tokens in one folder (each token has every
other one as a sibling file, aiclient-formats §4.1), migrated into a private AOF
``redis-server`` (:func:`bench.bench_kiro_siblings._generate`, ``cfgctl migrate``), served
by a ``memory+redis`` store:

``read`` (baseline)
    ``store.credentials.get`` of a held credential (answered from memory), :data:`READS`
    times over the folder's tokens.
``degraded-refresh``
    Redis stopped, the store degraded: per token, ``credentials.lock`` (this process's),
    ``get``, ``put`` of the refreshed document (the gateway's refresh path) and
    ``unlock``; :data:`REFRESHES` tokens. The note gives the journal bytes per refresh.
    Then Redis is restarted, the journal replayed, and every refreshed token must be in
    Redis with its siblings untouched (else ``ERROR``).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

import attrs

from bench.bench_kiro_siblings import KIRO, _cfgctl, _generate
from bench.harness import BenchFailure, Row, redis_only, scaled
from bench.pools_data import node_uuid
from cfgstore.adapters import Settings, Store
from tests.memory_fallback.conftest import fallback_status, open_observed
from tests.support.redis_fixture import AOF_ALWAYS
from tests.support.redis_server import RedisServerProcess

NAME = "fallback-credentials"
TOKENS = 1_000
"""Issue 16's folder size. (Before the snapshot file kept a folder's files once, format
version 2, a save of the instance's 1,000 credentials — 1,000 × 999 sibling documents —
did not end within 10 minutes.)"""
READS = 2_000
REFRESHES = 50
WAIT_S = 30.0


def run(scale: float) -> list[Row]:
    return asyncio.run(_run(scaled(READS, scale, 50), scaled(REFRESHES, scale, 5)))


async def _run(reads: int, refreshes: int) -> list[Row]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-fallback-creds-") as folder,
        RedisServerProcess(extra_args=AOF_ALWAYS) as server,
    ):
        deployment = Path(folder) / "app"
        _generate(deployment, TOKENS, one_folder=True)
        prefix = "bench-fallback"
        await asyncio.to_thread(
            _cfgctl,
            "migrate",
            "--configs",
            str(deployment / "configs"),
            "--redis-url",
            server.url,
            prefix=prefix,
        )
        settings = Settings(
            configs_dir=deployment / "configs",
            backends=("memory", "redis"),
            redis_url=server.url,
            redis_prefix=prefix,
            state_dir=Path(folder) / "state",
        )
        uuids = [node_uuid(KIRO, index) for index in range(TOKENS)]
        async with open_observed(settings) as (store, observer):
            for uuid in uuids[:refreshes]:  # held in memory from here on
                if await store.credentials.get(KIRO, uuid) is None:
                    raise BenchFailure(f"no credential for {uuid}")
            began = time.perf_counter()
            for index in range(reads):
                await store.credentials.get(KIRO, uuids[index % refreshes])
            read_s = time.perf_counter() - began

            await server.astop()
            await store.pools.record_success(KIRO, uuids[0])  # the outage is noticed
            with contextlib.suppress(Exception):
                await asyncio.wait_for(store.flush(), 5)
            await observer.wait(True, within=WAIT_S)
            await store.flush()
            before = _journal_bytes((await fallback_status(store)).details)
            written: dict[str, object] = {}
            began = time.perf_counter()
            for index, uuid in enumerate(uuids[:refreshes]):
                token = await store.credentials.lock(KIRO, uuid, 30_000)
                current = await store.credentials.get(KIRO, uuid)
                if token is None or current is None:
                    raise BenchFailure("no local lock or no credential while degraded")
                document = {**current.document, "accessToken": f"refreshed-{index}"}
                await store.credentials.put(
                    attrs.evolve(current, document=document), current.version
                )
                await store.credentials.unlock(KIRO, uuid, token)
                written[uuid] = document
            refresh_s = time.perf_counter() - began
            journaled = _journal_bytes((await fallback_status(store)).details) - before

            await server.arestart()
            await observer.wait(False, within=WAIT_S)
        await _check(server.url, prefix, written)
    note = f"{TOKENS:,} tokens in one folder"
    return [
        Row(NAME, "read", reads, read_s, "read", f"{note}; held credential, from memory"),
        Row(
            NAME,
            "degraded-refresh",
            refreshes,
            refresh_s,
            "read",
            f"{note}; lock+get+put+unlock; journal {journaled / refreshes:,.0f} B/refresh",
        ),
    ]


def _journal_bytes(details: dict[str, str]) -> int:
    return int(details["journal bytes"].split()[0])


async def _check(url: str, prefix: str, written: dict[str, object]) -> None:
    async with Store.open(redis_only(url, prefix)) as admin:
        for uuid, document in written.items():
            stored = await admin.credentials.get(KIRO, uuid)
            if stored is None or stored.document != document:
                raise BenchFailure(f"the journaled refresh of {uuid} was not replayed")
            if len(stored.siblings) != TOKENS - 1:
                raise BenchFailure(
                    f"{uuid} has {len(stored.siblings)} siblings after the replay, not {TOKENS - 1}"
                )
