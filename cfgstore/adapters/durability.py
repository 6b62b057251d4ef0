"""Waiting for durability of coalesced writes: the bookkeeping every group-commit writer needs."""

from __future__ import annotations

import asyncio


class DurabilityTracker:
    """Counts writes accepted and writes made durable, and wakes callers waiting for the
    writes accepted before they asked. Event-loop only."""

    def __init__(self) -> None:
        self.submitted = 0
        self.done = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def backlog(self) -> int:
        """Writes accepted and not yet durable."""
        return self.submitted - self.done

    def accepted(self, count: int) -> None:
        self.submitted += count

    def completed(self, count: int) -> None:
        self.done += count
        self.settle(None)

    async def wait(self) -> None:
        """Return once every write accepted before the call is durable; raise the error of
        a failed attempt in between (see :meth:`settle`)."""
        if self.done >= self.submitted:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self.submitted, future))
        await future

    def settle(self, error: BaseException | None) -> None:
        """Wake the waiters whose writes are durable; with ``error``, fail every waiter
        (the writes stay accepted and will be retried)."""
        remaining = []
        for target, future in self._waiters:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            elif target <= self.done:
                future.set_result(None)
            else:
                remaining.append((target, future))
        self._waiters = remaining
