"""A local OpenAI-compatible upstream for the gateway tests (aiohttp, loopback, free port).

``async with UpstreamStub() as upstream:`` serves ``POST /v1/chat/completions`` and
``GET /v1/models`` under :attr:`UpstreamStub.base_url` (``http://127.0.0.1:<port>/v1``).
Every request is kept (:class:`Received`: path, ``Authorization`` header, JSON body). What
a chat request gets is decided by :attr:`UpstreamStub.responder` (``Received`` →
:class:`Reply`); the default answers like OpenAI, streaming (SSE) when asked. A reply can
be a JSON answer with any status and headers, or a stream of chunks that can pause after
its first chunk until the test releases it (``hold``: proves pass-through) or break after
it (``break_after_first``). Waits are bounded (``max_hold_s``).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any

import attrs
from aiohttp import web

LOOPBACK = "127.0.0.1"


@attrs.frozen
class Received:
    method: str
    path: str
    authorization: str | None
    body: Any
    headers: dict[str, str]

    @property
    def token(self) -> str | None:
        """The bearer token (``None`` without one)."""
        if self.authorization and self.authorization.startswith("Bearer "):
            return self.authorization.removeprefix("Bearer ")
        return None


@attrs.frozen
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = attrs.Factory(dict)
    chunks: tuple[bytes, ...] | None = None
    """Send these as a ``text/event-stream`` body, one write each."""
    hold: asyncio.Event | None = None
    """Pause after the first chunk until this is set."""
    break_after_first: bool = False
    """Drop the connection after the first chunk."""


Responder = Callable[[Received], Reply]


def completion(model: str, content: str = "ok") -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def sse_chunks(model: str, words: list[str]) -> tuple[bytes, ...]:
    """An OpenAI chat stream: one delta event per word, then ``[DONE]``."""
    events = []
    for index, word in enumerate(words):
        payload = {
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
            "n": index,
        }
        events.append(b"data: " + json.dumps(payload).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return tuple(events)


def default_responder(received: Received) -> Reply:
    body = received.body if isinstance(received.body, dict) else {}
    model = str(body.get("model", "unknown"))
    if body.get("stream") is True:
        return Reply(chunks=sse_chunks(model, ["hello", " ", "world"]))
    return Reply(body=completion(model))


def error(status: int, message: str = "stub error", **headers: str) -> Reply:
    return Reply(
        status=status,
        body={"error": {"message": message, "type": "stub", "code": None}},
        headers=dict(headers),
    )


class UpstreamStub:
    def __init__(
        self,
        responder: Responder = default_responder,
        *,
        models: list[str] | None = None,
        max_hold_s: float = 30.0,
    ) -> None:
        self.responder = responder
        self.models = models if models is not None else ["stub-model-a", "stub-model-b"]
        self.max_hold_s = max_hold_s
        self.received: list[Received] = []
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self._port}/v1"

    def chat_requests(self) -> list[Received]:
        return [r for r in self.received if r.path.endswith("/chat/completions")]

    def tokens(self) -> list[str | None]:
        """The bearer token of every chat request, in arrival order."""
        return [r.token for r in self.chat_requests()]

    async def __aenter__(self) -> UpstreamStub:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await asyncio.wait_for(self._runner.cleanup(), 10)
            self._runner = None

    async def _record(self, request: web.Request) -> Received:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        received = Received(
            request.method,
            request.path,
            request.headers.get("Authorization"),
            body,
            dict(request.headers),
        )
        self.received.append(received)
        return received

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        reply = self.responder(await self._record(request))
        if reply.chunks is None:
            return web.json_response(reply.body, status=reply.status, headers=reply.headers)
        response = web.StreamResponse(
            status=reply.status, headers={"Content-Type": "text/event-stream", **reply.headers}
        )
        await response.prepare(request)
        for index, chunk in enumerate(reply.chunks):
            await response.write(chunk)
            if index == 0 and reply.break_after_first:
                assert request.transport is not None
                request.transport.abort()
                return response
            if index == 0 and reply.hold is not None:
                await asyncio.wait_for(reply.hold.wait(), self.max_hold_s)
        await response.write_eof()
        return response

    async def _models(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
        )
