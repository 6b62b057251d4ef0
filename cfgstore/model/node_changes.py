"""A live pools view that says which of its nodes changed: for indexes kept over the view.

Provider selection keeps an index over the nodes of each type (the gateway's
``IndexedSelector``) instead of scanning them for every pick. The index must follow every
change the view sees, without scanning for it; so a backend that holds a live view reports
each change to a :class:`NodeChanges` feed and hands the view out as a :class:`LiveView`
(``cfgstore_pools_view``) carrying that feed.

Contract for a backend keeping a live view:

* every in-place change of a node of the view (a record applied) and every node object
  replaced at its place (another instance's change re-read) is reported with
  :meth:`NodeChanges.node`, passing the node object the view holds now, before the next
  read of the view;
* every other change (a node added, removed, renamed or moved, a type added or removed, the
  whole view rebuilt) is reported with :meth:`NodeChanges.everything`.

A reader keeps a :class:`Cursor` and asks :meth:`NodeChanges.since` for what changed after
it: the (type, node) pairs in order, or ``None`` when it must re-read everything (the
view was rebuilt, or the reader fell more than :attr:`NodeChanges.capacity` changes behind).

Not thread-safe; event-loop only, like the views it describes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from cfgstore.model.pools import ProviderNode

__all__ = ["Cursor", "LiveView", "NodeChanges", "changes_of"]

Cursor = tuple[int, int]
"""(epoch, position) of a reader of a :class:`NodeChanges` feed."""

DEFAULT_CAPACITY = 65_536


class NodeChanges:
    """The feed of node changes of one live view (see the module docstring)."""

    __slots__ = ("_base", "_log", "capacity", "epoch")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = max(2, capacity)
        """Changes kept; a reader further behind re-reads everything."""
        self.epoch = 0
        """Counts :meth:`everything` calls."""
        self._log: list[tuple[str, ProviderNode]] = []
        self._base = 0  # position of _log[0]

    def node(self, provider_type: str, node: ProviderNode) -> None:
        """``node`` (the object the view now holds for its uuid) changed or replaced one."""
        log = self._log
        log.append((provider_type, node))
        if len(log) > self.capacity:
            drop = len(log) // 2
            del log[:drop]
            self._base += drop

    def everything(self) -> None:
        """Anything may have changed: readers re-read the whole view."""
        self.epoch += 1
        self._log = []
        self._base = 0

    @property
    def cursor(self) -> Cursor:
        """Where a reader that has seen every change so far stands."""
        return (self.epoch, self._base + len(self._log))

    def since(self, cursor: Cursor) -> Sequence[tuple[str, ProviderNode]] | None:
        """The changes after ``cursor``, oldest first (a node may appear several times: the
        last pair is its current object), or ``None``: re-read everything."""
        epoch, position = cursor
        if epoch != self.epoch or position < self._base:
            return None
        return self._log[position - self._base :]


class LiveView(Mapping[str, Sequence[ProviderNode]]):
    """Provider type → nodes (the backend's live lists), with the :class:`NodeChanges`
    feed that reports their changes. Read-only for its users, like every pools view."""

    __slots__ = ("changes", "types")

    def __init__(self, types: Mapping[str, Sequence[ProviderNode]], changes: NodeChanges) -> None:
        self.types = types
        self.changes = changes

    def __getitem__(self, provider_type: str) -> Sequence[ProviderNode]:
        return self.types[provider_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self.types)

    def __len__(self) -> int:
        return len(self.types)

    def __contains__(self, provider_type: object) -> bool:
        return provider_type in self.types


def changes_of(view: Mapping[str, Sequence[ProviderNode]]) -> NodeChanges | None:
    """The change feed of a pools view, ``None`` for a view without one (a fresh copy)."""
    return view.changes if isinstance(view, LiveView) else None
