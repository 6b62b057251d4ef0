"""Record batch ids: ``<instance>:<epoch>:<seq>`` (``cfgstore.hookspecs.replica``).

One writer (an instance, ``instance``) applies its hot-path batches in order, so a number
that grows with every batch identifies them as well as a random id would: the storage keeps
a high-water mark ``seq`` per instance and epoch, applies a batch only when its ``seq`` is
above its epoch's mark, and moves the mark with the writes. Nothing expires, and a storage
rolled back in time rolls the mark back with the data it lost (re-sending those batches
applies exactly them again).

``epoch`` names one run of the instance: a new one at every start, never one it used
before (the memory fallback keeps the last in its state directory). ``seq`` counts that
run's batches from 1. A journal written by an earlier run is replayed under that run's
epoch and mark, whichever instance replays it and wherever its own instance runs since.
Once an instance has nothing of an earlier run left to send, it drops its other epochs'
marks, so the storage keeps about one mark per instance.

Ids of another shape are *legacy* ids: random ids from before this scheme, still found in
journals written then. A backend may apply them under a per-id record with an expiry.
"""

from __future__ import annotations

import re

import attrs

_INSTANCE = r"[0-9A-Za-z_-]{1,100}"
_ID = re.compile(rf"({_INSTANCE}):([0-9]{{1,15}}):([0-9]{{1,15}})")
"""At most 15 digits: exact as a double in a Lua script (below 2**53)."""


def instance_problem(instance: str) -> str | None:
    """Why ``instance`` cannot name a writer in batch ids (``None``: it can)."""
    if re.fullmatch(_INSTANCE, instance) is None:
        return "expected 1 to 100 letters, digits, '_' or '-'"
    return None


@attrs.frozen
class BatchId:
    instance: str
    epoch: int
    seq: int

    def __str__(self) -> str:
        return f"{self.instance}:{self.epoch}:{self.seq}"


def parse_batch_id(op_id: str) -> BatchId | None:
    """The parts of a sequenced id; ``None`` for a legacy id (any other string)."""
    match = _ID.fullmatch(op_id)
    if match is None:
        return None
    return BatchId(match[1], int(match[2]), int(match[3]))


class BatchSequence:
    """The ids of one run (epoch) of one instance, in the order its batches are taken."""

    def __init__(self, instance: str, epoch: int) -> None:
        self._last = BatchId(instance, epoch, 0)
        if parse_batch_id(str(self._last)) is None:
            raise ValueError(f"not a batch id instance and epoch: {instance!r}, {epoch!r}")

    @property
    def instance(self) -> str:
        return self._last.instance

    @property
    def epoch(self) -> int:
        return self._last.epoch

    def next(self) -> str:
        """The id of the next batch (``seq`` one above the last)."""
        self._last = attrs.evolve(self._last, seq=self._last.seq + 1)
        return str(self._last)

    def of_another_run(self, op_id: str) -> bool:
        """``op_id`` is a batch of this instance under another epoch."""
        batch = parse_batch_id(op_id)
        return batch is not None and batch.instance == self.instance and batch.epoch != self.epoch
