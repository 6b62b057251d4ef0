"""Optional: model usage statistics (the ``model-usage-stats`` gateway plugin's state,
Node's ``configs/model-usage-stats.json``; :mod:`cfgstore.model.usage_stats`).

A backend offering these declares the capability ``"usage-stats"``
(:data:`~cfgstore.adapters.backend.USAGE_STATS`); a chain without them records nothing
and reads an empty document. The Store tallies answered requests in memory and hands the
tally over about once a second (:class:`cfgstore.adapters.usage_stats.UsageStats`), never
one call per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.model.usage_stats import UsageCount


@hookspec
async def cfgstore_usage_stats_add(counts: Sequence[UsageCount]) -> None:
    """Add ``counts`` to the stored statistics: each count's sums to the summary, its
    provider type's summary, its model and its day; the later ``lastUsedAt`` and the larger
    peaks kept (max, never summed); ``updatedAt`` set to the time of the add.

    Either every count is taken, and then lands exactly once (a backend that sends them
    later re-sends under a batch id, never blindly; concurrent adders in one or many
    processes lose nothing: stored sums are the sums of what each added), or the call
    raises having taken none (the caller keeps them and adds them again later). May
    return before the counts are durable; ``cfgstore_flush`` waits for them."""


@hookspec
async def cfgstore_usage_stats_read() -> dict[str, Any]:
    """The whole statistics document in Node's file shape and key order
    (:func:`~cfgstore.model.usage_stats.empty_document` when nothing is stored): scopes in
    the order they were first counted. Counts this store added before the call are
    included (the read waits for them). Raises :class:`~cfgstore.errors.StorageUnavailable`
    when the storage cannot answer."""


@hookspec
async def cfgstore_usage_stats_reset(tokens_only: bool) -> None:
    """Reset the statistics: everything (``tokens_only`` false: the empty document), or
    the token sums and peaks of every block (request counts and ``lastUsedAt`` kept).
    ``updatedAt`` becomes the time of the reset. Counts this store added before the call
    land before the reset; counts added concurrently land before or after it, never half.
    Raises :class:`~cfgstore.errors.StorageUnavailable` (nothing reset) when the storage
    cannot answer."""


@hookspec
async def cfgstore_usage_stats_import(document: dict[str, Any]) -> None:
    """Replace the statistics with ``document`` (Node's shape, normalised by
    :func:`~cfgstore.model.usage_stats.normalise_document`), keeping its key order and
    values, so that a read gives it back equal (``cfgctl migrate``)."""
