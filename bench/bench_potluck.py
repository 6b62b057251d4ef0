"""api-potluck admissions per second: 200 concurrent callers admitting one shared key whose
daily limit is half the attempts (so half are refused), as ``/v1/…`` requests with one
``maki_`` key do.

``round-trip`` (baseline)
    One ``PING`` per call over the same kind of connection pool: the floor any check in
    the shared storage costs.
``redis``
    ``store.potluck.admit`` on a Redis-only store: one ``POTLUCK_ADMIT`` script per call
    (check and count in one atomic step).
``memory+redis``
    The gateway's chain: the memory fallback passes admissions through to Redis.
``file``
    The embedded default (memory over files): checked and counted in memory, the file
    written coalesced; the time ends after ``store.flush()`` wrote it.

After each variant exactly ``limit`` calls must have been admitted and the stored
``todayUsage`` (read by a fresh store) must be ``limit``, or the benchmark fails.
"""

from __future__ import annotations

import asyncio
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from bench.harness import (
    BenchFailure,
    Row,
    fresh_configs_dir,
    percentile_ms,
    private_redis,
    redis_only,
    scaled,
)
from cfgstore.adapters import Settings, Store
from tests.support.namespace_seed import seed_namespace

NAME = "potluck"
BASELINE = "round-trip"
CALLERS = 200
OPS = 4000


def run(scale: float) -> list[Row]:
    ops = scaled(OPS, scale, CALLERS)
    server = private_redis(NAME)
    with server:
        rows = [
            asyncio.run(_round_trip(server.url, ops)),
            asyncio.run(_admissions("redis", redis_only(server.url, _prefix()), ops)),
        ]
        with fresh_configs_dir() as configs:
            prefix = _prefix()
            seed_namespace(server.url, prefix)  # as `cfgctl init` leaves it
            chain = Settings(
                backends=("memory", "redis"),
                redis_url=server.url,
                redis_prefix=prefix,
                state_dir=configs.parent / "state",
            )
            rows.append(asyncio.run(_admissions("memory+redis", chain, ops)))
    with fresh_configs_dir() as configs:
        files = Settings(configs_dir=configs, state_dir=configs.parent / "state")
        rows.append(asyncio.run(_admissions("file", files, ops)))
    return rows


def _prefix() -> str:
    return f"bench-potluck-{uuidlib.uuid4().hex[:8]}"


async def _callers(ops: int, call: Callable[[], Awaitable[bool]]) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    admitted = 0

    async def caller(count: int) -> None:
        nonlocal admitted
        for _ in range(count):
            start = time.perf_counter()
            ok = await call()
            latencies.append(time.perf_counter() - start)
            admitted += ok

    shares = [ops // CALLERS + (i < ops % CALLERS) for i in range(CALLERS)]
    started = time.perf_counter()
    await asyncio.gather(*(caller(n) for n in shares))
    return time.perf_counter() - started, latencies, admitted


async def _round_trip(url: str, ops: int) -> Row:
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=CALLERS)
    client = aioredis.Redis(connection_pool=pool)
    try:
        await asyncio.gather(*(client.ping() for _ in range(CALLERS)))

        async def ping() -> bool:
            return bool(await client.ping())

        seconds, latencies, _ = await _callers(ops, ping)
    finally:
        await client.aclose()
        await pool.aclose()
    return Row(
        NAME,
        BASELINE,
        ops,
        seconds,
        BASELINE,
        "1 PING/call",
        percentile_ms(latencies, 0.5),
        percentile_ms(latencies, 0.99),
    )


async def _admissions(variant: str, settings: Settings, ops: int) -> Row:
    limit = ops // 2
    async with Store.open(settings) as store:
        key = await store.potluck.create("bench", limit)
        await store.flush()
        kid = key["id"]
        admit = store.potluck.admit

        async def call() -> bool:
            return (await admit(kid)).admitted

        seconds, latencies, admitted = await _callers(ops, call)
        flush_started = time.perf_counter()
        await store.flush()
        seconds += time.perf_counter() - flush_started
    async with Store.open(settings) as fresh:
        stored = await fresh.potluck.get(kid)
    used = stored["todayUsage"] if stored else None
    if admitted != limit or used != limit:
        raise BenchFailure(
            f"{NAME}/{variant}: admitted {admitted}, stored todayUsage {used}, limit {limit}"
        )
    return Row(
        NAME,
        variant,
        ops,
        seconds,
        BASELINE,
        f"limit {limit}: {limit} admitted, {ops - limit} refused",
        percentile_ms(latencies, 0.5),
        percentile_ms(latencies, 0.99),
    )
