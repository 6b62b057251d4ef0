"""A local ChatGPT Codex backend, written from its documented formats (aiclient-protocols
§3.7, §4.2): ``POST /backend-api/codex/responses`` and ``GET /backend-api/wham/usage``.

The responses endpoint insists on what the real backend insists on, answering 400 naming
the first rule broken: a bearer token it knows (an unknown one is 401), the
``chatgpt-account-id`` of that token's account, ``originator: codex-tui``, non-empty
``instructions``, ``stream: true`` and ``store: false``. It always streams, like the
backend: the scene of :mod:`tests.gateway.protocol_stubs` (offered tools and no tool
result → a ``get_weather`` call; given the result → "It is <result> in Paris ☀."), as
Responses events whose ``response.completed`` carries an empty ``output`` (the backend's
habit the adapter repairs from the ``output_item.done`` items), cut at random byte
boundaries (seeded: the seed is in the stub's repr).

Per account (:attr:`CodexStub.spent`): ``("429", reset_s)`` answers HTTP 429
``usage_limit_reached`` with ``resets_at``; ``("event", reset_s)`` answers 200 with
``response.created``/``in_progress``, a rate-limit notice, then an ``error`` event
``insufficient_quota`` (``resets_at`` when
``reset_s`` is set); ``("failed", None)`` the same with a ``server_error``. The usage
endpoint answers :data:`USAGE` for a known token.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from types import TracebackType
from typing import Any

import attrs
from aiohttp import web

from tests.gateway.protocol_stubs import ARGUMENTS, answer_text, pieces, sse

RESPONSES_PATH = "/backend-api/codex/responses"
USAGE_PATH = "/backend-api/wham/usage"

USAGE: dict[str, Any] = {
    "plan_type": "plus",
    "rate_limit": {
        "allowed": True,
        "limit_reached": False,
        "primary_window": {
            "used_percent": 76,
            "limit_window_seconds": 18000,
            "reset_after_seconds": 3600,
            "reset_at": 1_900_000_000,
        },
        "secondary_window": {
            "used_percent": 93,
            "limit_window_seconds": 604800,
            "reset_after_seconds": 86400,
            "reset_at": 1_900_500_000,
        },
    },
    "credits": None,
}


@attrs.frozen
class Received:
    path: str
    headers: dict[str, str]
    body: Any


def tool_result(body: dict[str, Any]) -> str | None:
    outputs = [i["output"] for i in body["input"] if i.get("type") == "function_call_output"]
    return outputs[-1] if outputs else None


def answer_events(result: str | None, model: str) -> list[bytes]:
    sequence = iter(range(10_000))

    def event(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, "sequence_number": next(sequence), **fields}, kind)

    def response(status: str) -> dict[str, Any]:
        usage = {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}
        return {
            "id": "resp_codex1",
            "object": "response",
            "created_at": 1,
            "status": status,
            "model": model,
            "output": [],
            "usage": usage if status == "completed" else None,
        }

    out = [
        event("response.created", response=response("in_progress")),
        event("response.in_progress", response=response("in_progress")),
    ]
    if result is not None:
        text = answer_text(result)
        done = {
            "id": "msg_c1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        opened = {**done, "status": "in_progress", "content": []}
        out.append(event("response.output_item.added", output_index=0, item=opened))
        part = {"type": "output_text", "text": "", "annotations": []}
        out.append(
            event(
                "response.content_part.added",
                item_id="msg_c1",
                output_index=0,
                content_index=0,
                part=part,
            )
        )
        out += [
            event(
                "response.output_text.delta",
                item_id="msg_c1",
                output_index=0,
                content_index=0,
                delta=p,
            )
            for p in pieces(text, 3)
        ]
        out.append(
            event(
                "response.output_text.done",
                item_id="msg_c1",
                output_index=0,
                content_index=0,
                text=text,
            )
        )
    else:
        done = {
            "id": "fc_c1",
            "type": "function_call",
            "call_id": "call_c1",
            "name": "get_weather",
            "arguments": ARGUMENTS,
            "status": "completed",
        }
        opened = {**done, "arguments": "", "status": "in_progress"}
        out.append(event("response.output_item.added", output_index=0, item=opened))
        out += [
            event(
                "response.function_call_arguments.delta", item_id="fc_c1", output_index=0, delta=p
            )
            for p in pieces(ARGUMENTS, 3)
        ]
        out.append(
            event(
                "response.function_call_arguments.done",
                item_id="fc_c1",
                output_index=0,
                arguments=ARGUMENTS,
            )
        )
    out.append(event("response.output_item.done", output_index=0, item=done))
    return [*out, event("response.completed", response=response("completed"))]


class CodexStub:
    """``async with CodexStub({token: account}) as stub``; the backend base is
    :attr:`base_url` (``…/backend-api/codex``)."""

    def __init__(self, accounts: dict[str, str], seed: int | None = None) -> None:
        self.accounts = accounts
        """Known access tokens → their ChatGPT account id."""
        self.spent: dict[str, tuple[str, int | None]] = {}
        self.received: list[Received] = []
        self.seed = seed if seed is not None else random.randrange(2**32)
        self._random = random.Random(self.seed)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def __repr__(self) -> str:
        return f"CodexStub(seed={self.seed})"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/backend-api/codex"

    def responses(self) -> list[Received]:
        return [r for r in self.received if r.path == RESPONSES_PATH]

    async def __aenter__(self) -> CodexStub:
        app = web.Application()
        app.router.add_post(RESPONSES_PATH, self._responses)
        app.router.add_get(USAGE_PATH, self._usage)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await asyncio.wait_for(self._runner.cleanup(), 10)

    def _account(self, request: web.Request) -> str | web.Response:
        """The account of a request's token, or the answer refusing it."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        account = self.accounts.get(token)
        if account is None:
            return refuse(401, "invalid_token", "Provided authentication token is expired.")
        if request.headers.get("chatgpt-account-id") != account:
            return refuse(400, "invalid_request_error", "chatgpt-account-id does not match")
        return account

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        self.received.append(Received(request.path, dict(request.headers), body))
        account = self._account(request)
        if isinstance(account, web.Response):
            return account
        if request.headers.get("originator") != "codex-tui":
            return refuse(400, "invalid_request_error", "originator must be codex-tui")
        if not isinstance(body.get("instructions"), str) or not body["instructions"].strip():
            return refuse(400, "invalid_request_error", "Instructions are required")
        if body.get("stream") is not True:
            return refuse(400, "invalid_request_error", "Stream must be set to true")
        if body.get("store") is not False:
            return refuse(400, "invalid_request_error", "Store must be set to false")
        spent = self.spent.get(account)
        if spent is not None and spent[0] == "429":
            return web.json_response(
                {"error": {**quota_error("usage_limit_reached"), "resets_at": spent[1]}},
                status=429,
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if spent is not None:
            error = quota_error("insufficient_quota")
            if spent[0] == "failed":
                error = {"type": "server_error", "code": "server_error", "message": "overloaded"}
            elif spent[1] is not None:
                error["resets_at"] = spent[1]
            failure = sse({"type": "error", "sequence_number": 1, "error": error}, "error")
            notice = sse({"type": "codex.rate_limits", "primary": {"used_percent": 100}})
            events = [*answer_events(None, body["model"])[:2], notice, failure]
        else:
            events = answer_events(tool_result(body), body["model"])
        await self._write_cut(response, events)
        await response.write_eof()
        return response

    async def _usage(self, request: web.Request) -> web.StreamResponse:
        self.received.append(Received(request.path, dict(request.headers), None))
        account = self._account(request)
        if isinstance(account, web.Response):
            return account
        return web.json_response(USAGE)

    async def _write_cut(self, response: web.StreamResponse, chunks: list[bytes]) -> None:
        """The stream's bytes in pieces of 1 to 40 bytes, wherever they fall."""
        data = b"".join(chunks)
        start = 0
        while start < len(data):
            end = start + self._random.randint(1, 40)
            await response.write(data[start:end])
            start = end


def quota_error(kind: str) -> dict[str, Any]:
    return {
        "type": kind,
        "code": kind,
        "message": "The usage limit has been reached",
        "plan_type": "plus",
    }


def refuse(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message}}, status=status)
