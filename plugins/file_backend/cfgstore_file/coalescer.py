"""Coalesced writes: debounce with a maximum wait, one flush at a time, durable waits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("cfgstore.file.coalescer")

RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Waits between failed flushes (the last one repeats): fast recovery from a passing
error, no log flood from a lasting one."""


class CoalescingWriter:
    """Runs ``flush`` once changes have been quiet for ``debounce_s``, or ``max_wait_s``
    after the first unflushed change, whichever comes first: steady traffic is still
    persisted (the Node service's debounce had no maximum wait and never wrote under load).

    :meth:`durable` asks for a flush now and returns once every change noted before the
    call is flushed; a flush failure is raised to durable waiters and retried later.
    """

    def __init__(
        self, flush: Callable[[], Awaitable[None]], debounce_s: float, max_wait_s: float
    ) -> None:
        self._flush = flush
        self._debounce = debounce_s
        self._max_wait = max_wait_s
        self._noted = 0  # changes noted so far (a generation counter)
        self._flushed = 0  # generation covered by the last successful flush
        self._first: float | None = None
        self._last = 0.0
        self._wake = asyncio.Event()
        self._urgent = False
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    def note_change(self) -> None:
        """Record that something needs writing (cheap; call on every change)."""
        now = asyncio.get_running_loop().time()
        if self._first is None:
            self._first = now
        self._last = now
        self._noted += 1
        self._ensure_task()
        self._wake.set()

    async def durable(self) -> None:
        """Flush now (after any flush in progress) and wait for it."""
        if self._flushed >= self._noted:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._noted, future))
        self._urgent = True
        self._ensure_task()
        self._wake.set()
        await future

    async def close(self) -> None:
        """Flush what is pending and stop the background task."""
        try:
            await self.durable()
        finally:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                self._task = None

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._flushed >= self._noted:
                continue
            while not self._urgent:
                assert self._first is not None
                deadline = min(self._last + self._debounce, self._first + self._max_wait)
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                self._wake.clear()
            target = self._noted
            self._urgent = False
            self._first = None
            try:
                await self._flush()
            except Exception as exc:
                delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)]
                failures += 1
                log.error("write failed (attempt %d), retrying in %.1fs: %s", failures, delay, exc)
                self._settle(target, exc)
                self._first = loop.time()
                await asyncio.sleep(delay)
                self._wake.set()
                continue
            failures = 0
            self._flushed = max(self._flushed, target)
            self._settle(target, None)
            if self._flushed < self._noted:
                self._wake.set()

    def _settle(self, target: int, error: Exception | None) -> None:
        remaining = []
        for generation, future in self._waiters:
            if generation <= target:
                if not future.done():
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
            else:
                remaining.append((generation, future))
        self._waiters = remaining
