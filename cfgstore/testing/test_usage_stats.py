"""Model usage statistics (:mod:`cfgstore.hookspecs.usage_stats`), for backends declaring
``usage-stats``: counts add up in every scope, keep their first-counted order, land once,
survive a reopen, reset (all, or tokens only), import a Node file as it is, and
(``shared``) sum over every instance on one storage."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from cfgstore.adapters import Store
from cfgstore.adapters.backend import USAGE_STATS
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore.model.usage_stats import beijing_day, empty_document
from cfgstore.testing.deployment import Deployment
from cfgstore.testing.fixtures import deployment_fixture, store_fixture  # noqa: F401
from cfgstore.testing.rules import rule

pytestmark = pytest.mark.asyncio

PER_INSTANCE = 400
DAY_MS = 24 * 3600 * 1000


def needs_usage_stats(deployment: Deployment) -> None:
    if USAGE_STATS not in deployment.capabilities:
        pytest.skip(f"{deployment.name} does not declare the {USAGE_STATS!r} capability")


def sums(block: dict[str, Any]) -> tuple[int, ...]:
    names = ("requestCount", "promptTokens", "completionTokens", "totalTokens", "cachedTokens")
    return tuple(block[name] for name in names)


NODE_FILE: dict[str, Any] = {
    "updatedAt": "2026-03-02T08:00:01.250Z",
    "summary": {
        "requestCount": 5,
        "promptTokens": 120,
        "completionTokens": 45,
        "totalTokens": 165,
        "cachedTokens": 7,
        "maxQps": 0.05,
        "maxRpm": 3,
        "maxTps": 2.75,
        "lastUsedAt": "2026-03-02T08:00:01.200Z",
    },
    "providers": {
        "openai-custom": {
            "summary": {
                "requestCount": 4,
                "promptTokens": 100,
                "completionTokens": 40,
                "totalTokens": 140,
                "cachedTokens": 7,
                "maxQps": 0.05,
                "maxRpm": 3,
                "maxTps": 2.75,
                "lastUsedAt": "2026-03-02T08:00:01.200Z",
            },
            "models": {
                "zeta-model": {
                    "requestCount": 3,
                    "promptTokens": 90,
                    "completionTokens": 30,
                    "totalTokens": 120,
                    "cachedTokens": 7,
                    "maxQps": 0.05,
                    "maxRpm": 3,
                    "maxTps": 2.75,
                    "lastUsedAt": "2026-03-02T08:00:01.200Z",
                },
                "alpha-model": {
                    "requestCount": 1,
                    "promptTokens": 10,
                    "completionTokens": 10,
                    "totalTokens": 20,
                    "cachedTokens": 0,
                    "maxQps": 0.02,
                    "maxRpm": 1,
                    "maxTps": 0.33,
                    "lastUsedAt": "2026-03-01T10:00:00.000Z",
                },
            },
        },
        "claude-kiro-oauth": {
            "summary": {
                "requestCount": 1,
                "promptTokens": 20,
                "completionTokens": 5,
                "totalTokens": 25,
                "cachedTokens": 0,
                "maxQps": 0.02,
                "maxRpm": 1,
                "maxTps": 0.42,
                "lastUsedAt": "2026-03-01T09:00:00.000Z",
            },
            "models": {},
        },
    },
    "daily": {
        "2026-03-02": {
            "requestCount": 3,
            "promptTokens": 90,
            "completionTokens": 30,
            "totalTokens": 120,
            "cachedTokens": 7,
            "maxQps": 0.05,
            "maxRpm": 3,
            "maxTps": 2.75,
            "lastUsedAt": "2026-03-02T08:00:01.200Z",
        },
        "2026-03-01": {
            "requestCount": 2,
            "promptTokens": 30,
            "completionTokens": 15,
            "totalTokens": 45,
            "cachedTokens": 0,
            "maxQps": 0.02,
            "maxRpm": 1,
            "maxTps": 0.42,
            "lastUsedAt": "2026-03-01T10:00:00.000Z",
        },
    },
}
"""A Node-written statistics file (unsorted keys, a provider without models, floats)."""


async def test_counts_add_up_in_every_scope(deployment: Deployment) -> None:
    needs_usage_stats(deployment)
    now = now_ms()
    yesterday = now - DAY_MS
    async with deployment.open() as store:
        stats = store.usage_stats
        stats.record("openai-custom", "gpt-x", prompt_tokens=10, completion_tokens=5, at_ms=now)
        stats.record(
            "openai-custom", "gpt-x", prompt_tokens=3, completion_tokens=4, cached_tokens=2
        )
        stats.record("gemini-cli-oauth", "gem-1", prompt_tokens=7, total_tokens=9, at_ms=yesterday)
        stats.record("openai-custom", "gpt-a", at_ms=now)
        await store.flush()
        with rule(
            "cfgstore_usage_stats_add",
            "each count adds to the summary, its type, its model and its day",
        ):
            doc = await stats.read(live=False)
            assert sums(doc["summary"]) == (4, 20, 9, 31, 2)
            openai = doc["providers"]["openai-custom"]
            assert sums(openai["summary"]) == (3, 13, 9, 22, 2)
            assert sums(openai["models"]["gpt-x"]) == (2, 13, 9, 22, 2)
            assert sums(openai["models"]["gpt-a"]) == (1, 0, 0, 0, 0)
            assert sums(doc["providers"]["gemini-cli-oauth"]["models"]["gem-1"]) == (1, 7, 0, 9, 0)
            assert sums(doc["daily"][beijing_day(yesterday)]) == (1, 7, 0, 9, 0)
            assert doc["daily"][beijing_day(now)]["requestCount"] == 3
        with rule("cfgstore_usage_stats_read", "scopes are listed in the order first counted"):
            assert list(doc) == ["updatedAt", "summary", "providers", "daily"]
            assert list(doc["providers"]) == ["openai-custom", "gemini-cli-oauth"]
            assert list(doc["providers"]["openai-custom"]["models"]) == ["gpt-x", "gpt-a"]
            assert list(doc["daily"]) == [beijing_day(now), beijing_day(yesterday)]
        with rule("cfgstore_usage_stats_add", "the later lastUsedAt and the larger peaks stay"):
            assert doc["providers"]["gemini-cli-oauth"]["summary"]["lastUsedAt"] == iso_ms(
                yesterday
            )
            assert doc["summary"]["lastUsedAt"] >= iso_ms(now)
            assert doc["summary"]["maxRpm"] >= 3 and doc["summary"]["maxQps"] > 0
            assert doc["updatedAt"] is not None
        live = await stats.read()
        assert (
            live["summary"]["rpm"] >= 4 and "qps" in live["providers"]["openai-custom"]["summary"]
        )
    async with deployment.open() as store:
        with rule("cfgstore_usage_stats_add", "counts are durable once the store is closed"):
            doc = await store.usage_stats.read(live=False)
            assert sums(doc["summary"]) == (4, 20, 9, 31, 2)


async def test_reset_tokens_then_everything(store: Store, deployment: Deployment) -> None:
    needs_usage_stats(deployment)
    stats = store.usage_stats
    for _ in range(3):
        stats.record("openai-custom", "gpt-x", prompt_tokens=10, completion_tokens=5)
    await stats.reset(tokens_only=True)
    with rule(
        "cfgstore_usage_stats_reset",
        "a token reset zeroes tokens and peaks everywhere and keeps counts and last use",
    ):
        doc = await stats.read(live=False)
        for block in (
            doc["summary"],
            doc["providers"]["openai-custom"]["summary"],
            doc["providers"]["openai-custom"]["models"]["gpt-x"],
            *doc["daily"].values(),
        ):
            assert sums(block) == (3, 0, 0, 0, 0)
            assert (block["maxQps"], block["maxRpm"], block["maxTps"]) == (0, 0, 0)
            assert block["lastUsedAt"] is not None
    stats.record("openai-custom", "gpt-x", prompt_tokens=1, completion_tokens=1)
    await store.flush()
    assert sums((await stats.read(live=False))["summary"]) == (4, 1, 1, 2, 0)
    await stats.reset()
    with rule("cfgstore_usage_stats_reset", "a full reset leaves the empty document"):
        doc = await stats.read(live=False)
        assert doc["updatedAt"] is not None
        assert {**doc, "updatedAt": None} == empty_document()


async def test_import_reads_back_as_given(store: Store, deployment: Deployment) -> None:
    needs_usage_stats(deployment)
    store.usage_stats.record("other", "m", prompt_tokens=1)
    await store.flush()
    await store.usage_stats.replace(copy.deepcopy(NODE_FILE))
    with rule("cfgstore_usage_stats_import", "an imported document reads back equal, in order"):
        doc = await store.usage_stats.read(live=False)
        assert doc == NODE_FILE
        assert list(doc["providers"]) == list(NODE_FILE["providers"])
        models = doc["providers"]["openai-custom"]["models"]
        assert list(models) == ["zeta-model", "alpha-model"]
        assert list(doc["daily"]) == ["2026-03-02", "2026-03-01"]
    at = now_ms()
    store.usage_stats.record("openai-custom", "alpha-model", prompt_tokens=2, at_ms=at)
    await store.flush()
    with rule("cfgstore_usage_stats_add", "counts add to imported blocks, new scopes go last"):
        doc = await store.usage_stats.read(live=False)
        assert sums(doc["providers"]["openai-custom"]["models"]["alpha-model"]) == (
            2,
            12,
            10,
            22,
            0,
        )
        assert list(doc["daily"])[-1] == beijing_day(at)
        assert (
            doc["providers"]["openai-custom"]["models"]["zeta-model"]
            == (NODE_FILE["providers"]["openai-custom"]["models"]["zeta-model"])
        )


async def test_no_count_lost_across_instances(deployment: Deployment) -> None:
    needs_usage_stats(deployment)
    if not deployment.shared:
        pytest.skip(f"{deployment.name} is not shared by several instances")
    async with deployment.open() as one, deployment.open() as two:

        async def requests(store: Store, model: str) -> None:
            for i in range(PER_INSTANCE):
                store.usage_stats.record(
                    "openai-custom", model, prompt_tokens=i % 7, completion_tokens=1
                )
                if i % 50 == 0:
                    await asyncio.sleep(0)

        await asyncio.gather(requests(one, "gpt-a"), requests(two, "gpt-b"))
        await asyncio.gather(one.flush(), two.flush())
        prompt = sum(i % 7 for i in range(PER_INSTANCE))
        with rule(
            "cfgstore_usage_stats_add",
            "counts of several instances on one storage add up: none is lost",
        ):
            for store in (one, two):
                doc = await store.usage_stats.read(live=False)
                total = 2 * (prompt + PER_INSTANCE)
                assert sums(doc["summary"]) == (
                    2 * PER_INSTANCE,
                    2 * prompt,
                    2 * PER_INSTANCE,
                    total,
                    0,
                )
                models = doc["providers"]["openai-custom"]["models"]
                assert models["gpt-a"]["requestCount"] == PER_INSTANCE
                assert models["gpt-b"]["requestCount"] == PER_INSTANCE


async def test_non_integer_sums_of_an_imported_file_add_like_javascript(
    store: Store, deployment: Deployment
) -> None:
    needs_usage_stats(deployment)
    odd = copy.deepcopy(NODE_FILE)
    odd["summary"]["promptTokens"] = 0.1
    odd["summary"]["cachedTokens"] = 1.5
    await store.usage_stats.replace(odd)
    store.usage_stats.record("openai-custom", "zeta-model", prompt_tokens=2, cached_tokens=3)
    await store.flush()
    with rule("cfgstore_usage_stats_add", "sums add as JavaScript numbers (doubles) do"):
        summary = (await store.usage_stats.read(live=False))["summary"]
        assert (summary["promptTokens"], summary["cachedTokens"]) == (0.1 + 2, 4.5)


async def test_a_read_includes_what_this_store_counted(
    store: Store, deployment: Deployment
) -> None:
    needs_usage_stats(deployment)
    for _ in range(5):
        store.usage_stats.record("openai-custom", "gpt-x", prompt_tokens=2, completion_tokens=1)
    with rule("cfgstore_usage_stats_read", "counts this store added before a read are in it"):
        doc = await store.usage_stats.read(live=False)  # no flush first
        assert sums(doc["summary"]) == (5, 10, 5, 15, 0)
