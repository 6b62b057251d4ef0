"""Hot-path records: what a proxied request changes on its node (aiclient-formats §3.5–§3.7).

Records are values. Each carries everything it needs (time, limits, message), so applying
the same records in the same order to the same state always gives the same result: that is
what lets a backend re-apply pending records to freshly read data (file backend), merge them
per node (Redis group commit) or replay them from a journal after an outage.

Every field a record assigns joins the node's layout (appended in the order the Node service
assigns it), as a JavaScript assignment creates the key: so a node serialised between two
records and read back serialises exactly like one that stayed in memory.

:func:`apply_record` mutates a :class:`~cfgstore.model.pools.ProviderNode` in place.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from cfgstore.model.pools import ProviderNode
from cfgstore.model.timefmt import iso_ms, parse_time_ms

ERROR_WINDOW_MS = 10_000
"""Failures further apart than this restart the error count at 1."""

NEED_REFRESH_GRACE_MS = 30_000
"""A need-refresh within this long after the last refresh is ignored."""


@attrs.frozen
class NodeRecord:
    """Base of every record: which node, and when (epoch ms)."""

    provider_type: str
    uuid: str
    at_ms: int


@attrs.frozen
class Selected(NodeRecord):
    """The node was picked for a request: ``lastUsed=at``, ``_lastSelectionSeq=seq``."""

    seq: int


@attrs.frozen
class Success(NodeRecord):
    """A request succeeded (``markProviderHealthy``): healthy, errors cleared,
    ``usageCount += 1``, ``lastUsed=at``, ``lastRefreshTime=at``, ``_lastSelectionSeq=0``."""


@attrs.frozen
class Failure(NodeRecord):
    """A request failed (``markProviderUnhealthy``).

    The error count restarts at 1 when the previous ``lastErrorTime`` is more than
    :data:`ERROR_WINDOW_MS` before ``at``, else grows by one; at ``max_error_count`` (0 =
    never) the node turns unhealthy. ``immediate`` (``markProviderUnhealthyImmediately``)
    sets ``errorCount=max_error_count`` and unhealthy at once.
    """

    message: str
    max_error_count: int
    immediate: bool = False


@attrs.frozen
class Cooldown(NodeRecord):
    """Rate limited (429) or out of quota (402): unhealthy until ``recovery_at_ms``."""

    message: str
    max_error_count: int
    recovery_at_ms: int


@attrs.frozen
class NeedRefresh(NodeRecord):
    """The credential must be refreshed: the node leaves the candidate set.

    Ignored when the last refresh is less than :data:`NEED_REFRESH_GRACE_MS` old."""


@attrs.frozen
class Recovered(NodeRecord):
    """Auto-recovery at ``scheduledRecoveryTime``: healthy again, error state and the
    schedule cleared. No effect on a node that is already healthy."""


@attrs.frozen
class HealthCheckResult(NodeRecord):
    """A health check ran with ``model``. Success marks the node healthy (and zeroes
    ``usageCount`` when ``reset_usage``); failure counts like :class:`Failure` (or at once
    when ``immediate``). ``lastHealthCheckTime/Model`` are set either way."""

    ok: bool
    model: str | None
    message: str | None
    max_error_count: int
    immediate: bool = False
    reset_usage: bool = False


def apply_record(node: ProviderNode, record: NodeRecord) -> None:
    """Apply one record to ``node`` in place (see each record class for the semantics)."""
    state = node.state
    now = iso_ms(record.at_ms)
    match record:
        case Selected():
            state.last_used = now
            state.last_selection_seq = record.seq
            node.ensure_keys("lastUsed", "_lastSelectionSeq")
        case Success():
            _mark_healthy(node, record.at_ms)
            state.usage_count += 1
        case Failure():
            _mark_failed(
                node, record.at_ms, record.message, record.max_error_count, record.immediate
            )
        case Cooldown():
            state.is_healthy = False
            state.error_count = record.max_error_count
            state.needs_refresh = False
            state.refresh_count = 0
            state.last_error_time = now
            state.last_used = now
            state.last_error_message = record.message
            state.scheduled_recovery_time = iso_ms(record.recovery_at_ms)
            node.ensure_keys(
                "isHealthy",
                "needsRefresh",
                "refreshCount",
                "errorCount",
                "lastErrorTime",
                "lastUsed",
                "lastErrorMessage",
                "scheduledRecoveryTime",
            )
        case NeedRefresh():
            last = state.last_refresh_time
            if last is None or record.at_ms - last >= NEED_REFRESH_GRACE_MS:
                state.needs_refresh = True
                node.ensure_keys("needsRefresh")
        case Recovered():
            if not state.is_healthy:
                state.is_healthy = True
                state.error_count = 0
                state.last_error_time = None
                state.last_error_message = None
                state.scheduled_recovery_time = None
                node.ensure_keys(
                    "isHealthy",
                    "errorCount",
                    "lastErrorTime",
                    "lastErrorMessage",
                    "scheduledRecoveryTime",
                )
        case HealthCheckResult():
            if record.ok:
                _mark_healthy(node, record.at_ms)
                state.usage_count = 0 if record.reset_usage else state.usage_count + 1
            else:
                _mark_failed(
                    node,
                    record.at_ms,
                    record.message or "Health check failed",
                    record.max_error_count,
                    record.immediate,
                )
            state.last_health_check_time = now
            node.ensure_keys("lastHealthCheckTime")
            if record.model:
                state.last_health_check_model = record.model
                node.ensure_keys("lastHealthCheckModel")
        case _:
            raise TypeError(f"unknown record type {type(record).__name__}")


def _mark_healthy(node: ProviderNode, at_ms: int) -> None:
    state = node.state
    state.is_healthy = True
    state.error_count = 0
    state.refresh_count = 0
    state.needs_refresh = False
    state.last_refresh_time = at_ms
    state.last_error_time = None
    state.last_error_message = None
    state.last_selection_seq = 0
    state.last_used = iso_ms(at_ms)
    node.ensure_keys(
        "isHealthy",
        "errorCount",
        "refreshCount",
        "needsRefresh",
        "lastRefreshTime",
        "lastErrorTime",
        "lastErrorMessage",
        "_lastSelectionSeq",
        "usageCount",
        "lastUsed",
    )


def _mark_failed(
    node: ProviderNode, at_ms: int, message: str, max_error_count: int, immediate: bool
) -> None:
    state = node.state
    if immediate:
        state.error_count = max_error_count
        state.is_healthy = False
        node.ensure_keys("isHealthy", "needsRefresh", "refreshCount", "errorCount")
    else:
        previous = parse_time_ms(state.last_error_time)
        # An unreadable time compares like JavaScript's NaN: never "too old", so it counts up.
        if state.last_error_time is None or (
            previous is not None and at_ms - previous > ERROR_WINDOW_MS
        ):
            state.error_count = 1
        else:
            state.error_count += 1
        if max_error_count > 0 and state.error_count >= max_error_count:
            state.is_healthy = False
    now = iso_ms(at_ms)
    state.last_error_time = now
    state.last_used = now
    state.needs_refresh = False
    state.refresh_count = 0
    if message:  # the Node service keeps the previous message when given none
        state.last_error_message = message
    node.ensure_keys(
        "errorCount",
        "lastErrorTime",
        "lastUsed",
        "needsRefresh",
        "refreshCount",
        "lastErrorMessage",
    )
    if not state.is_healthy:
        node.ensure_keys("isHealthy")


NodeKey = tuple[str, str]
_FOLDABLE = (Success, Selected)


def fold_runs(records: Iterable[NodeRecord]) -> dict[NodeKey, list[tuple[NodeRecord, int]]]:
    """The records per node, in order, with each run of successes folded into its last
    record and a count, and each run of selections into its last record. Applying the runs
    with :func:`apply_run` gives exactly what applying every record gives (records of
    different nodes commute; within a run only the last time counts)."""
    runs_per_node: dict[NodeKey, list[tuple[NodeRecord, int]]] = {}
    for record in records:
        runs = runs_per_node.setdefault((record.provider_type, record.uuid), [])
        if runs and type(runs[-1][0]) is type(record) and isinstance(record, _FOLDABLE):
            runs[-1] = (record, runs[-1][1] + 1)
        else:
            runs.append((record, 1))
    return runs_per_node


def apply_run(node: ProviderNode, record: NodeRecord, count: int) -> None:
    """Apply a folded run (see :func:`fold_runs`): the last record, and every success's
    increment."""
    apply_record(node, record)
    if count > 1 and isinstance(record, Success):
        node.state.usage_count += count - 1
