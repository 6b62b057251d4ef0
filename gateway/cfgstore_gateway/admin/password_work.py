"""A bound on the admin password hashing in flight.

A PBKDF2 check costs ~0.1-0.25 s of CPU. Hashes run in a thread pool of their own (never on
the event loop, and never queued in the default executor, which the file backend and others
need for their reads), at most ``slots`` at a time. A login or password change that finds
every slot taken is refused at once (:class:`HashingBusy`, answered ``429``) instead of
waiting: a burst of logins cannot pile up CPU work or delay the gateway's other requests.

A slot is taken before anything else is done for the request (so a refused request costs
nothing and counts nothing) and given back when its last hash is finished, even when the
request was abandoned meanwhile: the thread still runs, and the bound counts threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from cfgstore.model.password import hash_password, verify_password

T = TypeVar("T")


def default_slots() -> int:
    """Half the CPUs, at least one: the other half stays with the event loop."""
    return max(1, (os.cpu_count() or 2) // 2)


class HashingBusy(Exception):
    """Every hashing slot is taken."""


class PasswordWork:
    """The hashing slots and their threads; one per application. :meth:`close` it."""

    def __init__(self, slots: int | None = None) -> None:
        self.slots = slots if slots is not None else default_slots()
        self._free = self.slots
        self._executor = ThreadPoolExecutor(self.slots, thread_name_prefix="cfgstore-password")

    def slot(self) -> HashSlot:
        """Take a slot (use it as a context manager); :class:`HashingBusy` when none is
        free."""
        if self._free <= 0:
            raise HashingBusy
        self._free -= 1
        return HashSlot(self)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        return self._executor.submit(fn, *args)

    def _give_back(self) -> None:
        self._free += 1


class HashSlot:
    """One taken slot: its hashes run one after the other."""

    def __init__(self, owner: PasswordWork) -> None:
        self._owner = owner
        self._running: Future[Any] | None = None
        self._held = True

    async def verify(self, password: str, stored: str | None) -> bool:
        """:func:`~cfgstore.model.password.verify_password`, in a hashing thread."""
        return await self._run(verify_password, password, stored)

    async def hash(self, password: str) -> str:
        """:func:`~cfgstore.model.password.hash_password`, in a hashing thread."""
        return await self._run(hash_password, password)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        future = self._owner._submit(fn, *args)
        self._running = future
        return await asyncio.wrap_future(future)

    def __enter__(self) -> HashSlot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._held:
            return
        self._held = False
        running = self._running
        if running is None or running.done():
            self._owner._give_back()
            return
        loop = asyncio.get_running_loop()  # abandoned mid-hash: free it when the thread ends

        def finished(_: Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
                loop.call_soon_threadsafe(self._owner._give_back)

        running.add_done_callback(finished)
