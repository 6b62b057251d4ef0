"""Bounded waits for conditions nothing announces to a test (another task's counter,
another instance's cache catching up). Prefer awaiting an event where there is one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

WAIT_S = 30.0
"""Default bound: generous for a slow CI box; the happy path takes milliseconds."""


async def until(
    check: Callable[[], bool | Awaitable[bool]],
    what: str,
    *,
    within_s: float = WAIT_S,
    step_s: float = 0.01,
) -> None:
    """Return once ``check()`` (plain or awaitable) is true; fail naming ``what`` after
    ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within_s:g} s")
        await asyncio.sleep(step_s)
