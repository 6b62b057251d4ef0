"""The model usage statistics facade: the hot path tallies in memory, the store gets the
tally each second (:mod:`cfgstore.hookspecs.usage_stats`).

:meth:`UsageStats.record` is synchronous and cheap (a dictionary update and the live rate
trackers): a proxied request never waits for the storage. The first count after a
hand-over schedules the next one ``interval_s`` later, so a busy instance calls
``cfgstore_usage_stats_add`` about once a second with one count per provider type, model
and day, and an idle one not at all. :meth:`UsageStats.flush` hands over now (the Store's
flush and close call it). Live rates (``qps``/``tps``/``rpm`` of :meth:`read`) are this
instance's, as in Node; peaks are this instance's observations merged with max
(:mod:`cfgstore.model.usage_stats`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from cfgstore.adapters.backend import Operations
from cfgstore.errors import CfgStoreError
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore.model.usage_stats import (
    RateTracker,
    UsageCount,
    beijing_day,
    empty_document,
    merge_counts,
    with_live_rates,
)

log = logging.getLogger("cfgstore.usage_stats")

HAND_OVER_S = 1.0
"""How long counts wait in memory before they are handed to the store."""
RETRY_S = 5.0
"""The wait after a hand-over the store refused (the counts are kept meanwhile)."""
MAX_TRACKERS = 5000
"""Per-key live rate trackers kept at most (Node's bound)."""


class UsageStats:
    """Requests and tokens per provider type, model and day. On a chain without the
    operations, records are dropped and reads answer the empty document (:attr:`available`
    says which)."""

    def __init__(self, ops: Operations, interval_s: float = HAND_OVER_S) -> None:
        names = ("cfgstore_usage_stats_add", "cfgstore_usage_stats_read")
        self.available = all(name in ops for name in names)
        self._ops = ops
        self._interval_s = interval_s
        self._tally: dict[tuple[str, str, str], UsageCount] = {}
        self._overall = RateTracker()
        self._trackers: dict[str, RateTracker] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.last_error: str | None = None

    def record(
        self,
        provider_type: str,
        model: str,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        total_tokens: int = 0,
        cached_tokens: int = 0,
        at_ms: int | None = None,
    ) -> None:
        """Count one answered request of ``provider_type`` and ``model`` with its tokens
        (``total_tokens`` 0: prompt + completion, as Node). Call it on the event loop."""
        if not self.available:
            return
        at = at_ms if at_ms is not None else now_ms()
        total = total_tokens or prompt_tokens + completion_tokens
        now_s = at // 1000
        self._overall.record(total, now_s)
        for key in (f"provider:{provider_type}", f"model:{model}"):
            tracker = self._trackers.get(key)
            if tracker is None and len(self._trackers) < MAX_TRACKERS:
                tracker = self._trackers[key] = RateTracker()
            if tracker is not None:
                tracker.record(total, now_s)
        rates = self._overall.rates(now_s)
        count = UsageCount(
            provider_type,
            model,
            beijing_day(at),
            1,
            prompt_tokens,
            completion_tokens,
            total,
            cached_tokens,
            iso_ms(at),
            rates.qps,
            rates.rpm,
            rates.tps,
        )
        held = self._tally.get(count.key)
        self._tally[count.key] = count if held is None else held.plus(count)
        if self._timer is None and (self._task is None or self._task.done()):
            self._schedule(self._interval_s)

    def _schedule(self, delay_s: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._hand_over_soon)

    def _hand_over_soon(self) -> None:
        self._timer = None
        self._task = asyncio.get_running_loop().create_task(self._hand_over_logged())

    async def _hand_over_logged(self) -> None:
        try:
            await self.flush()
        except CfgStoreError as exc:
            if self.last_error is None:
                log.warning("usage statistics kept in memory, the store refused them: %s", exc)
            self.last_error = str(exc)
            if self._timer is None:
                self._schedule(RETRY_S)
        else:
            if self._tally and self._timer is None:
                self._schedule(self._interval_s)

    async def flush(self) -> None:
        """Hand everything tallied so far to the store now. On a refusal the counts are
        kept (the backend took none of them) and the error is raised."""
        if not self.available:
            return
        async with self._lock:
            if not self._tally:
                return
            counts, self._tally = list(self._tally.values()), {}
            try:
                await self._ops["cfgstore_usage_stats_add"](counts=counts)
            except BaseException:
                for count in merge_counts([*counts, *self._tally.values()]):
                    self._tally[count.key] = count
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
            log.error("closing with %d usage counts not stored: %s", len(self._tally), exc)

    async def read(self, *, live: bool = True) -> dict[str, Any]:
        """The stored document (every instance's counts), this instance's tally handed over
        first so that it shows at once; with ``live``, Node's ``GET`` answer (this
        instance's live rates added). The empty document without the operations."""
        if not self.available:
            doc = empty_document()
        else:
            with contextlib.suppress(CfgStoreError):
                await self.flush()
            doc = await self._ops["cfgstore_usage_stats_read"]()
        if not live:
            return doc
        now_s = now_ms() // 1000
        per_key = {key: tracker.rates(now_s) for key, tracker in self._trackers.items()}
        return with_live_rates(doc, self._overall.rates(now_s), per_key)

    async def reset(self, *, tokens_only: bool = False) -> None:
        """Reset everything, or the tokens and peaks only (counts kept). What this instance
        tallied and not yet handed over is handed over first (it was counted before the
        reset); the live rate trackers start again. Raises what the storage raises."""
        if not self.available:
            return
        await self.flush()
        await self._ops["cfgstore_usage_stats_reset"](tokens_only=tokens_only)
        self._overall = RateTracker()
        self._trackers = {}

    async def replace(self, document: dict[str, Any]) -> None:
        """Replace the stored statistics with ``document`` (``cfgctl migrate``)."""
        await self._ops["cfgstore_usage_stats_import"](document=document)
