"""Provider selection in O(log n) per pick: an index over each type's nodes, kept up to date
from the view's change feed, making exactly the picks of the scan
(:class:`~cfgstore_gateway.selection.Selector`, the reference; rules in its module docstring).

Contract
--------
:class:`IndexedSelector` is a :class:`~cfgstore_gateway.selection.Selector` whose
:meth:`~IndexedSelector.select` takes the view's
:class:`~cfgstore.model.node_changes.NodeChanges` feed (``changes_of(view)``). Without a
feed (a backend that hands out fresh copies) it scans, as the reference does. With one, it
answers from an index per provider type, built on the first pick of the type and then
updated per node from:

* the feed: every record applied to the view and every node replaced (this instance's
  records and other instances' changes); anything else (a node added, removed, renamed, a
  rebuilt view) makes the feed say "everything", and the type's index is rebuilt at its
  next pick. A list of nodes that is not the one indexed, or of another length, is
  re-indexed too;
* the :class:`~cfgstore_gateway.selection.SlotTable` (each change of a node's active or
  waiting count);
* time: each node's next rule change (its health check turning 60 s old, its
  ``scheduledRecoveryTime`` arriving) is an event in a heap, applied at the first pick at
  or after it. A pick earlier than a change already applied (the clock went back) rebuilds
  the index at that time.

Why exact in O(log n): with ``m`` = minSeq, ``seq − m ≥ 0`` for every node, so a
candidate's score is ``min(X + seq·1000 − m·1000, X + 100,000) + c`` where ``X`` (base,
usage, in-flight terms) depends on the node alone and ``c`` is ``now`` for nodes whose base
is relative to the clock (fresh health check, or no readable ``lastUsed``) and ``0`` for
the others. Each candidate therefore sits in two heaps of its clock class, keyed by
``X + seq·1000`` and ``X + 100,000`` (plus its uuid for ties); the best score is the
smallest head plus that heap's offset (``c − m·1000`` or ``c``). Nodes at their
concurrency limit have a constant score and a heap of their own. ``m`` and the largest seq
(for the sequence counter) come from a count per seq value with lazy min/max heaps.

Model filtering picks heaps by group: nodes serving every model; per requested model, the
``supportedModels`` nodes listing it (built on the first request for that model); one group
per distinct ``notSupportedModels`` set. Excluded uuids (the request's tried nodes) are
skipped by walking the heap in order. Heap entries are invalidated per node by a version
number and dropped lazily; a heap with more dead entries than live ones is compacted.

Auto-recovery: the nodes due now (unhealthy, ``scheduledRecoveryTime`` passed) are kept in
a set, so :attr:`Choice.recovered` lists them (in pool order) without a scan; they leave it
when the ``Recovered`` record (or anything else) changes them.

Costs: a pick is O(g·log n) for g groups queried plus O(log n) per node changed since the
previous pick; building a type's index is O(n log n) (first pick, a rebuilt view — a
node added, removed or moved, a full resync — or a clock going back).

Not thread-safe; event loop only, like the views and the slot table it follows.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Sequence
from typing import Any

from cfgstore.model.node_changes import Cursor, NodeChanges
from cfgstore.model.pools import ProviderNode
from cfgstore.model.timefmt import parse_time_ms
from cfgstore_gateway.selection import (
    _AT_LIMIT,
    _DAY_MS,
    _FRESH_BASE,
    _PER_ACTIVE,
    _PER_SEQ,
    _PER_USE,
    _PER_WAITER,
    _QUEUE_FULL,
    _SEQ_FULL,
    FRESH_MS,
    Choice,
    Selector,
    SlotTable,
    uses_managed_model_list,
)

__all__ = ["IndexedSelector"]

_REL_NEAR, _REL_FAR, _ABS_NEAR, _ABS_FAR, _LIMITED = range(5)
_NEVER = -(1 << 62)
_MAX_MODEL_GROUPS = 256
_TIME_CACHE = 65_536

Item = tuple[int, str, int]
"""A heap entry: (key, uuid, version); valid while the uuid's entry has that version. Ints
and a string only: the garbage collector stops tracking such tuples, so a large index does
not make full collections more frequent."""


class _Entry:
    """One node of an indexed type."""

    __slots__ = ("homes", "node", "position", "seq", "uuid", "version")

    def __init__(self, node: ProviderNode, position: int) -> None:
        self.node = node
        self.uuid = node.uuid
        self.position = position
        self.version = 0
        self.seq = node.state.last_selection_seq
        self.homes: tuple[_Group, ...] = ()


class _Group:
    """The candidates of one model group: five heaps of :data:`Item`."""

    __slots__ = ("heaps", "live")

    def __init__(self) -> None:
        self.heaps: list[list[Item]] = [[], [], [], [], []]
        self.live = 0


class _TypeIndex:
    """The index of one provider type's nodes (see the module docstring)."""

    def __init__(self, provider_type: str, nodes: Sequence[ProviderNode], managed: bool) -> None:
        self.provider_type = provider_type
        self.nodes = nodes
        self.count = len(nodes)
        self.managed = managed
        self.valid = True
        self.entries: dict[str, _Entry] = {}
        self.pending: dict[str, ProviderNode | None] = {}
        self.everyone = _Group()  # nodes serving every model
        self.listing = _Group()  # every supportedModels node (requests without a model)
        self.per_model: dict[str, _Group] = {}  # model → supportedModels nodes listing it
        self.listed: dict[_Entry, frozenset[str]] = {}
        self.refusing: dict[frozenset[str], _Group] = {}  # notSupportedModels set → nodes
        self.due: dict[_Entry, None] = {}
        self.events: list[Item] = []  # (at, uuid, version): a rule changes for the node
        self.applied_until = _NEVER  # latest rule change already applied
        self.seq_count: dict[int, int] = {}
        self.seq_low: list[int] = []
        self.seq_high: list[int] = []  # negated


class IndexedSelector(Selector):
    """A :class:`Selector` answering from per-type indexes (module docstring)."""

    def __init__(self, slots: SlotTable | None = None) -> None:
        super().__init__(slots)
        self.slots.watch(self._slot_changed)
        self._feed: NodeChanges | None = None
        self._cursor: Cursor = (-1, 0)
        self._indexes: dict[str, _TypeIndex] = {}
        self._time_cache: dict[str, int | None] = {}
        self._refusals: dict[int, tuple[Any, frozenset[str]]] = {}
        self.rebuilds = 0
        """Indexes built so far (a measure for tests and the benchmark)."""

    # -- the pick ------------------------------------------------------------------------

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
        """As :meth:`Selector.select`; ``changes`` is the feed of the view ``nodes`` comes
        from (``None``: scan)."""
        if changes is None or not nodes:
            return super().select(provider_type, nodes, model, now_ms=now_ms, exclude=exclude)
        self._follow(changes)
        index = self._index(provider_type, nodes, now_ms)
        if index is None:
            return super().select(provider_type, nodes, model, now_ms=now_ms, exclude=exclude)

        due = index.due
        if due:
            ordered = sorted(due, key=_position) if len(due) > 1 else due
            recovered = tuple(entry.uuid for entry in ordered)
        else:
            recovered = ()
        self.last_recovered = recovered

        low = _seq_low(index)
        excluded = exclude or None
        offsets = (now_ms - low * _PER_SEQ, now_ms, -low * _PER_SEQ, 0, 0)
        entries = index.entries
        best: Item | None = None
        best_score = 0
        for group in self._groups(index, model or None):
            if not group.live:
                continue
            heaps = group.heaps
            for kind in range(5):
                item = _head(entries, heaps[kind], excluded)
                if item is None:
                    continue
                score = item[0] + offsets[kind]
                if (
                    best is None
                    or score < best_score
                    or (score == best_score and item[1] < best[1])
                ):
                    best, best_score = item, score
        if best is None:
            return None
        high = -_seq_peek(index.seq_high, index.seq_count, negate=True)
        counter = self._counters.get(provider_type, 0)
        counter = (counter if counter > high else high) + 1
        self._counters[provider_type] = counter
        return Choice(index.entries[best[1]].node, counter, recovered)

    def _groups(self, index: _TypeIndex, model: str | None) -> list[_Group]:
        groups = [index.everyone]
        if model is None:
            groups.append(index.listing)
            groups.extend(index.refusing.values())
            return groups
        if index.managed:
            group = index.per_model.get(model)
            if group is None:
                group = _model_group(index, model)
            groups.append(group)
        groups.extend(group for refused, group in index.refusing.items() if model not in refused)
        return groups

    # -- following changes ---------------------------------------------------------------

    def _follow(self, changes: NodeChanges) -> None:
        """Hand the feed's news to the type indexes (applied at their next pick)."""
        if changes is not self._feed:
            self._feed = changes
            self._indexes.clear()
            self._cursor = changes.cursor
            return
        news = changes.since(self._cursor)
        self._cursor = changes.cursor
        if news is None:
            self._indexes.clear()
            return
        indexes = self._indexes
        for provider_type, node in news:
            index = indexes.get(provider_type)
            if index is not None:
                index.pending[node.uuid] = node

    def _slot_changed(self, provider_type: str, uuid: str) -> None:
        index = self._indexes.get(provider_type)
        if index is not None:
            index.pending.setdefault(uuid, None)

    def _index(
        self, provider_type: str, nodes: Sequence[ProviderNode], now_ms: int
    ) -> _TypeIndex | None:
        """The type's index, up to date at ``now_ms``; ``None`` when the nodes cannot be
        indexed (duplicate uuids): the caller scans."""
        index = self._indexes.get(provider_type)
        if (
            index is None
            or index.nodes is not nodes
            or index.count != len(nodes)
            or now_ms < index.applied_until
        ):
            index = self._build(provider_type, nodes, now_ms)
        if not index.valid:
            return None
        if index.pending:
            pending, index.pending = index.pending, {}
            entries = index.entries
            for uuid, node in pending.items():
                entry = entries.get(uuid)
                if entry is None:  # a node the index does not know: the feed was bypassed
                    return self._checked(self._build(provider_type, nodes, now_ms))
                if node is not None:
                    entry.node = node
                self._rekey(index, entry, now_ms)
        events = index.events
        entries = index.entries
        while events and events[0][0] <= now_ms:
            _, uuid, version = heapq.heappop(events)
            entry = entries[uuid]
            if entry.version == version:
                self._rekey(index, entry, now_ms)
        return index

    @staticmethod
    def _checked(index: _TypeIndex) -> _TypeIndex | None:
        return index if index.valid else None

    def _build(self, provider_type: str, nodes: Sequence[ProviderNode], now_ms: int) -> _TypeIndex:
        self.rebuilds += 1
        managed = self._managed.get(provider_type)
        if managed is None:
            managed = self._managed[provider_type] = uses_managed_model_list(provider_type)
        index = self._indexes[provider_type] = _TypeIndex(provider_type, nodes, managed)
        entries = index.entries
        for position, node in enumerate(nodes):
            entry = _Entry(node, position)
            if entries.setdefault(entry.uuid, entry) is not entry:
                index.valid = False
                return index
            count = index.seq_count
            count[entry.seq] = count.get(entry.seq, 0) + 1
        index.seq_low = list(index.seq_count)
        heapq.heapify(index.seq_low)
        index.seq_high = [-seq for seq in index.seq_count]
        heapq.heapify(index.seq_high)
        for entry in entries.values():
            self._rekey(index, entry, now_ms)
        return index

    # -- one node ------------------------------------------------------------------------

    def _rekey(self, index: _TypeIndex, entry: _Entry, now_ms: int) -> None:
        """Re-read one node: drop its heap entries (new version) and file it again as its
        state, its slots and the rules at ``now_ms`` say."""
        entry.version = version = entry.version + 1
        for group in entry.homes:
            group.live -= 1
        entry.homes = ()
        index.due.pop(entry, None)
        index.listed.pop(entry, None)
        node = entry.node
        state = node.state

        seq = state.last_selection_seq
        if seq != entry.seq:
            _seq_moved(index, entry.seq, seq)
            entry.seq = seq

        if not state.is_healthy:
            text = state.scheduled_recovery_time
            if not text:
                return
            due = self._time(text)
            if due is None:
                return
            if now_ms < due:
                self._event(index, due, version, entry)
                return
            self._passed(index, due)
            index.due[entry] = None
        if state.is_disabled or state.needs_refresh:
            return

        homes = self._homes(index, entry, node)
        uuid = entry.uuid
        active = waiting = 0
        by_uuid = self.slots._types.get(index.provider_type)
        if by_uuid:
            slot = by_uuid.get(uuid)
            if slot is not None:
                active, waiting = slot.active, len(slot.waiters)
        if active:
            limit = node.concurrency_limit
            if 0 < limit <= active:
                queue_limit = node.queue_limit
                key = (
                    _QUEUE_FULL if 0 < queue_limit <= waiting else _AT_LIMIT + waiting * _PER_WAITER
                )
                item: Item = (key, uuid, version)
                for group in homes:
                    _push(index.entries, group, _LIMITED, item)
                _settle(entry, homes)
                return

        checked_text = state.last_health_check_time
        checked = self._time(checked_text) if checked_text else None
        relative = True
        if checked and checked + FRESH_MS > now_ms:  # fresh: checked > now − 60 s
            base = _FRESH_BASE - checked
            self._event(index, checked + FRESH_MS, version, entry)
        else:
            if checked:
                self._passed(index, checked + FRESH_MS)
            used_text = state.last_used
            used = self._time(used_text) if used_text else None
            if used is None:
                base = -_DAY_MS
            else:
                base, relative = used, False
        base += state.usage_count * _PER_USE + active * _PER_ACTIVE
        near: Item = (base + seq * _PER_SEQ, uuid, version)
        far: Item = (base + _SEQ_FULL, uuid, version)
        near_kind, far_kind = (_REL_NEAR, _REL_FAR) if relative else (_ABS_NEAR, _ABS_FAR)
        for group in homes:
            _push(index.entries, group, near_kind, near)
            _push(index.entries, group, far_kind, far)
        _settle(entry, homes)

    def _homes(self, index: _TypeIndex, entry: _Entry, node: ProviderNode) -> tuple[_Group, ...]:
        """The groups a candidate belongs to (its model filter, as the reference reads it)."""
        settings = node.settings
        if index.managed:
            listed = settings.get("supportedModels")
            if listed:
                cached = self._models.get(id(listed))
                normal = (
                    cached[1]
                    if cached is not None and cached[0] is listed
                    else self._normalise(listed)
                )
                if normal:
                    index.listed[entry] = normal
                    per_model = index.per_model
                    if len(normal) <= len(per_model):
                        mine = [per_model[m] for m in normal if m in per_model]
                    else:
                        mine = [g for m, g in per_model.items() if m in normal]
                    return (index.listing, *mine)
        refused = self._refused(settings.get("notSupportedModels"))
        if not refused:
            return (index.everyone,)
        group = index.refusing.get(refused)
        if group is None:
            group = index.refusing[refused] = _Group()
        return (group,)

    def _refused(self, listed: Any) -> frozenset[str]:
        """The model names a ``notSupportedModels`` value refuses (a list's strings)."""
        if not isinstance(listed, list) or not listed:
            return frozenset()
        cached = self._refusals.get(id(listed))
        if cached is not None and cached[0] is listed:
            return cached[1]
        refused = frozenset(item for item in listed if isinstance(item, str))
        if len(self._refusals) >= self._cache_cap:
            self._refusals.clear()
        self._refusals[id(listed)] = (listed, refused)  # the reference keeps the id unique
        return refused

    def _event(self, index: _TypeIndex, at_ms: int, version: int, entry: _Entry) -> None:
        heapq.heappush(index.events, (at_ms, entry.uuid, version))

    @staticmethod
    def _passed(index: _TypeIndex, at_ms: int) -> None:
        """A rule change at ``at_ms`` is in effect: a pick before it needs a rebuild."""
        if at_ms > index.applied_until:
            index.applied_until = at_ms

    def _time(self, text: str) -> int | None:
        """Epoch ms of a stored time text, ``None`` when unreadable (cached per text)."""
        cache = self._time_cache
        try:
            return cache[text]
        except KeyError:
            pass
        if len(cache) >= _TIME_CACHE:
            cache.clear()
        value = cache[text] = parse_time_ms(text)
        return value


def _position(entry: _Entry) -> int:
    return entry.position


def _model_group(index: _TypeIndex, model: str) -> _Group:
    """The group of ``model``'s ``supportedModels`` nodes, created on its first request
    from the live items of the group of all of them (no node re-read)."""
    if len(index.per_model) >= _MAX_MODEL_GROUPS:  # many model names: start over
        index.per_model.clear()
    group = index.per_model[model] = _Group()
    listed = index.listed
    for entry, models in listed.items():
        if model in models:
            entry.homes = (*entry.homes, group)
            group.live += 1
    entries = index.entries
    for kind, heap in enumerate(index.listing.heaps):
        kept = []
        for item in heap:
            entry = entries[item[1]]
            if entry.version == item[2] and model in listed[entry]:
                kept.append(item)
        heapq.heapify(kept)
        group.heaps[kind] = kept
    return group


def _settle(entry: _Entry, homes: tuple[_Group, ...]) -> None:
    entry.homes = homes
    for group in homes:
        group.live += 1


def _push(entries: dict[str, _Entry], group: _Group, kind: int, item: Item) -> None:
    heap = group.heaps[kind]
    heapq.heappush(heap, item)
    if len(heap) > 2 * group.live + 64:  # mostly dead entries: keep the live ones
        kept = [item for item in heap if entries[item[1]].version == item[2]]
        heapq.heapify(kept)
        group.heaps[kind] = kept


def _head(
    entries: dict[str, _Entry], heap: list[Item], excluded: Collection[str] | None
) -> Item | None:
    """The smallest live item of ``heap`` whose uuid is not excluded (dead heads dropped)."""
    while heap:
        item = heap[0]
        if entries[item[1]].version != item[2]:
            heapq.heappop(heap)
        elif excluded is None or item[1] not in excluded:
            return item
        else:
            return _first_allowed(entries, heap, excluded)
    return None


def _first_allowed(
    entries: dict[str, _Entry], heap: list[Item], excluded: Collection[str]
) -> Item | None:
    """The smallest live item whose uuid is not excluded: the heap walked in order."""
    frontier: list[tuple[Item, int]] = [(heap[0], 0)]
    size = len(heap)
    while frontier:
        item, at = heapq.heappop(frontier)
        if entries[item[1]].version == item[2] and item[1] not in excluded:
            return item
        child = 2 * at + 1
        if child < size:
            heapq.heappush(frontier, (heap[child], child))
            if child + 1 < size:
                heapq.heappush(frontier, (heap[child + 1], child + 1))
    return None


def _seq_moved(index: _TypeIndex, old: int, new: int) -> None:
    count = index.seq_count
    left = count[old] - 1
    if left:
        count[old] = left
    else:
        del count[old]
    if new in count:
        count[new] += 1
    else:
        count[new] = 1
        heapq.heappush(index.seq_low, new)
        heapq.heappush(index.seq_high, -new)


def _seq_low(index: _TypeIndex) -> int:
    return _seq_peek(index.seq_low, index.seq_count, negate=False)


def _seq_peek(heap: list[int], count: dict[int, int], *, negate: bool) -> int:
    while True:
        top = heap[0]
        if (-top if negate else top) in count:
            return top
        heapq.heappop(heap)
