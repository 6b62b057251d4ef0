"""Requests and errors of the last hour per provider type, for the console's summary.

The summary asks one :class:`LastHourSource` (kept on the admin application under
:data:`LAST_HOUR`) for a :class:`LastHour`. :class:`StoredTraffic`, the one installed,
reads the per-minute traffic the store keeps (:mod:`cfgstore.hookspecs.traffic`: every
instance's requests, exact). A storage that keeps no traffic (a third-party backend
without the capability), or that cannot be read (an outage), falls back to
:class:`CounterSamples`, which estimates the figures
from the pools' own counters (``usageCount``, ``errorCount``, shared
by every instance): each time the summary is asked it adds every node's counter growth
since the previous ask to its type's running total, keeps a sample of those totals at most
once a minute, and answers the growth since the oldest sample of the last hour. So it
covers only the time since the console was first polled (``complete`` false and ``since``
saying from when), and it misses what a node did between two polls when its counter was
reset in between (``errorCount`` restarts after a quiet while; a success clears it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs
from aiohttp import web

from cfgstore.adapters.traffic import Traffic as StoreTraffic
from cfgstore.errors import CfgStoreError
from cfgstore.model.pools import ProviderNode

HOUR_MS = 3_600_000
SAMPLE_EVERY_MS = 60_000


@attrs.frozen
class Traffic:
    requests: int
    errors: int


@attrs.frozen
class LastHour:
    """The last hour's traffic per type (a type absent: no figure known)."""

    by_type: Mapping[str, Traffic]
    source: str
    """``counters`` (estimated from the pools' counters) or the installed source's name."""
    since_ms: int | None
    """Start of the window the figures cover (epoch ms); ``None`` for a whole hour that
    slides with the clock (so an unchanged summary keeps its ETag)."""
    complete: bool
    """Whether the window is a whole hour."""


class LastHourSource(Protocol):
    async def last_hour(self, pools: Mapping[str, Sequence[ProviderNode]], now_ms: int) -> LastHour:
        """The traffic of the hour before ``now_ms`` per type of ``pools`` (read-only)."""
        ...


class CounterSamples:
    """The estimate from the counters (see the module docstring)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[int, int]] | None = None
        self._growth: dict[str, Traffic] = {}
        """Per type: the counters' growth observed since the first call (cumulative)."""
        self._samples: deque[tuple[int, dict[str, Traffic]]] = deque()

    async def last_hour(self, pools: Mapping[str, Sequence[ProviderNode]], now_ms: int) -> LastHour:
        self._observe(pools)
        start = now_ms - HOUR_MS
        while self._samples and (
            self._samples[0][0] < start - SAMPLE_EVERY_MS  # older than the hour: a gap
            or (len(self._samples) > 1 and self._samples[1][0] <= start)
        ):
            self._samples.popleft()  # keep at most one sample at or before the hour's start
        if not self._samples or self._samples[-1][0] <= now_ms - SAMPLE_EVERY_MS:
            self._samples.append((now_ms, dict(self._growth)))
        since_ms, base = self._samples[0]
        zero = Traffic(0, 0)
        by_type = {
            t: Traffic(
                self._growth[t].requests - base.get(t, zero).requests,
                self._growth[t].errors - base.get(t, zero).errors,
            )
            for t in pools
        }
        return LastHour(by_type, "counters", since_ms, since_ms <= start + SAMPLE_EVERY_MS)

    def _observe(self, pools: Mapping[str, Sequence[ProviderNode]]) -> None:
        """Add each node's counter growth since the last call to its type's total. A
        counter lower than last seen was reset (``errorCount`` restarts at 1 after a quiet
        while, a success clears it): what it holds now is new. A node first seen is its
        own baseline."""
        before = self._seen
        seen: dict[tuple[str, str], tuple[int, int]] = {}
        for provider_type, nodes in pools.items():
            requests = errors = 0
            for node in nodes:
                now = seen[(provider_type, node.uuid)] = (
                    node.state.usage_count,
                    node.state.error_count,
                )
                then = before.get((provider_type, node.uuid)) if before is not None else None
                if then is not None:
                    requests += now[0] - then[0] if now[0] >= then[0] else now[0]
                    errors += now[1] - then[1] if now[1] >= then[1] else now[1]
            grown = self._growth.get(provider_type, Traffic(0, 0))
            self._growth[provider_type] = Traffic(grown.requests + requests, grown.errors + errors)
        self._seen = seen


LAST_HOUR = web.AppKey("cfgstore_gateway.admin.last_hour", LastHourSource)
"""The admin application's source of the summary's last-hour figures (installed by
``add_admin``; a traffic-bucket source may replace it)."""


class StoredTraffic:
    """The store's per-minute traffic (see the module docstring), or the counter estimate
    when the storage keeps none."""

    def __init__(self, traffic: StoreTraffic) -> None:
        self._traffic = traffic
        self._fallback = CounterSamples()

    async def last_hour(self, pools: Mapping[str, Sequence[ProviderNode]], now_ms: int) -> LastHour:
        if not self._traffic.available:
            return await self._fallback.last_hour(pools, now_ms)
        try:
            totals = await self._traffic.last_hour(now_ms)
        except CfgStoreError:  # the shared storage is out: the summary still answers
            return await self._fallback.last_hour(pools, now_ms)
        by_type = {t: Traffic(total.requests, total.errors) for t, total in totals.items()}
        return LastHour(by_type, "traffic", None, True)
