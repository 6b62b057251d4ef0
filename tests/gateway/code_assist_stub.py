"""A local Google Code Assist (``v1internal``), written from the documented formats
(aiclient-protocols §3.3, §3.4, §4.2), for the ``gemini-cli-oauth`` and
``gemini-antigravity`` adapters.

Every ``POST <prefix>/v1internal:<method>`` is kept (:class:`Call`); ``<prefix>`` lets one
stub play several base URLs (``stub.base("/sandbox")``), each of which a test can make
fail (:attr:`CodeAssistStub.broken`: answer 429 without a reset, or 503).

The account must be onboarded before it may generate: ``loadCodeAssist`` names no project
until ``onboardUser`` (a long-running operation, ``done`` only on its second poll) has
created :attr:`CodeAssistStub.project` (:data:`PROJECT` unless given); a generation for any
other project is refused (403). Only :attr:`CodeAssistStub.token` is accepted (else 401).
The flavour's headers and envelope are checked; whatever is wrong is listed in
:attr:`CodeAssistStub.problems` and answered 400.

Generations play the scene of :mod:`tests.gateway.protocol_stubs` (a ``get_weather`` call,
then an answer to its result), wrapped as ``{"response": …}``; streams go out as SSE cut at
random byte boundaries (seeded, the seed in ``repr``); every streamed event carries
``usageMetadata``, as Antigravity's do. :attr:`CodeAssistStub.exhausted` makes generations
answer 429 ``RESOURCE_EXHAUSTED`` with a ``quotaResetDelay``; :attr:`CodeAssistStub.truncated`
cuts the next streams short (``MAX_TOKENS``), and a request ending with the continuation
turn (:data:`CONTINUE`) is answered as the request before it.
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

from tests.gateway.protocol_stubs import gemini_result, gemini_stream, gemini_whole

PROJECT = "stub-project-4242"
TIER = "standard-tier"
EMAIL = "someone@example.com"
CUT_TEXT = "Part one. "
CONTINUE = "Please continue from where you left off."
CLI = "cli"
ANTIGRAVITY = "antigravity"


@attrs.frozen
class Call:
    prefix: str
    method: str
    query: str
    headers: dict[str, str]
    body: Any


class CodeAssistStub:
    """``async with CodeAssistStub(flavour) as stub``: Code Assist on a free port."""

    def __init__(
        self,
        flavour: str = CLI,
        seed: int | None = None,
        *,
        project: str = PROJECT,
        token: str = "ya29.fresh-access",
    ) -> None:
        self.flavour = flavour
        self.project = project
        """The account's project: named once onboarded, the only one generations accept."""
        self.token = token
        self.calls: list[Call] = []
        self.problems: list[str] = []
        self.onboarded = False
        self.onboard_polls = 0
        self.broken: dict[str, int] = {}
        """prefix → status that prefix answers every call with (429: no reset named)."""
        self.truncated = 0
        """How many streams to cut short: text :data:`CUT_TEXT`, ``finishReason: MAX_TOKENS``."""
        self.exhausted: str | None = None
        """A ``quotaResetDelay`` (``"3600s"``): generations answer 429 naming it."""
        self.available = {
            "gemini-3-flash": {
                "quotaInfo": {"remainingFraction": 0.25, "resetTime": "2030-01-02T00:00:00Z"}
            },
            "claude-sonnet-4-6": {
                "quotaInfo": {"remainingFraction": 1, "resetTime": "2030-01-01T00:00:00Z"}
            },
            "chat_20706": {},
        }
        self.seed = seed if seed is not None else random.randrange(2**32)
        self._random = random.Random(self.seed)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def __repr__(self) -> str:
        return f"CodeAssistStub(seed={self.seed}, problems={self.problems})"

    def base(self, prefix: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{prefix}"

    def methods(self, prefix: str | None = None) -> list[str]:
        return [c.method for c in self.calls if prefix is None or c.prefix == prefix]

    async def __aenter__(self) -> CodeAssistStub:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._serve)
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

    # -- serving -----------------------------------------------------------------------------

    def _problem(self, text: str) -> web.Response:
        self.problems.append(text)
        return web.json_response({"error": {"code": 400, "message": text}}, status=400)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        prefix, found, method = request.path.partition("/v1internal:")
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return self._problem(f"{method}: body is not JSON")
        call = Call(prefix, method, request.query_string, dict(request.headers), body)
        self.calls.append(call)
        if not found:
            return self._problem(f"unknown path {request.path}")
        if prefix in self.broken:
            status = self.broken[prefix]
            error = {"code": status, "message": "busy", "status": "UNAVAILABLE"}
            return web.json_response({"error": error}, status=status)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            error = {"code": 401, "message": "invalid credentials", "status": "UNAUTHENTICATED"}
            return web.json_response({"error": error}, status=401)
        if request.headers.get("Content-Type", "").split(";")[0] != "application/json":
            return self._problem(f"{method}: Content-Type is not JSON")
        if self.flavour == ANTIGRAVITY and not request.headers.get("User-Agent", "").startswith(
            "antigravity/"
        ):
            return self._problem(f"{method}: not Antigravity's User-Agent")
        handler = {
            "loadCodeAssist": self._load,
            "onboardUser": self._onboard,
            "generateContent": self._generate,
            "streamGenerateContent": self._generate,
            "retrieveUserQuota": self._quota,
            "fetchAvailableModels": self._models,
        }.get(method)
        if handler is None:
            return self._problem(f"unknown method {method}")
        return await handler(request, call)

    async def _load(self, request: web.Request, call: Call) -> web.StreamResponse:
        if call.body.get("metadata", {}).get("pluginType") != "GEMINI":
            return self._problem("loadCodeAssist: metadata.pluginType is not GEMINI")
        answer: dict[str, Any] = {
            "currentTier": {"id": TIER},
            "allowedTiers": [{"id": "free-tier"}, {"id": TIER, "isDefault": True}],
            "manageSubscriptionUri": "https://example.com/manage?Email="
            + EMAIL.replace("@", "%40"),
        }
        if self.onboarded:
            answer["cloudaicompanionProject"] = self.project
        return web.json_response(answer)

    async def _onboard(self, request: web.Request, call: Call) -> web.StreamResponse:
        if call.body.get("tierId") != TIER:
            return self._problem(f"onboardUser: tierId {call.body.get('tierId')!r}")
        self.onboard_polls += 1
        if self.onboard_polls < 2:
            return web.json_response({"name": "operations/onboard-1", "done": False})
        self.onboarded = True
        project = {"id": self.project, "name": "Stub project"}
        return web.json_response(
            {
                "name": "operations/onboard-1",
                "done": True,
                "response": {"cloudaicompanionProject": project},
            }
        )

    def _envelope_problem(self, call: Call) -> str | None:
        body = call.body
        if not isinstance(body.get("request"), dict) or not body["request"].get("contents"):
            return "no request.contents in the envelope"
        if "model" in body["request"]:
            return "model left inside request"
        if not body.get("model"):
            return "no model in the envelope"
        stream = call.method == "streamGenerateContent"
        if stream != (call.query == "alt=sse"):
            return f"query {call.query!r} for {call.method}"
        if self.flavour == CLI:
            agent = call.headers.get("User-Agent", "")
            if not agent.startswith(f"GeminiCLI/0.31.0/{body['model']} ("):
                return f"User-Agent {agent!r}"
            if not call.headers.get("X-Goog-Api-Client", "").startswith("google-genai-sdk/"):
                return "no X-Goog-Api-Client"
        else:
            if (body.get("userAgent"), body.get("requestType")) != ("antigravity", "agent"):
                return "not an agent envelope"
            if not str(body.get("requestId", "")).startswith("agent-"):
                return f"requestId {body.get('requestId')!r}"
            if not str(body["request"].get("sessionId", "")).startswith("-"):
                return "no sessionId"
            if stream and call.headers.get("Accept") != "text/event-stream":
                return "stream without Accept: text/event-stream"
        return None

    async def _generate(self, request: web.Request, call: Call) -> web.StreamResponse:
        problem = self._envelope_problem(call)
        if problem is not None:
            return self._problem(f"{call.method}: {problem}")
        if call.body.get("project") != self.project or not self.onboarded:
            error = {"code": 403, "message": "project not onboarded", "status": "PERMISSION_DENIED"}
            return web.json_response({"error": error}, status=403)
        if self.exhausted is not None:
            return web.json_response({"error": exhausted(self.exhausted)}, status=429)
        contents = call.body["request"]["contents"]
        if contents[-1]["parts"][0].get("text") == CONTINUE:  # an anti-truncation round
            contents = contents[:-2]
        result = gemini_result({"contents": contents})
        if call.method == "generateContent":
            return web.json_response({"response": gemini_whole(result), "traceId": "t1"})
        events = [json.loads(f.decode().removeprefix("data: ")) for f in gemini_stream(result)]
        if self.truncated > 0:
            self.truncated -= 1
            events = [
                {"candidates": [{"content": {"role": "model", "parts": [{"text": t}]}}]}
                for t in ("Part ", "one. ")
            ]
            events[-1]["candidates"][0]["finishReason"] = "MAX_TOKENS"
        chunks = []
        for inner in events:
            inner.setdefault("usageMetadata", {"promptTokenCount": 11})  # as Antigravity does
            wrapped = {"response": inner, "traceId": "t1"}
            chunks.append(f"data: {json.dumps(wrapped, ensure_ascii=False)}\r\n\r\n".encode())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        data = b"".join(chunks)
        start = 0
        while start < len(data):
            end = start + self._random.randint(1, 40)
            await response.write(data[start:end])
            start = end
        await response.write_eof()
        return response

    async def _quota(self, request: web.Request, call: Call) -> web.StreamResponse:
        if call.body != {"project": self.project}:
            return self._problem(f"retrieveUserQuota: body {call.body!r}")
        buckets = [
            {
                "modelId": "gemini-2.5-pro",
                "remainingFraction": 0.2,
                "resetTime": "2030-01-01T00:00:00Z",
                "tokenType": "REQUESTS",
            },
            {
                "modelId": "gemini-2.5-flash",
                "remainingFraction": 0.9,
                "resetTime": "2030-01-02T00:00:00Z",
                "tokenType": "REQUESTS",
            },
            {
                "modelId": "gemini-1.0-unlisted",
                "remainingFraction": 0.0,
                "resetTime": "2031-01-01T00:00:00Z",
            },
        ]
        return web.json_response({"buckets": buckets})

    async def _models(self, request: web.Request, call: Call) -> web.StreamResponse:
        return web.json_response({"models": self.available})


def exhausted(delay: str) -> dict[str, Any]:
    """Google's 429 body for a spent quota."""
    return {
        "code": 429,
        "message": "You have exhausted your capacity on this model.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "QUOTA_EXHAUSTED",
                "domain": "cloudcode-pa.googleapis.com",
                "metadata": {"quotaResetDelay": delay, "model": "gemini-2.5-pro"},
            }
        ],
    }
