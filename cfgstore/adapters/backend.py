"""How a backend announces itself and what it receives when the Store builds it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from cfgstore.adapters.settings import Settings
from cfgstore.model.events import ChangeEvent

Operation = Callable[..., Awaitable[Any]]


class Operations:
    """The resolved implementation of every storage operation of a (partial) chain.

    Keys are hook names (``cfgstore_pools_list``); values are plain async callables taking
    the hook's arguments by keyword. Built once by the Store; calling one is an ordinary
    await, no pluggy dispatch.
    """

    def __init__(self, table: dict[str, Operation]) -> None:
        self._table = table

    def __getitem__(self, name: str) -> Operation:
        return self._table[name]

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def names(self) -> list[str]:
        return list(self._table)


@attrs.frozen
class BackendContext:
    """What a backend factory receives.

    ``below`` is the rest of the chain (``None`` for the bottom backend): a layer such as
    the memory cache implements some operations itself and delegates to ``below``.
    ``publish`` announces a change to the layers above and to observers; it runs
    synchronously, so a write that publishes before returning is visible to every cache.
    ``fallback_above`` is true when the layer above serves through this backend's outages
    (``cfgstore.hookspecs.replica``): the backend may then open while its storage is
    unreachable instead of failing. ``notify(hook_name, **kwargs)`` fans an observer hook
    (``cfgstore.hookspecs.events``) out to every plugin, failures isolated.
    """

    settings: Settings
    below: Operations | None
    publish: Callable[[ChangeEvent], None]
    instance_id: str
    fallback_above: bool = False
    notify: Callable[..., None] = lambda hook_name, **kwargs: None


SHARED = "shared"
"""Capability: several stores opened with the same settings (instances, in one process or in
several) work on one storage. No write of one is lost by another: counters are exact across
them, compare-and-set and refresh locks hold across them, and a session added or ended
through one is seen by the others at their next read. The file and Redis backends declare
it; the contract suite (:mod:`cfgstore.testing`) then runs its several-instance tests."""

SHARED_LOGINS = "shared-logins"
"""Capability: the admin-login counter (:mod:`cfgstore.hookspecs.login_guard`) is shared by
every instance too, so concurrent failures through several stores count exactly once each.
Without it each store counts its own (the file backend, like the Node service)."""

TRAFFIC = "traffic"
"""Capability: the backend keeps per-minute traffic counts (:mod:`cfgstore.hookspecs.traffic`),
summed over every instance on its storage. The contract suite then runs its traffic tests."""

POTLUCK = "potluck"
"""Capability: the backend keeps api-potluck keys (:mod:`cfgstore.hookspecs.potluck`)."""

SHARED_POTLUCK = "shared-potluck"
"""Capability: potluck admissions are exact across every store on the storage (no more than
``dailyLimit`` a day whatever the number of instances). Without it each store checks the
limit against its own copy (the file backend: counts merge, the limit holds per process)."""

FOLDER_SIBLINGS = "folder-siblings"
"""Capability: a Kiro token's siblings are its folder's current files, as the Node service
loads them (:mod:`cfgstore.hookspecs.credentials`): a write or delete of one token's
credential is seen in the siblings of the others of its folder, on every instance. Without
it a credential keeps the siblings it was written with. The contract suite then runs its
folder tests."""

USAGE_STATS = "usage-stats"
"""Capability: the backend keeps the model usage statistics (:mod:`cfgstore.hookspecs.usage_stats`),
summed over every instance on its storage. The contract suite then runs its statistics tests."""


@attrs.frozen
class BackendDescriptor:
    """A backend offered by a plugin. ``factory`` returns an object whose ``async``
    hookimpls implement storage operations; ``layer`` backends need a backend below them.
    ``Store.open`` calls ``factory`` in a worker thread (connect and start tasks in
    ``cfgstore_open``); a factory that needs the running event loop still works (the
    chain is then built again on the loop), at the cost of one long loop turn.

    ``capabilities`` are plain strings the core and the contract suite look for:
    :data:`SHARED`, :data:`SHARED_LOGINS`, :data:`TRAFFIC`, ``"replica"`` (the optional
    operations of :mod:`cfgstore.hookspecs.replica`), ``"outage-fallback"`` (a layer that
    serves through the outages of a replica backend below it). Others are shown, never
    interpreted."""

    name: str
    description: str
    factory: Callable[[BackendContext], object]
    layer: bool = False
    capabilities: frozenset[str] = frozenset()
