"""The traffic facade: the hot path tallies in memory, the store gets the tally each second.

:meth:`Traffic.record` is synchronous and O(1) (a dictionary update): a proxied request
never waits for the storage. The first count after a hand-over schedules the next one
``interval_s`` later, so a busy instance calls ``cfgstore_traffic_add`` about once a
second with one count per provider type and minute, and an idle one not at all.
:meth:`Traffic.flush` hands over now (the Store's flush and close call it). The schedule
is :class:`~cfgstore.adapters.hand_over.HandOver`'s, shared with the usage statistics.
"""

from __future__ import annotations

import contextlib
import logging

from cfgstore.adapters.backend import Operations
from cfgstore.adapters.hand_over import RETRY_S, HandOver
from cfgstore.errors import CfgStoreError
from cfgstore.model.timefmt import now_ms
from cfgstore.model.traffic import (
    HOUR_MS,
    MINUTE_MS,
    TrafficCount,
    TrafficTally,
    TrafficTotals,
    minute_of,
    totals_by_type,
)

log = logging.getLogger("cfgstore.traffic")

HAND_OVER_S = 1.0
"""How long counts wait in memory before they are handed to the store."""
__all__ = ["HAND_OVER_S", "RETRY_S", "Traffic"]


class Traffic(HandOver[TrafficCount]):
    """Requests, errors and latency per provider type (:mod:`cfgstore.hookspecs.traffic`).
    On a chain without the operations, records are dropped and reads answer nothing
    (:attr:`available` says which)."""

    logger = log
    kept_what = "traffic counts"
    unstored_what = "traffic buckets"

    def __init__(self, ops: Operations, interval_s: float = HAND_OVER_S) -> None:
        super().__init__(interval_s)
        self.available = "cfgstore_traffic_add" in ops and "cfgstore_traffic_read" in ops
        self._add = ops["cfgstore_traffic_add"] if self.available else None
        self._read = ops["cfgstore_traffic_read"] if self.available else None
        self._tally = TrafficTally()

    def record(
        self, provider_type: str, *, ok: bool, latency_ms: float, at_ms: int | None = None
    ) -> None:
        """Count one request of ``provider_type`` (failed unless ``ok``) that took
        ``latency_ms``. Call it on the event loop."""
        if self._add is None:
            return
        at = at_ms if at_ms is not None else now_ms()
        self._tally.add(provider_type, at, ok=ok, latency_ms=latency_ms)
        self._counted()

    def _pending(self) -> int:
        return len(self._tally)

    def _take(self) -> list[TrafficCount]:
        return self._tally.take()

    def _restore(self, counts: list[TrafficCount]) -> None:
        self._tally.merge(counts)

    async def _send(self, counts: list[TrafficCount]) -> None:
        assert self._add is not None  # flush sends only when available
        await self._add(counts=counts)

    async def read(self, since_ms: int) -> list[TrafficCount]:
        """The stored buckets since ``since_ms`` (every instance's), this instance's
        tally handed over first so that it shows at once; empty without the operations."""
        if self._read is None:
            return []
        with contextlib.suppress(CfgStoreError):
            await self.flush()
        counts: list[TrafficCount] = await self._read(since_ms=since_ms)
        return counts

    async def last_hour(self, now: int | None = None) -> dict[str, TrafficTotals]:
        """Per provider type, requests, errors and latency of the last hour, summed over
        every instance (what a summary shows); empty without the operations."""
        since = minute_of(now if now is not None else now_ms()) + MINUTE_MS - HOUR_MS
        return totals_by_type(await self.read(since))
