"""Health checks asked for from the admin UI (aiclient-formats §3.7 "UI button"):
:meth:`HealthChecker.check_now` against a local OpenAI-compatible upstream, over a
file-backed store.

Rules: success → healthy; failure → the accumulating path; an HTTP 401/403 answer →
unhealthy at once; a type the gateway cannot health-check → counters reset
(``resetProviderCounters``). The type-wide check checks the unhealthy nodes only. No
message shown or stored holds the node's key, even when the upstream echoes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from cfgstore.adapters import Store
from cfgstore.model.timefmt import iso_ms, parse_time_ms
from cfgstore_gateway.health_checks import CheckResult, NodeNotFound
from tests.gateway.conftest import TYPE, api_node, make_deployment
from tests.gateway.health_support import NOW, checker, checking_upstream, node
from tests.gateway.upstream_stub import UpstreamStub

SECRET_KEY = "sk-secret-node-key-0123456789"
UNCHECKABLE = "grok-web"  # no adapter serves it: the gateway cannot health-check it


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[UpstreamStub]:
    async with checking_upstream() as running:
        yield running


def unhealthy(**fields: Any) -> dict[str, Any]:
    """Fields of a node that turned unhealthy an hour ago after 3 errors."""
    return {
        "isHealthy": False,
        "errorCount": 3,
        "lastErrorTime": iso_ms(NOW - 3_600_000),
        "lastErrorMessage": "old failure",
        **fields,
    }


def checked(upstream: UpstreamStub) -> list[str]:
    return sorted(str(r.body["model"]) for r in upstream.chat_requests())


async def test_one_node_success_marks_it_healthy(
    tmp_path: Path, upstream: UpstreamStub, http: aiohttp.ClientSession
) -> None:
    url = upstream.base_url
    pools = {TYPE: [api_node("n1", url, SECRET_KEY, checkModelName="good-model", **unhealthy())]}
    async with Store.open(make_deployment(tmp_path, pools)) as store:
        results = await checker(store, http).check_now(TYPE, "n1")
        assert [(r.uuid, r.healthy, r.message) for r in results] == [("n1", True, None)]
        assert checked(upstream) == ["good-model"]
        state = (await node(store, "n1")).state
        assert state.is_healthy and state.error_count == 0
        assert state.last_error_message is None and state.last_error_time is None
        assert state.last_health_check_model == "good-model"
        assert parse_time_ms(state.last_health_check_time) == NOW


async def test_type_check_checks_only_the_unhealthy_nodes(
    tmp_path: Path, upstream: UpstreamStub, http: aiohttp.ClientSession
) -> None:
    url = upstream.base_url
    pools = {
        TYPE: [
            api_node("healthy", url, "k1", checkModelName="healthy-model"),
            api_node("sick1", url, "k2", checkModelName="good-model", **unhealthy()),
            api_node("sick2", url, "k3", checkModelName="bad-model", **unhealthy()),
        ]
    }
    async with Store.open(make_deployment(tmp_path, pools)) as store:
        results = await checker(store, http).check_now(TYPE)
        assert [(r.uuid, r.healthy) for r in results] == [("sick1", True), ("sick2", False)]
        assert checked(upstream) == ["bad-model", "good-model"]  # not healthy-model
        assert (await node(store, "sick1")).state.is_healthy
        sick2 = (await node(store, "sick2")).state
        assert not sick2.is_healthy and "500" in (sick2.last_error_message or "")
        assert sick2.last_health_check_model == "bad-model"
        assert (await node(store, "healthy")).state.last_health_check_time is None
        # Nothing unhealthy left but sick2; a type with no unhealthy node checks nothing.
        assert [r.uuid for r in await checker(store, http).check_now(TYPE)] == ["sick2"]


async def test_failure_accumulates_but_401_and_403_are_immediate(
    tmp_path: Path, upstream: UpstreamStub, http: aiohttp.ClientSession
) -> None:
    url = upstream.base_url
    pools = {
        TYPE: [
            api_node("flaky", url, "k1", checkModelName="bad-model"),
            api_node("denied", url, SECRET_KEY, checkModelName="denied-model"),
            api_node("forbidden", url, "k3", checkModelName="forbidden-model"),
        ]
    }
    async with Store.open(make_deployment(tmp_path, pools)) as store:  # MAX_ERROR_COUNT 3
        health = checker(store, http)
        (flaky,) = await health.check_now(TYPE, "flaky")
        assert not flaky.healthy
        state = (await node(store, "flaky")).state
        assert state.is_healthy and state.error_count == 1  # accumulating: still healthy
        for uuid in ("denied", "forbidden"):
            (result,) = await health.check_now(TYPE, uuid)
            assert not result.healthy and result.status in (401, 403)
            state = (await node(store, uuid)).state
            assert not state.is_healthy and state.error_count == 3  # at once
            assert parse_time_ms(state.last_health_check_time) == NOW


async def test_no_message_holds_the_key_the_upstream_echoes(
    tmp_path: Path, upstream: UpstreamStub, http: aiohttp.ClientSession
) -> None:
    url = upstream.base_url
    pools = {TYPE: [api_node("denied", url, SECRET_KEY, checkModelName="denied-model")]}
    async with Store.open(make_deployment(tmp_path, pools)) as store:
        (result,) = await checker(store, http).check_now(TYPE, "denied")
        assert upstream.tokens() == [SECRET_KEY]  # the key was sent, and echoed back
        message = result.message or ""
        assert "401" in message and "Incorrect API key provided: ****" in message
        assert SECRET_KEY not in message
        stored = (await node(store, "denied")).state.last_error_message or ""
        assert "401" in stored and SECRET_KEY not in stored


async def test_uncheckable_type_resets_the_counters(
    tmp_path: Path, upstream: UpstreamStub, http: aiohttp.ClientSession
) -> None:
    pools = {
        UNCHECKABLE: [
            {
                "uuid": "g1",
                "usageCount": 7,
                "_lastSelectionSeq": 5,
                **unhealthy(),
            }
        ]
    }
    async with Store.open(make_deployment(tmp_path, pools)) as store:
        results = await checker(store, http).check_now(UNCHECKABLE)
        assert len(results) == 1
        result: CheckResult = results[0]
        assert result.uuid == "g1" and result.healthy and not result.supported
        assert "not implemented" in (result.message or "")
        assert upstream.received == []  # nothing was sent anywhere
        state = (await node(store, "g1", UNCHECKABLE)).state
        assert state.is_healthy and state.error_count == 0 and state.usage_count == 0
        assert state.last_error_time is None and state.last_error_message is None
        assert state.last_selection_seq == 0


async def test_absent_node_is_reported(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with Store.open(make_deployment(tmp_path, {TYPE: []})) as store:
        with pytest.raises(NodeNotFound):
            await checker(store, http).check_now(TYPE, "nope")
