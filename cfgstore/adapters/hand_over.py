"""The hand-over schedule of the counting facades (:class:`~cfgstore.adapters.traffic.Traffic`,
:class:`~cfgstore.adapters.usage_stats.UsageStats`): the hot path tallies in memory, the
store gets the tally about once a second.

The first count after a hand-over (:meth:`HandOver._counted`) schedules the next one
``interval_s`` later, so a busy instance calls the store about once an interval and an
idle one not at all. A hand-over the store refuses keeps the counts (merged back into the
tally), logs the first refusal, records it in :attr:`HandOver.last_error` and tries again
:data:`RETRY_S` later. :meth:`HandOver.flush` hands over now; :meth:`HandOver.close`
stops the timer and hands over what is left.

A facade says what its tally is through four methods: :meth:`~HandOver._pending`,
:meth:`~HandOver._take`, :meth:`~HandOver._restore` and :meth:`~HandOver._send`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import ClassVar, Generic, TypeVar

from cfgstore.errors import CfgStoreError

RETRY_S = 5.0
"""The wait after a hand-over the store refused (the counts are kept meanwhile)."""

C = TypeVar("C")


class HandOver(Generic[C]):
    """Timer, lock and retry of a tally handed to the store (see the module docstring).
    Subclasses set :attr:`available` and the log wording, and implement the four tally
    methods."""

    logger: ClassVar[logging.Logger]
    kept_what: ClassVar[str]
    """Named in the warning of a refused hand-over (``… kept in memory``)."""
    unstored_what: ClassVar[str]
    """Named in the error of counts lost on close (``closing with N … not stored``)."""

    available: bool

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.last_error: str | None = None

    # -- what the facade tallies ----------------------------------------------------------

    def _pending(self) -> int:
        """How many counts wait in memory."""
        raise NotImplementedError

    def _take(self) -> list[C]:
        """Everything tallied, the tally left empty."""
        raise NotImplementedError

    def _restore(self, counts: list[C]) -> None:
        """Put ``counts`` (taken, then refused) back, merged with what was tallied since."""
        raise NotImplementedError

    async def _send(self, counts: list[C]) -> None:
        """Hand ``counts`` to the store (all or none of them)."""
        raise NotImplementedError

    # -- the schedule ---------------------------------------------------------------------

    def _counted(self) -> None:
        """Call after tallying: schedules a hand-over unless one is pending or running."""
        if self._timer is None and (self._task is None or self._task.done()):
            self._schedule(self._interval_s)

    def _schedule(self, delay_s: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._hand_over_soon)

    def _hand_over_soon(self) -> None:
        self._timer = None
        self._task = asyncio.get_running_loop().create_task(self._hand_over_logged())

    async def _hand_over_logged(self) -> None:
        try:
            await self.flush()
        except CfgStoreError as exc:
            if self.last_error is None:
                self.logger.warning(
                    "%s kept in memory, the store refused them: %s", self.kept_what, exc
                )
            self.last_error = str(exc)
            if self._timer is None:
                self._schedule(RETRY_S)
        else:
            if self._pending() and self._timer is None:
                self._schedule(self._interval_s)

    async def flush(self) -> None:
        """Hand everything tallied so far to the store now. On a refusal the counts are
        kept (the backend took none of them) and the error is raised."""
        if not self.available:
            return
        async with self._lock:
            counts = self._take()
            if not counts:
                return
            try:
                await self._send(counts)
            except BaseException:
                self._restore(counts)
                raise
            self.last_error = None

    async def close(self) -> None:
        """Hand over what is left (best effort: a refusal is logged) and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        try:
            await self.flush()
        except CfgStoreError as exc:
            self.logger.error(
                "closing with %d %s not stored: %s", self._pending(), self.unstored_what, exc
            )
