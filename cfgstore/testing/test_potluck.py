"""api-potluck keys (:mod:`cfgstore.hookspecs.potluck`), for backends declaring ``potluck``:
creation and every admin edit, admission (check and count in one step: not found,
disabled, the daily limit, the Beijing day rolling over), token counts with their history,
resets, regeneration, import; exact admissions under concurrency (across several stores
when the backend declares ``shared-potluck``)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import attrs
import pytest

from cfgstore.adapters import Store
from cfgstore.adapters.backend import POTLUCK, SHARED_POTLUCK
from cfgstore.errors import AlreadyExists, InvalidData, NotFound
from cfgstore.model import potluck as pl
from cfgstore.testing.deployment import Deployment
from cfgstore.testing.fixtures import deployment_fixture, store_fixture  # noqa: F401
from cfgstore.testing.rules import rule

pytestmark = pytest.mark.asyncio

DAY = 86_400_000
T0 = 1_767_225_600_000 - 8 * 3_600_000  # 2026-01-01T00:00 Beijing (16:00 UTC the day before)


def needs_potluck(deployment: Deployment) -> None:
    if POTLUCK not in deployment.capabilities:
        pytest.skip(f"{deployment.name} does not declare the {POTLUCK!r} capability")


def use(
    key_id: str, day: str, provider: str = "openai-custom", model: str = "gpt-4o"
) -> pl.TokenUse:
    return pl.TokenUse(key_id, provider, model, prompt=10, completion=5, cached=2, day=day)


async def test_keys_are_created_listed_and_edited(deployment: Deployment) -> None:
    needs_potluck(deployment)
    async with deployment.open() as store:
        potluck = store.potluck
        with rule("cfgstore_potluck_create", "a new key in the Node shape, default name and limit"):
            first = await potluck.create(now=T0)
            assert pl.KEY_PATTERN.match(first["id"])
            assert first["name"] == "Key-1" and first["dailyLimit"] == 500
            assert first["enabled"] is True and first["lastResetDate"] == "2026-01-01"
            second = await potluck.create("team", 3, now=T0)
            with pytest.raises(AlreadyExists):
                await potluck.add(second)
        with rule("cfgstore_potluck_list", "every key in creation order"):
            assert [k["id"] for k in await potluck.list(T0)] == [first["id"], second["id"]]
            assert await potluck.get(first["id"], T0) == first
            assert await potluck.get("maki_" + "0" * 32) is None
        with rule("cfgstore_potluck_update", "rename and limit, returns the key after"):
            assert (await potluck.rename(second["id"], "renamed"))["name"] == "renamed"
            assert (await potluck.set_limit(second["id"], 7))["dailyLimit"] == 7
            with pytest.raises(NotFound):
                await potluck.rename("maki_" + "1" * 32, "x")
            with pytest.raises(InvalidData):
                await potluck.set_limit(second["id"], -1)
        with rule("cfgstore_potluck_toggle", "flips enabled"):
            assert (await potluck.toggle(second["id"]))["enabled"] is False
            assert (await potluck.toggle(second["id"]))["enabled"] is True
        with rule("cfgstore_potluck_apply_limit", "sets every key's limit, counts changes"):
            assert await potluck.apply_limit(7) == (2, 1)
        with rule("cfgstore_potluck_regenerate", "the key moves in place, data kept"):
            moved = await potluck.regenerate(second["id"], now=T0 + 5)
            assert moved["id"] != second["id"] and moved["name"] == "renamed"
            assert moved["regeneratedFrom"] == second["id"][:12] + "..."
            assert await potluck.get(second["id"]) is None
            assert [k["id"] for k in await potluck.list(T0)] == [first["id"], moved["id"]]
        with rule("cfgstore_potluck_delete", "removes; False when absent"):
            assert await potluck.delete(first["id"]) is True
            assert await potluck.delete(first["id"]) is False
            assert [k["id"] for k in await potluck.list(T0)] == [moved["id"]]
    async with deployment.open() as store:
        assert [k["name"] for k in await store.potluck.list(T0)] == ["renamed"]


async def test_admission_checks_and_counts(store: Store) -> None:
    needs_potluck_store(store)
    potluck = store.potluck
    key = await potluck.create("k", 2, now=T0)
    kid = key["id"]
    with rule("cfgstore_potluck_admit", "unknown key: not_found"):
        assert (await potluck.admit("maki_" + "2" * 32, T0)).verdict == "not_found"
    with rule("cfgstore_potluck_admit", "counts until dailyLimit, then quota_exceeded"):
        assert await potluck.admit(kid, T0 + 1) == pl.Admission("ok", 1, 2, "2026-01-01")
        assert await potluck.admit(kid, T0 + 2) == pl.Admission("ok", 2, 2, "2026-01-01")
        refused = await potluck.admit(kid, T0 + 3)
        assert refused == pl.Admission("quota_exceeded", 2, 2, "2026-01-01")
        stored = await potluck.get(kid, T0 + 3)
        assert stored is not None
        assert (stored["todayUsage"], stored["totalUsage"]) == (2, 2)
        assert stored["lastUsedAt"] == "2025-12-31T16:00:00.002Z"
    with rule("cfgstore_potluck_admit", "a new Beijing day zeroes today's counters"):
        before = await potluck.get(kid, T0 + DAY - 1)
        assert before is not None and before["todayUsage"] == 2
        rolled = await potluck.get(kid, T0 + DAY)
        assert rolled is not None and rolled["todayUsage"] == 0
        assert await potluck.admit(kid, T0 + DAY) == pl.Admission("ok", 1, 2, "2026-01-02")
        after = await potluck.get(kid, T0 + DAY)
        assert after is not None and (after["todayUsage"], after["totalUsage"]) == (1, 3)
    with rule("cfgstore_potluck_admit", "a disabled key is refused and not counted"):
        await potluck.toggle(kid)
        assert (await potluck.admit(kid, T0 + DAY)).verdict == "disabled"
        await potluck.toggle(kid)
    with rule("cfgstore_potluck_update", "limit 0 is unlimited"):
        await potluck.set_limit(kid, 0)
        for _ in range(3):
            assert (await potluck.admit(kid, T0 + DAY)).admitted


def needs_potluck_store(store: Store) -> None:
    if not store.potluck.available:
        pytest.skip("the chain keeps no api-potluck keys")


async def test_tokens_history_and_resets(store: Store) -> None:
    needs_potluck_store(store)
    potluck = store.potluck
    kid = (await potluck.create("k", 0, now=T0))["id"]
    await potluck.admit(kid, T0)
    with rule("cfgstore_potluck_add_tokens", "totals, today's, and the day's history buckets"):
        await potluck.add_tokens([use(kid, "2026-01-01"), use(kid, "2026-01-01", model="o1")])
        await potluck.add_tokens([use("maki_" + "3" * 32, "2026-01-01")])  # dropped
        await store.flush()
        key = await potluck.get(kid, T0)
        assert key is not None
        assert (key["totalPromptTokens"], key["todayTotalTokens"], key["totalCachedTokens"]) == (
            20,
            30,
            4,
        )
        day = key["usageHistory"]["2026-01-01"]
        assert list(day) == ["summary", "providers", "models"]
        assert day["summary"]["requestCount"] == 2 and day["summary"]["totalTokens"] == 30
        assert day["providers"]["openai-custom"]["promptTokens"] == 20
        assert day["models"]["o1"] == {
            "requestCount": 1,
            "promptTokens": 10,
            "completionTokens": 5,
            "totalTokens": 15,
            "cachedTokens": 2,
            "maxQps": 0,
            "maxRpm": 0,
            "maxTps": 0,
        }
    with rule("cfgstore_potluck_add_tokens", "peaks of the key and its buckets only rise"):
        fast = attrs.evolve(use(kid, "2026-01-01"), qps=0.5, rpm=30, tps=12.5)
        slow = attrs.evolve(use(kid, "2026-01-01"), qps=0.25, rpm=15, tps=2)
        await potluck.add_tokens([fast])
        await potluck.add_tokens([slow])
        await store.flush()
        key = await potluck.get(kid, T0)
        assert key is not None
        assert (key["maxQps"], key["maxRpm"], key["maxTps"]) == (0.5, 30, 12.5)
        bucket = key["usageHistory"]["2026-01-01"]["models"]["gpt-4o"]
        assert (bucket["maxQps"], bucket["maxTps"], bucket["requestCount"]) == (0.5, 12.5, 3)
        assert key["usageHistory"]["2026-01-01"]["models"]["o1"]["maxQps"] == 0
        key_before_reset = key
    with rule("cfgstore_potluck_reset", "tokens: zeroed, request counts kept"):
        assert await potluck.reset_tokens(kid) == 1
        key = await potluck.get(kid, T0)
        assert key is not None
        assert key["totalTokens"] == 0 and key["totalUsage"] == 1 and key["maxTps"] == 0
        assert key["usageHistory"]["2026-01-01"]["summary"]["requestCount"] == 4
        assert key_before_reset["usageHistory"]["2026-01-01"]["summary"]["requestCount"] == 4
        assert key["usageHistory"]["2026-01-01"]["models"]["o1"]["totalTokens"] == 0
    with rule("cfgstore_potluck_reset", "today: today's counters and bucket zeroed"):
        assert await potluck.reset_today(kid, T0) is True
        key = await potluck.get(kid, T0)
        assert key is not None and key["todayUsage"] == 0 and key["totalUsage"] == 1
        assert key["usageHistory"]["2026-01-01"] == {"summary": dict.fromkeys(pl.BUCKET_FIELDS, 0)}
        assert await potluck.reset_today("maki_" + "4" * 32, T0) is False


async def test_import_replaces_every_key(store: Store) -> None:
    needs_potluck_store(store)
    await store.potluck.create("old", now=T0)
    raw = (
        b'{\n  "keys": {\n    "maki_'
        + b"a" * 32
        + b'": {\n      "id": "maki_'
        + b"a" * 32
        + b'",\n      "name": "imported",\n      "custom": [1, 2],\n      "enabled": true,\n'
        b'      "dailyLimit": 1,\n      "todayUsage": 0,\n      "lastResetDate": "2026-01-01"\n'
        b"    }\n  }\n}"
    )
    with rule("cfgstore_potluck_import", "replaces every key, order and unknown fields kept"):
        await store.potluck.import_keys(pl.keys_from_bytes(raw, "test"))
        keys = await store.potluck.list(T0)
        assert [k["name"] for k in keys] == ["imported"]
        assert list(keys[0]) == [
            "id",
            "name",
            "custom",
            "enabled",
            "dailyLimit",
            "todayUsage",
            "lastResetDate",
        ]
        assert keys[0]["custom"] == [1, 2]
        assert (await store.potluck.admit("maki_" + "a" * 32, T0)).admitted


async def test_concurrent_admissions_never_pass_the_limit(deployment: Deployment) -> None:
    needs_potluck(deployment)
    limit, requests = 40, 120
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(deployment.open())
        shared = SHARED_POTLUCK in deployment.capabilities
        two = await stack.enter_async_context(deployment.open()) if shared else one
        kid = (await one.potluck.create("hot", limit, now=T0))["id"]
        with rule(
            "cfgstore_potluck_admit",
            "one atomic step: no more than dailyLimit admitted, no count lost",
        ):
            results = await asyncio.wait_for(
                asyncio.gather(
                    *((one, two)[i % 2].potluck.admit(kid, T0 + i) for i in range(requests))
                ),
                timeout=60,
            )
            assert sum(r.admitted for r in results) == limit
            assert sorted(r.used for r in results if r.admitted) == list(range(1, limit + 1))
            await one.flush()
            await two.flush()
            key = await two.potluck.get(kid, T0 + requests)
            assert key is not None and key["todayUsage"] == limit and key["totalUsage"] == limit


async def test_history_keeps_the_newest_days(store: Store) -> None:
    needs_potluck_store(store)
    kid = (await store.potluck.create("long", 0, now=T0))["id"]
    days = [pl.beijing_date(T0 + n * DAY) for n in range(pl.HISTORY_DAYS + 2)]
    with rule("cfgstore_potluck_add_tokens", "history keeps the newest 100 dates"):
        await store.potluck.add_tokens([use(kid, day) for day in days])
        await store.flush()
        key = await store.potluck.get(kid, T0)
        assert key is not None
        assert sorted(key["usageHistory"]) == days[2:]
        assert key["totalPromptTokens"] == 10 * len(days)
