"""Usage records per second through Redis, 200 concurrent callers over 50 accounts.

One private ``redis-server`` (``tests.support.redis_server.RedisServerProcess``: a free
loopback port, no persistence) serves every variant; the database is flushed before each.
The accounts are 50 realistic nodes of three provider types (:mod:`bench.pools_data`
shapes; one in five starts with recent errors, one in ten unhealthy), and every record is a
success: ``usageCount + 1``, ``lastUsed`` now, errors cleared, healthy. Each caller is an
asyncio task recording successes on accounts it picks (seeded, so runs are comparable).

``json-lua`` (baseline)
    The Node fork's design, rebuilt here with plain redis-py: every account is one JSON
    string in a hash field (``HSET <prefix>:pools:<type> <uuid> <json>``) and every success
    is one ``EVALSHA`` of a script that ``cjson.decode``s the account, updates it and
    ``cjson.encode``s it back. One round trip per call.
``per-call``
    Our data model (one hash per node, hot fields as hash fields) and our ``APPLY_RECORDS``
    script, still one ``EVALSHA`` per record: ``cfgstore_redis.batch.encode([record], …)``
    with a fresh operation id per call. Shows what the data model alone changes.
``coalesced``
    The real Redis backend through :class:`~cfgstore.adapters.Store`: callers ``await
    store.pools.record_success(…)`` (which only enqueues) and yield; the group-commit
    writer sends everything pending as one script call, merged per account. The time ends
    after the final ``await store.flush()``, i.e. when every record is applied in Redis.
``coalesced-durable``
    The same, but every caller awaits ``store.flush()`` after each record: its own record
    is applied before it goes on, concurrent callers share batches.

Both raw variants use one ``redis.asyncio.Redis`` over a ``BlockingConnectionPool`` of
200 connections, all opened before the timing (one per caller: no caller waits for or opens
a connection); the Store uses its own connection settings (the writer needs one).

After each variant the accounts are read back (the JSON for ``json-lua``, a fresh Store for
the others): every account's ``usageCount`` must equal the number of successes recorded on
it, and every account must be healthy with ``errorCount`` 0, or the benchmark fails.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import attrs
import redis
import redis.asyncio as aioredis

from bench.harness import (
    BenchFailure,
    Row,
    percentile_ms,
    private_redis,
    redis_only,
    scaled,
    usage_in_redis,
)
from bench.pools_data import node_keys, realistic_pools
from cfgstore import hookimpl
from cfgstore.adapters.plugins import make_plugin_manager
from cfgstore.adapters.store import Store
from cfgstore.model.batch_ids import BatchSequence
from cfgstore.model.events import ChangeEvent
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import node_from_json
from cfgstore.model.records import Success
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore_redis import lua
from cfgstore_redis.batch import encode
from cfgstore_redis.keys import Keys

NAME = "redis-usage"
BASELINE = "json-lua"
CALLERS = 200
ACCOUNTS: dict[str, int] = {"claude-kiro-oauth": 20, "gemini-cli-oauth": 15, "openai-custom": 15}
ROUND_TRIP_OPS_PER_CALLER = 100
"""``json-lua`` and ``per-call``: every record costs the client a full redis-py command."""
COALESCED_OPS_PER_CALLER = 500
DURABLE_OPS_PER_CALLER = 100
POOL_CONNECTIONS = CALLERS
"""Connections of the raw clients' ``BlockingConnectionPool``: one per caller."""

Pick = tuple[str, str]

# KEYS[1] = the type's hash, ARGV[1] = uuid, ARGV[2] = lastUsed (ISO text).
JSON_LUA_SUCCESS = r"""
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return redis.error_reply('no account ' .. ARGV[1]) end
local account = cjson.decode(raw)
account.usageCount = (tonumber(account.usageCount) or 0) + 1
account.lastUsed = ARGV[2]
account.errorCount = 0
account.isHealthy = true
account.lastErrorTime = cjson.null
account.lastErrorMessage = cjson.null
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(account))
return account.usageCount
"""


@attrs.define
class Outcome:
    """What a variant measured, and what it read back afterwards."""

    seconds: float
    latencies: list[float]
    """Per record, in seconds: the latency reported in the p50/p99 columns."""
    counts: dict[Pick, int]
    """``usageCount`` of every account, read back after the run."""
    unhealthy: list[str]
    """Accounts not healthy with ``errorCount`` 0 after the run (must be none)."""
    note: str


Variant = Callable[[str, str, list[list[Pick]]], Coroutine[Any, Any, Outcome]]
"""Runs the callers against (Redis URL, key prefix); returns the outcome."""


def run(scale: float) -> list[Row]:
    round_trip_ops = scaled(CALLERS * ROUND_TRIP_OPS_PER_CALLER, scale, CALLERS)
    coalesced_ops = scaled(CALLERS * COALESCED_OPS_PER_CALLER, scale, CALLERS)
    durable_ops = scaled(CALLERS * DURABLE_OPS_PER_CALLER, scale, CALLERS)
    server = private_redis(NAME)
    with server:
        return [
            _measure(server.url, "json-lua", round_trip_ops, _run_json_lua),
            _measure(server.url, "per-call", round_trip_ops, _run_per_call),
            _measure(server.url, "coalesced", coalesced_ops, _coalesced(durable=False)),
            _measure(server.url, "coalesced-durable", durable_ops, _coalesced(durable=True)),
        ]


def _measure(url: str, variant: str, ops: int, body: Variant) -> Row:
    with redis.Redis.from_url(url) as client:
        client.flushall()
    picks = _picks(ops)
    prefix = f"bench-{variant}-{uuidlib.uuid4().hex[:8]}"
    outcome = asyncio.run(body(url, prefix, picks))
    _verify(variant, Counter(pick for mine in picks for pick in mine), outcome)
    return Row(
        NAME,
        variant,
        ops,
        outcome.seconds,
        BASELINE,
        outcome.note,
        p50_ms=percentile_ms(outcome.latencies, 0.50),
        p99_ms=percentile_ms(outcome.latencies, 0.99),
    )


def _verify(variant: str, expected: Counter[Pick], outcome: Outcome) -> None:
    counted = sum(outcome.counts.values())
    ops = sum(expected.values())
    wrong = [
        f"{t}/{u}: {outcome.counts.get((t, u))} (expected {n})"
        for (t, u), n in sorted(expected.items())
        if outcome.counts.get((t, u)) != n
    ]
    if counted != ops or wrong:
        if counted == ops:
            lost = "right sum, wrong accounts"
        else:
            lost = f"{ops - counted} lost" if counted < ops else f"{counted - ops} extra"
        raise BenchFailure(
            f"{NAME}/{variant}: usageCount sum read back is {counted}, expected {ops} ({lost}); "
            f"{len(wrong)} accounts wrong, e.g. {'; '.join(wrong[:3])}"
        )
    if outcome.unhealthy:
        raise BenchFailure(
            f"{NAME}/{variant}: {len(outcome.unhealthy)} accounts not healthy with "
            f"errorCount 0 after only successes, e.g. {outcome.unhealthy[:3]}"
        )


def _picks(ops: int) -> list[list[Pick]]:
    """Each caller's accounts, chosen up front so that picking costs nothing in the timing."""
    keys = node_keys(ACCOUNTS)
    share, extra = divmod(ops, CALLERS)
    return [
        random.Random(caller).choices(keys, k=share + (caller < extra)) for caller in range(CALLERS)
    ]


def _accounts() -> dict[str, list[dict[str, JSONValue]]]:
    """The 50 node documents by type; some start with recent errors, some unhealthy."""
    doc = realistic_pools(ACCOUNTS)
    out: dict[str, list[dict[str, JSONValue]]] = {}
    for provider_type, nodes in doc.items():
        assert isinstance(nodes, list)
        out[provider_type] = []
        for index, node in enumerate(nodes):
            assert isinstance(node, dict)
            if index % 5 == 0:
                node["errorCount"] = 3 if index % 10 == 0 else 1
                node["isHealthy"] = index % 10 != 0
                node["lastErrorTime"] = "2026-05-30T07:59:58.120Z"
                node["lastErrorMessage"] = "Request failed with status code 429"
            out[provider_type].append(node)
    return out


async def _raw_client(url: str) -> aioredis.Redis:
    """A redis-py client whose pool already holds one open connection per caller (a
    running service has a warm pool; connecting is not what is measured)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_CONNECTIONS, decode_responses=True
    )
    client = aioredis.Redis.from_pool(pool)
    await asyncio.gather(*(client.ping() for _ in range(POOL_CONNECTIONS)))
    return client


async def _callers(
    picks: list[list[Pick]],
    record: Callable[[str, str], Coroutine[Any, Any, None]],
    *,
    pause: bool = False,
) -> tuple[float, list[float]]:
    """Run one task per caller, each awaiting ``record`` per pick (and, with ``pause``,
    yielding to the event loop after it, outside the timed latency); (seconds, latencies)."""
    latencies: list[float] = []
    clock = time.perf_counter

    async def caller(mine: list[Pick]) -> None:
        for provider_type, uuid in mine:
            start = clock()
            await record(provider_type, uuid)
            latencies.append(clock() - start)
            if pause:
                await asyncio.sleep(0)  # a request awaits other things between records

    start = clock()
    await asyncio.gather(*(caller(mine) for mine in picks))
    return clock() - start, latencies


async def _evalsha_stats(url: str) -> tuple[int, int]:
    """(calls, µs) of ``EVALSHA`` so far on the server (``INFO commandstats``)."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    row = stats.get("cmdstat_evalsha", {})
    return int(row.get("calls", 0)), int(row.get("usec", 0))


def _server_time(before: tuple[int, int], after: tuple[int, int], ops: int) -> str:
    """Server time spent in the scripts while timed: per call, and per record if batched."""
    calls, usec = after[0] - before[0], after[1] - before[1]
    per_call = usec / max(calls, 1)
    if calls >= ops:
        return f"server {per_call:,.0f} µs/EVALSHA"
    return f"server {per_call / 1000:,.2f} ms/EVALSHA = {usec / ops:,.1f} µs/rec"


# -- json-lua: the Node fork's one-JSON-string-per-account design --------------------------


async def _run_json_lua(url: str, prefix: str, picks: list[list[Pick]]) -> Outcome:
    client = await _raw_client(url)
    try:
        accounts = _accounts()
        hashes = {t: f"{prefix}:pools:{t}" for t in accounts}
        for provider_type, nodes in accounts.items():
            await client.hset(
                hashes[provider_type],
                mapping={
                    str(node["uuid"]): json.dumps(node, ensure_ascii=False, separators=(",", ":"))
                    for node in nodes
                },
            )
        script = client.register_script(JSON_LUA_SUCCESS)
        await client.script_load(JSON_LUA_SUCCESS)

        async def record(provider_type: str, uuid: str) -> None:
            await script(keys=[hashes[provider_type]], args=[uuid, iso_ms(now_ms())])

        before = await _evalsha_stats(url)
        seconds, latencies = await _callers(picks, record)
        server = _server_time(before, await _evalsha_stats(url), len(latencies))

        counts: dict[Pick, int] = {}
        unhealthy: list[str] = []
        mangled = 0
        for provider_type, key in hashes.items():
            stored = await client.hgetall(key)
            for raw_uuid, text in stored.items():
                uuid = raw_uuid if isinstance(raw_uuid, str) else raw_uuid.decode()
                account = json.loads(text)
                counts[(provider_type, uuid)] = account["usageCount"]
                if account["isHealthy"] is not True or account["errorCount"] != 0:
                    unhealthy.append(f"{provider_type}/{uuid}")
                if account.get("notSupportedModels") == {}:
                    mangled += 1
    finally:
        await client.aclose()
    note = (
        f"1 EVALSHA/record, {server}; lat = EVALSHA call→reply; "
        f"cjson rewrote [] as {{}} in {mangled} accounts"
    )
    return Outcome(seconds, latencies, counts, unhealthy, note)


# -- per-call: our data model and script, one round trip per record ------------------------


async def _run_per_call(url: str, prefix: str, picks: list[list[Pick]]) -> Outcome:
    async with Store.open(redis_only(url, prefix)) as store:
        await _seed(store)
    client = await _raw_client(url)
    try:
        keys = Keys(prefix)
        head = json.dumps({"entity": "pools", "ids": [], "origin": "bench-per-call"})
        head = head[:-1] + ', "rev": '
        script = client.register_script(lua.APPLY_RECORDS)
        await client.script_load(lua.APPLY_RECORDS)

        async def record(provider_type: str, uuid: str) -> None:
            record = Success(provider_type, uuid, now_ms())
            # Concurrent calls land in any order: each is a writer of its own (one mark each).
            op_id = BatchSequence(uuidlib.uuid4().hex[:16], 0).next()
            script_keys, args = encode([record], keys, op_id, head)
            reply = await script(keys=script_keys, args=args)
            if reply[0] != "ok":
                raise BenchFailure(f"{NAME}/per-call: APPLY_RECORDS answered {reply!r}")

        before = await _evalsha_stats(url)
        seconds, latencies = await _callers(picks, record)
        server = _server_time(before, await _evalsha_stats(url), len(latencies))
    finally:
        await client.aclose()
    counts, unhealthy = await usage_in_redis(url, prefix)
    note = f"1 EVALSHA/record, {server}; lat = encode + EVALSHA call→reply"
    return Outcome(seconds, latencies, counts, unhealthy, note)


# -- coalesced: the real Redis backend through the Store -----------------------------------


class _BatchCounter:
    """Observer counting the writer's batches (one local ``pools`` event per batch)."""

    def __init__(self) -> None:
        self.batches = 0

    @hookimpl
    def cfgstore_changed(self, event: ChangeEvent) -> None:
        if event.entity == "pools" and not event.remote and not event.ids:
            self.batches += 1


async def _seed(store: Store) -> None:
    for provider_type, nodes in _accounts().items():
        for node in nodes:
            await store.pools.add_node(provider_type, node_from_json(node, "bench"))


def _coalesced(durable: bool) -> Variant:
    async def body(url: str, prefix: str, picks: list[list[Pick]]) -> Outcome:
        plugins = make_plugin_manager()
        counter = _BatchCounter()
        plugins.manager.register(counter, name="bench-batch-counter")
        clock = time.perf_counter
        enqueue: list[float] = []
        async with Store.open(redis_only(url, prefix), plugins=plugins) as store:
            await _seed(store)
            await store.flush()
            counter.batches = 0
            record_success = store.pools.record_success

            async def record(provider_type: str, uuid: str) -> None:
                if not durable:
                    await record_success(provider_type, uuid)
                    return
                start = clock()
                await record_success(provider_type, uuid)
                enqueue.append(clock() - start)
                await store.flush()

            before = await _evalsha_stats(url)
            recorded, latencies = await _callers(picks, record, pause=not durable)
            started = clock()
            await store.flush()
            final_flush = clock() - started
            seconds = recorded + final_flush
            server = _server_time(before, await _evalsha_stats(url), len(latencies))
        counts, unhealthy = await usage_in_redis(url, prefix)
        ops = len(latencies)
        batches = counter.batches
        per_batch = f"{batches:,} batches, {ops / max(batches, 1):,.0f} rec/batch, {server}"
        if durable:
            note = (
                f"{per_batch}; lat = record_success + flush = time to durable "
                f"(enqueue alone p50 {percentile_ms(enqueue, 0.5):.3f} / "
                f"p99 {percentile_ms(enqueue, 0.99):.3f} ms)"
            )
        else:
            note = (
                f"{per_batch}, final flush {final_flush:.2f} s; lat = record_success = "
                "enqueue only (not yet in Redis)"
            )
        return Outcome(seconds, latencies, counts, unhealthy, note)

    return body
