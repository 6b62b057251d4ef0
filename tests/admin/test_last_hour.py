"""The summary's last-hour estimate from the nodes' counters
(:class:`cfgstore_gateway.admin.last_hour.CounterSamples`): growth between reads, resets,
the hour's window and its start."""

from __future__ import annotations

from cfgstore.model.pools import NodeState, ProviderNode
from cfgstore_gateway.admin.last_hour import HOUR_MS, SAMPLE_EVERY_MS, CounterSamples, Traffic

MINUTE = SAMPLE_EVERY_MS
T0 = 1_800_000_000_000


def pools(**counters: tuple[int, int]) -> dict[str, list[ProviderNode]]:
    """One type ``t`` whose nodes (by uuid) have ``(usageCount, errorCount)``."""
    return {
        "t": [
            ProviderNode(u, NodeState(usage_count=r, error_count=e))
            for u, (r, e) in counters.items()
        ]
    }


async def test_growth_since_the_first_read_and_a_reset_counts_what_came_after() -> None:
    samples = CounterSamples()
    first = await samples.last_hour(pools(a=(100, 5), b=(7, 0)), T0)
    assert first.by_type == {"t": Traffic(0, 0)}  # the past before the first read: unknown
    assert (first.since_ms, first.complete, first.source) == (T0, False, "counters")
    # a served 3, b's errorCount restarted (a quiet while) and is at 2 now.
    later = await samples.last_hour(pools(a=(103, 0), b=(7, 2)), T0 + 10_000)
    assert later.by_type == {"t": Traffic(3, 2)}
    # A node first seen is its own baseline; a node gone counts no more.
    again = await samples.last_hour(pools(a=(104, 0), c=(50, 50)), T0 + 20_000)
    assert again.by_type == {"t": Traffic(4, 2)}


async def test_the_window_slides_to_one_hour_and_says_when_it_is_complete() -> None:
    samples = CounterSamples()
    usage = 0
    for minute in range(0, 91):
        now = T0 + minute * MINUTE
        result = await samples.last_hour(pools(a=(usage, 0)), now)
        usage += 10
    assert result.complete and HOUR_MS <= T0 + 90 * MINUTE - result.since_ms <= HOUR_MS + MINUTE
    assert result.by_type["t"].requests == 10 * (T0 + 90 * MINUTE - result.since_ms) // MINUTE


async def test_a_gap_longer_than_the_hour_starts_the_window_again() -> None:
    samples = CounterSamples()
    await samples.last_hour(pools(a=(0, 0)), T0)
    result = await samples.last_hour(pools(a=(500, 0)), T0 + 3 * HOUR_MS)
    assert result.since_ms == T0 + 3 * HOUR_MS and not result.complete
    assert result.by_type["t"].requests == 0  # the 500 may be hours old: not claimed
