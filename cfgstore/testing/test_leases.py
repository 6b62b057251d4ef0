"""Named leases (:mod:`cfgstore.hookspecs.leases`), for chains whose backends offer them: one
holder at a time, released only by its token, running out by themselves, (``shared``) one
holder across every instance, and a holder reads what the previous holder wrote."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest

from cfgstore.adapters import Store
from cfgstore.model.usage_cache import UsageCache
from cfgstore.testing.deployment import Deployment
from cfgstore.testing.fixtures import deployment_fixture, store_fixture  # noqa: F401
from cfgstore.testing.rules import rule

pytestmark = pytest.mark.asyncio


def needs_leases(store: Store) -> None:
    if not store.leases.stored:
        pytest.skip("the chain offers no leases (cfgstore.hookspecs.leases)")


async def test_a_lease_has_one_holder_and_is_released_by_its_token(store: Store) -> None:
    needs_leases(store)
    with rule("cfgstore_lease_take", "a free lease returns a token, a held one None"):
        token = await store.leases.take("usage:all", 60_000)
        assert token
        assert await store.leases.take("usage:all", 60_000) is None
        other = await store.leases.take("usage:type:gemini-cli-oauth", 60_000)
        assert other and other != token
    with rule("cfgstore_lease_release", "only the holder's token releases the lease, once"):
        assert await store.leases.release("usage:all", "not-the-token") is False
        assert await store.leases.take("usage:all", 60_000) is None
        assert await store.leases.release("usage:all", token) is True
        assert await store.leases.release("usage:all", token) is False
    with rule("cfgstore_lease_take", "a released lease can be taken again (new token)"):
        again = await store.leases.take("usage:all", 60_000)
        assert again and again != token


async def test_a_lease_runs_out_by_itself(store: Store) -> None:
    needs_leases(store)
    stale = await store.leases.take("usage:node:t:u", 1)
    assert stale
    # A 1 ms lease has run out once the clock moved on: no event to await, only time.
    fresh = None
    for _ in range(1000):
        fresh = await store.leases.take("usage:node:t:u", 60_000)
        if fresh:
            break
    with rule("cfgstore_lease_take", "a lease whose time to live ran out can be taken"):
        assert fresh and fresh != stale
    with rule("cfgstore_lease_release", "a lease that ran out and was taken stays taken"):
        assert await store.leases.release("usage:node:t:u", stale) is False
        assert await store.leases.take("usage:node:t:u", 60_000) is None


async def test_a_lease_is_held_once_across_instances(deployment: Deployment) -> None:
    if not deployment.shared:
        pytest.skip(f"{deployment.name} is not shared by several instances")
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(deployment.open())
        two = await stack.enter_async_context(deployment.open())
        needs_leases(one)
        await two.usage_cache.get()  # two holds a copy now (a caching layer keeps it)
        with rule("cfgstore_lease_take", "one holder across every instance on the storage"):
            token = await one.leases.take("usage:all", 60_000)
            assert token
            assert await two.leases.take("usage:all", 60_000) is None
        after = UsageCache("2026-01-02T00:00:00.000Z", {"t": {"providerType": "t", "n": 2}})
        await one.usage_cache.put(after)
        with rule("cfgstore_lease_release", "the holder's release frees it for the others"):
            assert await one.leases.release("usage:all", token) is True
            taken = await two.leases.take("usage:all", 60_000)
            assert taken
        with rule(
            "cfgstore_lease_take", "the next holder reads what the previous one wrote before"
        ):
            seen = await two.usage_cache.get()
            assert seen is not None and seen.to_json() == after.to_json()
        assert await two.leases.release("usage:all", taken) is True
