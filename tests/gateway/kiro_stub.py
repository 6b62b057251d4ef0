"""A local Kiro (AWS CodeWhisperer) upstream, written from the documented formats
(aiclient-protocols §3.2, §4.2) and the AWS event-stream specification: never produced by
the adapter's own code paths (frames are encoded here with :mod:`struct` and
:func:`zlib.crc32`).

``POST /generateAssistantResponse`` plays the weather scene: offered ``get_weather`` and no
tool result yet, it calls the tool with ``{"city": "Paris"}`` (``toolUseEvent`` frames,
the arguments in fragments); given a result, it answers "It is <result> in Paris ☀." in
``assistantResponseEvent`` frames; otherwise it answers :data:`HELLO`. Every answer also
carries a ``meteringEvent`` and a ``contextUsageEvent``. The body goes out cut at random
byte boundaries (seeded per stub; the seed is in ``repr``): inside prelude, headers,
payloads and UTF-8 characters.

``GET /getUsageLimits`` answers :attr:`KiroStub.usage_document`.

Every request is kept (:class:`Received`); :attr:`KiroStub.failures` queues error answers
(``(status, body, headers)``) served before the scene, :attr:`KiroStub.exception` makes
the next answer a 200 whose first frame is an ``exception``, and :attr:`KiroStub.broken`
one whose text is followed by an ``exception`` frame.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import time
import zlib
from types import TracebackType
from typing import Any

import attrs
from aiohttp import web
from multidict import CIMultiDict

HELLO = "Hello from Kiro ☀."
TOOL_ID = "tooluse_weather_1"


@attrs.frozen
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    """Case-insensitive, as HTTP header names are."""
    raw: bytes
    at: float = attrs.field(factory=time.monotonic, eq=False)
    """When the request arrived (monotonic seconds)."""

    @property
    def body(self) -> Any:
        return json.loads(self.raw)

    @property
    def token(self) -> str | None:
        value = self.headers.get("Authorization", "")
        return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None


def _string_header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (
        struct.pack("B", len(raw_name))
        + raw_name
        + b"\x07"
        + struct.pack(">H", len(raw_value))
        + raw_value
    )


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message (string headers only)."""
    block = b"".join(_string_header(k, v) for k, v in headers.items())
    total = 12 + len(block) + len(payload) + 4
    prelude = struct.pack(">II", total, len(block))
    head = prelude + struct.pack(">I", zlib.crc32(prelude))
    body = head + block + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return frame(headers, json.dumps(payload, ensure_ascii=False).encode())


def exception_frame(kind: str, message: str) -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, json.dumps({"message": message}).encode())


def text_events(text: str, size: int = 3) -> list[bytes]:
    return [
        event("assistantResponseEvent", {"content": text[i : i + size]})
        for i in range(0, len(text), size)
    ]


def tool_events() -> list[bytes]:
    fragments = ['{"ci', 'ty": "Pa', 'ris"}']
    frames = [
        event("toolUseEvent", {"name": "get_weather", "toolUseId": TOOL_ID, "input": piece})
        for piece in fragments
    ]
    frames.append(
        event("toolUseEvent", {"name": "get_weather", "toolUseId": TOOL_ID, "stop": True})
    )
    return frames


def trailer() -> list[bytes]:
    return [
        event("meteringEvent", {"unit": "credit", "unitPlural": "credits", "usage": 0.02}),
        event("contextUsageEvent", {"contextUsagePercentage": 0.5}),
    ]


def tool_result_of(body: dict[str, Any]) -> str | None:
    current = body["conversationState"]["currentMessage"]["userInputMessage"]
    results = current.get("userInputMessageContext", {}).get("toolResults") or []
    return results[0]["content"][0]["text"] if results else None


def offers_weather(body: dict[str, Any]) -> bool:
    current = body["conversationState"]["currentMessage"]["userInputMessage"]
    tools = current.get("userInputMessageContext", {}).get("tools") or []
    return any(t["toolSpecification"]["name"] == "get_weather" for t in tools)


Failure = tuple[int, Any, dict[str, str]]


class KiroStub:
    """``async with KiroStub() as stub:`` → ``stub.generate_url``, ``stub.url``."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed if seed is not None else random.randrange(2**32)
        self._random = random.Random(self.seed)
        self.received: list[Received] = []
        self.failures: list[Failure] = []
        self.exception: tuple[str, str] | None = None
        self.broken: tuple[str, str] | None = None
        """The next answer: :data:`HELLO`'s text frames, then this exception frame."""
        self.usage_document: dict[str, Any] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    def __repr__(self) -> str:
        return f"KiroStub(seed={self.seed}, received={len(self.received)})"

    @property
    def generate_url(self) -> str:
        return f"{self.url}/generateAssistantResponse"

    def generations(self) -> list[Received]:
        return [r for r in self.received if r.path == "/generateAssistantResponse"]

    def tokens(self) -> list[str | None]:
        return [r.token for r in self.generations()]

    async def _keep(self, request: web.Request) -> Received:
        received = Received(
            request.method,
            request.path,
            dict(request.query),
            CIMultiDict(request.headers),
            await request.read(),
        )
        self.received.append(received)
        return received

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        received = await self._keep(request)
        if self.failures:
            status, body, headers = self.failures.pop(0)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            return web.Response(status=status, body=data, headers=headers)
        body = received.body
        if self.exception is not None:
            kind, message = self.exception
            self.exception = None
            frames = [exception_frame(kind, message)]
        elif self.broken is not None:
            kind, message = self.broken
            self.broken = None
            frames = [*text_events(HELLO), exception_frame(kind, message)]
        else:
            result = tool_result_of(body)
            if result is not None:
                frames = text_events(f"It is {result} in Paris ☀.")
            elif offers_weather(body):
                frames = text_events("Let me check.") + tool_events()
            else:
                frames = text_events(HELLO)
            frames += trailer()
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "application/vnd.amazon.eventstream"}
        )
        await response.prepare(request)
        data = b"".join(frames)
        at = 0
        while at < len(data):
            step = self._random.randint(1, 40)
            await response.write(data[at : at + step])
            at += step
        await response.write_eof()
        return response

    async def _usage(self, request: web.Request) -> web.Response:
        await self._keep(request)
        if self.failures:
            status, body, headers = self.failures.pop(0)
            return web.json_response(body, status=status, headers=headers)
        return web.json_response(self.usage_document)

    async def __aenter__(self) -> KiroStub:
        app = web.Application()
        app.router.add_post("/generateAssistantResponse", self._generate)
        app.router.add_get("/getUsageLimits", self._usage)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await asyncio.wait_for(self._runner.cleanup(), 10)
            self._runner = None
