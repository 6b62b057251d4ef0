"""Reading when a spent quota comes back from an upstream's error answer
(:mod:`cfgstore_gateway.adapters.quota_reset`), source by source and in the Node service's
order, and the shapes of durations and epochs."""

from __future__ import annotations

import email.utils
import json

import pytest

from cfgstore.model.timefmt import iso_ms
from cfgstore_gateway.adapters.quota_reset import duration_ms, epoch_ms, quota_reset_ms

NOW = 1_765_000_000_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("300ms", 300),
        ("12s", 12_000),
        ("1.5s", 1_500),
        (".5s", 500),
        ("3600s", 3_600_000),
        ("10h56m41.5s", 39_401_500),
        ("2m", 120_000),
        ("250", 250),  # no unit: ms, as the Node service reads it
        (1234, 1234),
        (0, 0),
        ("", None),
        ("soon", None),
        ("12s later", None),
        ("5s10", None),
        (-1, None),
        (True, None),
        (None, None),
    ],
)
def test_durations(value: object, expected: int | None) -> None:
    assert duration_ms(value) == expected


def test_epochs_in_seconds_ms_and_iso() -> None:
    assert epoch_ms(1_765_000_000) == NOW
    assert epoch_ms(NOW) == NOW
    assert epoch_ms("1765000000") == NOW
    assert epoch_ms(iso_ms(NOW)) == NOW
    assert epoch_ms(None) is None and epoch_ms("never") is None and epoch_ms(0) is None


def test_retry_after_header_wins_and_takes_seconds_or_a_date() -> None:
    body = {"retryDelay": "99s"}
    assert quota_reset_ms(now_ms=NOW, headers={"Retry-After": "30"}, body=body) == NOW + 30_000
    date = email.utils.formatdate((NOW + 120_000) / 1000, usegmt=True)
    assert quota_reset_ms(now_ms=NOW, headers={"retry-after": date}) == NOW + 120_000
    assert quota_reset_ms(now_ms=NOW, headers={"Retry-After": "later"}, body=body) == NOW + 99_000


def test_body_sources_in_order() -> None:
    def reset(document: object) -> int | None:
        return quota_reset_ms(now_ms=NOW, body=json.dumps(document).encode())

    assert reset({"retry_after": 7, "retryDelay": "1s"}) == NOW + 7_000
    assert reset({"retryAfterMs": 2500}) == NOW + 2_500
    google = {
        "error": {
            "code": 429,
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "QUOTA"},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.5s"},
            ],
        }
    }
    assert reset(google) == NOW + 12_500
    gemini = {"error": {"details": [{"metadata": {"quotaResetDelay": "300ms"}}]}}
    assert reset(gemini) == NOW + 300
    codex = {"error": {"type": "usage_limit_reached", "resets_at": 1_765_003_600}}
    assert reset(codex) == NOW + 3_600_000
    assert reset({"error": {"resets_in_seconds": 60}}) == NOW + 60_000
    assert reset({"error": {"message": "Rate limited, retry after 4 s."}}) == NOW + 4_000
    assert reset({"error": {"message": "Please retry after 800ms"}}) == NOW + 800
    assert reset({"error": {"message": "quota exceeded"}}) is None


def test_nothing_said_is_none() -> None:
    assert quota_reset_ms(now_ms=NOW) is None
    assert quota_reset_ms(now_ms=NOW, body=b"not json") is None
    assert quota_reset_ms(now_ms=NOW, body="[1, 2]") is None
    assert quota_reset_ms(now_ms=NOW, body={"error": "plain text"}) is None
