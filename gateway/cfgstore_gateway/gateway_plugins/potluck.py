"""The ``api-potluck`` gateway plugin: shared ``maki_…`` keys with a daily quota
(aiclient-protocols §5.2), its state in the store (:attr:`cfgstore.adapters.Store.potluck`).

* :meth:`PotluckPlugin.admit`: the first offered key starting with ``maki_`` (in
  :attr:`ClientCall.keys` order: ``Authorization: Bearer``, ``x-api-key``,
  ``x-goog-api-key``, ``?key=``) is checked and counted in one atomic step of the store
  (``cfgstore_potluck_admit``), so N instances never admit more than ``dailyLimit`` in a
  Beijing day. Refusals carry the Node service's codes and messages (401 ``not_found``,
  403 ``disabled``, 429 ``quota_exceeded`` with ``{"quota": {"used", "limit",
  "resetDate"}}``). No ``maki_`` key: no opinion (the client-key check decides).
* **The rule with the client key**: a ``maki_`` key, wherever offered, is the request's
  credential and its refusal is final, even beside a valid ``REQUIRED_API_KEY`` (the
  plugin runs first, priority 10): a refused key is never let in by also sending another,
  and a proxy that adds the client key to every request cannot lift the keys' limits. A
  value that is not a ``maki_`` key (case counts: ``MAKI_…`` is not one) never refuses,
  so junk beside the client key leaves it admitting (``test_security_plugins``).
* No secret is compared byte by byte: a key is looked up by its whole value (a hash
  lookup in Redis, the file backend and the memory fallback), so timing tells at most
  whether a guessed 128-bit key exists.
* A request is counted when admitted (the Node service counted it when the answer was
  done, and let concurrent requests past the limit).
* While the storage cannot answer (Redis down; the memory fallback degraded) a ``maki_``
  key is refused with 503 ``storage_unavailable``: the limit is unknown there, and
  admitting on a local guess could over-admit by any amount. Nothing is counted then.
* :meth:`PotluckPlugin.finished`: the request's tokens (reasoning added to completion, as
  the Node service does) and one count in the day's history buckets (summary, provider,
  model), coalesced by the store; during an outage the memory fallback journals them and
  replays them exactly once.
* Live rates (``qps``/``rpm``/``tps``) are this instance's, over the last 60 s.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence

import attrs

from cfgstore.adapters import Store
from cfgstore.errors import CfgStoreError, StorageUnavailable
from cfgstore.hookspecs import hookimpl
from cfgstore.model import potluck as pl
from cfgstore.model.timefmt import now_ms
from cfgstore_gateway.plugin_api import (
    Admit,
    ClientCall,
    ConsoleTab,
    GatewayPlugin,
    Outcome,
    PluginContext,
    PluginRoute,
    Refuse,
)

log = logging.getLogger("cfgstore.gateway.potluck")

NAME = "api-potluck"
WINDOW_MS = 60_000

REFUSALS: dict[str, tuple[int, str]] = {
    "invalid_format": (401, "Invalid API key format"),
    "not_found": (401, "API key not found"),
    "disabled": (403, "API key has been disabled"),
    "quota_exceeded": (429, "Quota exceeded for this API key"),
}
"""The Node service's status and message per refusal code."""


def potluck_key(keys: Sequence[str]) -> str | None:
    """The first offered key that is a potluck key."""
    return next((k for k in keys if k.startswith(pl.KEY_PREFIX)), None)


class Rates:
    """Requests and tokens per key over the last minute, in this instance."""

    def __init__(self) -> None:
        self._events: dict[str, deque[tuple[int, int]]] = {}
        self.peaks: dict[str, tuple[float, float, float]] = {}

    def note(self, key_id: str, tokens: int, now: int) -> None:
        events = self._events.setdefault(key_id, deque())
        events.append((now, tokens))
        self._trim(events, now)
        qps, rpm, tps = self.of(key_id, now)
        old = self.peaks.get(key_id, (0.0, 0.0, 0.0))
        self.peaks[key_id] = (max(old[0], qps), max(old[1], rpm), max(old[2], tps))

    def of(self, key_id: str, now: int) -> tuple[float, float, float]:
        """``(qps, rpm, tps)`` of the key over the last minute."""
        events = self._events.get(key_id)
        if not events:
            return 0.0, 0.0, 0.0
        self._trim(events, now)
        if not events:
            return 0.0, 0.0, 0.0
        elapsed = max(1.0, min(WINDOW_MS, now - events[0][0]) / 1000)
        qps = len(events) / elapsed
        return round(qps, 2), round(qps * 60, 2), round(sum(t for _, t in events) / elapsed, 2)

    @staticmethod
    def _trim(events: deque[tuple[int, int]], now: int) -> None:
        while events and events[0][0] <= now - WINDOW_MS:
            events.popleft()


class PotluckPlugin:
    """The plugin object (one per gateway application). ``clock`` gives epoch ms (tests
    inject one to cross the Beijing day boundary)."""

    name = NAME
    description = "API Potluck: shared maki_ keys with a daily request quota"
    priority = 10
    enabled_by_default = False
    authenticates = True
    wants_exchange = False

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        self.clock = clock
        self.rates = Rates()
        self._store: Store | None = None
        from cfgstore_gateway.gateway_plugins.potluck_routes import console_tab, routes

        self.routes: Sequence[PluginRoute] = routes(self)
        self.console: ConsoleTab = console_tab()

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the api-potluck plugin is not started")
        return self._store

    async def start(self, context: PluginContext) -> None:
        self._store = context.store

    async def stop(self) -> None:
        self._store = None

    async def admit(self, call: ClientCall) -> Admit | Refuse | None:
        key_id = potluck_key(call.keys)
        if key_id is None:
            return None
        if not self.store.potluck.available:  # the chain keeps no keys: not ours to judge
            return None
        try:
            admission = await self.store.potluck.admit(key_id, self.clock())
        except StorageUnavailable as exc:
            log.warning("api-potluck key %s refused: %s", pl.masked(key_id), exc)
            return Refuse(
                503,
                "API key quota cannot be checked while the storage is unavailable",
                "storage_unavailable",
            )
        if admission.admitted:
            return Admit(pl.masked(key_id), {"potluckApiKey": key_id, "day": admission.reset_date})
        return refusal(admission)

    async def finished(self, outcome: Outcome) -> None:
        if outcome.admitted_by != NAME:
            return
        key_id = outcome.admission.get("potluckApiKey")
        if not isinstance(key_id, str):
            return
        now = self.clock()
        day = outcome.admission.get("day")
        usage = outcome.usage
        use = pl.TokenUse(
            key_id,
            outcome.provider_type or "unknown",
            outcome.model or "unknown",
            prompt=usage.input_tokens if usage else 0,
            completion=(usage.output_tokens + usage.reasoning_tokens) if usage else 0,
            cached=usage.cached_tokens if usage else 0,
            day=day if isinstance(day, str) and day else pl.beijing_date(now),
        )
        self.rates.note(key_id, use.total, now)
        qps, rpm, tps = self.rates.of(key_id, now)
        use = attrs.evolve(use, qps=qps, rpm=rpm, tps=tps)
        try:
            await self.store.potluck.add_tokens([use])
        except CfgStoreError as exc:
            log.warning("api-potluck tokens of %s not counted: %s", pl.masked(key_id), exc)


def refusal(admission: pl.Admission) -> Refuse:
    status, message = REFUSALS.get(admission.verdict, (401, "Authentication failed"))
    details: dict[str, object] = {}
    if admission.verdict == "quota_exceeded":
        details = {
            "quota": {
                "used": admission.used,
                "limit": admission.limit,
                "resetDate": admission.reset_date,
            }
        }
    return Refuse(status, message, admission.verdict, details)


@hookimpl
def cfgstore_gateway_plugins(register: Callable[[GatewayPlugin], None]) -> None:
    register(PotluckPlugin())
