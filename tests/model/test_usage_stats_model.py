"""The model usage statistics' pure parts: Beijing days, Node's live rates, which files are
Node's statistics (the rest stay kept files), and adding counts to Node's document."""

from __future__ import annotations

import copy
from pathlib import Path

from cfgstore.model import jsjson
from cfgstore.model.usage_stats import (
    RateTracker,
    UsageCount,
    apply_counts,
    beijing_day,
    empty_document,
    read_node_file,
    reset_document_tokens,
)

HOUR_MS = 3_600_000


def test_the_day_is_beijings() -> None:
    midnight_utc = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    assert beijing_day(midnight_utc - 8 * HOUR_MS - 1) == "2025-12-31"
    assert beijing_day(midnight_utc - 8 * HOUR_MS) == "2026-01-01"  # 00:00 in Beijing
    assert beijing_day(midnight_utc + 15 * HOUR_MS) == "2026-01-01"
    assert beijing_day(midnight_utc + 16 * HOUR_MS) == "2026-01-02"


def test_rates_follow_nodes_sliding_minute() -> None:
    tracker = RateTracker()
    assert (tracker.rates(100).qps, tracker.rates(100).rpm) == (0, 0)
    for _ in range(3):
        tracker.record(10, 100)
    first = tracker.rates(100)  # one second elapsed: divisor 1
    assert (first.qps, first.tps, first.rpm) == (3, 30, 180)
    tracker.record(5, 102)
    later = tracker.rates(102)  # three seconds: divisor 3, two decimals as toFixed(2)
    assert (later.qps, later.tps, later.rpm) == (1.33, 11.67, 80)
    assert tracker.rates(100 + 60 + 3).qps == 0  # the window moved past every request


def test_only_files_in_nodes_shape_are_statistics(tmp_path: Path) -> None:
    path = tmp_path / "model-usage-stats.json"
    assert read_node_file(path) is None  # absent
    path.write_bytes(b'{\n    "gpt-4o": 12\n}\n')  # an older format: kept as bytes
    assert read_node_file(path) is None
    path.write_bytes(b"{not json")
    assert read_node_file(path) is None
    doc = empty_document("2026-01-01T00:00:00.000Z")
    apply_counts(doc, [UsageCount("t", "m", "2026-01-01", 1, 2, 3, 5, 1, "x")], "y")
    path.write_bytes(jsjson.dump_bytes(doc))
    assert read_node_file(path) == doc


def test_counts_and_resets_on_nodes_document() -> None:
    doc = empty_document()
    count = UsageCount("t", "m", "2026-01-01", 2, 10, 4, 14, 3, "2026-01-01T01:00:00.000Z", 0.5)
    apply_counts(doc, [count, count], "2026-01-01T02:00:00.000Z")
    block = doc["providers"]["t"]["models"]["m"]
    assert [block[k] for k in ("requestCount", "promptTokens", "totalTokens", "maxQps")] == [
        4,
        20,
        28,
        0.5,
    ]
    assert doc["daily"]["2026-01-01"] == doc["summary"] == doc["providers"]["t"]["summary"]
    before = copy.deepcopy(doc)
    reset_document_tokens(doc, "later")
    assert doc["summary"]["requestCount"] == 4 and doc["summary"]["promptTokens"] == 0
    assert doc["summary"]["lastUsedAt"] == before["summary"]["lastUsedAt"]
    assert list(doc) == ["updatedAt", "summary", "providers", "daily"]
