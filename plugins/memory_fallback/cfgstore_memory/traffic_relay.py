"""The memory fallback's traffic relay: this instance's traffic counts (the console's
charts, :mod:`cfgstore.hookspecs.traffic`) to the shared storage, or through an outage to
the journal, each batch exactly once.

Counts handed over by the Store queue here; one task merges what is pending into a batch
under the next id of the instance's traffic sequence (``<instance id>-t:<epoch>:<seq>``,
the same per-instance marks as record batches) and sends it with
``cfgstore_replica_add_traffic``, each batch until it is acknowledged, in order. While the
replicator serves degraded the batch goes to the journal instead, under the same id
(``traffic`` entries, :mod:`cfgstore_memory.replay`), which the recovery replays before any
later batch is sent live: a batch whose reply was lost is skipped by its id, so no count is
lost or doubled, also when the instance restarts during the outage. Not covered: a Redis
that goes back in time loses the traffic batches of its last second (the confirmed tail
re-sends hot-path records only).

:class:`BatchRelay` is the mechanism; the model usage statistics
(:mod:`cfgstore_memory.usage_relay`) and api-potluck's token counts
(:mod:`cfgstore_memory.potluck_relay`) use it too, under ids of their own (``-u``, ``-k``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from cfgstore.adapters.backend import Operations
from cfgstore.adapters.durability import DurabilityTracker
from cfgstore.adapters.settings import Settings
from cfgstore.errors import CfgStoreError, JournalFull, StorageServerError
from cfgstore.model.batch_ids import BatchSequence
from cfgstore.model.traffic import TrafficCount, merge_counts
from cfgstore_memory.cancellation import raise_if_cancelling
from cfgstore_memory.replay import TRAFFIC, traffic_data
from cfgstore_memory.replicator import OUTAGES, Replicator

log = logging.getLogger("cfgstore.memory.traffic")

Item = TypeVar("Item")

RETRY_DELAYS_S = (0.1, 0.5, 1.0, 2.0, 5.0)
"""Waits before sending (or journaling) a batch again after a refusal."""
OUTAGE_RETRY_S = 0.05
"""The wait after an outage met by a send: the replicator is degraded by then, and the
next try journals the batch (a waiter of :meth:`TrafficRelay.durable` is not failed)."""


def traffic_instance(instance_id: str) -> str:
    """The name of an instance's traffic writer in batch ids."""
    return f"{instance_id}-t"


class BatchRelay(Generic[Item]):
    """Counts of one kind relayed in exactly-once batches (see the module docstring):
    ``operation`` sends a batch under its id (the batch as its keyword ``argument``),
    ``kind`` names its journal entries, ``merge`` folds what is pending into one batch,
    ``data`` is a batch as journal data."""

    what = "counts"

    def __init__(
        self,
        ops: Operations,
        replicator: Replicator,
        settings: Settings,
        batch_ids: BatchSequence,
        *,
        operation: str,
        kind: str,
        merge: Callable[[list[Item]], list[Item]],
        data: Callable[[Sequence[Item]], Any],
        argument: str = "counts",
    ) -> None:
        self._operation = operation
        self._argument = argument
        self._kind = kind
        self._merge = merge
        self._data = data
        self._ops = ops
        self._replicator = replicator
        self._settings = settings
        self._ids = batch_ids
        self._pending: list[Item] = []
        self._batch: tuple[list[Item], str, int] | None = None
        self._progress = DurabilityTracker()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._forget_due = True
        self.last_error: str | None = None

    @property
    def backlog(self) -> int:
        """Counts accepted and neither in the storage nor in the journal yet."""
        return self._progress.backlog

    def submit(self, counts: Sequence[Item]) -> None:
        if not counts:
            return
        self._pending.extend(counts)
        self._progress.accepted(len(counts))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"cfgstore-{self._kind}"
            )
        self._wake.set()

    async def durable(self) -> None:
        """Every count submitted so far is in the storage or in the journal."""
        await self._progress.wait()

    async def close(self) -> None:
        """Send or journal what is queued (bounded), then stop."""
        with contextlib.suppress(CfgStoreError, TimeoutError):
            async with asyncio.timeout(self._settings.degrade_after_ms / 1000 * 3):
                await self.durable()
        if self._progress.backlog:
            log.error(
                "closing with %d %s not stored: %s",
                self._progress.backlog,
                self.what,
                self.last_error or "no answer in time",
            )
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _take(self) -> tuple[list[Item], str, int]:
        if self._batch is None:
            taken, self._pending = self._pending, []
            self._batch = (self._merge(taken), self._ids.next(), len(taken))
        return self._batch

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._batch is not None or self._pending:
                raise_if_cancelling()
                counts, op_id, submitted = self._take()
                try:
                    await self._deliver(counts, op_id)
                except OUTAGES as exc:
                    raise_if_cancelling(exc)
                    self.last_error = str(exc) or type(exc).__name__
                    self._replicator.note_outage(exc)  # degraded: the next try journals it
                    await asyncio.sleep(OUTAGE_RETRY_S)
                    continue
                except CfgStoreError as exc:  # a refusal (journal full, server error)
                    raise_if_cancelling(exc)
                    self.last_error = str(exc)
                    if failures == 0:
                        log.warning("%s batch %s kept for another try: %s", self.what, op_id, exc)
                    self._progress.settle(exc)
                    await asyncio.sleep(RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)])
                    failures += 1
                    continue
                failures = 0
                self.last_error = None
                self._batch = None
                self._progress.completed(submitted)

    async def _deliver(self, counts: list[Item], op_id: str) -> None:
        """Journal the batch while degraded, else send it; raises when neither happened."""
        replicator = self._replicator
        if replicator.serving_degraded:
            try:
                if await replicator.journal_while_degraded(self._kind, self._data(counts), op_id):
                    return
            except JournalFull as exc:  # the records' limit holds for traffic too
                raise StorageServerError(str(exc)) from exc
        async with asyncio.timeout(self._settings.degrade_after_ms / 1000):
            await self._ops[self._operation](**{self._argument: counts}, op_id=op_id)
        if self._forget_due and not replicator.journal.depth:
            await self._forget_other_epochs()

    async def _forget_other_epochs(self) -> None:
        """Drop the marks of this instance's earlier runs' traffic once nothing of them can
        be sent again (the journal is empty); best effort."""
        if "cfgstore_replica_forget_epochs" not in self._ops:
            self._forget_due = False
            return
        try:
            async with asyncio.timeout(self._settings.degrade_after_ms / 1000):
                await self._ops["cfgstore_replica_forget_epochs"](
                    instance_id=self._ids.instance, epoch=self._ids.epoch
                )
        except (CfgStoreError, TimeoutError) as exc:
            raise_if_cancelling(exc)
            log.info("%s batch marks of earlier runs not dropped yet: %s", self.what, exc)
            return
        self._forget_due = False


class TrafficRelay(BatchRelay[TrafficCount]):
    """The console's traffic counts (``traffic`` journal entries)."""

    what = "traffic counts"

    def __init__(
        self,
        ops: Operations,
        replicator: Replicator,
        settings: Settings,
        batch_ids: BatchSequence,
    ) -> None:
        super().__init__(
            ops,
            replicator,
            settings,
            batch_ids,
            operation="cfgstore_replica_add_traffic",
            kind=TRAFFIC,
            merge=merge_counts,
            data=traffic_data,
        )
