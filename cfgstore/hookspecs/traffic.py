"""Optional: traffic per provider type in per-minute buckets (requests, errors, latency),
summed over every instance, for the console's charts (:mod:`cfgstore.model.traffic`).

A backend offering these declares the capability ``"traffic"``
(:data:`~cfgstore.adapters.backend.TRAFFIC`); a chain without them records nothing and
reads nothing (the console says so). The Store tallies requests in memory and hands the
tally over about once a second (:class:`cfgstore.adapters.facades.Traffic`), never one
call per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.model.traffic import TrafficCount


@hookspec
async def cfgstore_traffic_add(counts: Sequence[TrafficCount]) -> None:
    """Add ``counts`` to the stored buckets of their type and minute.

    Either every count is taken, and then lands exactly once (a backend that sends them
    later re-sends under an id, never blindly; concurrent adders in one or many processes
    lose nothing: the stored bucket is the sum), or the call raises having taken none (the
    caller keeps them and adds them again later). May return before the counts are
    durable; ``cfgstore_flush`` waits for them. Buckets whose minute started more than
    :data:`~cfgstore.model.traffic.KEEP_MS` ago may be dropped (counts for them too)."""


@hookspec
async def cfgstore_traffic_read(since_ms: int) -> list[TrafficCount]:
    """Every stored bucket whose minute starts at or after ``since_ms``, one per type and
    minute (the sum over instances), ordered by minute then type. Counts this instance
    added are included once durable (after ``cfgstore_flush``). Raises
    :class:`~cfgstore.errors.StorageUnavailable` when the storage cannot answer."""
