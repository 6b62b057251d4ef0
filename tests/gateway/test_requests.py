"""The gateway over HTTP (file backend): client keys, routing, pass-through, bookkeeping.

Each test writes a deployment to a temporary folder, opens the store on it, serves the
gateway on aiohttp's test server and points the pool nodes at a local upstream stub.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pluggy
import pytest

from cfgstore.adapters.plugins import PluginSet
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import Credential
from cfgstore.model.custom_models import CustomModel
from cfgstore.model.pools import ProviderNode, node_from_json
from cfgstore.model.timefmt import iso_ms, now_ms, parse_time_ms
from cfgstore_gateway.adapters import (
    Adapter,
    AdapterRegistry,
    ModelsCall,
    UpstreamCall,
    UpstreamReply,
    UpstreamUnavailable,
    openai_compat,
)
from cfgstore_gateway.adapters.openai_compat import (
    PROFILES,
    UPSTREAM_BASE_URLS_KEY,
    OpenAICompatAdapter,
    TypeProfile,
)
from cfgstore_gateway.app import load_adapters
from cfgstore_gateway.errors import NO_HEALTHY_PROVIDER
from cfgstore_gateway.hookspecs import adapters_hookimpl
from tests.gateway.conftest import (
    CLIENT_KEY,
    TYPE,
    WAIT_S,
    api_node,
    auth,
    make_deployment,
    running_gateway,
    scaled,
    write_json,
)
from tests.gateway.upstream_stub import (
    Received,
    Reply,
    UpstreamStub,
    completion,
    default_responder,
    error,
    sse_chunks,
)
from tests.support.token_endpoint import TokenEndpoint

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
C = "cccccccc-0000-4000-8000-000000000003"


def one_node(tmp_path: Path, upstream: UpstreamStub, **config: Any) -> Any:
    return make_deployment(
        tmp_path, {TYPE: [api_node(A, upstream.base_url, "sk-node-a")]}, **config
    )


def by_token(replies: dict[str, Reply]) -> Any:
    """A responder answering per node key (the default answer for other keys)."""

    def respond(received: Received) -> Reply:
        reply = replies.get(received.token or "")
        return reply if reply is not None else default_responder(received)

    return respond


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------------------- client key


async def test_client_key_accepted_in_every_place_and_refused_otherwise(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    settings = one_node(tmp_path, upstream)
    async with running_gateway(settings) as gw:
        client = gw.client
        accepted = [
            await client.get("/v1/models", headers={"Authorization": f"Bearer {CLIENT_KEY}"}),
            await client.get("/v1/models", headers={"x-api-key": CLIENT_KEY}),
            await client.get("/v1/models", headers={"x-goog-api-key": CLIENT_KEY}),
            await client.get("/v1/models", params={"key": CLIENT_KEY}),
        ]
        assert [r.status for r in accepted] == [200, 200, 200, 200]
        refused = [
            await client.get("/v1/models"),
            await client.get("/v1/models", headers={"Authorization": "Bearer wrong"}),
            await client.get("/v1/models", headers={"Authorization": CLIENT_KEY}),  # no scheme
            await client.get("/v1/models", headers={"x-api-key": CLIENT_KEY[:-1]}),
            await client.get("/v1/models", params={"key": CLIENT_KEY + "x"}),
            await client.post("/v1/chat/completions", json={"model": "gpt-4o"}),
        ]
        for response in refused:
            assert response.status == 401
            document = await response.json()
            assert document["error"]["code"] == "invalid_api_key"
            assert set(document["error"]) >= {"message", "type", "code"}
        assert upstream.chat_requests() == []
        health = await client.get("/health")
        assert health.status == 200


async def test_unknown_path_is_an_openai_error_after_the_key_check(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    async with running_gateway(one_node(tmp_path, upstream)) as gw:
        assert (await gw.client.get("/v1/nothing")).status == 401
        response = await gw.client.get("/v1/nothing", headers=auth())
        assert response.status == 404
        assert "error" in await response.json()


# ----------------------------------------------------------------------------- pass-through


async def test_non_streaming_answer_is_passed_through_and_counted(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    answer = completion("gpt-4o", content="exactly this")
    upstream.responder = lambda received: Reply(body=answer, headers={"X-Stub": "1"})
    async with running_gateway(one_node(tmp_path, upstream)) as gw:
        response = await gw.chat("gpt-4o", temperature=0.5)
        assert response.status == 200
        assert await response.json() == answer
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.headers["X-Request-Id"]
        (received,) = upstream.chat_requests()
        assert received.token == "sk-node-a"  # the node's key, never the client's
        assert CLIENT_KEY not in json.dumps(received.headers)
        assert received.body["model"] == "gpt-4o"
        assert received.body["temperature"] == 0.5
        node = await gw.node(A)
        assert node.state.usage_count == 1
        assert node.state.error_count == 0
        assert node.state.last_used is not None


async def test_stream_is_passed_through_chunk_by_chunk_in_order(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    words = [f"w{i} " for i in range(scaled(8, minimum=3))]
    chunks = sse_chunks("gpt-4o", words)
    hold = asyncio.Event()
    upstream.responder = lambda received: Reply(chunks=chunks, hold=hold)
    async with running_gateway(one_node(tmp_path, upstream)) as gw:
        response = await gw.chat("gpt-4o", stream=True)
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        # The first event reaches the client while the upstream still holds the rest.
        first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), WAIT_S)
        assert first == chunks[0]
        assert (await gw.node(A)).state.usage_count == 0  # not finished yet
        hold.set()
        rest = await asyncio.wait_for(response.content.read(), WAIT_S)
        assert first + rest == b"".join(chunks)
        events = [e for e in (first + rest).split(b"\n\n") if e]
        contents = [
            json.loads(e.removeprefix(b"data: "))["choices"][0]["delta"]["content"]
            for e in events[:-1]
        ]
        assert contents == words
        assert events[-1] == b"data: [DONE]"
        assert (await gw.node(A)).state.usage_count == 1


async def test_a_stream_that_breaks_midway_ends_with_an_error_event_and_counts_a_failure(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    chunks = sse_chunks("gpt-4o", ["a", "b", "c"])
    upstream.responder = lambda received: Reply(chunks=chunks, break_after_first=True)
    async with running_gateway(one_node(tmp_path, upstream)) as gw:
        response = await gw.chat("gpt-4o", stream=True)
        assert response.status == 200
        body = await asyncio.wait_for(response.content.read(), WAIT_S)
        assert body.startswith(chunks[0])
        assert b"stream_interrupted" in body
        node = await gw.node(A)
        assert node.state.usage_count == 0
        assert node.state.error_count == 1
        assert len(upstream.chat_requests()) == 1  # bytes were sent: no switch


# ----------------------------------------------------------------------------- routing


async def test_provider_type_from_header_path_model_prefix_and_default(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    pools = {
        "openai-custom": [api_node(A, upstream.base_url, "key-custom")],
        "openai-custom-deepseek": [api_node(B, upstream.base_url, "key-deepseek")],
        "forward-api": [
            # The Node service's forward base is the upstream's root: + the client's path.
            {
                "uuid": C,
                "FORWARD_API_KEY": "key-forward",
                "FORWARD_BASE_URL": upstream.base_url[:-3],
            }
        ],
    }
    settings = make_deployment(tmp_path, pools, MODEL_PROVIDER="OpenAI-Custom-Deepseek,bogus")
    async with running_gateway(settings) as gw:
        cases = [
            ({"headers": {"model-provider": "openai-custom"}}, "m1", "key-custom", "m1"),
            ({"path": "/forward-api/v1/chat/completions"}, "m2", "key-forward", "m2"),
            ({}, "openai-custom:m3", "key-custom", "m3"),
            ({}, "forward-api:m4", "key-forward", "m4"),
            ({}, "m5", "key-deepseek", "m5"),  # MODEL_PROVIDER, matched case-insensitively
            ({}, "qwen3:8b", "key-deepseek", "qwen3:8b"),  # not a type prefix
            ({"headers": {"model-provider": "auto"}}, "openai-custom:m6", "key-custom", "m6"),
        ]
        for options, model, token, sent_model in cases:
            before = len(upstream.chat_requests())
            response = await gw.chat(model, **options)
            assert response.status == 200, (options, model, await response.text())
            received = upstream.chat_requests()[before]
            assert (received.token, received.body["model"]) == (token, sent_model), options
        unknown = await gw.chat("m", path="/no-such-type/v1/chat/completions")
        assert unknown.status == 404
        assert (await unknown.json())["error"]["code"] == "unknown_provider"


async def test_fallback_chain_serves_when_the_type_has_no_healthy_node(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    pools = {
        "openai-custom": [api_node(A, upstream.base_url, "key-a", isDisabled=True)],
        "openai-custom-backup": [api_node(B, upstream.base_url, "key-b")],
        "claude-custom": [
            {"uuid": C, "CLAUDE_API_KEY": "key-c", "CLAUDE_BASE_URL": upstream.base_url}
        ],
    }
    chain = {"openai-custom": ["claude-custom", "openai-custom-backup"]}
    settings = make_deployment(tmp_path, pools, providerFallbackChain=chain)
    async with running_gateway(settings) as gw:
        response = await gw.chat("gpt-4o")
        assert response.status == 200
        # claude-custom is skipped (another protocol); the backup type answers.
        assert upstream.tokens() == ["key-b"]
        assert (await gw.node(B, "openai-custom-backup")).state.usage_count == 1


async def test_no_node_is_503_and_an_unserved_type_says_so(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    pools = {
        TYPE: [api_node(A, upstream.base_url, "key-a", isHealthy=False)],
        "grok-web": [],  # its upstream is a web app: no adapter serves it
    }
    async with running_gateway(make_deployment(tmp_path, pools)) as gw:
        response = await gw.chat("gpt-4o")
        assert response.status == 503
        assert (await response.json())["error"]["message"].startswith(NO_HEALTHY_PROVIDER)
        unserved = await gw.chat("m", headers={"model-provider": "grok-web"})
        assert unserved.status == 503
        assert (await unserved.json())["error"]["code"] == "provider_unsupported"
        assert upstream.chat_requests() == []


# ----------------------------------------------------------------------------- models, health


async def test_models_from_supported_models_and_from_the_upstream(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    pools = {
        "openai-custom": [
            api_node(A, upstream.base_url, "key-a", supportedModels=["gpt-4o", "gpt-4o-mini"]),
            api_node(B, upstream.base_url, "key-b", supportedModels=["o3"], isDisabled=True),
        ],
        "openai-custom-other": [api_node(C, upstream.base_url, "key-c")],
    }
    async with running_gateway(make_deployment(tmp_path, pools)) as gw:
        response = await gw.client.get("/v1/models", headers=auth())
        assert response.status == 200
        document = await response.json()
        assert document["object"] == "list"
        ids = [(m["id"], m["owned_by"]) for m in document["data"]]
        assert ids == [
            ("gpt-4o", "openai-custom"),
            ("gpt-4o-mini", "openai-custom"),
            ("stub-model-a", "openai-custom-other"),
            ("stub-model-b", "openai-custom-other"),
        ]
        (asked,) = [r for r in upstream.received if r.path == "/v1/models"]
        assert asked.token == "key-c"
        narrowed = await gw.client.get(
            "/v1/models", headers={**auth(), "model-provider": "openai-custom"}
        )
        assert [m["id"] for m in (await narrowed.json())["data"]] == ["gpt-4o", "gpt-4o-mini"]
        prefixed = await gw.client.get("/openai-custom-other/v1/models", headers=auth())
        assert [m["id"] for m in (await prefixed.json())["data"]] == [
            "stub-model-a",
            "stub-model-b",
        ]
        assert len([r for r in upstream.received if r.path == "/v1/models"]) == 1  # cached


async def test_models_list_the_custom_models_of_the_type_asked(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    pools = {
        "openai-custom": [api_node(A, upstream.base_url, "key-a", supportedModels=["gpt-4o"])],
        "openai-custom-other": [api_node(C, upstream.base_url, "key-c", supportedModels=["o3"])],
    }
    async with running_gateway(make_deployment(tmp_path, pools)) as gw:
        for document in (
            {"id": "fast", "alias": "f", "provider": "openai-custom", "actualModel": "gpt-4o"},
            {"id": "other-fast", "provider": "openai-custom-other"},
            {"id": "routed", "actualProvider": "openai-custom-other"},
            {"id": "global"},
            {"id": "gpt-4o", "provider": "openai-custom"},  # already listed: once
        ):
            await gw.store.custom_models.add(CustomModel(str(document["id"]), dict(document)))

        async def listed(path: str = "/v1/models", **headers: str) -> list[tuple[str, str]]:
            response = await gw.client.get(path, headers={**auth(), **headers})
            assert response.status == 200
            return [(m["id"], m["owned_by"]) for m in (await response.json())["data"]]

        assert await listed() == [
            ("gpt-4o", "openai-custom"),
            ("o3", "openai-custom-other"),
            ("fast", "openai-custom"),
            ("other-fast", "openai-custom-other"),
            ("routed", "openai-custom-other"),
            ("global", "custom"),
        ]
        assert await listed(**{"model-provider": "openai-custom"}) == [
            ("gpt-4o", "openai-custom"),
            ("fast", "openai-custom"),
            ("routed", "openai-custom-other"),
            ("global", "openai-custom"),
        ]
        assert await listed("/openai-custom-other/v1/models") == [
            ("o3", "openai-custom-other"),
            ("other-fast", "openai-custom-other"),
            ("routed", "openai-custom-other"),
            ("global", "openai-custom-other"),
        ]


async def test_health_is_public_and_names_the_storage_mode(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    async with running_gateway(one_node(tmp_path, upstream)) as gw:
        response = await gw.client.get("/health")
        assert response.status == 200
        document = await response.json()
        assert document["status"] == "healthy"
        assert document["storage"] == "file"
        assert document["provider"] == TYPE
        assert parse_time_ms(document["timestamp"]) is not None


# ----------------------------------------------------------------------------- bookkeeping


async def test_every_success_counts_once_under_concurrency(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    count = scaled(40, minimum=10)
    pools = {TYPE: [api_node(u, upstream.base_url, f"key-{u}") for u in (A, B, C)]}
    async with running_gateway(make_deployment(tmp_path, pools)) as gw:
        responses = await asyncio.gather(
            *(gw.chat("gpt-4o", stream=i % 2 == 0) for i in range(count))
        )
        for response in responses:
            assert response.status == 200
            await response.read()
        usage = [(await gw.node(u)).state.usage_count for u in (A, B, C)]
        assert sum(usage) == count
        assert all(u > 0 for u in usage), usage  # spread over the pool


async def test_unhealthy_after_max_error_count_failures_then_503(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    upstream.responder = lambda received: error(500, "boom")
    settings = one_node(tmp_path, upstream, CREDENTIAL_SWITCH_MAX_RETRIES=0, MAX_ERROR_COUNT=3)
    async with running_gateway(settings) as gw:
        for expected_errors in (1, 2, 3):
            response = await gw.chat("gpt-4o")
            assert response.status == 500
            assert (await response.json())["error"]["message"] == "boom"  # as the upstream said
            node = await gw.node(A)
            assert node.state.error_count == expected_errors
            assert node.state.last_error_message == "HTTP 500: boom"
        assert (await gw.node(A)).state.is_healthy is False
        response = await gw.chat("gpt-4o")
        assert response.status == 503
        assert (await response.json())["error"]["message"].startswith(NO_HEALTHY_PROVIDER)
        assert len(upstream.chat_requests()) == 3


async def test_a_400_is_passed_through_without_counting_or_switching(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    upstream.responder = lambda received: error(400, "bad request from the client")
    pools = {TYPE: [api_node(u, upstream.base_url, f"key-{u}") for u in (A, B)]}
    async with running_gateway(make_deployment(tmp_path, pools)) as gw:
        response = await gw.chat("gpt-4o")
        assert response.status == 400
        assert (await response.json())["error"]["message"] == "bad request from the client"
        assert len(upstream.chat_requests()) == 1
        for uuid in (A, B):
            node = await gw.node(uuid)
            assert (node.state.error_count, node.state.usage_count) == (0, 0)


async def test_retry_on_another_node_when_the_first_fails_before_streaming(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    upstream.responder = by_token({"key-a": error(503, "overloaded")})
    pools = {
        TYPE: [api_node(A, upstream.base_url, "key-a"), api_node(B, upstream.base_url, "key-b")]
    }
    count = scaled(4, minimum=3)
    async with running_gateway(make_deployment(tmp_path, pools, MAX_ERROR_COUNT=10)) as gw:
        for index in range(count):
            response = await gw.chat("gpt-4o", stream=index % 2 == 1)
            assert response.status == 200
            await response.read()
        tokens = upstream.tokens()
        assert "key-a" in tokens  # tried, failed, switched
        assert tokens.count("key-b") == count
        a, b = await gw.node(A), await gw.node(B)
        assert b.state.usage_count == count
        assert a.state.usage_count == 0
        assert a.state.error_count >= 1


async def test_no_answer_at_all_switches_too(tmp_path: Path, upstream: UpstreamStub) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    pools = {TYPE: [api_node(A, closed, "key-a"), api_node(B, upstream.base_url, "key-b")]}
    async with running_gateway(make_deployment(tmp_path, pools)) as gw:
        for _ in range(2):  # whichever node is picked first, every request is served
            response = await gw.chat("gpt-4o")
            assert response.status == 200
        a, b = await gw.node(A), await gw.node(B)
        assert b.state.usage_count == 2
        assert a.state.usage_count == 0
        assert a.state.error_count >= 1
        assert a.state.last_error_message is not None


async def test_switches_are_bounded_by_credential_switch_max_retries(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    upstream.responder = lambda received: error(502, "bad gateway upstream")
    pools = {TYPE: [api_node(u, upstream.base_url, f"key-{u}") for u in (A, B, C)]}
    settings = make_deployment(tmp_path, pools, CREDENTIAL_SWITCH_MAX_RETRIES=1)
    async with running_gateway(settings) as gw:
        response = await gw.chat("gpt-4o")
        assert response.status == 502
        assert len(upstream.chat_requests()) == 2  # one try, one switch


async def test_429_cooldown_sets_the_recovery_time_from_retry_after(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    upstream.responder = by_token(
        {
            "key-a": error(429, "slow down", **{"Retry-After": "2"}),
            "key-b": error(429, "slow down", **{"Retry-After": "3600"}),
        }
    )
    pools = {
        TYPE: [api_node(A, upstream.base_url, "key-a"), api_node(B, upstream.base_url, "key-b")]
    }
    settings = make_deployment(
        tmp_path,
        pools,
        RATE_LIMIT_COOLDOWN_ENABLED=True,
        RATE_LIMIT_COOLDOWN_MS=20000,
        RATE_LIMIT_COOLDOWN_MAX_MS=60000,
        RATE_LIMIT_COOLDOWN_JITTER_MS=0,
        MAX_ERROR_COUNT=3,
    )
    async with running_gateway(settings) as gw:
        started = now_ms()
        response = await gw.chat("gpt-4o")
        finished = now_ms()
        assert response.status == 429  # both nodes cooled down; the last answer is returned
        a, b = await gw.node(A), await gw.node(B)
        for node, wait in ((a, 2000), (b, 60000)):  # Retry-After; capped at the maximum
            assert node.state.is_healthy is False
            assert node.state.error_count == 3
            assert node.state.last_error_message == "429 Too Many Requests - short cooldown"
            recovery = parse_time_ms(node.state.scheduled_recovery_time)
            assert recovery is not None
            assert started + wait <= recovery <= finished + wait
        response = await gw.chat("gpt-4o")
        assert response.status == 503


async def test_429_without_cooldown_counts_a_failure(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    upstream.responder = lambda received: error(429, "slow down", **{"Retry-After": "1"})
    settings = one_node(tmp_path, upstream, RATE_LIMIT_COOLDOWN_ENABLED=False)
    async with running_gateway(settings) as gw:
        assert (await gw.chat("gpt-4o")).status == 429
        node = await gw.node(A)
        assert node.state.error_count == 1
        assert node.state.is_healthy is True
        assert node.state.scheduled_recovery_time is None


class _SpentReply:
    """A reply that says the account's quota is spent until ``quota_reset_ms``."""

    def __init__(self, reply: UpstreamReply, reset_ms: int) -> None:
        self._reply = reply
        self.quota_reset_ms = reset_ms
        self.status, self.headers = reply.status, reply.headers
        self.read, self.chunks, self.close = reply.read, reply.chunks, reply.close


class QuotaSayingAdapter(OpenAICompatAdapter):
    """The OpenAI-compatible adapter, reading a 429's reset time as an account adapter does."""

    def __init__(self, reset_ms: int) -> None:
        super().__init__()
        self.reset_ms = reset_ms

    async def chat_completions(self, call: UpstreamCall) -> UpstreamReply:
        reply = await super().chat_completions(call)
        return _SpentReply(reply, self.reset_ms) if reply.status == 429 else reply


async def test_a_spent_quota_cools_the_node_down_until_the_upstreams_reset_time(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    upstream.responder = by_token({"key-a": error(429, "monthly quota used up")})
    pools = {
        TYPE: [api_node(A, upstream.base_url, "key-a"), api_node(B, upstream.base_url, "key-b")]
    }
    reset = now_ms() + 7 * 86_400_000  # far beyond RATE_LIMIT_COOLDOWN_MAX_MS
    settings = make_deployment(tmp_path, pools, RATE_LIMIT_COOLDOWN_ENABLED=False)
    async with running_gateway(settings, adapters=[QuotaSayingAdapter(reset)]) as gw:
        for _ in range(3):
            assert (await gw.chat("gpt-4o")).status == 200  # switched to key-b, then only b
        a = await gw.node(A)
        assert a.state.is_healthy is False
        assert parse_time_ms(a.state.scheduled_recovery_time) == reset
        assert a.state.last_error_message == f"Quota exhausted until {iso_ms(reset)}"
        assert upstream.tokens().count("key-a") == 1  # not retried on the same node


async def test_a_node_at_its_concurrency_limit_is_skipped_and_429_when_all_are(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    hold = asyncio.Event()
    upstream.responder = lambda received: Reply(chunks=sse_chunks("m", ["x", "y"]), hold=hold)
    node = api_node(A, upstream.base_url, "key-a", concurrencyLimit=1, queueLimit=0)
    async with running_gateway(make_deployment(tmp_path, {TYPE: [node]})) as gw:
        first = await gw.chat("gpt-4o", stream=True)
        await asyncio.wait_for(first.content.readuntil(b"\n\n"), WAIT_S)
        second = await gw.chat("gpt-4o")
        assert second.status == 429
        assert NO_HEALTHY_PROVIDER in (await second.json())["error"]["message"]
        hold.set()
        await asyncio.wait_for(first.read(), WAIT_S)
        third = await gw.chat("gpt-4o", stream=True)
        assert third.status == 200
        await third.read()
        state = (await gw.node(A)).state
        assert (state.usage_count, state.error_count) == (2, 0)


# ----------------------------------------------------------------------------- OAuth 401


class FakeRefresher:
    """Hands out credentials by node and counts forced refreshes."""

    def __init__(self, token: str, fresh_token: str) -> None:
        self.token = token
        self.fresh_token = fresh_token
        self.forced: list[str | None] = []

    def _credential(self, provider_type: str, node: ProviderNode, token: str) -> Credential:
        return Credential(provider_type, node.uuid, {"access_token": token}, version=token)

    async def credential_for(self, provider_type: str, node: ProviderNode) -> Credential | None:
        return self._credential(provider_type, node, self.token)

    async def refresh(
        self,
        provider_type: str,
        node: ProviderNode,
        *,
        force: bool = False,
        seen_version: str | None = None,
    ) -> Credential:
        assert force
        self.forced.append(seen_version)
        self.token = self.fresh_token
        return self._credential(provider_type, node, self.fresh_token)

    async def aclose(self) -> None:
        pass


async def test_401_on_an_oauth_type_refreshes_and_retries_on_the_same_node_once(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    upstream.responder = by_token({"stale": error(401, "token expired")})
    qwen = "openai-qwen-oauth"
    pools = {
        qwen: [
            {
                "uuid": A,
                "QWEN_OAUTH_CREDS_FILE_PATH": "./configs/qwen/a.json",
                "QWEN_BASE_URL": upstream.base_url,
            }
        ]
    }
    refresher = FakeRefresher("stale", "fresh")
    settings = make_deployment(tmp_path, pools, MODEL_PROVIDER=qwen)
    async with running_gateway(settings, refresher_factory=lambda s, h: refresher) as gw:
        response = await gw.chat("qwen3-coder-plus")
        assert response.status == 200
        assert upstream.tokens() == ["stale", "fresh"]
        assert refresher.forced == ["stale"]
        state = (await gw.node(A, qwen)).state
        assert (state.usage_count, state.error_count, state.needs_refresh) == (1, 0, False)


async def test_a_second_401_after_the_refresh_is_a_failure(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    upstream.responder = lambda received: error(401, "nope")
    qwen = "openai-qwen-oauth"
    pools = {
        qwen: [
            {
                "uuid": A,
                "QWEN_OAUTH_CREDS_FILE_PATH": "./configs/qwen/a.json",
                "QWEN_BASE_URL": upstream.base_url,
            }
        ]
    }
    refresher = FakeRefresher("stale", "fresh")
    settings = make_deployment(tmp_path, pools, MODEL_PROVIDER=qwen)
    async with running_gateway(settings, refresher_factory=lambda s, h: refresher) as gw:
        response = await gw.chat("m")
        assert response.status == 401
        assert upstream.tokens() == ["stale", "fresh"]
        assert (await gw.node(A, qwen)).state.error_count == 1


# ----------------------------------------------------------------------------- logs


async def test_no_secret_reaches_a_log_line(
    tmp_path: Path, upstream: UpstreamStub, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.responder = by_token({"sk-secret-node-a": error(500, "boom")})
    pools = {
        TYPE: [
            api_node(A, upstream.base_url, "sk-secret-node-a"),
            api_node(B, upstream.base_url, "sk-secret-node-b"),
        ]
    }
    caplog.set_level(logging.DEBUG)
    async with running_gateway(make_deployment(tmp_path, pools)) as gw:
        for _ in range(2):
            assert (await gw.chat("gpt-4o")).status == 200
        response = await gw.client.get("/v1/models", params={"key": CLIENT_KEY})
        assert response.status == 200
        assert (await gw.client.get("/v1/models", params={"key": "wrong-key"})).status == 401
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "req=" in text and A in text  # request ids and node uuids are logged
    for secret in (CLIENT_KEY, "sk-secret-node-a", "sk-secret-node-b", "wrong-key"):
        assert secret not in text


async def test_401_with_the_real_refresher_writes_the_new_token_and_retries(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    """End to end on the file backend: the token file is refreshed through a local token
    endpoint, and the retried call carries the new token."""
    upstream.responder = by_token({"stale-token": error(401, "invalid access token")})
    qwen = "openai-qwen-oauth"
    token_file = tmp_path / "configs" / "qwen" / "a.json"
    write_json(
        token_file,
        {
            "access_token": "stale-token",
            "token_type": "Bearer",
            "refresh_token": "rt-a",
            "resource_url": "portal.qwen.example.invalid",
            "expiry_date": now_ms() + 3_600_000,
        },
    )
    async with TokenEndpoint() as endpoint:
        pools = {
            qwen: [
                {
                    "uuid": A,
                    "QWEN_OAUTH_CREDS_FILE_PATH": "./configs/qwen/a.json",
                    "QWEN_BASE_URL": upstream.base_url,
                    "QWEN_OAUTH_TOKEN_URL": endpoint.url,
                }
            ]
        }
        settings = make_deployment(tmp_path, pools, MODEL_PROVIDER=qwen)
        async with running_gateway(settings) as gw:
            response = await gw.chat("qwen3-coder-plus")
            assert response.status == 200, await response.text()
            assert upstream.tokens() == ["stale-token", "new-1"]
            assert endpoint.total == 1
            credential = await gw.store.credentials.get(qwen, A)
            assert credential is not None
            assert credential.document["access_token"] == "new-1"
            state = (await gw.node(A, qwen)).state
            assert (state.usage_count, state.error_count, state.needs_refresh) == (1, 0, False)
        assert json.loads(token_file.read_bytes())["access_token"] == "new-1"


async def test_an_upstream_echoing_the_node_key_leaks_it_nowhere(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    secret = "sk-node-secret-echoed-0001"
    upstream.responder = lambda received: error(401, f"Incorrect API key provided: {secret}")
    pools = {TYPE: [api_node(A, upstream.base_url, secret)]}
    settings = make_deployment(tmp_path, pools, CREDENTIAL_SWITCH_MAX_RETRIES=0)
    async with running_gateway(settings) as gw:
        response = await gw.chat("gpt-4o")
        assert response.status == 401
        text = await response.text()
        assert secret not in text
        assert "Incorrect API key provided: ***" in text
        node = await gw.node(A)
        assert node.state.last_error_message == "HTTP 401: Incorrect API key provided: ***"


# ----------------------------------------------------------------------------- pass-through types

HOUR_MS = 3_600_000


def kiro_document(access_token: str) -> dict[str, Any]:
    return {
        "accessToken": access_token,
        "refreshToken": "kiro-refresh-0001",
        "profileArn": "arn:aws:codewhisperer:us-east-1:000000000000:profile/FAKE",
        "expiresAt": iso_ms(now_ms() + HOUR_MS),
        "authMethod": "social",
        "region": "us-east-1",
    }


RELAY = OpenAICompatAdapter(
    {**PROFILES, "claude-kiro-oauth": TypeProfile("KIRO_BASE_URL", None, pass_through=True)}
)
"""The generic adapter with Kiro as a pass-through relay type, as it was before Kiro had an
adapter of its own (:mod:`cfgstore_gateway.adapters.kiro`): these tests are about the
pass-through mechanics, Kiro the example type."""

PASS_THROUGH = [
    pytest.param(
        "claude-kiro-oauth",
        {"KIRO_OAUTH_CREDS_FILE_PATH": "./configs/kiro/a.json", "KIRO_BASE_URL": "{url}"},
        kiro_document,
        "kiro-access-0001",
        id="claude-kiro-oauth",
    ),
    pytest.param(
        "claude-kiro-oauth-eu",
        {"KIRO_OAUTH_CREDS_FILE_PATH": "./configs/kiro/eu.json", "KIRO_BASE_URL": "{url}"},
        kiro_document,
        "kiro-access-0001",
        id="claude-kiro-oauth-suffixed",
    ),
]


@pytest.mark.parametrize(("provider_type", "fields", "document", "token"), PASS_THROUGH)
async def test_a_pass_through_type_reaches_its_configured_upstream_with_its_key_or_token(
    tmp_path: Path,
    upstream: UpstreamStub,
    provider_type: str,
    fields: dict[str, str],
    document: Callable[[str], dict[str, Any]] | None,
    token: str,
) -> None:
    """Issue 6: the node's own ``*_BASE_URL`` for its type, its API key or its OAuth
    credential's access token (Kiro ``accessToken``, Google ``access_token``) as
    Bearer; bodies and streams pass through unchanged."""
    node = {
        "uuid": A,
        **{key: value.format(url=upstream.base_url) for key, value in fields.items()},
    }
    if document is not None:
        (path,) = [value for key, value in fields.items() if key.endswith("_FILE_PATH")]
        write_json(tmp_path / path, document(token))
    settings = make_deployment(tmp_path, {provider_type: [node]}, MODEL_PROVIDER=provider_type)
    async with running_gateway(settings, adapters=[RELAY]) as gw:
        plain = await gw.chat("some-model", temperature=0.2)
        assert plain.status == 200, await plain.text()
        assert await plain.json() == completion("some-model")
        streamed = await gw.chat("some-model", stream=True)
        assert streamed.status == 200
        assert await asyncio.wait_for(streamed.read(), WAIT_S) == b"".join(
            sse_chunks("some-model", ["hello", " ", "world"])
        )
        assert upstream.tokens() == [token, token]
        first = upstream.chat_requests()[0]
        assert first.path == "/v1/chat/completions"
        assert first.body == {
            "model": "some-model",
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.2,
        }
        state = (await gw.node(A, provider_type)).state
        assert (state.usage_count, state.error_count) == (2, 0)


async def test_upstream_base_urls_in_config_serve_nodes_without_their_own_key(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    """``UPSTREAM_BASE_URLS[type]`` is the fallback (a suffixed type uses its base type's
    entry); a node's own key wins over it."""
    write_json(tmp_path / "configs" / "kiro" / "a.json", kiro_document("kiro-access-a"))
    closed = f"http://127.0.0.1:{free_port()}/v1"
    pools = {
        "claude-kiro-oauth": [{"uuid": A, "KIRO_OAUTH_CREDS_FILE_PATH": "./configs/kiro/a.json"}],
        "atlascloud-spare": [{"uuid": B, "OPENAI_API_KEY": "sk-spare-0001"}],
        "atlascloud": [
            {"uuid": C, "OPENAI_API_KEY": "sk-own-0001", "OPENAI_BASE_URL": upstream.base_url}
        ],
    }
    table = {"claude-kiro-oauth": upstream.base_url + "/", "atlascloud": closed}
    settings = make_deployment(tmp_path, pools, UPSTREAM_BASE_URLS=table)
    async with running_gateway(settings, adapters=[RELAY]) as gw:
        kiro = await gw.chat("m", headers={"model-provider": "claude-kiro-oauth"})
        assert kiro.status == 200, await kiro.text()
        own = await gw.chat("m", headers={"model-provider": "atlascloud"})
        assert own.status == 200, await own.text()
        assert upstream.tokens() == ["kiro-access-a", "sk-own-0001"]
        # The suffixed type's base entry is the closed port: tried there, no answer.
        spare = await gw.chat("m", headers={"model-provider": "atlascloud-spare"})
        assert spare.status == 502
        assert len(upstream.chat_requests()) == 2
        assert (await gw.node(B, "atlascloud-spare")).state.error_count == 1


async def test_a_pass_through_node_without_a_base_url_is_left_alone_with_a_clear_error(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    """No adapter speaks Kiro's protocol and no relay is set for the node: the gateway
    cannot serve it, says so, and records nothing against the account (issue 15.5)."""
    kiro = "claude-kiro-oauth"
    write_json(tmp_path / "configs" / "kiro" / "a.json", kiro_document("kiro-access-a"))
    # "" is how the Node service's UI writes "not set": it wins over the root key.
    node = {"uuid": A, "KIRO_OAUTH_CREDS_FILE_PATH": "./configs/kiro/a.json", "KIRO_BASE_URL": ""}
    settings = make_deployment(
        tmp_path,
        {kiro: [node]},
        MODEL_PROVIDER=kiro,
        KIRO_BASE_URL=upstream.base_url,
        CREDENTIAL_SWITCH_MAX_RETRIES=0,
    )
    async with running_gateway(settings, adapters=[RELAY]) as gw:
        before = await gw.node(A, kiro)
        response = await gw.chat("claude-sonnet-4-5")
        assert response.status == 503
        error_document = (await response.json())["error"]
        assert error_document["code"] == "provider_unsupported"
        message = error_document["message"]
        assert "no adapter installed for claude-kiro-oauth's own protocol" in message
        assert "no upstream base URL for claude-kiro-oauth" in message
        assert "KIRO_BASE_URL" in message and "UPSTREAM_BASE_URLS['claude-kiro-oauth']" in message
        assert await gw.node(A, kiro) == before
        models = await gw.client.get("/v1/models", headers={**auth(), "model-provider": kiro})
        assert models.status == 200
        assert (await models.json())["data"] == []
        assert upstream.received == []


def test_base_url_precedence_for_pass_through_types() -> None:
    adapter = RELAY
    table = {
        "claude-kiro-oauth": "https://table.example/kiro/v1/",
        "atlascloud": "https://table.example/atlas/v1",
    }

    def url(provider_type: str, node_fields: dict[str, Any], **config: Any) -> str:
        node = node_from_json({"uuid": A, **node_fields}, "test")
        document = {UPSTREAM_BASE_URLS_KEY: table, **config}
        return adapter.base_url(provider_type, node, MainConfig(document), None)

    root = "https://root.example/v1"
    own = {"KIRO_BASE_URL": "https://node.example/v1"}
    assert url("claude-kiro-oauth", own, KIRO_BASE_URL=root) == "https://node.example/v1"
    assert url("claude-kiro-oauth", {}, KIRO_BASE_URL=root) == root
    assert url("claude-kiro-oauth", {"KIRO_BASE_URL": ""}, KIRO_BASE_URL=root) == (
        "https://table.example/kiro/v1"
    )
    assert url("claude-kiro-oauth-eu", {}) == "https://table.example/kiro/v1"
    assert url("atlascloud-spare", {}) == "https://table.example/atlas/v1"
    unset = node_from_json({"uuid": A}, "test")
    with pytest.raises(UpstreamUnavailable, match=r"KIRO_BASE_URL or UPSTREAM_BASE_URLS"):
        adapter.base_url("claude-kiro-oauth", unset, MainConfig({}), None)
    with pytest.raises(UpstreamUnavailable, match="does not serve grok-web"):
        url("grok-web", {"GROK_BASE_URL": "https://grok.example"})
    assert not adapter.serves("grok-web")
    assert not adapter.serves("claude-kiro-oauth-eu")  # suffixes go through the registry
    assert adapter.needs_credential("claude-kiro-oauth")
    assert not adapter.needs_credential("atlascloud")


class DedicatedAdapter:
    """A protocol adapter some plugin ships (never called here)."""

    def __init__(self, name: str, types: set[str]) -> None:
        self.name = name
        self.types = types

    def serves(self, provider_type: str) -> bool:
        return provider_type in self.types

    def needs_credential(self, provider_type: str) -> bool:
        return True

    def check_node(self, provider_type: str, node: ProviderNode, config: MainConfig) -> None:
        pass

    def static_models(self, provider_type: str) -> Sequence[str]:
        return ()

    async def chat_completions(self, call: UpstreamCall) -> UpstreamReply:
        raise UpstreamUnavailable("not called in these tests")

    async def list_models(self, call: ModelsCall) -> list[str]:
        return []


def test_a_dedicated_adapter_wins_over_the_generic_one_whatever_the_order() -> None:
    generic = OpenAICompatAdapter()
    kiro = DedicatedAdapter("kiro-native", {"claude-kiro-oauth"})
    for order in ((generic, kiro), (kiro, generic)):
        registry = AdapterRegistry()
        for adapter in order:
            registry.register(adapter)
        assert registry.for_type("claude-kiro-oauth") is kiro
        assert registry.for_type("claude-kiro-oauth-eu") is kiro
        assert registry.for_type("openai-qwen-oauth") is generic
        assert registry.for_type("openai-custom-deepseek") is generic
        assert registry.for_type("grok-web") is None
    # A dedicated adapter for a base type wins for the types under it, even one the
    # generic adapter claims by name.
    family = DedicatedAdapter("claude-native", {"claude"})
    registry = AdapterRegistry()
    registry.register(family)
    registry.register(generic)
    assert registry.for_type("claude-custom") is family
    assert registry.for_type("claude-kiro-oauth") is family
    assert registry.for_type("openai-custom") is generic


def test_plugin_adapters_win_over_the_builtin_one_whatever_the_load_order() -> None:
    """Through the hook: plugins registered before the built-in module still win (it is
    ``trylast`` and generic)."""
    kiro = DedicatedAdapter("kiro-native", {"claude-kiro-oauth"})
    relay = OpenAICompatAdapter(
        {"claude-custom": TypeProfile("CLAUDE_RELAY_URL", "CLAUDE_API_KEY")}
    )

    class KiroPlugin:
        @adapters_hookimpl
        def cfgstore_gateway_adapters(self, register: Callable[[Adapter], None]) -> None:
            register(kiro)

    class RelayPlugin:
        @adapters_hookimpl
        def cfgstore_gateway_adapters(self, register: Callable[[Adapter], None]) -> None:
            register(relay)

    manager = pluggy.PluginManager("cfgstore")
    manager.register(KiroPlugin(), name="kiro-native")
    manager.register(RelayPlugin(), name="claude-relay")
    manager.register(openai_compat, name="gateway-openai")
    registry = load_adapters(PluginSet(manager))
    assert registry.for_type("claude-kiro-oauth") is kiro
    assert registry.for_type("claude-custom") is relay
    builtin = registry.for_type("openai-qwen-oauth")
    assert isinstance(builtin, OpenAICompatAdapter) and builtin is not relay
