"""Prometheus metrics of one gateway application (``GET /metrics``).

Each application owns a :class:`GatewayMetrics` with its **own**
:class:`prometheus_client.CollectorRegistry` (never the process-global one: several
applications may live in one process, tests included). ``/metrics`` is public like
``/health``: scrapers usually hold no client key, and nothing exported is secret (labels
are provider types taken from the pools, HTTP status codes, storage modes and event
names; never a key, a node uuid, a path or a query string). Put the port behind the
network policy you give ``/health`` if the pool's type names are themselves sensitive.

Exported (all names prefixed ``cfgstore_gateway_``):

* ``requests_total{type, status}``: counter, one per request served (``type`` is the
  provider type of the last node tried, ``none`` when no node was tried);
* ``upstream_latency_seconds{type}``: histogram, time to the upstream's response head;
* ``selections_total{type}``: counter, nodes picked by the selector;
* ``health_transitions_total{type, direction}``: counter of nodes going ``unhealthy`` or
  back to ``healthy``, from the ``cfgstore_provider_health_changed`` observer hook (fired
  by the store layers that track transitions, i.e. the memory fallback over Redis);
* ``storage_mode{mode}``: gauge, 1 for the top layer's current mode and 0 for the other
  known modes;
* ``journal_depth`` and ``pending_records``: gauges from the top layer's status details
  (present only on layers that report them: the memory fallback);
* ``storage_rollbacks_total``: counter of the times the shared storage was found to have
  gone back in time (Redis losing acknowledged writes in a crash), from the memory
  fallback's status detail ``rollbacks detected``;
* ``refresh_events_total{event}``: counter from the refresher's
  :class:`~cfgstore_gateway.refresh.RefreshStats` (``flights``, ``joined``,
  ``endpoint_calls``, ``refreshed``, ``waited``, ``failures``), when it has one.

The storage gauges are read at scrape time from the top layer only
(``store.top_status()``, bounded by a timeout): over the memory fallback that is memory,
so a scrape costs the shared storage nothing per node. The request path only increments
label children cached per provider type.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

import attrs
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from cfgstore import hookimpl
from cfgstore.errors import CfgStoreError
from cfgstore.model.status import BackendStatus

log = logging.getLogger("cfgstore_gateway.metrics")

PREFIX = "cfgstore_gateway"
METRICS_PATH = "/metrics"
CONTENT_TYPE = CONTENT_TYPE_LATEST
NO_TYPE = "none"
"""The ``type`` label of a request that tried no node."""
KNOWN_MODES: tuple[str, ...] = ("file", "redis", "degraded", "data-lost", "unreachable")
"""Modes always exported by ``storage_mode`` (0 unless current); another current mode is
added to them."""
REFRESH_EVENTS: tuple[str, ...] = (
    "flights",
    "joined",
    "endpoint_calls",
    "refreshed",
    "waited",
    "failures",
)
STATUS_TIMEOUT_S = 5.0
LATENCY_BUCKETS: tuple[float, ...] = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    float("inf"),
)


class HealthObserver:
    """Plugin object counting ``cfgstore_provider_health_changed`` notifications."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter

    @hookimpl
    def cfgstore_provider_health_changed(
        self, provider_type: str, uuid: str, healthy: bool
    ) -> None:
        """Count one transition (the node's uuid is not a label: unbounded)."""
        self._counter.labels(provider_type, "healthy" if healthy else "unhealthy").inc()


@attrs.define
class _StorageSnapshot:
    """What the last scrape read of the top layer's status."""

    mode: str = "unknown"
    journal_depth: float | None = None
    pending_records: float | None = None
    rollbacks: float | None = None


def _number(details: dict[str, str], key: str) -> float | None:
    try:
        return float(details[key])
    except (KeyError, ValueError):
        return None


class _ScrapeCollector(Collector):
    """Storage gauges (from the last :meth:`GatewayMetrics.read_storage`) and the
    refresher's counters (read when collected)."""

    def __init__(self, snapshot: _StorageSnapshot, refresh_stats: Callable[[], object]) -> None:
        self._snapshot = snapshot
        self._refresh_stats = refresh_stats

    def collect(self) -> Iterable[Metric]:
        snapshot = self._snapshot
        mode = GaugeMetricFamily(
            f"{PREFIX}_storage_mode",
            "Storage mode of the store's top layer (1 for the current one).",
            labels=["mode"],
        )
        modes = KNOWN_MODES if snapshot.mode in KNOWN_MODES else (*KNOWN_MODES, snapshot.mode)
        for name in modes:
            mode.add_metric([name], 1.0 if name == snapshot.mode else 0.0)
        yield mode
        if snapshot.journal_depth is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_journal_depth",
                "Journal entries not yet replicated to the storage (memory fallback).",
                value=snapshot.journal_depth,
            )
        if snapshot.pending_records is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_pending_records",
                "Records not yet applied to the storage (memory fallback).",
                value=snapshot.pending_records,
            )
        if snapshot.rollbacks is not None:
            yield CounterMetricFamily(
                f"{PREFIX}_storage_rollbacks",
                "Times the shared storage was found to have gone back in time (memory "
                "fallback; what it had lost was applied again).",
                value=snapshot.rollbacks,
            )
        stats = self._refresh_stats()
        if stats is not None:
            family = CounterMetricFamily(
                f"{PREFIX}_refresh_events",
                "Credential refresh events of this process, by event.",
                labels=["event"],
            )
            for event in REFRESH_EVENTS:
                value = getattr(stats, event, None)
                if isinstance(value, int):
                    family.add_metric([event], float(value))
            yield family


class GatewayMetrics:
    """The metrics of one application (see the module docstring).

    ``refresh_stats`` returns the refresher's stats object (or ``None``) at scrape time.
    Register :attr:`health_observer` on the store's plugin manager to count transitions.
    """

    def __init__(self, refresh_stats: Callable[[], object] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            f"{PREFIX}_requests",
            "Requests served, by provider type of the last node tried and HTTP status.",
            ["type", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            f"{PREFIX}_upstream_latency_seconds",
            "Time from sending an upstream request to its response head, by provider type.",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._selections = Counter(
            f"{PREFIX}_selections",
            "Nodes picked by the selector, by provider type.",
            ["type"],
            registry=self.registry,
        )
        self._health = Counter(
            f"{PREFIX}_health_transitions",
            "Node health transitions, by provider type and direction (healthy/unhealthy).",
            ["type", "direction"],
            registry=self.registry,
        )
        self.health_observer = HealthObserver(self._health)
        self._snapshot = _StorageSnapshot()
        self.registry.register(_ScrapeCollector(self._snapshot, refresh_stats or _no_stats))
        # Label children cached per key: the request path does one dict lookup, no labels().
        self._request_children: dict[tuple[str, int], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}
        self._selection_children: dict[str, Counter] = {}

    def request(self, provider_type: str | None, status: int) -> None:
        """Count one served request."""
        key = (provider_type or NO_TYPE, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._requests.labels(key[0], str(status))
            self._request_children[key] = child
        child.inc()

    def upstream_latency(self, provider_type: str, seconds: float) -> None:
        """Observe one upstream call's time to its response head."""
        child = self._latency_children.get(provider_type)
        if child is None:
            child = self._latency_children[provider_type] = self._latency.labels(provider_type)
        child.observe(seconds)

    def selected(self, provider_type: str) -> None:
        """Count one node picked for ``provider_type``."""
        child = self._selection_children.get(provider_type)
        if child is None:
            child = self._selection_children[provider_type] = self._selections.labels(provider_type)
        child.inc()

    def read_storage(self, statuses: Sequence[BackendStatus] | None) -> None:
        """Take the storage gauges from ``statuses`` (top layer first; ``None``: unknown)."""
        snapshot = self._snapshot
        top = statuses[0] if statuses else None
        if top is None:
            snapshot.mode, snapshot.journal_depth, snapshot.pending_records = "unknown", None, None
            snapshot.rollbacks = None
            return
        snapshot.mode = top.mode
        snapshot.journal_depth = _number(top.details, "journal depth")
        snapshot.pending_records = _number(top.details, "pending records")
        snapshot.rollbacks = _number(top.details, "rollbacks detected")

    async def scrape(self, status: Callable[[], Awaitable[Sequence[BackendStatus]]]) -> bytes:
        """The exposition text, after reading the storage status with ``status()`` (the
        store's statuses, top layer first; bounded by :data:`STATUS_TIMEOUT_S`)."""
        statuses: Sequence[BackendStatus] | None
        try:
            async with asyncio.timeout(STATUS_TIMEOUT_S):
                statuses = await status()
        except (TimeoutError, CfgStoreError) as exc:
            log.warning("storage status unavailable for /metrics: %s", exc)
            statuses = None
        self.read_storage(statuses)
        return generate_latest(self.registry)


def _no_stats() -> None:
    return None
