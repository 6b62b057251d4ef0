"""Client protocols through the gateway: what a conversion costs, and what a pass-through
of another protocol costs next to today's chat path (issue 17 point 4).

One process holds a gateway (default file chain in a temporary folder, one
``openai-custom`` and one ``claude-custom`` node), a stub upstream answering both
protocols with fixed bytes (a short answer, or a 12-event stream), and the client: 8
concurrent aiohttp requests at a time. Every variant runs in each of 3 interleaved rounds,
so drift of the shared machine falls on all of them alike; a variant's rate is its
requests over its summed time. Ratios: whole answers against ``chat→openai`` (today's
path), streams against ``chat→openai stream``. Target: a pass-through of another protocol
(``messages→claude``) within 1.1× of today's path.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.harness import BenchFailure, Row, fresh_configs_dir, quiet_logs, scaled
from cfgstore.adapters import Settings, Store
from cfgstore.model import jsjson
from cfgstore_gateway.app import create_app

NAME = "protocols"
KEY = "bench-client-key"
CONCURRENCY = 8
ROUNDS = 3
MODEL = "bench-model"

OPENAI_WHOLE = json.dumps(
    {
        "id": "chatcmpl-b",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the stub."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
    }
).encode()
CLAUDE_WHOLE = json.dumps(
    {
        "id": "msg_b",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Hello from the stub."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 5},
    }
).encode()
WORDS = ["Hello", " from", " the", " stub", ",", " one", " word", " at", " a", " time", "."]


def _sse(data: Any, event: str | None = None) -> bytes:
    return (
        (f"event: {event}\n" if event else "").encode()
        + b"data: "
        + json.dumps(data).encode()
        + b"\n\n"
    )


def _openai_stream() -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "model": MODEL,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    body = chunk({"role": "assistant", "content": ""}) + b"".join(
        chunk({"content": w}) for w in WORDS
    )
    return body + chunk({}, "stop") + b"data: [DONE]\n\n"


def _claude_stream() -> bytes:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_b",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 9, "output_tokens": 1},
        },
    }
    out = _sse(start, "message_start") + _sse(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        "content_block_start",
    )
    out += b"".join(
        _sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}},
            "content_block_delta",
        )
        for w in WORDS
    )
    out += _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    out += _sse(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 11},
        },
        "message_delta",
    )
    return out + _sse({"type": "message_stop"}, "message_stop")


ANSWERS = {
    "/v1/chat/completions": (OPENAI_WHOLE, _openai_stream()),
    "/v1/messages": (CLAUDE_WHOLE, _claude_stream()),
}

#: variant → (client path, body, provider type, baseline variant)
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}]}
MESSAGES = {
    "model": MODEL,
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello."}],
}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "Say hello."}]}]}
RESPONSES = {"model": MODEL, "input": "Say hello."}
VARIANTS: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "chat→openai": ("/v1/chat/completions", CHAT, "openai-custom", "chat→openai"),
    "messages→claude (pass-through)": ("/v1/messages", MESSAGES, "claude-custom", "chat→openai"),
    "messages→openai (converted)": ("/v1/messages", MESSAGES, "openai-custom", "chat→openai"),
    "chat→claude (converted)": ("/v1/chat/completions", CHAT, "claude-custom", "chat→openai"),
    "gemini→openai (converted)": (
        f"/v1beta/models/{MODEL}:generateContent",
        GEMINI,
        "openai-custom",
        "chat→openai",
    ),
    "responses→openai (converted)": ("/v1/responses", RESPONSES, "openai-custom", "chat→openai"),
    "chat→openai stream": (
        "/v1/chat/completions",
        {**CHAT, "stream": True},
        "openai-custom",
        "chat→openai stream",
    ),
    "messages→claude stream (pass-through)": (
        "/v1/messages",
        {**MESSAGES, "stream": True},
        "claude-custom",
        "chat→openai stream",
    ),
    "messages→openai stream (converted)": (
        "/v1/messages",
        {**MESSAGES, "stream": True},
        "openai-custom",
        "chat→openai stream",
    ),
}


def run(scale: float) -> list[Row]:
    per_round = scaled(200, scale, minimum=16)
    with quiet_logs(), fresh_configs_dir() as configs:
        seconds = asyncio.run(_measure(configs, per_round))
    total = per_round * ROUNDS
    return [
        Row(
            NAME,
            variant,
            total,
            seconds[variant],
            baseline,
            f"{CONCURRENCY} concurrent, {ROUNDS} rounds",
        )
        for variant, (_, _, _, baseline) in VARIANTS.items()
    ]


async def _stub(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    whole, stream = ANSWERS[request.path]
    if body.get("stream") is not True:
        return web.Response(body=whole, content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(stream)
    await response.write_eof()
    return response


@asynccontextmanager
async def _served(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


async def _measure(configs: Path, per_round: int) -> dict[str, float]:
    stub = web.Application()
    for path in ANSWERS:
        stub.router.add_post(path, _stub)
    async with _served(stub) as upstream:
        pools = {
            "openai-custom": [
                {
                    "uuid": "b0000000-0000-4000-8000-000000000001",
                    "OPENAI_API_KEY": "k",
                    "OPENAI_BASE_URL": f"{upstream}/v1",
                }
            ],
            "claude-custom": [
                {
                    "uuid": "b0000000-0000-4000-8000-000000000002",
                    "CLAUDE_API_KEY": "k",
                    "CLAUDE_BASE_URL": f"{upstream}/v1",
                }
            ],
        }
        (configs / "config.json").write_bytes(
            jsjson.dump_bytes(
                {
                    "REQUIRED_API_KEY": KEY,
                    "MODEL_PROVIDER": "openai-custom",
                    "REQUEST_MAX_RETRIES": 0,
                }
            )
        )
        (configs / "provider_pools.json").write_bytes(jsjson.dump_bytes(pools))
        settings = Settings(
            configs_dir=configs, state_dir=configs.parent / "state", watch_interval_ms=0
        )
        async with Store.open(settings) as store, _served(create_app(store)) as gateway:
            connector = aiohttp.TCPConnector(limit=CONCURRENCY)
            async with aiohttp.ClientSession(gateway, connector=connector) as client:
                for variant in VARIANTS:  # warm up every path
                    await _batch(client, variant, CONCURRENCY)
                seconds = dict.fromkeys(VARIANTS, 0.0)
                for _ in range(ROUNDS):
                    for variant in VARIANTS:
                        started = time.perf_counter()
                        await _batch(client, variant, per_round)
                        seconds[variant] += time.perf_counter() - started
            await store.flush()
    return seconds


async def _batch(client: aiohttp.ClientSession, variant: str, count: int) -> None:
    path, body, provider_type, _ = VARIANTS[variant]
    headers = {"Authorization": f"Bearer {KEY}", "Model-Provider": provider_type}
    data = json.dumps(body).encode()
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            async with client.post(path, data=data, headers=headers) as response:
                payload = await response.read()
                if response.status != 200 or not payload:
                    raise BenchFailure(f"{variant}: HTTP {response.status}: {payload[:200]!r}")

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
