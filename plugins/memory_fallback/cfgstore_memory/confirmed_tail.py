"""The confirmed tail: the record batches the storage acknowledged lately, with their
operation ids, kept to be sent again when the storage may have gone back in time.

Redis with ``appendfsync everysec`` acknowledges a write up to a second before it is on
disk: a host crash rolls it back by that second, and nothing tells the writers. Sending
the tail again under the original operation ids repairs exactly that: a batch the storage
still has is recognised and skipped, one it lost is applied again (DESIGN §3).

The window is measured back from the *latest* acknowledgement, not from now: an outage
(no acknowledgements) keeps the batches confirmed just before it, however long it lasts.

Durability: a host crash takes the instance down with Redis, so the tail is kept on disk
too, in a journal file of its own (``confirmed-tail`` in the state directory, the
:class:`~cfgstore_memory.journal.Journal` format: group-committed fsync, checksummed).
:meth:`ConfirmedTail.add` remembers a batch at once; :meth:`ConfirmedTail.save` makes every
batch added so far durable (one group sync) and drops from the file what aged out of the
window. Callers save before telling anyone the batch is done, so an acknowledged batch is
in the file. :meth:`ConfirmedTail.open` loads what the file holds within the window of its
newest batch: the instance sends it again on start-up, before serving normally.

The file may hold more than memory (aged-out batches wait for the next rewrite), never
less than what was saved; loading applies the same window rule to the same timestamps,
so a batch memory dropped is never loaded again (the instance may have dropped the batch
marks that recognise it).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from pathlib import Path

import attrs

from cfgstore.errors import CfgStoreError
from cfgstore.model.records import NodeRecord
from cfgstore.model.timefmt import now_ms
from cfgstore_memory.journal import Journal
from cfgstore_memory.replay import RECORDS, entry_records, records_data

log = logging.getLogger("cfgstore.memory")


@attrs.define(eq=False)
class _Batch:
    at_ms: int
    records: list[NodeRecord]
    op_id: str
    seq: int | None = None
    """Its sequence number in the file once saved."""
    dropped: bool = False


class ConfirmedTail:
    """Batches acknowledged within ``window_s`` of the latest one, oldest first; on disk
    too when opened with a ``journal``."""

    def __init__(self, window_s: float, journal: Journal | None = None) -> None:
        self.window_s = window_s
        self.journal = journal
        self._batches: collections.deque[_Batch] = collections.deque()
        self._unsaved: list[_Batch] = []
        self._dropped_through: int | None = None
        """The highest file sequence number memory dropped (aged out or cleared)."""
        self._dropped_in_file = 0
        self._save_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, window_s: float, max_bytes: int) -> ConfirmedTail:
        """The tail kept at ``path``: the batches within the window of its newest one."""
        journal = await Journal.open(path, max_bytes)
        tail = cls(window_s, journal)
        source = f"confirmed tail {path}"
        entries = [e for e in journal.entries() if e.kind == RECORDS]
        newest = max((e.at_ms for e in entries), default=0)
        for entry in entries:
            batch = _Batch(entry.at_ms, entry_records(entry, source), entry.op_id, entry.seq)
            if window_s > 0 and entry.at_ms >= newest - window_s * 1000:
                tail._batches.append(batch)
            else:
                tail._forget(batch)
        return tail

    def __len__(self) -> int:
        return len(self._batches)

    @property
    def newest_at_ms(self) -> int:
        """When the newest batch held was acknowledged (epoch ms; 0: none held)."""
        return self._batches[-1].at_ms if self._batches else 0

    def add(self, records: Sequence[NodeRecord], op_id: str) -> None:
        """Remember a batch the storage acknowledged under ``op_id`` (durable at the next
        :meth:`save`)."""
        if self.window_s <= 0:
            return
        batch = _Batch(now_ms(), list(records), op_id)
        self._batches.append(batch)
        if self.journal is not None:
            self._unsaved.append(batch)
        while self._batches[0].at_ms < batch.at_ms - self.window_s * 1000:
            self._forget(self._batches.popleft())

    def clear(self) -> None:
        """Forget every batch (from the file at the next :meth:`save`)."""
        while self._batches:
            self._forget(self._batches.popleft())

    def _forget(self, batch: _Batch) -> None:
        batch.dropped = True
        if batch.seq is None:
            return  # not written yet: save() skips it
        self._dropped_through = max(self._dropped_through or 0, batch.seq)
        self._dropped_in_file += 1

    def batches(self) -> list[tuple[list[NodeRecord], str]]:
        """``(records, op_id)`` of every batch held, oldest first."""
        return [(b.records, b.op_id) for b in self._batches]

    async def save(self) -> None:
        """Make every batch added so far durable, and rewrite the file without the aged-out
        ones once they are as many as the ones kept (so rewriting costs O(1) per batch).
        A disk that refuses is logged: the batches stay in memory, in force for this run."""
        if self.journal is None:
            return
        async with self._save_lock:
            unsaved = [b for b in self._unsaved if not b.dropped]
            self._unsaved = []
            try:
                saved = await asyncio.gather(
                    *(
                        self.journal.append(RECORDS, records_data(b.records), b.op_id, b.at_ms)
                        for b in unsaved
                    )
                )
                for batch, entry in zip(unsaved, saved, strict=True):
                    batch.seq = entry.seq
                    if batch.dropped:  # aged out while being written
                        self._forget(batch)
                drop = self._dropped_through
                if drop is not None and self._dropped_in_file >= max(len(self._batches), 1):
                    await self.journal.clear_through(drop)
                    self._dropped_through, self._dropped_in_file = None, 0
            except CfgStoreError as exc:
                log.error(
                    "confirmed tail %s not saved (%s): a host crash now could lose the "
                    "last %gs of this instance's records",
                    self.journal.path,
                    exc,
                    self.window_s,
                )

    async def close(self) -> None:
        if self.journal is not None:
            await self.journal.close()
