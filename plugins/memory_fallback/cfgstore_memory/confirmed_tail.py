"""The confirmed tail: the record batches the storage acknowledged lately, with their
operation ids, kept to be sent again when the storage may have gone back in time.

Redis with ``appendfsync everysec`` acknowledges a write up to a second before it is on
disk: a host crash rolls it back by that second, and nothing tells the writers. Sending
the tail again under the original operation ids repairs exactly that: a batch the storage
still has is recognised and skipped, one it lost is applied again (DESIGN §3).

The window is measured back from the *latest* acknowledgement, not from now: an outage
(no acknowledgements) keeps the batches confirmed just before it, however long it lasts.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence

from cfgstore.model.records import NodeRecord


class ConfirmedTail:
    """Batches acknowledged within ``window_s`` of the latest one, oldest first."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._batches: collections.deque[tuple[float, list[NodeRecord], str]] = collections.deque()

    def __len__(self) -> int:
        return len(self._batches)

    def add(self, records: Sequence[NodeRecord], op_id: str) -> None:
        """Remember a batch the storage acknowledged under ``op_id``."""
        if self.window_s <= 0:
            return
        now = time.monotonic()
        self._batches.append((now, list(records), op_id))
        while self._batches[0][0] < now - self.window_s:
            self._batches.popleft()

    def clear(self) -> None:
        self._batches.clear()

    def batches(self) -> list[tuple[list[NodeRecord], str]]:
        """``(records, op_id)`` of every batch held, oldest first."""
        return [(records, op_id) for _, records, op_id in self._batches]
