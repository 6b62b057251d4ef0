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


@attrs.frozen
class BackendDescriptor:
    """A backend offered by a plugin. ``factory`` returns an object whose ``async``
    hookimpls implement storage operations; ``layer`` backends need a backend below them."""

    name: str
    description: str
    factory: Callable[[BackendContext], object]
    layer: bool = False
    capabilities: frozenset[str] = frozenset()
