"""Group commit for hot-path records (DESIGN §5).

Callers enqueue records and go on; one flusher takes everything pending, sends it as one
batch (one script call: one round trip), and starts the next batch as soon as the last
returns — a lone record is sent at once, 200 concurrent ones share a round trip.

Every batch carries an id, ``<writer>:<epoch>:<seq>`` (:mod:`cfgstore.model.batch_ids`),
that the server checks against this writer's high-water mark and moves atomically with the
batch's writes. When a send fails at the connection level (the reply may have been lost),
the *same* batch is sent again with the *same* id, so it is applied exactly once; batches
stay in order (which is what makes one mark per writer enough). Nothing else retries
increments. A writer has no state that outlives its process, so its id is made anew for
every writer; the backend removes the writer's mark when it closes cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from cfgstore.adapters.durability import DurabilityTracker
from cfgstore.errors import CfgStoreError
from cfgstore.model.batch_ids import BatchSequence
from cfgstore.model.timefmt import now_ms

log = logging.getLogger("cfgstore.redis.writer")

RETRY_DELAYS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)

Item = TypeVar("Item")


class GroupCommitWriter(Generic[Item]):
    """Hot-path records by default; traffic counts (``what="traffic"``, ids ``t…``) use
    the same exactly-once batches."""

    def __init__(
        self,
        send: Callable[[Sequence[Item], str], Awaitable[None]],
        *,
        id_prefix: str = "w",
        what: str = "record",
    ) -> None:
        self._send = send
        self._what = what
        self.ids = BatchSequence(f"{id_prefix}{uuidlib.uuid4().hex[:16]}", now_ms())
        self._pending: list[Item] = []
        self._progress = DurabilityTracker()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_error: CfgStoreError | None = None
        self.batches = 0

    @property
    def backlog(self) -> int:
        """Records accepted and not yet applied."""
        return self._progress.backlog

    def submit(self, records: Sequence[Item]) -> None:
        if not records:
            return
        self._pending.extend(records)
        self._progress.accepted(len(records))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def durable(self) -> None:
        """Return once every record submitted before the call is applied; raise the
        storage error of a failed attempt (the records stay queued and are re-sent)."""
        await self._progress.wait()

    async def close(self) -> None:
        try:
            await self.durable()
        finally:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                await self._send_until_applied(batch, self.ids.next())
                self.batches += 1
                self._progress.completed(len(batch))

    async def _send_until_applied(self, batch: list[Item], op_id: str) -> None:
        attempt = 0
        while True:
            try:
                await self._send(batch, op_id)
            except CfgStoreError as exc:
                self.last_error = exc
                delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
                attempt += 1
                # Traffic counts wait out an outage quietly after saying so once.
                quiet = self._what != "record" and attempt > 1
                log.log(
                    logging.DEBUG if quiet else logging.WARNING,
                    "%s batch %s (%d items) not applied (attempt %d), re-sending in %.2fs: %s",
                    self._what,
                    op_id,
                    len(batch),
                    attempt,
                    delay,
                    exc,
                )
                self._progress.settle(exc)
                await asyncio.sleep(delay)
                continue
            if attempt:
                log.info("%s batch %s applied after %d attempts", self._what, op_id, attempt + 1)
            self.last_error = None
            return
