"""The traffic model: tallies, sums, series, the p95 estimate and the Redis field shape."""

from __future__ import annotations

import pytest

from cfgstore.errors import InvalidData
from cfgstore.model.traffic import (
    BINS,
    LATENCY_BOUNDS_MS,
    MINUTE_MS,
    TrafficCount,
    TrafficTally,
    counts_from_fields,
    fields_of,
    merge_counts,
    percentile_ms,
    series,
    totals_by_type,
)

T0 = 1_796_000_000_000 - 1_796_000_000_000 % MINUTE_MS


def test_a_tally_counts_per_type_and_minute_and_empties_when_taken() -> None:
    tally = TrafficTally()
    tally.add("a", T0 + 5, ok=True, latency_ms=99.6)
    tally.add("a", T0 + 59_999, ok=False, latency_ms=101)
    tally.add("a", T0 + MINUTE_MS, ok=True, latency_ms=1)
    tally.add("b", T0, ok=True, latency_ms=10**6)
    counts = tally.take()
    assert len(tally) == 0 and tally.take() == []
    assert [(c.provider_type, c.minute_ms, c.requests, c.errors) for c in counts] == [
        ("a", T0, 2, 1),
        ("b", T0, 1, 0),
        ("a", T0 + MINUTE_MS, 1, 0),
    ]
    first = counts[0]
    assert first.latency_ms == 201 and first.bins[0] == 1 and first.bins[1] == 1
    assert counts[1].bins[-1] == 1  # slower than every bound
    tally.merge(counts)
    assert merge_counts(tally.take()) == merge_counts(counts)


def test_counts_sum_per_type_and_minute() -> None:
    one = TrafficCount("a", T0, 2, 1, 30, (1, 1) + (0,) * (BINS - 2))
    merged = merge_counts([one, one, TrafficCount("b", T0, 1, 0, 5, (1,) + (0,) * (BINS - 1))])
    assert [(c.provider_type, c.requests, c.errors, c.latency_ms) for c in merged] == [
        ("a", 4, 2, 60),
        ("b", 1, 0, 5),
    ]
    totals = totals_by_type(merged)
    assert totals["a"].mean_ms == 15 and totals["a"].p95_ms == LATENCY_BOUNDS_MS[1]


def test_p95_is_the_bound_of_the_bin_holding_it() -> None:
    bins = [0] * BINS
    bins[0] = 94
    bins[3] = 6
    assert percentile_ms(tuple(bins), 0.95) == LATENCY_BOUNDS_MS[3]
    assert percentile_ms(tuple([0] * BINS), 0.95) is None
    slow = [0] * BINS
    slow[-1] = 1
    assert percentile_ms(tuple(slow), 0.95) == LATENCY_BOUNDS_MS[-1]


def test_series_place_counts_in_their_step_and_leave_out_the_rest() -> None:
    counts = [
        TrafficCount("a", T0, 1, 0, 10, (1,) + (0,) * (BINS - 1)),
        TrafficCount("a", T0 + 14 * MINUTE_MS, 2, 1, 10, (2,) + (0,) * (BINS - 1)),
        TrafficCount("a", T0 + 15 * MINUTE_MS, 4, 0, 10, (4,) + (0,) * (BINS - 1)),
        TrafficCount("a", T0 - MINUTE_MS, 8, 0, 10, (8,) + (0,) * (BINS - 1)),
    ]
    rows = series(counts, T0, 15 * MINUTE_MS, 2)["a"]
    assert [(r.requests, r.errors) for r in rows] == [(3, 1), (4, 0)]
    assert series(counts, T0 + 60 * MINUTE_MS, MINUTE_MS, 60) == {}


def test_redis_fields_round_trip() -> None:
    count = TrafficCount("gemini-cli-oauth", T0, 3, 1, 700, (0, 2, 0, 0, 0, 0, 0, 0, 1))
    fields = {name: str(value) for name, value in fields_of(count)}
    assert "e:gemini-cli-oauth" in fields and "h0:gemini-cli-oauth" not in fields
    assert counts_from_fields(T0, {**fields, "junk": "1", "z:x": "5"}) == [count]


def test_json_round_trip_and_malformed_counts() -> None:
    count = TrafficCount("a", T0, 1, 0, 3, (1,) + (0,) * (BINS - 1))
    assert TrafficCount.from_json(count.to_json(), "test") == count
    with pytest.raises(InvalidData, match="traffic count"):
        TrafficCount.from_json({"type": "a"}, "test")
    with pytest.raises(InvalidData, match="latency bins"):
        TrafficCount.from_json({**count.to_json(), "bins": [1]}, "test")
