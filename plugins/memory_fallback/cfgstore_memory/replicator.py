"""The replicator: one task that moves this instance's hot-path records to the shared
storage — or, while it is unreachable, to the durable journal — and keeps the mirror in
step with it (DESIGN §3, §5).

Modes
    ``redis`` (normal): records are group-committed to the storage, one batch per round
    trip, each under an operation id the storage records with the writes: this
    instance's next batch id (``<instance id>:<epoch>:<seq>``,
    :mod:`cfgstore.model.batch_ids`). Batches are taken, sent, journaled and replayed in
    id order, so the storage's high-water mark per instance and epoch recognises every
    batch sent again (a lost reply, a replay, the confirmed tail). Once nothing of an
    earlier run is left to send (journal replayed, no earlier epoch in the confirmed
    tail), the instance drops its earlier epochs' marks. A batch that
    fails at the connection level, or takes longer than ``degrade_after_ms``, switches the
    instance to ``degraded`` and goes to the journal under the *same* operation id (it may
    have landed; replay will tell). A refusal that is not an outage (out of memory, wrong
    type, auth) keeps the batch and its id, fails ``flush`` with that error, shows in
    status and retries with backoff: never parked silently, never counted twice.

    ``degraded``: records go to the journal (group-committed fsync) and stay in the view;
    a probe with capped backoff runs until the storage answers with the namespace this
    instance ran on; then the journal is replayed in order (operation ids make a second
    replay harmless), a full resync follows and the mode is ``redis`` again.

    ``data-lost``: the storage answers but no longer holds this instance's namespace
    (emptied, or replaced by another one). Like ``degraded`` — serving from memory,
    journaling — until the namespace is back (``cfgctl restore --snapshot``); nothing is
    re-created silently.

Every transition is logged and announced through ``cfgstore_storage_degraded``.

Rollbacks: the storage may go back in time without an error (Redis with ``appendfsync
everysec`` loses up to its last second in a host crash). The replicator remembers the
highest namespace revision it saw confirmed and keeps the batches acknowledged in the last
``confirmed_tail_ms`` (:class:`~cfgstore_memory.confirmed_tail.ConfirmedTail`, on disk
too: a batch is done once it is in the tail's file). After every reconnect (recovery, the
change feed re-established, start-up) it sends that tail again under the original
operation ids, and on every full resync it compares revisions. A lower revision,
or a tail batch the storage no longer had, is a rollback: logged as an error naming the
gap, counted in the status; the lost batches are applied again by the re-send itself.
Admin edits confirmed in the window are checked then (:mod:`cfgstore_memory.admin_tail`):
written again by version, or reported for the operator.

Serialisation: sends, resyncs and node refreshes hold one lock, so no batch of this
instance is in flight while the storage is read: the state read holds exactly the batches
acknowledged so far, and the records not yet sent are re-applied on top of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid as uuidlib
from collections.abc import Callable, Sequence
from typing import Any

from cfgstore.adapters.backend import Operations
from cfgstore.adapters.durability import DurabilityTracker
from cfgstore.adapters.settings import Settings
from cfgstore.errors import (
    CfgStoreError,
    JournalFull,
    NamespaceMismatch,
    StorageServerError,
    StorageUnavailable,
)
from cfgstore.model.batch_ids import BatchSequence
from cfgstore.model.events import ChangeEvent
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.records import NodeRecord
from cfgstore.model.replica import AppliedBatch
from cfgstore.model.snapshot import StoreSnapshot
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore_memory.admin_tail import AdminTail, Outcome, reconcile
from cfgstore_memory.cancellation import raise_if_cancelling, stop_tasks
from cfgstore_memory.collector import collector_paused
from cfgstore_memory.confirmed_tail import ConfirmedTail
from cfgstore_memory.journal import Journal
from cfgstore_memory.pools_mirror import PoolsMirror
from cfgstore_memory.replay import (
    RECORDS,
    ReplayReport,
    entry_records,
    records_data,
    replay_journal,
)

log = logging.getLogger("cfgstore.memory")

FIRST_PROBE_DELAY_S = 0.1
MAX_BATCH = 2000
"""Records per batch (one script call, or one journal entry); more wait for the next."""
OUTAGES = (StorageUnavailable, TimeoutError, NamespaceMismatch)


class Mode(enum.Enum):
    NORMAL = "redis"
    DEGRADED = "degraded"
    DATA_LOST = "data-lost"


class Replicator:
    def __init__(
        self,
        *,
        ops: Operations,
        mirror: PoolsMirror,
        journal: Journal,
        settings: Settings,
        namespace_id: str,
        notify: Callable[..., None],
        on_resync: Callable[[StoreSnapshot], None],
        save_snapshot: Callable[[], None],
        batch_ids: BatchSequence,
        tail: ConfirmedTail | None = None,
    ) -> None:
        self._ops = ops
        self._batch_ids = batch_ids
        self._forget_epochs_due = True
        """Marks of this instance's other epochs may be in the storage (checked once per
        run, and again after a rollback, which may bring them back)."""
        self.mirror = mirror
        self.journal = journal
        self.settings = settings
        self.namespace_id = namespace_id
        self._notify = notify
        self._on_resync = on_resync
        self._save_snapshot = save_snapshot
        self.mode = Mode.NORMAL
        self.reason: str | None = None
        self.degraded_since_ms: int | None = None
        self.last_error: str | None = None
        self.last_resync: str | None = None
        self.journal_full: JournalFull | None = None
        self.replayed = ReplayReport()
        self.tail = tail if tail is not None else ConfirmedTail(settings.confirmed_tail_ms / 1000)
        self.admin = AdminTail(settings.confirmed_tail_ms / 1000)
        """Admin edits confirmed lately, checked again after a rollback."""
        self.admin_after_rollback: list[Outcome] = []
        """What that check found at the last rollback, one per edit lost."""
        self.confirmed_revision = 0
        """The highest namespace revision this instance saw confirmed."""
        self.rollbacks = 0
        self.last_rollback: str | None = None
        self._pending: list[NodeRecord] = []
        self._batch: tuple[list[NodeRecord], str] | None = None  # taken, not yet durable
        self._journaled: list[NodeRecord] = []  # in the journal, not yet replayed
        self._progress = DurabilityTracker()
        self._io = asyncio.Lock()
        self._wake = asyncio.Event()
        self._probe_delay_s = FIRST_PROBE_DELAY_S
        self._next_probe_at = 0.0
        self._refresh_ids: set[str] = set()
        self._refresh_all = False
        self._refresh_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    # -- what the fallback layer calls ---------------------------------------------------

    @property
    def serving_degraded(self) -> bool:
        return self.mode is not Mode.NORMAL

    @property
    def backlog(self) -> int:
        return self._progress.backlog

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name="cfgstore-replicator"),
            loop.create_task(self._refresh_loop(), name="cfgstore-refresher"),
        ]

    def submit(self, records: Sequence[NodeRecord]) -> None:
        """Accept records already applied to the view. Raises :class:`JournalFull` while
        degraded with a full journal (nothing accepted)."""
        if self.journal_full is not None and self.serving_degraded:
            raise self.journal_full
        self._pending.extend(records)
        self._progress.accepted(len(records))
        self._wake.set()

    async def durable(self) -> None:
        """Every record accepted so far is in the storage or in the journal."""
        await self._progress.wait()

    async def journal_while_degraded(
        self, kind: str, data: JSONValue, op_id: str | None = None
    ) -> bool:
        """Journal an edit of another kind than records (replayed on recovery, in order)
        when serving degraded and return ``True``; return ``False``, journaling nothing,
        when the storage is usable. Serialised with :meth:`recover`: an entry is journaled
        before a recovery's replay (which then applies it) or not at all. ``op_id``: the
        entry's operation id (default: a random one)."""
        async with self._io:
            if not self.serving_degraded:
                return False
            await self.journal.append(kind, data, op_id or uuidlib.uuid4().hex, now_ms())
            return True

    def note_outage(self, exc: BaseException) -> None:
        """A read or edit elsewhere met an outage (or found the namespace gone): switch
        to degraded (data-lost) now."""
        if self.mode is Mode.NORMAL:
            mode = Mode.DATA_LOST if isinstance(exc, NamespaceMismatch) else Mode.DEGRADED
            self._enter(mode, str(exc) or type(exc).__name__)

    @property
    def io_lock(self) -> asyncio.Lock:
        """Held while the replicator talks to the storage or changes the confirmed state
        (a batch's acknowledgement is applied right after it is released, without
        yielding): whoever holds it sees the confirmed state stand still."""
        return self._io

    def unconfirmed(self) -> list[NodeRecord]:
        """This instance's records the storage has not acknowledged, oldest first."""
        batch = self._batch[0] if self._batch is not None else []
        return [*self._journaled, *batch, *self._pending]

    def start_degraded(self, mode: Mode, reason: str, journaled: list[NodeRecord]) -> None:
        """Begin serving from a saved snapshot (start-up with the storage unusable)."""
        self._journaled = journaled
        self._enter(mode, reason, save=False)

    def changed_remotely(self, event: ChangeEvent) -> None:
        """Another instance changed pools (or the feed lost messages: no ids)."""
        if event.ids:
            self._refresh_ids.update(event.ids)
        else:
            self._refresh_all = True
        self._refresh_wake.set()

    async def resync(self, *, pools_only: bool = False) -> None:
        """Re-read the storage now (after an admin edit, at start-up)."""
        async with self._io:
            await self._resync(pools_only=pools_only)

    async def recover(self) -> None:
        """Replay the journal and resync, then run normally (the storage answered with
        our namespace). Storage errors propagate; the mode is unchanged then."""
        async with self._io:
            head = await self._ops["cfgstore_replica_head"]()
            await self._resend_tail(head.revision, "reconnected")
            report = await replay_journal(
                self.journal,
                self._ops,
                self.namespace_id,
                between_chunks=self._journal_taken,
                report=self.replayed,
                on_records=self._confirmed,
            )
            await self.tail.save()
            self._journaled = []
            await self._resync(pools_only=False)
        if self.serving_degraded:
            down_s = (now_ms() - (self.degraded_since_ms or now_ms())) / 1000
            log.warning(
                "storage back after %.1fs: replayed %d journal entries (%d records, %d already "
                "applied); serving from the storage again",
                down_s,
                report.entries,
                report.records,
                report.duplicates,
            )
            self.mode, self.reason, self.degraded_since_ms = Mode.NORMAL, None, None
            self.journal_full = None
            self._notify("cfgstore_storage_degraded", degraded=False, reason="storage reachable")
        self._wake.set()

    async def close(self) -> None:
        """Make accepted records durable (storage or journal), then stop. Records that
        could not be made durable (a full journal, a refusing server) are reported."""
        with contextlib.suppress(CfgStoreError, TimeoutError):
            async with asyncio.timeout(self.settings.degrade_after_ms / 1000 * 3):
                await self.durable()
        if self.backlog:
            log.error(
                "closing with %d hot-path records neither in the storage nor in the journal "
                "(%s): they are lost",
                self.backlog,
                self.last_error or "no answer in time",
            )
        await stop_tasks(self._tasks, self._stop_waits)

    def _stop_requested(self) -> bool:
        return self._stopping  # a method: the flag changes while the loop awaits

    def _stop_waits(self) -> None:
        self._stopping = True
        self._wake.set()
        self._refresh_wake.set()

    # -- the main loop --------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._step()
            except Exception as exc:  # a bug: keep the records, say so, try again later
                raise_if_cancelling(exc)
                log.exception("replicator step failed; records are kept")
                self.last_error = f"internal error: {exc!r}"
                await self._wait_wake(self._probe_delay_s)
                self._back_off()

    async def _step(self) -> None:
        """One turn of the loop: send (or journal) what is pending, probe when due."""
        raise_if_cancelling()
        await self.tail.save()  # a clear (data lost) reaches the file
        idle = self._batch is None and not self._pending
        if not self.serving_degraded:
            if idle:
                await self._wait_wake(None)
            else:
                await self._send_batch()
            return
        journaled = idle or await self._journal_batch()
        wait_s = self._next_probe_at - asyncio.get_running_loop().time()
        if wait_s <= 0:
            await self._probe()
        elif not journaled or (self._batch is None and not self._pending):
            await self._wait_wake(wait_s)  # nothing to do until new records or the probe

    async def _wait_wake(self, within_s: float | None) -> None:
        """Wait for new work, at most ``within_s`` seconds (``None``: no bound)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await self._wake.wait()
        self._wake.clear()

    def _take(self) -> tuple[list[NodeRecord], str]:
        """The batch in hand, or the next one: at most ``MAX_BATCH`` pending records under a
        new operation id (bounded, so encoding one never stalls the event loop long)."""
        if self._batch is None:
            self._batch = (self._pending[:MAX_BATCH], self._batch_ids.next())
            del self._pending[:MAX_BATCH]
        return self._batch

    async def _send_batch(self) -> None:
        batch, op_id = self._take()
        try:
            async with self._io, asyncio.timeout(self.settings.degrade_after_ms / 1000):
                applied: AppliedBatch = await self._ops["cfgstore_replica_apply"](
                    records=batch, op_id=op_id, namespace_id=self.namespace_id
                )
        except NamespaceMismatch as exc:
            self._enter(Mode.DATA_LOST, str(exc))
            return
        except (StorageUnavailable, TimeoutError) as exc:
            raise_if_cancelling(exc)
            reason = str(exc) or f"no answer within {self.settings.degrade_after_ms} ms"
            self._enter(Mode.DEGRADED, reason)
            return
        except StorageServerError as exc:
            raise_if_cancelling(exc)
            await self._refused(exc, op_id, len(batch))
            return
        self._batch = None
        if self.last_error is not None:
            self.last_error = None
            self._probe_delay_s = FIRST_PROBE_DELAY_S
        self._confirmed(batch, op_id, applied.revision)
        self.mirror.confirm(batch)
        await self.tail.save()  # durable before anyone is told the batch is done
        self._progress.completed(len(batch))
        for t in applied.transitions:
            self._notify(
                "cfgstore_provider_health_changed",
                provider_type=t.provider_type,
                uuid=t.uuid,
                healthy=t.healthy,
            )
        if self._forget_epochs_due:
            async with self._io:
                await self._forget_other_epochs()

    async def _forget_other_epochs(self) -> None:
        """Under ``_io``: drop this instance's marks of its earlier runs once none of their
        batches can be sent again: the storage runs normally (the journal is replayed) and
        the confirmed tail holds none. Tried at every full resync (start-up, usually) and
        after live batches while due; a failure is logged and tried again later: it costs
        a few bytes meanwhile, nothing else."""
        ids = self._batch_ids
        if "cfgstore_replica_forget_epochs" not in self._ops or any(
            ids.of_another_run(op_id) for _, op_id in self.tail.batches()
        ):
            return
        try:
            async with asyncio.timeout(self.settings.degrade_after_ms / 1000):
                dropped = await self._ops["cfgstore_replica_forget_epochs"](
                    instance_id=ids.instance, epoch=ids.epoch
                )
        except (CfgStoreError, TimeoutError) as exc:
            raise_if_cancelling(exc)
            log.info("batch marks of earlier runs not dropped yet: %s", exc)
            return
        self._forget_epochs_due = False
        if dropped:
            log.info("dropped the batch marks of %d earlier runs of this instance", dropped)

    async def _refused(self, exc: CfgStoreError, op_id: str, size: int) -> None:
        """Not an outage: keep the batch (and its id), tell the waiters, back off."""
        self.last_error = str(exc)
        log.error("record batch %s (%d records) refused, kept for retry: %s", op_id, size, exc)
        self._progress.settle(exc)
        await self._wait_wake(self._probe_delay_s)
        self._back_off()

    async def _journal_batch(self) -> bool:
        """Append the pending batch to the journal; ``False`` when it could not be."""
        batch, op_id = self._take()
        try:
            await self.journal.append(RECORDS, records_data(batch), op_id, now_ms())
        except JournalFull as exc:
            if self.journal_full is None:
                log.error("%s: new hot-path records are refused until the storage is back", exc)
            self.journal_full = exc
            self._progress.settle(exc)
            return False
        except StorageServerError as exc:  # the disk refused
            self.last_error = str(exc)
            log.error("journal write failed, batch kept in memory: %s", exc)
            self._progress.settle(exc)
            return False
        self._batch = None
        self._journaled.extend(batch)
        self._progress.completed(len(batch))
        return True

    async def _journal_taken(self) -> None:
        """Between replay chunks: records made meanwhile go to the journal too, those
        pending now only. Records keep arriving while an append is synced; waiting for
        none to be left held a replay under steady load here for as long as the load
        lasted (one small entry per sync), so later ones wait for the next chunk."""
        batches = (self._batch is not None) + -(-len(self._pending) // MAX_BATCH)
        for _ in range(batches):
            if not await self._journal_batch():
                return

    async def _probe(self) -> None:
        try:
            async with asyncio.timeout(self.settings.redis_connect_timeout_ms / 1000):
                head = await self._ops["cfgstore_replica_head"]()
            if head.namespace_id != self.namespace_id:
                raise NamespaceMismatch(self.namespace_id, head.namespace_id)
            await self.recover()
        except NamespaceMismatch as exc:
            self._still_down(exc, Mode.DATA_LOST)
        except (StorageUnavailable, TimeoutError, StorageServerError) as exc:
            raise_if_cancelling(exc)
            self._still_down(exc, self.mode)
        except CfgStoreError as exc:  # a journal entry that cannot be replayed as it is
            log.error("journal replay stopped, the journal is kept: %s", exc)
            self._still_down(exc, self.mode)
        else:
            self._probe_delay_s = FIRST_PROBE_DELAY_S

    def _still_down(self, exc: BaseException, mode: Mode) -> None:
        message = str(exc) or f"no answer within {self.settings.redis_connect_timeout_ms} ms"
        if mode is not self.mode:
            self._enter(mode, message)
        self.last_error = message
        self._back_off()

    def _back_off(self) -> None:
        """Capped exponential backoff for the next probe (or retry)."""
        self._next_probe_at = asyncio.get_running_loop().time() + self._probe_delay_s
        self._probe_delay_s = min(self._probe_delay_s * 2, self.settings.probe_max_delay_ms / 1000)

    def _enter(self, mode: Mode, reason: str, *, save: bool = True) -> None:
        if mode is self.mode and self.reason is not None:
            return
        previous, self.mode, self.reason = self.mode, mode, reason
        self.last_error = reason
        if previous is Mode.NORMAL:
            self.degraded_since_ms = now_ms()
            self._probe_delay_s = FIRST_PROBE_DELAY_S
            self._next_probe_at = asyncio.get_running_loop().time() + FIRST_PROBE_DELAY_S
            if save:
                self._save_snapshot()  # the confirmed state as it is at the outage
        if mode is Mode.DATA_LOST:
            # The snapshot saved now holds the tail; a restore from it must not get the
            # tail a second time, and its revision starts a new count.
            self.tail.clear()
            self.admin.clear()
            self.confirmed_revision = 0
            log.error(
                "storage no longer holds namespace %s (%s): DATA LOST. Serving from memory "
                "and keeping every write in the journal %s (%d entries). Restore with "
                "`cfgctl restore --snapshot %s`; the journal replays once the namespace is "
                "back.",
                self.namespace_id,
                reason,
                self.journal.path,
                self.journal.depth,
                self.journal.path.with_name("snapshot.json"),
            )
        else:
            log.warning(
                "storage degraded: %s; serving from memory, journaling writes to %s",
                reason,
                self.journal.path,
            )
        self._notify("cfgstore_storage_degraded", degraded=True, reason=reason)
        self._wake.set()

    # -- rollbacks ---------------------------------------------------------------------------

    def _confirmed(
        self, records: Sequence[NodeRecord], op_id: str, revision: int | None = None
    ) -> None:
        """The storage acknowledged a batch (sent live or replayed from the journal)."""
        self.tail.add(records, op_id)
        if revision is not None:
            self.confirmed_revision = max(self.confirmed_revision, revision)

    async def _resend_tail(self, revision: int, when: str) -> None:
        """Under ``_io``: send the confirmed tail again under its operation ids (what the
        storage still has is skipped) and report a rollback when the storage's
        ``revision`` is below the confirmed one or a tail batch had been lost."""
        batches = self.tail.batches()
        lost: list[str] = []
        if batches:
            if "cfgstore_replica_apply_many" in self._ops:
                outcomes: list[AppliedBatch] = await self._ops["cfgstore_replica_apply_many"](
                    batches=batches, namespace_id=self.namespace_id
                )
            else:
                outcomes = [
                    await self._ops["cfgstore_replica_apply"](
                        records=records, op_id=op_id, namespace_id=self.namespace_id
                    )
                    for records, op_id in batches
                ]
            lost = [
                op_id for (_, op_id), o in zip(batches, outcomes, strict=True) if not o.duplicate
            ]
        if revision >= self.confirmed_revision and not lost:
            return
        self.rollbacks += 1
        self._forget_epochs_due = True  # the storage may hold the marks it dropped again
        self.last_rollback = (
            f"{iso_ms(now_ms())} ({when}): revision {revision}, "
            f"{self.confirmed_revision} confirmed before "
            f"({max(0, self.confirmed_revision - revision)} revisions lost); "
            f"{len(lost)} of the {len(batches)} record batches confirmed in the last "
            f"{self.tail.window_s:g}s were missing and are applied again"
        )
        log.error("the storage went back in time: %s", self.last_rollback)
        self.confirmed_revision = revision  # from here on, the storage's own count
        await self._check_admin_edits()

    async def _check_admin_edits(self) -> None:
        """After a rollback: write again the admin edits of the window it undid, where the
        stored version is the one they replaced; report the others (log, status)."""
        newest = max(self.tail.newest_at_ms, self.admin.newest_at_ms)
        edits = self.admin.since(newest - int(self.admin.window_s * 1000))
        self.admin.clear()  # checked now; a later rollback reports its own
        outcomes = await reconcile(edits, self._ops)
        self.admin_after_rollback = outcomes
        for outcome in outcomes:
            if outcome.reapplied:
                log.warning("after the rollback: %s", outcome.line)
            else:
                log.error("after the rollback, for the operator: %s", outcome.line)

    # -- reading the storage ----------------------------------------------------------------

    async def _resync(self, *, pools_only: bool) -> None:
        """Under ``_io``: re-read the storage and rebuild the view (without cyclic garbage
        collections meanwhile: :mod:`~cfgstore_memory.collector`)."""
        with collector_paused():
            await self._read_everything(pools_only=pools_only)

    async def _read_everything(self, *, pools_only: bool) -> None:
        if pools_only:
            pools = await self._ops["cfgstore_pools_list"]()
            await self.mirror.rebuild(pools, self.unconfirmed)
            return
        snapshot: StoreSnapshot = await self._ops["cfgstore_replica_snapshot"]()
        if snapshot.namespace_id != self.namespace_id:
            raise NamespaceMismatch(self.namespace_id, snapshot.namespace_id or None)
        if snapshot.revision < self.confirmed_revision:
            await self._resend_tail(snapshot.revision, "resync")
            snapshot = await self._ops["cfgstore_replica_snapshot"]()
            if snapshot.namespace_id != self.namespace_id:
                raise NamespaceMismatch(self.namespace_id, snapshot.namespace_id or None)
        self.confirmed_revision = max(self.confirmed_revision, snapshot.revision)
        await self.mirror.rebuild(snapshot.pools, self.unconfirmed)
        self._on_resync(snapshot)
        self.last_resync = iso_ms(now_ms())
        self._save_snapshot()
        if self._forget_epochs_due and not self.journal.depth:
            await self._forget_other_epochs()

    async def _refresh_loop(self) -> None:
        """Apply other instances' changes: re-read the nodes they name (or everything when
        the feed lost messages), at once when the last refresh is ``remote_refresh_ms``
        old, else when it will be (changes arriving meanwhile share the read)."""
        loop = asyncio.get_running_loop()
        last = -float("inf")
        while not self._stopping:
            raise_if_cancelling()
            await self._refresh_wake.wait()
            wait_s = last + self.settings.remote_refresh_ms / 1000 - loop.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            self._refresh_wake.clear()
            if self._stop_requested():
                return
            last = loop.time()
            ids, self._refresh_ids = self._refresh_ids, set()
            everything, self._refresh_all = self._refresh_all, False
            if self.serving_degraded:
                continue  # recovery ends with a full resync
            try:
                async with self._io:
                    if everything:  # the feed was re-established: the storage may be new
                        head = await self._ops["cfgstore_replica_head"]()
                        await self._resend_tail(head.revision, "change feed re-established")
                    if everything or not await self._refresh_nodes(ids):
                        await self._resync(pools_only=False)
            except OUTAGES as exc:
                raise_if_cancelling(exc)
                self.note_outage(exc)
            except CfgStoreError as exc:
                raise_if_cancelling(exc)
                self.last_error = str(exc)
                log.error("could not apply another instance's change: %s", exc)

    async def _refresh_nodes(self, ids: set[str]) -> bool:
        """Re-read the named nodes; ``False`` when the structure changed (a node added,
        removed or renamed): the caller resyncs in full."""
        keys: list[tuple[str, str]] = []
        for ident in ids:
            provider_type, _, uuid = ident.partition("/")
            if not self.mirror.knows((provider_type, uuid)):
                return False
            keys.append((provider_type, uuid))
        nodes: list[Any] = await self._ops["cfgstore_replica_read_nodes"](pairs=keys)
        if any(node is None for node in nodes):
            return False
        self.mirror.replace_nodes(list(zip(keys, nodes, strict=True)), self.unconfirmed())
        return True


def journaled_records(journal: Journal) -> list[NodeRecord]:
    """Every record the journal holds, in order (start-up from a snapshot)."""
    source = f"journal {journal.path}"
    records: list[NodeRecord] = []
    for entry in journal.entries():
        if entry.kind == RECORDS:
            records.extend(entry_records(entry, source))
    return records
