"""A local OAuth token endpoint that records what it receives and answers what a test says.

Richer than :mod:`tests.support.token_endpoint` (which answers one path with fixed
shapes): any ``POST`` path is accepted, every request is kept (:class:`Received`: path,
content type, JSON or form fields, ``Authorization`` header), and the answer comes from the
test's ``responder(received, n)`` → ``(status, body)`` where ``body`` is a JSON value, or
``bytes`` sent as ``text/plain`` (for "garbage" answers). ``n`` counts requests from 1.

Answers can be held (:meth:`TokenStub.hold` / :meth:`TokenStub.release`) to keep a refresh
in flight while a test lines up its other callers; a held answer is bounded by
``max_hold_s`` (then ``503``). Leaving ``async with`` releases held answers and closes the
server. Loopback only, a free port; aiohttp's server (the gateway's HTTP library).
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
from collections.abc import Callable
from types import TracebackType
from typing import Any

import attrs
from aiohttp import web

__all__ = ["Received", "Responder", "TokenStub"]

LOOPBACK = "127.0.0.1"


@attrs.frozen
class Received:
    method: str
    path: str
    content_type: str
    fields: dict[str, Any] | None
    """The JSON object or the form fields; ``None`` for any other body."""
    authorization: str | None


Responder = Callable[[Received, int], tuple[int, Any]]


def _not_configured(received: Received, number: int) -> tuple[int, Any]:
    return 500, {"error": "no_responder"}


class TokenStub:
    """``async with TokenStub(responder) as stub:`` → POST to ``stub.url("/token")``."""

    def __init__(self, responder: Responder = _not_configured, *, max_hold_s: float = 30.0):
        self.responder = responder
        self.max_hold_s = max_hold_s
        self.received: list[Received] = []
        self._gate = asyncio.Event()
        self._gate.set()
        self._arrivals = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port = 0

    def url(self, path: str) -> str:
        if self._runner is None:
            raise RuntimeError("the stub is not running (use `async with`)")
        return f"http://{LOOPBACK}:{self._port}{path}"

    @property
    def count(self) -> int:
        return len(self.received)

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    async def wait_for_requests(self, count: int, within_s: float = 10.0) -> None:
        """Return once ``count`` requests arrived; ``TimeoutError`` after ``within_s``."""

        async def arrived() -> None:
            async with self._arrivals:
                await self._arrivals.wait_for(lambda: self.count >= count)

        await asyncio.wait_for(arrived(), within_s)

    async def __aenter__(self) -> TokenStub:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((LOOPBACK, 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        self._runner = runner
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner, self._runner = self._runner, None
        self.release()
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        received = Received(
            request.method,
            request.path,
            request.content_type,
            _fields(raw, request.content_type),
            request.headers.get("Authorization"),
        )
        self.received.append(received)
        number = len(self.received)
        async with self._arrivals:
            self._arrivals.notify_all()
        try:
            await asyncio.wait_for(self._gate.wait(), self.max_hold_s)
        except TimeoutError:
            return web.json_response({"error": "held_too_long"}, status=503)
        status, body = self.responder(received, number)
        if isinstance(body, bytes):
            return web.Response(status=status, body=body, content_type="text/plain")
        return web.json_response(body, status=status)


def _fields(raw: bytes, content_type: str) -> dict[str, Any] | None:
    try:
        text = raw.decode("utf-8")
        if content_type == "application/x-www-form-urlencoded":
            return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
        if content_type == "application/json":
            value = json.loads(text)
            return value if isinstance(value, dict) else None
    except (UnicodeDecodeError, ValueError):
        return None
    return None
