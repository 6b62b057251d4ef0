"""Traffic per provider type: requests, errors and latency in per-minute buckets.

What the gateway counts for each proxied request (its provider type, whether it failed,
how long it took) is tallied in memory (:class:`TrafficTally`) and added to the store as
:class:`TrafficCount` values, one per provider type and minute. Counts are sums, so the
counts of every instance add up: the stored bucket of a minute is the sum of what each
instance added for it. Buckets are kept :data:`KEEP_MS` (a day and an hour) and then
dropped, so the stored size is bounded by types × minutes of a day.

Latency is kept as a sum (for the mean) and a coarse histogram over
:data:`LATENCY_BOUNDS_MS` (for an estimated 95th percentile, :func:`percentile_ms`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from cfgstore.errors import InvalidData

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
KEEP_MS = DAY_MS + HOUR_MS
"""How long a bucket is kept after its minute starts (a day, and an hour of slack)."""

LATENCY_BOUNDS_MS: tuple[int, ...] = (100, 250, 500, 1000, 2500, 5000, 10_000, 30_000)
"""Upper bounds of the latency histogram's bins; one more bin holds what is slower."""
BINS = len(LATENCY_BOUNDS_MS) + 1


def minute_of(at_ms: int) -> int:
    """The start (epoch ms) of the minute ``at_ms`` falls in."""
    return at_ms - at_ms % MINUTE_MS


def bin_of(latency_ms: float) -> int:
    """The histogram bin of one latency."""
    for index, bound in enumerate(LATENCY_BOUNDS_MS):
        if latency_ms <= bound:
            return index
    return len(LATENCY_BOUNDS_MS)


def _zero_bins() -> tuple[int, ...]:
    return (0,) * BINS


@attrs.frozen
class TrafficCount:
    """The requests of one provider type in one minute (``minute_ms``, its start):
    how many, how many failed, the sum of their latencies (ms) and their latency
    histogram (``bins``, one count per bin of :data:`LATENCY_BOUNDS_MS` and one for the
    slower ones)."""

    provider_type: str
    minute_ms: int
    requests: int = 0
    errors: int = 0
    latency_ms: int = 0
    bins: tuple[int, ...] = attrs.field(factory=_zero_bins)

    @property
    def key(self) -> tuple[str, int]:
        return (self.provider_type, self.minute_ms)

    def plus(self, other: TrafficCount) -> TrafficCount:
        """The sum of two counts of one type and minute."""
        return TrafficCount(
            self.provider_type,
            self.minute_ms,
            self.requests + other.requests,
            self.errors + other.errors,
            self.latency_ms + other.latency_ms,
            tuple(a + b for a, b in zip(self.bins, other.bins, strict=True)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.provider_type,
            "minute": self.minute_ms,
            "requests": self.requests,
            "errors": self.errors,
            "latencyMs": self.latency_ms,
            "bins": list(self.bins),
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> TrafficCount:
        """Read one count written by :meth:`to_json`; :class:`InvalidData` when malformed."""
        try:
            bins = tuple(int(b) for b in data["bins"])
            count = cls(
                str(data["type"]),
                int(data["minute"]),
                int(data["requests"]),
                int(data["errors"]),
                int(data["latencyMs"]),
                bins,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidData(source, "traffic", f"not a traffic count: {exc!r}") from None
        if len(bins) != BINS:
            raise InvalidData(source, "traffic", f"{len(bins)} latency bins, not {BINS}")
        return count


def merge_counts(counts: Iterable[TrafficCount]) -> list[TrafficCount]:
    """Counts of one type and minute summed, ordered by minute then type."""
    merged: dict[tuple[str, int], TrafficCount] = {}
    for count in counts:
        held = merged.get(count.key)
        merged[count.key] = count if held is None else held.plus(count)
    return sorted(merged.values(), key=lambda c: (c.minute_ms, c.provider_type))


class TrafficTally:
    """The in-memory tally of one instance: O(1) per request, handed over as counts."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, int], list[int]] = {}

    def __len__(self) -> int:
        """How many (type, minute) buckets are held."""
        return len(self._requests)

    def add(self, provider_type: str, at_ms: int, *, ok: bool, latency_ms: float) -> None:
        key = (provider_type, minute_of(at_ms))
        row = self._requests.get(key)
        if row is None:
            row = self._requests[key] = [0] * (3 + BINS)
        row[0] += 1
        row[1] += 0 if ok else 1
        row[2] += max(0, round(latency_ms))
        row[3 + bin_of(latency_ms)] += 1

    def merge(self, counts: Iterable[TrafficCount]) -> None:
        """Take counts back (a hand-over that did not happen)."""
        for c in counts:
            row = self._requests.setdefault(c.key, [0] * (3 + BINS))
            for index, value in enumerate((c.requests, c.errors, c.latency_ms, *c.bins)):
                row[index] += value

    def take(self) -> list[TrafficCount]:
        """Everything tallied, as counts; the tally is empty afterwards."""
        rows, self._requests = self._requests, {}
        return [
            TrafficCount(t, m, row[0], row[1], row[2], tuple(row[3:]))
            for (t, m), row in sorted(rows.items(), key=lambda item: (item[0][1], item[0][0]))
        ]


@attrs.frozen
class TrafficTotals:
    """The counts of one provider type over a time range, summed."""

    requests: int = 0
    errors: int = 0
    latency_ms: int = 0
    bins: tuple[int, ...] = attrs.field(factory=_zero_bins)

    @property
    def mean_ms(self) -> float | None:
        return self.latency_ms / self.requests if self.requests else None

    @property
    def p95_ms(self) -> int | None:
        return percentile_ms(self.bins, 0.95)

    def to_json(self) -> dict[str, Any]:
        mean = self.mean_ms
        return {
            "requests": self.requests,
            "errors": self.errors,
            "meanMs": round(mean, 1) if mean is not None else None,
            "p95Ms": self.p95_ms,
        }


def percentile_ms(bins: tuple[int, ...], fraction: float) -> int | None:
    """The upper bound of the bin holding the ``fraction`` quantile (an estimate no lower
    than the true value); ``None`` without requests. The last bin (slower than every
    bound) answers the largest bound."""
    total = sum(bins)
    if not total:
        return None
    wanted = fraction * total
    seen = 0
    for index, count in enumerate(bins):
        seen += count
        if seen >= wanted:
            return LATENCY_BOUNDS_MS[min(index, len(LATENCY_BOUNDS_MS) - 1)]
    return LATENCY_BOUNDS_MS[-1]


def totals_by_type(counts: Iterable[TrafficCount]) -> dict[str, TrafficTotals]:
    """Per provider type, the sum of ``counts`` (types sorted by name)."""
    rows: dict[str, list[int]] = {}
    for c in counts:
        row = rows.setdefault(c.provider_type, [0] * (3 + BINS))
        for index, value in enumerate((c.requests, c.errors, c.latency_ms, *c.bins)):
            row[index] += value
    return {
        t: TrafficTotals(row[0], row[1], row[2], tuple(row[3:])) for t, row in sorted(rows.items())
    }


def series(
    counts: Iterable[TrafficCount], start_ms: int, step_ms: int, points: int
) -> dict[str, list[TrafficTotals]]:
    """Per provider type, ``points`` totals of ``step_ms`` each from ``start_ms`` (what a
    chart draws); counts outside the range are left out."""
    out: dict[str, list[TrafficTotals]] = {}
    rows: dict[str, list[list[int]]] = {}
    for c in counts:
        index = (c.minute_ms - start_ms) // step_ms
        if not 0 <= index < points:
            continue
        per_type = rows.setdefault(c.provider_type, [[0] * (3 + BINS) for _ in range(points)])
        row = per_type[index]
        for i, value in enumerate((c.requests, c.errors, c.latency_ms, *c.bins)):
            row[i] += value
    for provider_type, per_type in sorted(rows.items()):
        out[provider_type] = [TrafficTotals(r[0], r[1], r[2], tuple(r[3:])) for r in per_type]
    return out


def counts_from_fields(minute_ms: int, fields: Mapping[str, str]) -> list[TrafficCount]:
    """Counts from a flat field map ``<kind>:<type>`` → integer, as the Redis backend
    stores a minute (kinds ``r`` requests, ``e`` errors, ``l`` latency sum, ``h<i>`` bin
    ``i``). Unknown kinds are ignored."""
    rows: dict[str, list[int]] = {}
    for field, value in fields.items():
        kind, sep, provider_type = field.partition(":")
        if not sep:
            continue
        if kind in ("r", "e", "l"):
            index = "rel".index(kind)
        elif kind.startswith("h") and kind[1:].isdigit() and int(kind[1:]) < BINS:
            index = 3 + int(kind[1:])
        else:
            continue
        rows.setdefault(provider_type, [0] * (3 + BINS))[index] += int(value)
    return [
        TrafficCount(t, minute_ms, row[0], row[1], row[2], tuple(row[3:]))
        for t, row in sorted(rows.items())
    ]


def fields_of(count: TrafficCount) -> list[tuple[str, int]]:
    """The non-zero fields of one count, in the shape :func:`counts_from_fields` reads."""
    t = count.provider_type
    pairs = [(f"r:{t}", count.requests), (f"e:{t}", count.errors), (f"l:{t}", count.latency_ms)]
    pairs += [(f"h{i}:{t}", n) for i, n in enumerate(count.bins)]
    return [(field, n) for field, n in pairs if n]
