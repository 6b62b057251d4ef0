"""The model usage statistics facade: the hot path tallies in memory, the store gets the
tally each second (:mod:`cfgstore.hookspecs.usage_stats`).

:meth:`UsageStats.record` is synchronous and cheap (a dictionary update and the live rate
trackers): a proxied request never waits for the storage. The first count after a
hand-over schedules the next one ``interval_s`` later, so a busy instance calls
``cfgstore_usage_stats_add`` about once a second with one count per provider type, model
and day, and an idle one not at all. :meth:`UsageStats.flush` hands over now (the Store's
flush and close call it). Live rates (``qps``/``tps``/``rpm`` of :meth:`read`) are this
instance's, as in Node; peaks are this instance's observations merged with max
(:mod:`cfgstore.model.usage_stats`). The schedule is
:class:`~cfgstore.adapters.hand_over.HandOver`'s, shared with the traffic facade.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from cfgstore.adapters.backend import Operations
from cfgstore.adapters.hand_over import RETRY_S, HandOver
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
MAX_TRACKERS = 5000
"""Per-key live rate trackers kept at most (Node's bound)."""


__all__ = ["HAND_OVER_S", "MAX_TRACKERS", "RETRY_S", "UsageStats"]


class UsageStats(HandOver[UsageCount]):
    """Requests and tokens per provider type, model and day. On a chain without the
    operations, records are dropped and reads answer the empty document (:attr:`available`
    says which)."""

    logger = log
    kept_what = "usage statistics"
    unstored_what = "usage counts"

    def __init__(self, ops: Operations, interval_s: float = HAND_OVER_S) -> None:
        super().__init__(interval_s)
        names = ("cfgstore_usage_stats_add", "cfgstore_usage_stats_read")
        self.available = all(name in ops for name in names)
        self._ops = ops
        self._tally: dict[tuple[str, str, str], UsageCount] = {}
        self._overall = RateTracker()
        self._trackers: dict[str, RateTracker] = {}

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
        self._counted()

    def _pending(self) -> int:
        return len(self._tally)

    def _take(self) -> list[UsageCount]:
        counts, self._tally = list(self._tally.values()), {}
        return counts

    def _restore(self, counts: list[UsageCount]) -> None:
        for count in merge_counts([*counts, *self._tally.values()]):
            self._tally[count.key] = count

    async def _send(self, counts: list[UsageCount]) -> None:
        await self._ops["cfgstore_usage_stats_add"](counts=counts)

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
