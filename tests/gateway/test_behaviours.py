"""Gateway behaviours driven by config keys (issue 7 point 1), over HTTP against the stub:
same-node retries (``REQUEST_MAX_RETRIES`` / ``REQUEST_BASE_DELAY``), the system prompt
(``SYSTEM_PROMPT_MODE`` / ``SYSTEM_PROMPT_REPLACEMENTS``), custom model aliases
(``custom_models.json``) and the outbound proxy (``PROXY_URL`` /
``PROXY_ENABLED_PROVIDERS``, per-node overrides)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from cfgstore.model.config import MainConfig
from cfgstore.model.custom_models import CustomModel
from cfgstore_gateway.prompting import apply_system_prompt
from tests.gateway.conftest import TYPE, api_node, make_deployment, running_gateway
from tests.gateway.upstream_stub import Received, Reply, UpstreamStub, completion, error

A, B = "node-a", "node-b"


def one_node(tmp_path: Path, upstream: UpstreamStub, **config: Any) -> Any:
    """A deployment with node A only (key ``sk-node-a-0000``)."""
    return make_deployment(
        tmp_path, {TYPE: [api_node(A, upstream.base_url, "sk-node-a-0000")]}, **config
    )


def two_nodes(tmp_path: Path, upstream: UpstreamStub, **config: Any) -> Any:
    return make_deployment(
        tmp_path,
        {
            TYPE: [
                api_node(A, upstream.base_url, "sk-node-a-0000"),
                api_node(B, upstream.base_url, "sk-node-b-0000"),
            ]
        },
        **config,
    )


def failing_for(token: str, status: int, times: int) -> Any:
    """A responder answering ``status`` to the first ``times`` calls bearing ``token``."""
    seen = {"n": 0}

    def respond(received: Received) -> Reply:
        if received.token == token and seen["n"] < times:
            seen["n"] += 1
            return error(status)
        return Reply(body=completion(str(received.body.get("model"))))

    return respond


# -- same-node retries ------------------------------------------------------------------


async def test_5xx_is_retried_on_the_same_node_before_anything_is_recorded(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    upstream.responder = failing_for("sk-node-a-0000", 503, 2)
    settings = one_node(tmp_path, upstream, REQUEST_MAX_RETRIES=2, REQUEST_BASE_DELAY=1)
    async with running_gateway(settings) as gw:
        response = await gw.chat()
        assert response.status == 200
        assert upstream.tokens() == ["sk-node-a-0000"] * 3
        node = await gw.node(A)
        assert node.state.error_count == 0
        assert node.state.usage_count == 1


async def test_exhausted_retries_record_one_failure_then_switch_node(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    upstream.responder = failing_for("sk-node-a-0000", 429, 100)
    settings = two_nodes(tmp_path, upstream, REQUEST_MAX_RETRIES=3, REQUEST_BASE_DELAY=1)
    async with running_gateway(settings) as gw:
        response = await gw.chat()
        assert response.status == 200
        # Equal scores: the smaller uuid (node A) is picked first.
        assert upstream.tokens() == ["sk-node-a-0000"] * 4 + ["sk-node-b-0000"]
        node_a = await gw.node(A)
        assert node_a.state.error_count == 1
        assert node_a.state.usage_count == 0
        node_b = await gw.node(B)
        assert node_b.state.usage_count == 1
        assert node_b.state.error_count == 0


async def test_retries_on_a_single_node_end_in_one_failure(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    upstream.responder = failing_for("sk-node-a-0000", 500, 100)
    settings = one_node(tmp_path, upstream, REQUEST_MAX_RETRIES=2, REQUEST_BASE_DELAY=1)
    async with running_gateway(settings) as gw:
        response = await gw.chat()
        assert response.status == 500
        assert upstream.tokens() == ["sk-node-a-0000"] * 3
        node = await gw.node(A)
        assert node.state.error_count == 1
        assert node.state.usage_count == 0


async def test_400_is_not_retried_and_absent_key_means_no_retries(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    upstream.responder = failing_for("sk-node-a-0000", 400, 100)
    settings = one_node(tmp_path, upstream, REQUEST_MAX_RETRIES=3, REQUEST_BASE_DELAY=1)
    async with running_gateway(settings) as gw:
        assert (await gw.chat()).status == 400
        assert len(upstream.chat_requests()) == 1
    upstream.received.clear()
    upstream.responder = failing_for("sk-node-a-0000", 502, 100)
    async with running_gateway(one_node(tmp_path / "plain", upstream)) as gw:
        assert (await gw.chat()).status == 502
        assert len(upstream.chat_requests()) == 1


# -- system prompt ----------------------------------------------------------------------


async def test_system_prompt_append_inserts_or_extends_the_system_message(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    settings = one_node(tmp_path, upstream, SYSTEM_PROMPT_MODE="append")
    async with running_gateway(settings) as gw:
        await gw.store.system_prompt.put("Be brief.")
        assert (await gw.chat()).status == 200
        messages = [{"role": "system", "content": "You help."}, {"role": "user", "content": "x"}]
        assert (await gw.chat(messages=messages)).status == 200
    bodies = [r.body for r in upstream.chat_requests()]
    assert bodies[0] == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ],
    }
    assert bodies[1] == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You help.\nBe brief."},
            {"role": "user", "content": "x"},
        ],
    }


async def test_system_prompt_overwrite_and_replacements(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    settings = one_node(
        tmp_path,
        upstream,
        SYSTEM_PROMPT_MODE="overwrite",
        SYSTEM_PROMPT_REPLACEMENTS=[{"old": "Claude", "new": "Assistant"}, {"bad": 1}],
    )
    messages = [
        {"role": "system", "content": "You are Claude."},
        {"role": "user", "content": "Claude?"},
    ]
    async with running_gateway(settings) as gw:
        assert (await gw.chat(messages=messages)).status == 200
        await gw.store.system_prompt.put("Operator prompt.")
        assert (await gw.chat(messages=messages)).status == 200
    bodies = [r.body for r in upstream.chat_requests()]
    # No prompt yet: only the replacements, in system messages only.
    assert bodies[0]["messages"] == [
        {"role": "system", "content": "You are Assistant."},
        {"role": "user", "content": "Claude?"},
    ]
    assert bodies[1]["messages"] == [
        {"role": "system", "content": "Operator prompt."},
        {"role": "user", "content": "Claude?"},
    ]


async def test_without_prompt_or_replacements_the_client_bytes_pass_unchanged(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    settings = one_node(tmp_path, upstream)
    raw = b'{"model":"gpt-4o",  "messages":[{"role":"user","content":"hi"}]}'
    async with running_gateway(settings) as gw:
        response = await gw.client.post(
            "/v1/chat/completions",
            data=raw,
            headers={"Authorization": "Bearer test-client-key-0123456789"},
        )
        assert response.status == 200
    assert upstream.chat_requests()[0].body == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_append_to_list_content_adds_a_text_part_and_leaves_input_alone() -> None:
    config = MainConfig({"SYSTEM_PROMPT_REPLACEMENTS": [{"old": "a", "new": "b"}]})
    body = {"messages": [{"role": "system", "content": [{"type": "text", "text": "aa"}]}]}
    out = apply_system_prompt(body, "P", config)
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "bb"},
        {"type": "text", "text": "P"},
    ]
    assert body["messages"][0]["content"] == [{"type": "text", "text": "aa"}]
    assert apply_system_prompt(body, "  ", MainConfig({})) is body


# -- custom models ----------------------------------------------------------------------


async def test_custom_model_alias_routes_to_its_provider_and_real_model(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    other = "openai-custom-other"
    settings = make_deployment(
        tmp_path,
        {
            TYPE: [api_node(A, upstream.base_url, "sk-node-a-0000")],
            other: [api_node(B, upstream.base_url, "sk-node-b-0000")],
        },
    )
    async with running_gateway(settings) as gw:
        await gw.store.custom_models.add(
            CustomModel(
                "my-fast",
                {
                    "id": "my-fast",
                    "alias": "fast",
                    "actualProvider": other,
                    "actualModel": "real-model-1",
                },
            )
        )
        await gw.store.custom_models.add(CustomModel("plain", {"id": "plain"}))
        assert (await gw.chat("fast")).status == 200
        assert (await gw.chat("my-fast")).status == 200
        assert (await gw.chat("plain")).status == 200
        assert (await gw.chat("gpt-4o")).status == 200
    got = [(r.token, r.body["model"]) for r in upstream.chat_requests()]
    assert got == [
        ("sk-node-b-0000", "real-model-1"),
        ("sk-node-b-0000", "real-model-1"),
        ("sk-node-a-0000", "plain"),
        ("sk-node-a-0000", "gpt-4o"),
    ]


# -- outbound proxy ---------------------------------------------------------------------


@asynccontextmanager
async def forward_proxy() -> AsyncIterator[tuple[str, list[str]]]:
    """A tiny HTTP forward proxy (absolute-form requests); yields its URL and the target
    URLs it forwarded."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        target = str(request.url)
        seen.append(target)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "proxy-connection", "content-length")
        }
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, target, data=await request.read(), headers=headers
            ) as upstream_response,
        ):
            body = await upstream_response.read()
            return web.Response(
                body=body,
                status=upstream_response.status,
                content_type=upstream_response.content_type,
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", seen
    finally:
        await runner.cleanup()


async def test_proxy_used_for_enabled_types_and_per_node_overrides(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    async with forward_proxy() as (proxy_url, seen):
        settings = make_deployment(
            tmp_path,
            {
                TYPE: [
                    api_node(A, upstream.base_url, "sk-node-a-0000"),
                    api_node(B, upstream.base_url, "sk-node-b-0000", PROXY_URL=""),
                ],
                "openai-custom-direct": [
                    api_node("node-c", upstream.base_url, "sk-node-c-0000"),
                ],
                "openai-custom-own": [
                    api_node(
                        "node-d",
                        upstream.base_url,
                        "sk-node-d-0000",
                        PROXY_ENABLED_PROVIDERS=["openai-custom-own"],
                    ),
                ],
            },
            PROXY_URL=proxy_url,
            PROXY_ENABLED_PROVIDERS=[TYPE],
            MAX_ERROR_COUNT=0,
        )
        async with running_gateway(settings) as gw:
            for _ in range(2):  # A and B, one each (least recently used)
                assert (await gw.chat()).status == 200
            headers = {"model-provider": "openai-custom-direct"}
            assert (await gw.chat(headers=headers)).status == 200
            headers = {"model-provider": "openai-custom-own"}
            assert (await gw.chat(headers=headers)).status == 200
    tokens = upstream.tokens()
    assert sorted(tokens[:2]) == ["sk-node-a-0000", "sk-node-b-0000"]
    assert tokens[2:] == ["sk-node-c-0000", "sk-node-d-0000"]
    # "openai-custom" in the list covers its suffixed type "openai-custom-direct"; only
    # node B (PROXY_URL "") goes direct.
    assert len(seen) == 3
    assert all(url == upstream.base_url + "/chat/completions" for url in seen)


async def test_unsupported_proxy_scheme_is_a_node_failure(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    settings = one_node(
        tmp_path,
        upstream,
        PROXY_URL="socks5://127.0.0.1:1",
        PROXY_ENABLED_PROVIDERS=[TYPE],
    )
    async with running_gateway(settings) as gw:
        response = await gw.chat()
        assert response.status == 502
        node = await gw.node(A)
        assert "PROXY_URL" in (node.state.last_error_message or "")
    assert upstream.chat_requests() == []
