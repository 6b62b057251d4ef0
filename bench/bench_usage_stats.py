"""Model usage statistics (the ``model-usage-stats`` plugin) through Redis: 200 concurrent
callers counting answered requests over 3 provider types × 4 models.

One private ``redis-server`` serves both variants; the database is flushed before each.

``per-call`` (baseline)
    One ``USAGE_STATS_ADD`` script call per request (the four scopes' ``HINCRBY``s, peaks
    and last use, under its own batch id): what counting every request straight into Redis
    costs, one round trip each. Raw redis-py over a ``BlockingConnectionPool`` of 200
    connections, opened before the timing.
``coalesced``
    The real path: ``store.usage_stats.record(…)`` per request (a dictionary update), the
    tally handed to the Redis backend's group-commit writer about once a second and by the
    final ``await store.flush()``, which ends the timing (every count applied in Redis).

After each variant the statistics are read back with a fresh store: requests and tokens of
the summary and of every model must equal what was counted, or the benchmark fails.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid as uuidlib

import redis
import redis.asyncio as aioredis

from bench.harness import BenchFailure, Row, private_redis, redis_only, scaled
from cfgstore.adapters.store import Store
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore.model.usage_stats import UsageCount, beijing_day
from cfgstore_redis import lua
from cfgstore_redis.keys import Keys
from cfgstore_redis.usage_stats_ops import scope_args

NAME = "usage-stats"
BASELINE = "per-call"
CALLERS = 200
PER_CALL_OPS_PER_CALLER = 50
COALESCED_OPS_PER_CALLER = 500
MODELS = [
    (t, f"model-{i}") for t in ("openai-custom", "claude-kiro-oauth", "gemini") for i in range(4)
]

Pick = tuple[str, str, int]
"""(type, model, prompt tokens); completion is always 10."""


def _picks(ops: int) -> list[list[Pick]]:
    rng = random.Random(19)
    per_caller = max(1, ops // CALLERS)
    return [
        [(*rng.choice(MODELS), rng.randrange(1, 500)) for _ in range(per_caller)]
        for _ in range(CALLERS)
    ]


async def _per_call(url: str, prefix: str, picks: list[list[Pick]]) -> float:
    keys = Keys(prefix)
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=CALLERS)
    client = aioredis.Redis(connection_pool=pool, decode_responses=True)
    script = client.register_script(lua.USAGE_STATS_ADD)
    await script(
        keys=[keys.batches, keys.usage_stats, keys.usage_stats_order], args=["warm", 1, 1, ""]
    )
    held = [await pool.get_connection() for _ in range(CALLERS)]  # open them all first
    for connection in held:
        await pool.release(connection)
    day = beijing_day(now_ms())

    async def caller(index: int, mine: list[Pick]) -> None:
        for seq, (provider_type, model, prompt) in enumerate(mine, 1):
            count = UsageCount(
                provider_type, model, day, 1, prompt, 10, prompt + 10, 0, iso_ms(now_ms())
            )
            args = [f"c{index}", 1, seq, iso_ms(now_ms()), *scope_args([count])]
            await script(keys=[keys.batches, keys.usage_stats, keys.usage_stats_order], args=args)

    start = time.perf_counter()
    await asyncio.gather(*(caller(i, mine) for i, mine in enumerate(picks)))
    seconds = time.perf_counter() - start
    await client.aclose()
    await pool.disconnect()
    return seconds


async def _coalesced(url: str, prefix: str, picks: list[list[Pick]]) -> float:
    async with Store.open(redis_only(url, prefix)) as store:

        async def caller(mine: list[Pick]) -> None:
            for provider_type, model, prompt in mine:
                store.usage_stats.record(
                    provider_type, model, prompt_tokens=prompt, completion_tokens=10
                )
                await asyncio.sleep(0)

        start = time.perf_counter()
        await asyncio.gather(*(caller(mine) for mine in picks))
        await store.flush()
        return time.perf_counter() - start


async def _verify(variant: str, url: str, prefix: str, picks: list[list[Pick]]) -> None:
    async with Store.open(redis_only(url, prefix)) as reader:
        doc = await reader.usage_stats.read(live=False)
    flat = [pick for mine in picks for pick in mine]
    expected_total = sum(prompt + 10 for _, _, prompt in flat)
    summary = doc["summary"]
    if (summary["requestCount"], summary["totalTokens"]) != (len(flat), expected_total):
        raise BenchFailure(
            f"{NAME}/{variant}: {summary['requestCount']} requests, {summary['totalTokens']} "
            f"tokens stored; {len(flat)} and {expected_total} counted"
        )
    for provider_type, model in MODELS:
        mine = [p for t, m, p in flat if (t, m) == (provider_type, model)]
        block = doc["providers"].get(provider_type, {}).get("models", {}).get(model)
        got = (block["requestCount"], block["promptTokens"]) if block else (0, 0)
        if got != (len(mine), sum(mine)):
            raise BenchFailure(f"{NAME}/{variant}: {provider_type}/{model} holds {got}")


def _measure(url: str, variant: str, ops: int, body: object) -> Row:
    with redis.Redis.from_url(url) as client:
        client.flushall()
    picks = _picks(ops)
    prefix = f"bench-{variant}-{uuidlib.uuid4().hex[:8]}"

    async def go() -> float:
        seconds: float = await body(url, prefix, picks)  # type: ignore[operator]
        await _verify(variant, url, prefix, picks)
        return seconds

    seconds = asyncio.run(go())
    done = sum(len(mine) for mine in picks)
    return Row(NAME, variant, done, seconds, BASELINE, f"{CALLERS} callers, verified exact")


def run(scale: float) -> list[Row]:
    per_call_ops = scaled(CALLERS * PER_CALL_OPS_PER_CALLER, scale, CALLERS)
    coalesced_ops = scaled(CALLERS * COALESCED_OPS_PER_CALLER, scale, CALLERS)
    with private_redis(NAME) as server:
        return [
            _measure(server.url, "per-call", per_call_ops, _per_call),
            _measure(server.url, "coalesced", coalesced_ops, _coalesced),
        ]
