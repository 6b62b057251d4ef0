"""Model usage statistics on Redis (:mod:`cfgstore.hookspecs.usage_stats`).

One hash, ``{p}:ustats``, holds every scope's block: fields ``<scope>\\x1f<name>`` with
scope ``s`` (the summary), ``p\\x1f<type>``, ``m\\x1f<type>\\x1f<model>`` or ``d\\x1f<day>``,
numbers as text (JavaScript's spelling), zero fields left out, plus ``@updatedAt``. A
list, ``{p}:ustats:order``, names the scopes in the order they were first counted: the
document's key order, so an imported Node file reads back in its own order.

Adding never waits for Redis: counts queue in a
:class:`~cfgstore_redis.writer.GroupCommitWriter` of their own (ids ``u…``), sent one batch
per round trip through the ``USAGE_STATS_ADD`` script (``HINCRBY`` per sum, max per peak,
the later ``lastUsedAt``), exactly once per batch id (the batch marks of ``{p}:batches``).
With the memory fallback above, batches come through ``cfgstore_replica_add_usage_stats``
under the fallback's ids instead, journaled through outages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cfgstore import hookimpl
from cfgstore.errors import InvalidData
from cfgstore.model.batch_ids import parse_batch_id
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore.model.usage_stats import (
    BLOCK_FIELDS,
    PEAKS,
    SUMS,
    UsageCount,
    empty_block,
    empty_document,
    merge_counts,
    normalise_document,
    number_of,
    number_text,
)
from cfgstore_redis.base import RedisParts
from cfgstore_redis.translate import translated
from cfgstore_redis.writer import GroupCommitWriter

SEP = "\x1f"
SUMMARY = "s"


def scopes_of(count: UsageCount) -> tuple[str, str, str, str]:
    """The four scopes a count lands in, in the order a new one is listed."""
    return (
        SUMMARY,
        f"p{SEP}{count.provider_type}",
        f"m{SEP}{count.provider_type}{SEP}{count.model}",
        f"d{SEP}{count.day}",
    )


def scope_args(counts: Sequence[UsageCount]) -> list[str]:
    """The script's per-scope arguments: each scope once, its counts merged."""
    per_scope: dict[str, list[Any]] = {}
    for count in merge_counts(counts):
        for scope in scopes_of(count):
            held = per_scope.get(scope)
            if held is None:
                per_scope[scope] = [*count.sums, *count.peaks, count.last_used_at or ""]
                continue
            for k in range(5):
                held[k] += count.sums[k]
            for k in range(3):
                held[5 + k] = max(held[5 + k], count.peaks[k])
            held[8] = max(held[8], count.last_used_at or "")
    args: list[str] = []
    for scope, values in per_scope.items():
        args += [scope, *(number_text(v) for v in values[:8]), values[8]]
    return args


def render(fields: dict[str, str], order: list[str]) -> dict[str, Any]:
    """The document from the hash and the scope order."""
    blocks: dict[str, dict[str, JSONValue]] = {}
    for field, value in fields.items():
        scope, sep, name = field.rpartition(SEP)
        if not sep or name not in BLOCK_FIELDS:
            continue
        block = blocks.setdefault(scope, empty_block())
        block[name] = value if name == "lastUsedAt" else number_of(value)
    doc: dict[str, Any] = empty_document(fields.get("@updatedAt") or None)
    doc["summary"] = blocks.get(SUMMARY, empty_block())
    for scope in order:
        kind, _, rest = scope.partition(SEP)
        block = blocks.get(scope, empty_block())
        if kind == "p":
            doc["providers"].setdefault(rest, {"summary": empty_block(), "models": {}})
            doc["providers"][rest]["summary"] = block
        elif kind == "m":
            provider_type, _, model = rest.partition(SEP)
            provider = doc["providers"].setdefault(
                provider_type, {"summary": empty_block(), "models": {}}
            )
            provider["models"][model] = block
        elif kind == "d":
            doc["daily"][rest] = block
    return doc


def import_fields(document: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The scope order and hash fields holding ``document`` (normalised first)."""
    doc = normalise_document(document, "usage statistics")
    order: list[str] = []
    fields: dict[str, str] = {}

    def put(scope: str, block: dict[str, Any]) -> None:
        for name in (*SUMS, *PEAKS):
            if block[name] or name == "requestCount":
                fields[f"{scope}{SEP}{name}"] = number_text(block[name])
        if block["lastUsedAt"]:
            fields[f"{scope}{SEP}lastUsedAt"] = block["lastUsedAt"]

    put(SUMMARY, doc["summary"])
    for provider_type, provider in doc["providers"].items():
        order.append(f"p{SEP}{provider_type}")
        put(order[-1], provider["summary"])
        for model, block in provider["models"].items():
            order.append(f"m{SEP}{provider_type}{SEP}{model}")
            put(order[-1], block)
    for day, block in doc["daily"].items():
        order.append(f"d{SEP}{day}")
        put(order[-1], block)
    if doc["updatedAt"]:
        fields["@updatedAt"] = doc["updatedAt"]
    return order, fields


class UsageStatsOps(RedisParts):
    usage_writer: GroupCommitWriter[UsageCount]

    def _start_usage_stats(self) -> None:
        self.usage_writer = GroupCommitWriter(
            self._send_usage, id_prefix="u", what="usage statistics"
        )

    @hookimpl
    async def cfgstore_usage_stats_add(self, counts: Sequence[UsageCount]) -> None:
        self.usage_writer.submit(list(counts))

    @hookimpl
    async def cfgstore_usage_stats_read(self) -> dict[str, Any]:
        await self.usage_writer.durable()  # this store's counts first
        with translated(self.connection):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(self.keys.usage_stats)
                pipe.lrange(self.keys.usage_stats_order, 0, -1)
                fields, order = await pipe.execute()
        return render(fields, order)

    @hookimpl
    async def cfgstore_usage_stats_reset(self, tokens_only: bool) -> None:
        await self.usage_writer.durable()  # what was added before the reset lands before it
        now = iso_ms(now_ms())
        if tokens_only:
            await self._run("USAGE_STATS_RESET_TOKENS", [self.keys.usage_stats], [now])
            return
        with translated(self.connection):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(self.keys.usage_stats, self.keys.usage_stats_order)
                pipe.hset(self.keys.usage_stats, "@updatedAt", now)
                await pipe.execute()

    @hookimpl
    async def cfgstore_usage_stats_import(self, document: dict[str, Any]) -> None:
        order, fields = import_fields(document)
        with translated(self.connection):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(self.keys.usage_stats, self.keys.usage_stats_order)
                if fields:
                    pipe.hset(self.keys.usage_stats, mapping=fields)
                if order:
                    pipe.rpush(self.keys.usage_stats_order, *order)
                await pipe.execute()

    @hookimpl
    async def cfgstore_replica_add_usage_stats(
        self, counts: Sequence[UsageCount], op_id: str
    ) -> bool:
        if parse_batch_id(op_id) is None:
            raise InvalidData("op_id", repr(op_id), "usage batches need a sequenced batch id")
        return await self._add_usage_once(counts, op_id)

    async def _send_usage(self, counts: Sequence[UsageCount], op_id: str) -> None:
        await self._add_usage_once(counts, op_id)

    async def _add_usage_once(self, counts: Sequence[UsageCount], op_id: str) -> bool:
        """``USAGE_STATS_ADD`` under ``op_id``; ``False`` when Redis had applied it."""
        batch_id = parse_batch_id(op_id)
        assert batch_id is not None
        keys = [self.keys.batches, self.keys.usage_stats, self.keys.usage_stats_order]
        args: list[str | int] = [batch_id.instance, batch_id.epoch, batch_id.seq]
        args += [iso_ms(now_ms()), *scope_args(counts)]
        reply = await self._run("USAGE_STATS_ADD", keys, args)
        return bool(reply) and reply[0] == "ok"

    async def _close_usage_stats(self) -> None:
        """Send what is queued (bounded by the caller) and drop this writer's mark."""
        await self.usage_writer.close()
        if self.usage_writer.batches:
            with translated(self.connection):
                await self.redis.hdel(self.keys.batches, self.usage_writer.ids.instance)
