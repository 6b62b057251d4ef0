"""Traffic counts (:mod:`cfgstore.hookspecs.traffic`), for backends declaring ``traffic``:
counts add up per type and minute, land once, survive a reopen, and (``shared``) sum over
every instance on one storage. A backend without the capability skips these; its store
records nothing and reads nothing."""

from __future__ import annotations

import asyncio

import pytest

from cfgstore.adapters import Store
from cfgstore.adapters.backend import TRAFFIC
from cfgstore.model.timefmt import now_ms
from cfgstore.model.traffic import KEEP_MS, MINUTE_MS, TrafficCount, minute_of
from cfgstore.testing.deployment import Deployment
from cfgstore.testing.fixtures import deployment_fixture, store_fixture  # noqa: F401
from cfgstore.testing.rules import rule

pytestmark = pytest.mark.asyncio

PER_INSTANCE = 500


def needs_traffic(deployment: Deployment) -> None:
    if TRAFFIC not in deployment.capabilities:
        pytest.skip(f"{deployment.name} does not declare the {TRAFFIC!r} capability")


def by_key(counts: list[TrafficCount]) -> dict[tuple[str, int], TrafficCount]:
    return {c.key: c for c in counts}


async def test_counts_add_up_per_type_and_minute(deployment: Deployment) -> None:
    needs_traffic(deployment)
    now = now_ms()
    minute = minute_of(now)
    earlier = minute - 5 * MINUTE_MS
    async with deployment.open() as store:
        for _ in range(3):
            store.traffic.record("openai-custom", ok=True, latency_ms=120, at_ms=now)
        store.traffic.record("openai-custom", ok=False, latency_ms=40_000, at_ms=now)
        store.traffic.record("gemini-cli-oauth", ok=True, latency_ms=80, at_ms=earlier)
        await store.flush()
        with rule(
            "cfgstore_traffic_read",
            "a bucket per type and minute holds the sum of the counts added for it",
        ):
            got = by_key(await store.traffic.read(earlier))
            openai = got[("openai-custom", minute)]
            assert (openai.requests, openai.errors, openai.latency_ms) == (4, 1, 40_360)
            assert openai.bins[1] == 3 and openai.bins[-1] == 1 and sum(openai.bins) == 4
            gemini = got[("gemini-cli-oauth", earlier)]
            assert (gemini.requests, gemini.errors, gemini.bins[0]) == (1, 0, 1)
            assert {c.minute_ms for c in await store.traffic.read(minute)} == {minute}
        with rule("cfgstore_traffic_read", "reads are ordered by minute, then type"):
            keys = [(c.minute_ms, c.provider_type) for c in await store.traffic.read(earlier)]
            assert keys == sorted(keys)
    async with deployment.open() as store:
        with rule("cfgstore_traffic_add", "counts are durable once the store is closed"):
            got = by_key(await store.traffic.read(earlier))
            assert got[("openai-custom", minute)].requests == 4
        totals = await store.traffic.last_hour()
        assert totals["openai-custom"].requests == 4
        assert totals["openai-custom"].errors == 1
        assert totals["openai-custom"].p95_ms == 30_000


async def test_old_buckets_are_dropped(store: Store, deployment: Deployment) -> None:
    needs_traffic(deployment)
    stale = minute_of(now_ms()) - KEEP_MS - 10 * MINUTE_MS
    store.traffic.record("openai-custom", ok=True, latency_ms=5, at_ms=stale)
    store.traffic.record("openai-custom", ok=True, latency_ms=5)
    await store.flush()
    with rule(
        "cfgstore_traffic_add",
        "buckets older than KEEP_MS are not kept (the stored size is bounded)",
    ):
        counts = await store.traffic.read(stale - MINUTE_MS)
        assert [c.requests for c in counts] == [1]


async def test_no_count_lost_across_instances(deployment: Deployment) -> None:
    needs_traffic(deployment)
    if not deployment.shared:
        pytest.skip(f"{deployment.name} is not shared by several instances")
    async with deployment.open() as one, deployment.open() as two:

        async def requests(store: Store, ok_every: int) -> None:
            for i in range(PER_INSTANCE):
                store.traffic.record("openai-custom", ok=i % ok_every != 0, latency_ms=i % 900)
                if i % 50 == 0:
                    await asyncio.sleep(0)

        await asyncio.gather(requests(one, 5), requests(two, 10))
        await asyncio.gather(one.flush(), two.flush())
        with rule(
            "cfgstore_traffic_add",
            "counts of several instances on one storage add up: none is lost",
        ):
            for store in (one, two):
                totals = await store.traffic.last_hour()
                assert totals["openai-custom"].requests == 2 * PER_INSTANCE
                assert totals["openai-custom"].errors == PER_INSTANCE // 5 + PER_INSTANCE // 10
