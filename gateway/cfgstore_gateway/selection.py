"""Provider selection for the gateway (aiclient-formats §3.5 steps 4–8): pure, in memory.

Contract
--------
:meth:`Selector.select` picks the node of one provider type that serves a request, as the
Node service's ``_doSelectProvider`` does, and **mutates nothing**: the caller records what
the pick implies through the store, which applies it to the memory view.

* **Auto-recovery** (step 4). A node with ``isHealthy=false`` whose ``scheduledRecoveryTime``
  is set, readable and ``<= now_ms`` counts as healthy for this pick. Its uuid is listed in
  :attr:`Choice.recovered` (and in :attr:`Selector.last_recovered`, also when no node is
  chosen); the caller records :class:`~cfgstore.model.records.Recovered` for each. Every node
  of the type is checked, disabled or excluded ones too, as the Node service does.
* **Candidates** (step 5): healthy (or recovered now), not ``isDisabled``, not
  ``needsRefresh``, uuid not in ``exclude`` (the nodes already tried for this request). With
  a model (``None`` or ``""`` = no model filter): for the managed-list types
  (:data:`MANAGED_LIST_TYPES` and their ``<type>-<suffix>`` variants) a node whose
  ``supportedModels`` is non-empty after normalisation (strings only, trimmed, empties
  dropped) serves exactly those models; every other node (other types, or an empty list) is
  dropped when its ``notSupportedModels`` array contains the model (exact match).
* **Score** (step 6, lower wins; ties → lexicographically smaller uuid). With ``active`` /
  ``waiting`` from the :class:`SlotTable` of this process:

  - ``concurrencyLimit > 0`` and ``active >= concurrencyLimit``: ``1e17`` when the queue is
    full too (``queueLimit > 0`` and ``waiting >= queueLimit``), else ``1e15 + waiting·1e10``;
  - otherwise ``base + usageCount·10000 + min(max(0, seq − minSeq), 100)·1000 + active·5000
    + freshBonus``; ``seq`` = ``_lastSelectionSeq``, ``minSeq`` = the smallest
    ``_lastSelectionSeq`` over **all** nodes of the type. A node whose
    ``lastHealthCheckTime`` is less than 60 s before ``now_ms`` is *fresh*: ``base = −1e14``,
    ``freshBonus = now − lastHealthCheckTime``; otherwise ``base = lastUsed`` in ms
    (missing or unreadable ⇒ ``now − 24 h``) and ``freshBonus = 0``.

  Scores are Python ints; every value is an integer a double holds exactly, so they compare
  as the Node service's do (an unreadable ``lastUsed`` is the one deviation: there the Node
  score is ``NaN`` and the sort order undefined).
* **Sequence** (step 7): :attr:`Choice.seq` = ``max(counter, largest _lastSelectionSeq of the
  type's nodes) + 1``, kept per type (the Node service keeps one counter for all types), so
  instances sharing the pools keep counting upwards instead of restarting at 0. The caller records
  ``Selected(type, uuid, now_ms, choice.seq)``.
* **Slots** (step 8) are :class:`SlotTable`'s business: per process, never persisted.

Performance: one pass for ``minSeq`` and one over the nodes that keeps the best score (no
sorting, no per-node allocation; a node whose base score already loses skips the terms that
could only add to it). Stored times are parsed once per distinct text (a bounded
two-generation cache keyed by the raw string, so it also works on copies of the nodes),
normalised ``supportedModels`` once per list object. Stored lists are treated as values:
the store replaces them on an edit and never mutates them in place (a list mutated in
place keeps its cached normalisation).

The gateway picks with :class:`~cfgstore_gateway.selection_index.IndexedSelector`, the
same rules answered from an index in O(log n) per pick; this scan is its reference (the
differential test holds them equal) and what it falls back to for a view without a change
feed. :class:`SlotTable` tells watchers (the index) about every slot change.

Not thread-safe: one :class:`Selector` and one :class:`SlotTable` per process, used from the
event loop only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection, Sequence
from types import TracebackType

import attrs

from cfgstore.model.jsjson import JSONValue
from cfgstore.model.node_changes import NodeChanges
from cfgstore.model.pools import ProviderNode
from cfgstore.model.timefmt import parse_time_ms

__all__ = [
    "DEFAULT_QUEUE_TIMEOUT_S",
    "MANAGED_LIST_TYPES",
    "Choice",
    "Selector",
    "SlotLease",
    "SlotTable",
    "SlotWaitTimeout",
    "SlotsFull",
    "uses_managed_model_list",
]

MANAGED_LIST_TYPES: tuple[str, ...] = (
    "openai-custom",
    "openaiResponses-custom",
    "claude-custom",
    "atlascloud",
)
"""Types whose nodes may restrict themselves with ``supportedModels`` (aiclient-formats §3.3);
``<type>-<suffix>`` variants inherit it."""

DEFAULT_QUEUE_TIMEOUT_S = 300.0
"""How long a request waits in a node's queue before giving up (the Node service's 300 s)."""

FRESH_MS = 60_000
_DAY_MS = 86_400_000
_FRESH_BASE = -100_000_000_000_000  # -1e14
_QUEUE_FULL = 100_000_000_000_000_000  # 1e17
_AT_LIMIT = 1_000_000_000_000_000  # 1e15
_PER_WAITER = 10_000_000_000  # 1e10
_PER_USE = 10_000
_PER_SEQ = 1_000
_SEQ_CAP = 100
_SEQ_FULL = _SEQ_CAP * _PER_SEQ
_PER_ACTIVE = 5_000

_UNREADABLE = -(1 << 62)
_NO_SCORE = 1 << 62
"""Above every real score (the largest is 1e17)."""
"""Cached stand-in for a time text JavaScript's ``Date`` would not read (``NaN``)."""

_CACHE_FLOOR = 4_096


def uses_managed_model_list(provider_type: str) -> bool:
    """Whether ``supportedModels`` restricts the nodes of this type."""
    return any(
        provider_type == base or provider_type.startswith(base + "-") for base in MANAGED_LIST_TYPES
    )


@attrs.frozen
class Choice:
    """The outcome of a pick."""

    node: ProviderNode
    """The chosen node: the store's live object; the caller must not mutate it."""
    seq: int
    """The ``_lastSelectionSeq`` to record with the ``Selected`` record."""
    recovered: tuple[str, ...]
    """Uuids whose ``scheduledRecoveryTime`` has passed: record ``Recovered`` for each."""


class Selector:
    """Picks nodes (§3.5 steps 4–7). One per process; thread-unsafe, event loop only."""

    def __init__(self, slots: SlotTable | None = None) -> None:
        self.slots = slots if slots is not None else SlotTable()
        self.last_recovered: tuple[str, ...] = ()
        """The uuids found due for auto-recovery by the latest :meth:`select`, also when it
        returned ``None`` (a due node may be disabled, excluded or filtered by the model)."""
        self._counters: dict[str, int] = {}
        self._managed: dict[str, bool] = {}
        self._times_young: dict[str, int] = {}
        self._times_old: dict[str, int] = {}
        self._models: dict[int, tuple[JSONValue, frozenset[str]]] = {}
        self._cache_cap = _CACHE_FLOOR

    def select(
        self,
        provider_type: str,
        nodes: Sequence[ProviderNode],
        model: str | None,
        *,
        now_ms: int,
        exclude: Collection[str] = (),
        changes: NodeChanges | None = None,
    ) -> Choice | None:
        """The best node of ``nodes`` (all nodes of ``provider_type``, in any order) for a
        request for ``model`` at ``now_ms``, or ``None`` when no node qualifies. See the
        module docstring for the rules.

        ``changes``: the change feed of the view ``nodes`` comes from; this scan reads
        every node and ignores it (:class:`~cfgstore_gateway.selection_index.IndexedSelector`
        uses it)."""
        if not nodes:
            self.last_recovered = ()
            return None
        cap = 4 * len(nodes) + _CACHE_FLOOR
        if cap > self._cache_cap:
            self._cache_cap = cap

        # minSeq over every node of the type; the largest value feeds the counter.
        lo = hi = nodes[0].state.last_selection_seq
        for node in nodes:
            seq = node.state.last_selection_seq
            if seq < lo:
                lo = seq
            elif seq > hi:
                hi = seq

        managed = self._managed.get(provider_type)
        if managed is None:
            managed = self._managed[provider_type] = uses_managed_model_list(provider_type)
        by_uuid = self.slots._types.get(provider_type) or None
        excluded = exclude or None
        wanted = model or None
        times = self._times_young.get
        models = self._models.get
        fresh_after = now_ms - FRESH_MS
        default_base = now_ms - _DAY_MS
        seq_cap = lo + _SEQ_CAP

        recovered: list[str] | None = None
        best: ProviderNode | None = None
        best_score = _NO_SCORE
        best_uuid = ""
        for node in nodes:
            state = node.state
            if not state.is_healthy:
                due_text = state.scheduled_recovery_time
                if not due_text:
                    continue
                due = times(due_text)
                if due is None:
                    due = self._parse_time(due_text)
                if due == _UNREADABLE or now_ms < due:
                    continue
                if recovered is None:
                    recovered = []
                recovered.append(node.uuid)
            if state.is_disabled or state.needs_refresh:
                continue
            uuid = node.uuid
            if excluded is not None and uuid in excluded:
                continue
            if wanted is not None:
                settings = node.settings
                if managed:
                    listed = settings.get("supportedModels")
                    if listed:
                        entry = models(id(listed))
                        normal = (
                            entry[1]
                            if entry is not None and entry[0] is listed
                            else self._normalise(listed)
                        )
                        if normal:
                            if wanted not in normal:
                                continue
                            listed = None  # served: notSupportedModels is not consulted
                        else:
                            listed = settings.get("notSupportedModels")
                    else:
                        listed = settings.get("notSupportedModels")
                else:
                    listed = settings.get("notSupportedModels")
                if isinstance(listed, list) and wanted in listed:
                    continue

            active = 0
            if by_uuid is not None:
                slot = by_uuid.get(uuid)
                if slot is not None:
                    active = slot.active
                    if active:
                        limit = node.concurrency_limit
                        if 0 < limit <= active:
                            queue_limit = node.queue_limit
                            waiting = len(slot.waiters)
                            score = (
                                _QUEUE_FULL
                                if 0 < queue_limit <= waiting
                                else _AT_LIMIT + waiting * _PER_WAITER
                            )
                            if score < best_score or (score == best_score and uuid < best_uuid):
                                best, best_score, best_uuid = node, score, uuid
                            continue

            checked_text = state.last_health_check_time
            checked = 0
            if checked_text:
                checked = times(checked_text) or self._parse_time(checked_text)
            if checked and checked > fresh_after:
                score = _FRESH_BASE + now_ms - checked
            else:
                used_text = state.last_used
                if used_text:
                    score = times(used_text) or self._parse_time(used_text)
                    if score == _UNREADABLE:
                        score = default_base
                else:
                    score = default_base
            used = state.usage_count
            if score > best_score and used >= 0:
                continue  # the remaining terms only add
            if used:
                score += used * _PER_USE
            if active:
                score += active * _PER_ACTIVE
            seq = state.last_selection_seq
            if seq >= seq_cap:
                score += _SEQ_FULL
            elif seq > lo:
                score += (seq - lo) * _PER_SEQ
            if score < best_score or (score == best_score and uuid < best_uuid):
                best, best_score, best_uuid = node, score, uuid

        self.last_recovered = due_now = tuple(recovered) if recovered else ()
        if best is None:
            return None
        counter = self._counters.get(provider_type, 0)
        counter = (counter if counter > hi else hi) + 1
        self._counters[provider_type] = counter
        return Choice(best, counter, due_now)

    # -- caches --------------------------------------------------------------------------

    def _parse_time(self, text: str) -> int:
        """Epoch ms of a stored time text (cached), :data:`_UNREADABLE` when unreadable.

        Two generations: when the young one fills, it becomes the old one; a text found
        only in the old generation moves back, so the texts still in use survive and the
        others (superseded ``lastUsed`` values) are dropped.
        """
        value = self._times_old.get(text)
        if value is None:
            parsed = parse_time_ms(text)
            value = _UNREADABLE if parsed is None else parsed
        young = self._times_young
        if len(young) >= self._cache_cap:
            self._times_old = young
            young = self._times_young = {}
        young[text] = value
        return value

    def _normalise(self, listed: JSONValue) -> frozenset[str]:
        """``supportedModels`` as the Node service reads it (``normalizeModelIds``), cached
        per list object."""
        if isinstance(listed, list):
            normal = frozenset(
                text for item in listed if isinstance(item, str) and (text := item.strip())
            )
        else:
            normal = frozenset()
        if len(self._models) >= self._cache_cap:
            self._models.clear()
        self._models[id(listed)] = (listed, normal)  # the reference keeps the id unique
        return normal


# ------------------------------------------------------------------------------ slots


class SlotsFull(Exception):
    """The node is at its ``concurrencyLimit`` and its queue is full (or it has none): the
    caller answers 429 or tries the next fallback type."""

    provider_type: str = ""
    uuid: str = ""


class SlotWaitTimeout(SlotsFull, TimeoutError):
    """A queued request waited ``timeout_s`` without getting a slot. Both a
    :class:`SlotsFull` (so a fallback loop treats it like a full queue) and a
    :class:`TimeoutError` (the Node service rejects with a "Queue timeout" error instead of
    a 429, which a caller can mirror by catching this class first)."""


def _error(cls: type[SlotsFull], message: str, provider_type: str, uuid: str) -> SlotsFull:
    error = cls(message)  # message only: TimeoutError would read more arguments as errno…
    error.provider_type = provider_type
    error.uuid = uuid
    return error


class _Slot:
    """One node's in-flight count and FIFO of waiting requests."""

    __slots__ = ("active", "waiters")

    def __init__(self) -> None:
        self.active = 0
        self.waiters: deque[asyncio.Future[None]] = deque()


class SlotTable:
    """Per-instance concurrency slots per node (§3.5 step 8): ``concurrencyLimit`` /
    ``queueLimit``; FIFO waiters with a timeout (default 300 s); never persisted.

    ``async with table.acquire(type, node):`` around the upstream call. Entering:

    * no limit (``concurrencyLimit`` ≤ 0), or fewer than ``concurrencyLimit`` active: the
      request counts as active at once;
    * at the limit and ``queueLimit > 0`` with fewer than ``queueLimit`` waiting: it waits
      in the node's FIFO queue until a slot is handed to it, at most ``timeout_s`` (then
      :class:`SlotWaitTimeout`);
    * otherwise :class:`SlotsFull` at once (``queueLimit`` 0 = no queue, as in the Node
      service's ``acquireSlot``).

    Leaving releases the slot: it passes straight to the first waiter (FIFO, no request can
    overtake a waiting one), else the active count drops. The limits are read from the node
    when :meth:`acquire` is called. Slots are keyed by (type, uuid at acquire time).
    """

    def __init__(self) -> None:
        self._types: dict[str, dict[str, _Slot]] = {}
        self._watchers: list[Callable[[str, str], None]] = []

    def watch(self, watcher: Callable[[str, str], None]) -> None:
        """Call ``watcher(type, uuid)`` after each change of a node's active or waiting
        count (provider selection's index re-reads the node's score)."""
        self._watchers.append(watcher)

    def _changed(self, provider_type: str, uuid: str) -> None:
        for watcher in self._watchers:
            watcher(provider_type, uuid)

    def active(self, provider_type: str, uuid: str) -> int:
        slot = self._types.get(provider_type, {}).get(uuid)
        return slot.active if slot is not None else 0

    def waiting(self, provider_type: str, uuid: str) -> int:
        slot = self._types.get(provider_type, {}).get(uuid)
        return len(slot.waiters) if slot is not None else 0

    def acquire(
        self,
        provider_type: str,
        node: ProviderNode,
        timeout_s: float = DEFAULT_QUEUE_TIMEOUT_S,
    ) -> SlotLease:
        """A single-use async context manager holding one slot of ``node`` while inside."""
        return SlotLease(
            self, provider_type, node.uuid, node.concurrency_limit, node.queue_limit, timeout_s
        )

    async def _enter(
        self, provider_type: str, uuid: str, limit: int, queue_limit: int, timeout_s: float
    ) -> None:
        by_uuid = self._types.get(provider_type)
        if by_uuid is None:
            by_uuid = self._types[provider_type] = {}
        slot = by_uuid.get(uuid)
        if slot is None:
            slot = by_uuid[uuid] = _Slot()
        if limit <= 0 or slot.active < limit:
            slot.active += 1
            self._changed(provider_type, uuid)
            return
        waiting = len(slot.waiters)
        if queue_limit <= 0 or waiting >= queue_limit:
            raise _error(
                SlotsFull,
                f"{provider_type}/{uuid}: concurrency limit and queue reached "
                f"(active {slot.active}/{limit}, waiting {waiting}/{queue_limit})",
                provider_type,
                uuid,
            )
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        slot.waiters.append(waiter)
        self._changed(provider_type, uuid)
        timer = loop.call_later(timeout_s, self._expire, slot, waiter, provider_type, uuid)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # The slot was handed over, but this task was cancelled before it resumed.
                self._release(provider_type, uuid)
            else:
                _discard(slot.waiters, waiter)
                self._drop_if_idle(provider_type, uuid, slot)
                self._changed(provider_type, uuid)
            raise
        finally:
            timer.cancel()

    def _expire(
        self, slot: _Slot, waiter: asyncio.Future[None], provider_type: str, uuid: str
    ) -> None:
        if not waiter.done():
            _discard(slot.waiters, waiter)
            self._changed(provider_type, uuid)
            waiter.set_exception(
                _error(
                    SlotWaitTimeout,
                    f"{provider_type}/{uuid}: no slot within the queue timeout",
                    provider_type,
                    uuid,
                )
            )

    def _release(self, provider_type: str, uuid: str) -> None:
        by_uuid = self._types.get(provider_type)
        slot = by_uuid.get(uuid) if by_uuid is not None else None
        if slot is None:
            return
        waiters = slot.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # hand the slot over: the active count stays
                self._changed(provider_type, uuid)
                return
        if slot.active > 0:
            slot.active -= 1
        self._drop_if_idle(provider_type, uuid, slot)
        self._changed(provider_type, uuid)

    def _drop_if_idle(self, provider_type: str, uuid: str, slot: _Slot) -> None:
        if slot.active == 0 and not slot.waiters:
            by_uuid = self._types.get(provider_type)
            if by_uuid is not None and by_uuid.get(uuid) is slot:
                del by_uuid[uuid]


def _discard(waiters: deque[asyncio.Future[None]], waiter: asyncio.Future[None]) -> None:
    if waiter in waiters:
        waiters.remove(waiter)


class SlotLease:
    """One request's slot on one node (from :meth:`SlotTable.acquire`)."""

    __slots__ = (
        "_held",
        "_limit",
        "_provider_type",
        "_queue_limit",
        "_table",
        "_timeout_s",
        "_used",
        "_uuid",
    )

    def __init__(
        self,
        table: SlotTable,
        provider_type: str,
        uuid: str,
        limit: int,
        queue_limit: int,
        timeout_s: float,
    ) -> None:
        self._table = table
        self._provider_type = provider_type
        self._uuid = uuid
        self._limit = limit
        self._queue_limit = queue_limit
        self._timeout_s = timeout_s
        self._used = False
        self._held = False

    async def __aenter__(self) -> None:
        if self._used:
            raise RuntimeError("a slot lease is single-use")
        self._used = True
        await self._table._enter(
            self._provider_type, self._uuid, self._limit, self._queue_limit, self._timeout_s
        )
        self._held = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._held:
            self._held = False
            self._table._release(self._provider_type, self._uuid)
