"""Traffic counts on Redis: one hash per minute (``{p}:traffic:<minute ms>``, fields
``<kind>:<type>``), added by the ``TRAFFIC_ADD`` script, expiring
:data:`~cfgstore.model.traffic.KEEP_MS` after the minute starts.

Adding never waits for Redis: counts queue in a :class:`~cfgstore_redis.writer.GroupCommitWriter`
of their own (ids ``t…``), sent one batch per round trip, exactly once per batch id (the
batch marks of ``{p}:batches``). Through an outage the batch in hand is re-sent under its
id until Redis answers; counts arriving meanwhile wait in memory (they are not journaled:
an instance that stops during an outage loses them). ``HINCRBY`` on a hash the others
share: no count of another instance is ever lost.
"""

from __future__ import annotations

from collections.abc import Sequence

from cfgstore import hookimpl
from cfgstore.errors import InvalidData
from cfgstore.model.batch_ids import parse_batch_id
from cfgstore.model.timefmt import now_ms
from cfgstore.model.traffic import (
    KEEP_MS,
    MINUTE_MS,
    TrafficCount,
    counts_from_fields,
    fields_of,
    merge_counts,
    minute_of,
)
from cfgstore_redis.base import RedisParts
from cfgstore_redis.translate import translated
from cfgstore_redis.writer import GroupCommitWriter


class TrafficOps(RedisParts):
    traffic_writer: GroupCommitWriter[TrafficCount]

    def _start_traffic(self) -> None:
        self.traffic_writer = GroupCommitWriter(self._send_traffic, id_prefix="t", what="traffic")

    @hookimpl
    async def cfgstore_traffic_add(self, counts: Sequence[TrafficCount]) -> None:
        oldest = minute_of(now_ms()) - KEEP_MS + MINUTE_MS
        self.traffic_writer.submit([c for c in counts if c.minute_ms >= oldest])

    @hookimpl
    async def cfgstore_traffic_read(self, since_ms: int) -> list[TrafficCount]:
        first = max(minute_of(since_ms - 1) + MINUTE_MS, minute_of(now_ms()) - KEEP_MS)
        minutes = range(first, minute_of(now_ms()) + MINUTE_MS, MINUTE_MS)
        with translated(self.connection):
            async with self.redis.pipeline(transaction=False) as pipe:
                for minute in minutes:
                    pipe.hgetall(self.keys.traffic(minute))
                replies = await pipe.execute()
        counts: list[TrafficCount] = []
        for minute, fields in zip(minutes, replies, strict=True):
            if fields:
                counts.extend(counts_from_fields(minute, fields))
        return counts

    @hookimpl
    async def cfgstore_replica_add_traffic(
        self, counts: Sequence[TrafficCount], op_id: str
    ) -> bool:
        if parse_batch_id(op_id) is None:
            raise InvalidData("op_id", repr(op_id), "traffic batches need a sequenced batch id")
        return await self._add_traffic_once(counts, op_id)

    async def _send_traffic(self, counts: Sequence[TrafficCount], op_id: str) -> None:
        await self._add_traffic_once(counts, op_id)

    async def _add_traffic_once(self, counts: Sequence[TrafficCount], op_id: str) -> bool:
        """``TRAFFIC_ADD`` under ``op_id``; ``False`` when Redis had applied it already."""
        batch_id = parse_batch_id(op_id)
        assert batch_id is not None
        keys = [self.keys.batches]
        args: list[str | int] = [batch_id.instance, batch_id.epoch, batch_id.seq]
        per_minute: dict[int, list[tuple[str, int]]] = {}
        for count in merge_counts(counts):
            per_minute.setdefault(count.minute_ms, []).extend(fields_of(count))
        for minute, fields in per_minute.items():
            keys.append(self.keys.traffic(minute))
            args += [minute + KEEP_MS, len(fields)]
            for field, increment in fields:
                args += [field, increment]
        reply = await self._run("TRAFFIC_ADD", keys, args)
        return bool(reply) and reply[0] == "ok"

    async def _close_traffic(self) -> None:
        """Send what is queued (bounded by the caller) and drop this writer's mark."""
        await self.traffic_writer.close()
        if self.traffic_writer.batches:
            with translated(self.connection):
                await self.redis.hdel(self.keys.batches, self.traffic_writer.ids.instance)
