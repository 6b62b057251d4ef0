"""An observer plugin that lets tests await change notifications instead of sleeping."""

from __future__ import annotations

import asyncio

from cfgstore import hookimpl
from cfgstore.adapters import Store
from cfgstore.model.events import ChangeEvent


class ChangeWaiter:
    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []
        self._queue: asyncio.Queue[ChangeEvent] = asyncio.Queue()

    @hookimpl
    def cfgstore_changed(self, event: ChangeEvent) -> None:
        self.events.append(event)
        self._queue.put_nowait(event)

    async def wait_for(
        self, entity: str, *, remote: bool | None = None, within: float = 10.0
    ) -> ChangeEvent:
        async def next_match() -> ChangeEvent:
            while True:
                event = await self._queue.get()
                if event.entity == entity and (remote is None or event.remote == remote):
                    return event

        return await asyncio.wait_for(next_match(), within)


def watch(store: Store) -> ChangeWaiter:
    waiter = ChangeWaiter()
    store.plugins.manager.register(waiter)
    return waiter
