"""Hot-path records (cfgstore.model.records) against aiclient-formats §3.4–§3.7."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cfgstore.model.jsjson import dump_bytes, loads
from cfgstore.model.pools import (
    ProviderNode,
    cold_start,
    node_from_json,
    node_to_json,
    pools_from_json,
    pools_to_json,
)
from cfgstore.model.records import (
    ERROR_WINDOW_MS,
    NEED_REFRESH_GRACE_MS,
    Cooldown,
    Failure,
    HealthCheckResult,
    NeedRefresh,
    NodeRecord,
    Recovered,
    Selected,
    Success,
    apply_record,
    apply_run,
    fold_runs,
)
from cfgstore.model.timefmt import iso_ms

T0 = 1773576000000  # 2026-03-15T12:00:00.000Z
T0_ISO = "2026-03-15T12:00:00.000Z"
TYPE = "openai-custom"
UUID = "5e0f3c1a-0000-4000-8000-000000000001"


def make_node(**fields: Any) -> ProviderNode:
    return node_from_json({"uuid": UUID, **fields}, "test")


def fail(at: int, max_errors: int = 3, message: str = "500 Internal Server Error") -> Failure:
    return Failure(TYPE, UUID, at, message, max_errors)


def test_iso_ms_is_date_to_iso_string() -> None:
    assert iso_ms(T0) == T0_ISO
    assert iso_ms(T0 + 7) == "2026-03-15T12:00:00.007Z"
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"


# ---------------------------------------------------------------------------- Success


def test_success_marks_healthy_counts_usage_and_clears_errors() -> None:
    node = make_node(
        isHealthy=False,
        usageCount=5,
        errorCount=2,
        lastErrorTime="2026-03-15T11:59:00.000Z",
        lastErrorMessage="boom",
        needsRefresh=True,
        refreshCount=3,
        _lastSelectionSeq=7,
        scheduledRecoveryTime="2026-03-16T00:00:00.000Z",
    )
    apply_record(node, Success(TYPE, UUID, T0))
    s = node.state
    assert s.is_healthy is True
    assert s.usage_count == 6
    assert s.error_count == 0
    assert s.refresh_count == 0
    assert s.needs_refresh is False
    assert s.last_refresh_time == T0
    assert s.last_error_time is None
    assert s.last_error_message is None
    assert s.last_selection_seq == 0
    assert s.last_used == T0_ISO
    # markProviderHealthy does not touch the recovery schedule.
    assert s.scheduled_recovery_time == "2026-03-16T00:00:00.000Z"


def test_success_writes_last_refresh_time_as_epoch_ms_number() -> None:
    node = make_node()
    apply_record(node, Success(TYPE, UUID, T0))
    out = node_to_json(node)
    assert out["lastRefreshTime"] == T0
    assert b'"lastRefreshTime": 1773576000000' in dump_bytes(out)


# ---------------------------------------------------------------------------- Failure


def test_first_failure_counts_one_and_records_times_and_message() -> None:
    node = make_node(needsRefresh=True, refreshCount=2)
    apply_record(node, fail(T0, message="503 Service Unavailable"))
    s = node.state
    assert s.error_count == 1
    assert s.is_healthy is True
    assert s.last_error_time == T0_ISO
    assert s.last_used == T0_ISO
    assert s.last_error_message == "503 Service Unavailable"
    assert s.needs_refresh is False
    assert s.refresh_count == 0


def test_failures_9s_apart_accumulate() -> None:
    node = make_node()
    apply_record(node, fail(T0))
    apply_record(node, fail(T0 + 9_000))
    assert node.state.error_count == 2


def test_failures_11s_apart_restart_at_one() -> None:
    node = make_node()
    apply_record(node, fail(T0))
    apply_record(node, fail(T0 + 9_000))
    apply_record(node, fail(T0 + 9_000 + 11_000))
    assert node.state.error_count == 1
    assert node.state.is_healthy is True


@pytest.mark.parametrize(
    ("gap", "expected"),
    [(ERROR_WINDOW_MS - 1, 2), (ERROR_WINDOW_MS, 2), (ERROR_WINDOW_MS + 1, 1)],
)
def test_error_window_boundary(gap: int, expected: int) -> None:
    # Node: `if (now - lastErrorTime > 10000) errorCount = 1; else errorCount++`.
    node = make_node()
    apply_record(node, fail(T0))
    apply_record(node, fail(T0 + gap))
    assert node.state.error_count == expected


def test_stale_error_time_from_file_restarts_the_count() -> None:
    node = make_node(errorCount=2, lastErrorTime="2026-03-15T11:00:00.000Z")
    apply_record(node, fail(T0))
    assert node.state.error_count == 1


def test_unhealthy_exactly_at_max_error_count() -> None:
    node = make_node()
    apply_record(node, fail(T0, max_errors=3))
    apply_record(node, fail(T0 + 1_000, max_errors=3))
    assert node.state.error_count == 2
    assert node.state.is_healthy is True
    apply_record(node, fail(T0 + 2_000, max_errors=3))
    assert node.state.error_count == 3
    assert node.state.is_healthy is False


def test_max_error_count_zero_never_turns_unhealthy() -> None:
    node = make_node()
    for i in range(50):
        apply_record(node, fail(T0 + i * 1_000, max_errors=0))
    assert node.state.error_count == 50
    assert node.state.is_healthy is True


def test_immediate_failure_is_unhealthy_at_once() -> None:
    node = make_node()
    apply_record(node, Failure(TYPE, UUID, T0, "403 Forbidden", 3, immediate=True))
    s = node.state
    assert s.is_healthy is False
    assert s.error_count == 3
    assert s.last_error_time == T0_ISO
    assert s.last_used == T0_ISO
    assert s.last_error_message == "403 Forbidden"


# ---------------------------------------------------------------------------- Cooldown


def test_cooldown_sets_scheduled_recovery_time_iso() -> None:
    node = make_node(needsRefresh=True, refreshCount=1)
    recovery = T0 + 32_500
    apply_record(
        node, Cooldown(TYPE, UUID, T0, "429 Too Many Requests - short cooldown", 3, recovery)
    )
    s = node.state
    assert s.is_healthy is False
    assert s.error_count == 3
    assert s.scheduled_recovery_time == "2026-03-15T12:00:32.500Z"
    assert s.last_error_time == T0_ISO
    assert s.last_used == T0_ISO
    assert s.last_error_message == "429 Too Many Requests - short cooldown"
    assert s.needs_refresh is False
    assert s.refresh_count == 0
    assert node_to_json(node)["scheduledRecoveryTime"] == "2026-03-15T12:00:32.500Z"


# ------------------------------------------------------------------------ NeedRefresh


def test_need_refresh_sets_the_flag() -> None:
    node = make_node()
    apply_record(node, NeedRefresh(TYPE, UUID, T0))
    assert node.state.needs_refresh is True
    assert node_to_json(node)["needsRefresh"] is True


@pytest.mark.parametrize(
    ("age", "flagged"),
    [
        (0, False),
        (NEED_REFRESH_GRACE_MS - 1, False),
        (NEED_REFRESH_GRACE_MS, True),
        (NEED_REFRESH_GRACE_MS + 5_000, True),
    ],
)
def test_need_refresh_ignored_within_30s_of_last_refresh(age: int, flagged: bool) -> None:
    node = make_node(lastRefreshTime=T0)
    before = node_to_json(node)
    apply_record(node, NeedRefresh(TYPE, UUID, T0 + age))
    assert node.state.needs_refresh is flagged
    if not flagged:
        assert node_to_json(node) == before


def test_need_refresh_after_success_is_ignored() -> None:
    node = make_node()
    apply_record(node, Success(TYPE, UUID, T0))
    apply_record(node, NeedRefresh(TYPE, UUID, T0 + 10_000))
    assert node.state.needs_refresh is False


# -------------------------------------------------------------------------- Recovered


def test_recovered_only_when_unhealthy() -> None:
    node = make_node(errorCount=2, lastErrorTime=T0_ISO, lastErrorMessage="still counting")
    before = node_to_json(node)
    apply_record(node, Recovered(TYPE, UUID, T0 + 60_000))
    assert node_to_json(node) == before


def test_recovered_clears_errors_and_schedule() -> None:
    node = make_node(
        isHealthy=False,
        errorCount=3,
        lastErrorTime=T0_ISO,
        lastErrorMessage="402 Payment Required",
        scheduledRecoveryTime="2026-04-01T00:00:00.000Z",
        usageCount=9,
    )
    apply_record(node, Recovered(TYPE, UUID, 1775001600000))
    s = node.state
    assert s.is_healthy is True
    assert s.error_count == 0
    assert s.last_error_time is None
    assert s.last_error_message is None
    assert s.scheduled_recovery_time is None
    assert s.usage_count == 9
    # The key stays (as null): JavaScript assigns null, it does not delete.
    assert node_to_json(node)["scheduledRecoveryTime"] is None


# ----------------------------------------------------------------------- health checks


def test_health_check_ok_marks_healthy_and_records_model() -> None:
    node = make_node(isHealthy=False, errorCount=3, usageCount=4, lastErrorMessage="x")
    apply_record(node, HealthCheckResult(TYPE, UUID, T0, True, "gpt-4o-mini", None, 3))
    s = node.state
    assert s.is_healthy is True
    assert s.error_count == 0
    assert s.usage_count == 5
    assert s.last_error_message is None
    assert s.last_health_check_time == T0_ISO
    assert s.last_health_check_model == "gpt-4o-mini"


def test_health_check_ok_with_reset_usage_zeroes_usage() -> None:
    node = make_node(usageCount=40)
    record = HealthCheckResult(TYPE, UUID, T0, True, "m", None, 3, reset_usage=True)
    apply_record(node, record)
    assert node.state.usage_count == 0
    assert node.state.is_healthy is True


def test_health_check_failure_accumulates() -> None:
    node = make_node()
    for i in range(3):
        at = T0 + i * 1_000
        apply_record(node, HealthCheckResult(TYPE, UUID, at, False, "m", "401 bad key", 3))
    s = node.state
    assert s.error_count == 3
    assert s.is_healthy is False
    assert s.last_error_message == "401 bad key"
    assert s.last_health_check_time == "2026-03-15T12:00:02.000Z"
    assert s.last_health_check_model == "m"


def test_health_check_failure_immediate_and_default_message() -> None:
    node = make_node()
    record = HealthCheckResult(TYPE, UUID, T0, False, "m", None, 3, immediate=True)
    apply_record(node, record)
    assert node.state.is_healthy is False
    assert node.state.error_count == 3
    assert node.state.last_error_message == "Health check failed"


# --------------------------------------------------------------------------- Selected


def test_selected_sets_last_used_and_sequence() -> None:
    node = make_node(OPENAI_API_KEY="sk-FAKE")
    apply_record(node, Selected(TYPE, UUID, T0, seq=17))
    assert node.state.last_used == T0_ISO
    assert node.state.last_selection_seq == 17
    assert node.state.usage_count == 0  # selection does not count usage
    assert list(node_to_json(node)) == ["uuid", "OPENAI_API_KEY", "lastUsed", "_lastSelectionSeq"]


def test_records_are_values() -> None:
    assert Success(TYPE, UUID, T0) == Success(TYPE, UUID, T0)
    assert hash(fail(T0)) == hash(fail(T0))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fail(T0).at_ms = 1  # type: ignore[misc]


def test_unknown_record_type_is_rejected() -> None:
    with pytest.raises(TypeError):
        apply_record(make_node(), NodeRecord(TYPE, UUID, T0))


# ------------------------------------------------------------------------ determinism


def _record(kind: int, at: int, number: int) -> NodeRecord:
    match kind:
        case 0:
            return Selected(TYPE, UUID, at, number)
        case 1:
            return Success(TYPE, UUID, at)
        case 2:
            return Failure(TYPE, UUID, at, f"error {number}", number % 4)
        case 3:
            return Failure(TYPE, UUID, at, "403", 3, immediate=True)
        case 4:
            return Cooldown(TYPE, UUID, at, "429", 3, at + number * 1_000)
        case 5:
            return NeedRefresh(TYPE, UUID, at)
        case 6:
            return Recovered(TYPE, UUID, at)
        case _:
            return HealthCheckResult(
                TYPE, UUID, at, number % 2 == 0, "m", None, 3, reset_usage=number % 3 == 0
            )


RECORDS = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=7),
        st.integers(min_value=0, max_value=40_000),
        st.integers(min_value=0, max_value=99),
    ),
    max_size=25,
).map(
    lambda steps: [
        _record(kind, T0 + sum(s[1] for s in steps[: i + 1]), number)
        for i, (kind, _, number) in enumerate(steps)
    ]
)

START_DOCS = st.sampled_from(
    [
        {"uuid": UUID},
        {"uuid": UUID, "OPENAI_API_KEY": "k", "isHealthy": False, "errorCount": 2},
        {
            "customName": "示例",
            "uuid": UUID,
            "lastErrorTime": T0_ISO,
            "lastRefreshTime": T0 - 1_000,
            "needsRefresh": True,
            "refreshCount": 2,
            "usageCount": 3,
        },
    ]
)


@given(START_DOCS, RECORDS)
def test_same_records_on_equal_nodes_give_equal_results(
    doc: dict[str, Any], records: list[NodeRecord]
) -> None:
    first = node_from_json(doc, "a")
    second = node_from_json(dict(doc), "b")
    third = first.copy()
    for record in records:
        apply_record(first, record)
        apply_record(second, record)
    for record in records:
        apply_record(third, record)
    assert first == second == third
    assert dump_bytes(node_to_json(first)) == dump_bytes(node_to_json(second))


@given(START_DOCS, RECORDS)
def test_serialising_between_records_changes_nothing(
    doc: dict[str, Any], records: list[NodeRecord]
) -> None:
    """What a file backend does (re-read, apply pending records, write) equals applying
    the records to the in-memory node."""
    memory = node_from_json(doc, "m")
    reread = node_from_json(doc, "f")
    for record in records:
        apply_record(memory, record)
        apply_record(reread, record)
        reread = node_from_json(node_to_json(reread), "f")
    assert node_to_json(reread) == node_to_json(memory)


@given(START_DOCS, RECORDS)
def test_folded_runs_give_what_every_record_gives(
    doc: dict[str, Any], records: list[NodeRecord]
) -> None:
    """What the mirror's confirmation and the Redis batch encoder rely on."""
    each = node_from_json(doc, "each")
    folded = node_from_json(doc, "folded")
    for record in records:
        apply_record(each, record)
    for runs in fold_runs(records).values():
        for record, count in runs:
            apply_run(folded, record, count)
    assert dump_bytes(node_to_json(folded)) == dump_bytes(node_to_json(each))


# ------------------------------------------------------------------------- cold start


def test_cold_start_zeroes_counters_and_keeps_health() -> None:
    node = make_node(
        isHealthy=False,
        usageCount=5,
        errorCount=2,
        lastUsed=T0_ISO,
        lastErrorTime=T0_ISO,
        needsRefresh=True,
        refreshCount=2,
        scheduledRecoveryTime="2026-04-01T00:00:00.000Z",
        customName="x",
    )
    cold_start(node)
    s = node.state
    assert (s.usage_count, s.error_count, s.last_used) == (0, 0, None)
    assert (s.needs_refresh, s.refresh_count) == (False, 0)
    assert s.is_healthy is False  # persisted health survives restarts
    assert s.last_error_time == T0_ISO
    assert s.scheduled_recovery_time == "2026-04-01T00:00:00.000Z"
    assert node.custom_name == "x"


def test_cold_start_fills_the_normalised_keys() -> None:
    node = node_from_json({"uuid": UUID, "OPENAI_API_KEY": "k"}, "t")
    cold_start(node)
    out = node_to_json(node)
    assert list(out) == [
        "uuid",
        "OPENAI_API_KEY",
        "isHealthy",
        "lastUsed",
        "usageCount",
        "errorCount",
        "isDisabled",
        "needsRefresh",
        "refreshCount",
        "lastHealthCheckTime",
        "lastHealthCheckModel",
        "lastErrorMessage",
        "customName",
    ]
    assert out["isHealthy"] is True
    assert out["customName"] is None
    assert out["lastUsed"] is None


COLD_START_ZEROED = {"usageCount", "errorCount", "lastUsed", "needsRefresh", "refreshCount"}


def test_cold_start_on_normalised_example_changes_only_counters() -> None:
    path = Path(__file__).resolve().parents[2] / "examples/deployment/configs/provider_pools.json"
    doc = loads(path.read_bytes(), str(path))
    pools = pools_from_json(doc, str(path))
    for _, node in pools:
        cold_start(node)
    out = pools_to_json(pools)
    assert isinstance(out, dict)
    for provider_type, nodes in doc.items():
        for before, after in zip(nodes, out[provider_type], strict=True):
            assert list(after) == list(before)
            changed = {k for k in before if before[k] != after[k]}
            assert changed <= COLD_START_ZEROED
            assert after["usageCount"] == 0 and after["errorCount"] == 0
            assert after["lastUsed"] is None


# ------------------------------------------------------ JavaScript edge semantics


def test_failure_without_message_keeps_the_previous_message() -> None:
    node = make_node()
    apply_record(node, fail(T0, message="first"))
    apply_record(node, fail(T0 + 1000, message=""))
    assert node.state.last_error_message == "first"
    assert node.state.error_count == 2


def test_unreadable_last_error_time_counts_up_like_nan() -> None:
    node = make_node(lastErrorTime="not a date", errorCount=2)
    apply_record(node, fail(T0))
    assert node.state.error_count == 3


def test_health_check_without_model_keeps_the_last_model() -> None:
    node = make_node(lastHealthCheckModel="gpt-4o-mini")
    apply_record(node, HealthCheckResult(TYPE, UUID, T0, True, None, None, 3))
    assert node.state.last_health_check_model == "gpt-4o-mini"
    assert node.state.last_health_check_time == T0_ISO
