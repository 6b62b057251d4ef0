"""The traffic facade: the hot path tallies in memory, the store gets the tally each second.

:meth:`Traffic.record` is synchronous and O(1) (a dictionary update): a proxied request
never waits for the storage. The first count after a hand-over schedules the next one
``interval_s`` later, so a busy instance calls ``cfgstore_traffic_add`` about once a
second with one count per provider type and minute, and an idle one not at all.
:meth:`Traffic.flush` hands over now (the Store's flush and close call it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cfgstore.adapters.backend import Operations
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
RETRY_S = 5.0
"""The wait after a hand-over the store refused (the counts are kept meanwhile)."""


class Traffic:
    """Requests, errors and latency per provider type (:mod:`cfgstore.hookspecs.traffic`).
    On a chain without the operations, records are dropped and reads answer nothing
    (:attr:`available` says which)."""

    def __init__(self, ops: Operations, interval_s: float = HAND_OVER_S) -> None:
        self.available = "cfgstore_traffic_add" in ops and "cfgstore_traffic_read" in ops
        self._add = ops["cfgstore_traffic_add"] if self.available else None
        self._read = ops["cfgstore_traffic_read"] if self.available else None
        self._interval_s = interval_s
        self._tally = TrafficTally()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.last_error: str | None = None

    def record(
        self, provider_type: str, *, ok: bool, latency_ms: float, at_ms: int | None = None
    ) -> None:
        """Count one request of ``provider_type`` (failed unless ``ok``) that took
        ``latency_ms``. Call it on the event loop."""
        if self._add is None:
            return
        at = at_ms if at_ms is not None else now_ms()
        self._tally.add(provider_type, at, ok=ok, latency_ms=latency_ms)
        if self._timer is None and (self._task is None or self._task.done()):
            self._schedule(self._interval_s)

    def _schedule(self, delay_s: float) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay_s, self._hand_over_soon)

    def _hand_over_soon(self) -> None:
        self._timer = None
        self._task = asyncio.get_running_loop().create_task(self._hand_over_logged())

    async def _hand_over_logged(self) -> None:
        try:
            await self.flush()
        except CfgStoreError as exc:
            if self.last_error is None:
                log.warning("traffic counts kept in memory, the store refused them: %s", exc)
            self.last_error = str(exc)
            if self._timer is None:
                self._schedule(RETRY_S)
        else:
            if len(self._tally) and self._timer is None:
                self._schedule(self._interval_s)

    async def flush(self) -> None:
        """Hand everything tallied so far to the store now. On a refusal the counts are
        kept (the backend took none of them) and the error is raised."""
        if self._add is None:
            return
        async with self._lock:
            counts = self._tally.take()
            if not counts:
                return
            try:
                await self._add(counts=counts)
            except BaseException:
                self._tally.merge(counts)
                raise
            self.last_error = None

    async def close(self) -> None:
        """Hand over what is left (best effort: a refusal is logged) and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        try:
            await self.flush()
        except CfgStoreError as exc:
            log.error("closing with %d traffic buckets not stored: %s", len(self._tally), exc)

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
