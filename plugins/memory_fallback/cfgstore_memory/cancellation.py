"""Cancellation that survives libraries which turn it into their own errors.

redis-py answers a cancelled command with a connection error, or even completes it and
swallows the cancellation; a background loop would then run forever after being cancelled.
Every handler of storage errors in a loop, and every loop head, calls
:func:`raise_if_cancelling`; and loops also wait on a stop signal, set by
:func:`stop_tasks` before it cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence


def raise_if_cancelling(cause: BaseException | None = None) -> None:
    """Re-raise :class:`asyncio.CancelledError` when the current task is being cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from cause


async def stop_tasks(tasks: Sequence[asyncio.Task[None]], signal_stop: Callable[[], None]) -> None:
    """Signal the loops to stop, cancel what they are awaiting, wait for them to end."""
    signal_stop()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
