"""Record batch ids: ``<instance>:<epoch>:<seq>`` (``cfgstore.hookspecs.replica``).

One writer (an instance, identified by ``instance``) applies its hot-path batches in
order, so a number that grows with every batch identifies them as well as a random id
would: the storage keeps one high-water mark per instance, ``(epoch, seq)``, and applies a
batch only when its pair is above the mark, moving the mark with the writes. Memory is one
mark per instance, nothing expires, and a storage rolled back in time rolls the mark back
with the data it lost (re-sending those batches applies exactly them again).

``epoch`` is fixed for one run of the instance and above every epoch of its earlier runs
(the memory fallback keeps it in its state directory); ``seq`` counts that run's batches
from 1. Pairs compare as ``(epoch, seq)``: a journal written by an earlier run replays
below the current run's batches, whose marks then supersede it.

A journal an instance set aside (it found another namespace in Redis) holds batches of an
earlier epoch that the instance's later batches may have passed in the namespace it is
replayed onto; such a journal is replayed under a writer name of its own
(:func:`set_aside_id`), whose mark nothing else moves.

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
    """The ids of one run of one instance, in the order its batches are taken."""

    def __init__(self, instance: str, epoch: int) -> None:
        self._last = BatchId(instance, epoch, 0)
        if parse_batch_id(str(self._last)) is None:
            raise ValueError(f"not a batch id instance and epoch: {instance!r}, {epoch!r}")

    @property
    def instance(self) -> str:
        return self._last.instance

    def next(self) -> str:
        """The id of the next batch (``seq`` one above the last)."""
        self._last = attrs.evolve(self._last, seq=self._last.seq + 1)
        return str(self._last)


def set_aside_id(op_id: str, stamp: int) -> str:
    """``op_id`` renamed for the replay of a journal set aside at ``stamp`` (ms): the
    batch of writer ``<instance>-aside-<stamp>``, same epoch and seq. A legacy id stays as
    it is; one whose writer name would be too long becomes a legacy id (checked on its own)."""
    batch = parse_batch_id(op_id)
    if batch is None:
        return op_id
    renamed = str(attrs.evolve(batch, instance=f"{batch.instance}-aside-{stamp}"))
    return renamed if parse_batch_id(renamed) is not None else f"{op_id}-aside-{stamp}"
