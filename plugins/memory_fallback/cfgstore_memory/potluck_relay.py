"""The memory fallback's relay of api-potluck token counts (``cfgstore_potluck_add_tokens``)
to the shared storage, or through an outage to the journal, each batch exactly once.

The traffic relay's scheme (:mod:`cfgstore_memory.traffic_relay`) for another kind of
increment: uses queue here; one task takes what is pending as a batch under the next id of
the instance's potluck sequence (``<instance id>-k:<epoch>:<seq>``) and sends it with
``cfgstore_replica_add_potluck_tokens``, each batch until it is acknowledged, in order.
While the replicator serves degraded the batch goes to the journal instead, under the same
id (``potluck`` entries, :mod:`cfgstore_memory.replay`), replayed on recovery before any
later batch is sent live: a batch whose reply was lost is skipped by its id, so no token is
lost or doubled, also when the instance restarts during the outage.

Admissions are not relayed: they need the storage's answer (the daily limit holds across
instances), so an outage refuses them (:mod:`cfgstore_memory.guarded_ops`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from cfgstore.adapters.backend import Operations
from cfgstore.adapters.durability import DurabilityTracker
from cfgstore.adapters.settings import Settings
from cfgstore.errors import CfgStoreError, JournalFull, StorageServerError
from cfgstore.model.batch_ids import BatchSequence
from cfgstore.model.potluck import TokenUse
from cfgstore_memory.cancellation import raise_if_cancelling
from cfgstore_memory.replay import POTLUCK, potluck_data
from cfgstore_memory.replicator import OUTAGES, Replicator

log = logging.getLogger("cfgstore.memory.potluck")

RETRY_DELAYS_S = (0.1, 0.5, 1.0, 2.0, 5.0)
OUTAGE_RETRY_S = 0.05


def potluck_instance(instance_id: str) -> str:
    """The name of an instance's potluck writer in batch ids."""
    return f"{instance_id}-k"


class PotluckRelay:
    def __init__(
        self,
        ops: Operations,
        replicator: Replicator,
        settings: Settings,
        batch_ids: BatchSequence,
    ) -> None:
        self._ops = ops
        self._replicator = replicator
        self._settings = settings
        self._ids = batch_ids
        self._pending: list[TokenUse] = []
        self._batch: tuple[list[TokenUse], str] | None = None
        self._progress = DurabilityTracker()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    @property
    def backlog(self) -> int:
        """Uses accepted and neither in the storage nor in the journal yet."""
        return self._progress.backlog

    def submit(self, uses: Sequence[TokenUse]) -> None:
        if not uses:
            return
        self._pending.extend(uses)
        self._progress.accepted(len(uses))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="cfgstore-potluck"
            )
        self._wake.set()

    async def durable(self) -> None:
        """Every use submitted so far is in the storage or in the journal."""
        await self._progress.wait()

    async def close(self) -> None:
        """Send or journal what is queued (bounded), then stop."""
        with contextlib.suppress(CfgStoreError, TimeoutError):
            async with asyncio.timeout(self._settings.degrade_after_ms / 1000 * 3):
                await self.durable()
        if self._progress.backlog:
            log.error(
                "closing with %d api-potluck token counts not stored: %s",
                self._progress.backlog,
                self.last_error or "no answer in time",
            )
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _take(self) -> tuple[list[TokenUse], str]:
        if self._batch is None:
            taken, self._pending = self._pending, []
            self._batch = (taken, self._ids.next())
        return self._batch

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._batch is not None or self._pending:
                raise_if_cancelling()
                uses, op_id = self._take()
                try:
                    await self._deliver(uses, op_id)
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
                        log.warning("potluck batch %s kept for another try: %s", op_id, exc)
                    self._progress.settle(exc)
                    await asyncio.sleep(RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)])
                    failures += 1
                    continue
                failures = 0
                self.last_error = None
                self._batch = None
                self._progress.completed(len(uses))

    async def _deliver(self, uses: list[TokenUse], op_id: str) -> None:
        """Journal the batch while degraded, else send it; raises when neither happened."""
        replicator = self._replicator
        if replicator.serving_degraded:
            try:
                if await replicator.journal_while_degraded(POTLUCK, potluck_data(uses), op_id):
                    return
            except JournalFull as exc:
                raise StorageServerError(str(exc)) from exc
        async with asyncio.timeout(self._settings.degrade_after_ms / 1000):
            await self._ops["cfgstore_replica_add_potluck_tokens"](uses=uses, op_id=op_id)
