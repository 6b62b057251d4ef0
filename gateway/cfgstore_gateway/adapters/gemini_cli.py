"""``gemini-cli-oauth``: Google Code Assist as the Gemini CLI calls it (entry point
``gateway-gemini-cli``, group ``cfgstore``); the shared envelope, unwrapping, errors and
project discovery are :mod:`~cfgstore_gateway.adapters.code_assist`'s.

* Base URL: the node's ``GEMINI_BASE_URL`` (else ``config.json``'s, else
  ``UPSTREAM_BASE_URLS[type]``), default ``https://cloudcode-pa.googleapis.com``; calls go
  to ``<base>/v1internal:<method>``.
* A generation sends ``User-Agent: GeminiCLI/0.31.0/<model> (<platform>; <arch>)`` and
  ``X-Goog-Api-Client``; account calls (``loadCodeAssist``, ``onboardUser``,
  ``retrieveUserQuota``) only the token and the content type.
* Model: one of :data:`MODELS`; any other is replaced by the first of them in sorted order
  (``gemini-2.5-flash``), as the Node service does.
* Thinking: for a model that thinks (``gemini-3*``, ``gemini-2.5-*``, ``*-thinking``), a
  ``thinkingConfig`` asking for a level or a non-zero budget gets ``includeThoughts``.
* Quota (:meth:`usage`): ``retrieveUserQuota`` ``{"project"}`` → ``buckets`` of the listed
  models.

* ``anti-<model>`` (a listed model): a stream that ends on ``MAX_TOKENS`` is continued,
  as the Node service does: the request is sent again with the text of the round as a
  model turn and the user turn "Please continue from where you left off.", its events
  following the first ones in the same stream (:class:`ContinuedReply`, at most
  :data:`MAX_ROUNDS` rounds). A whole answer of ``anti-<model>`` is the model's plain one.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import attrs

from cfgstore.hookspecs import hookimpl
from cfgstore.model.config import MainConfig
from cfgstore.model.pools import ProviderNode
from cfgstore_gateway.adapters import Adapter, UpstreamCall, UpstreamReply
from cfgstore_gateway.adapters.code_assist import (
    CodeAssistAdapter,
    UnwrappedReply,
    bearer_json,
    envelope,
    inner_request,
)
from cfgstore_gateway.adapters.openai_compat import TypeProfile, configured_base_url
from cfgstore_gateway.adapters.usage_format import fraction
from cfgstore_gateway.protocols.sse import SseParser

log = logging.getLogger("cfgstore_gateway.gemini_cli")

DEFAULT_BASE_URL = "https://cloudcode-pa.googleapis.com"
ANTI_PREFIX = "anti-"
CONTINUE_PROMPT = "Please continue from where you left off."
MAX_ROUNDS = 8
"""Most rounds of one ``anti-<model>`` stream (the Node service sets no bound)."""
CLI_VERSION = "0.31.0"
API_CLIENT = "google-genai-sdk/1.41.0 gl-node/v22.19.0"
MODELS = (
    "gemini-3-flash-preview",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.5-pro",
    "gemini-3-pro-preview",
    "gemini-3.1-pro-preview",
    "gemini-3.1-flash-lite-preview",
    "gemini-3.5-flash",
)
PROFILE = TypeProfile("GEMINI_BASE_URL", None, DEFAULT_BASE_URL)


def thinks(model: str) -> bool:
    name = model.lower()
    return name.startswith(("gemini-3", "gemini-2.5-")) or "-thinking" in name


def _platform() -> str:
    """Node's ``os.platform()`` / ``os.arch()`` names."""
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "i386": "x86", "i686": "x86"}
    machine = platform.machine().lower()
    return f"{sys.platform}; {arch.get(machine, machine)}"


class GeminiCliAdapter(CodeAssistAdapter):
    """See the module docstring."""

    name = "gemini-cli"
    provider_type = "gemini-cli-oauth"
    models = MODELS
    quota_method = "retrieveUserQuota"

    def base_urls(self, provider_type: str, node: ProviderNode, config: MainConfig) -> list[str]:
        url = configured_base_url(provider_type, PROFILE, node, config) or DEFAULT_BASE_URL
        return [url.rstrip("/")]

    def upstream_model(self, model: str) -> str:
        model = actual_model(model) or model
        return model if model in MODELS else sorted(MODELS)[0]

    async def chat_completions(self, call: UpstreamCall) -> UpstreamReply:
        actual = actual_model(call.model) if call.stream else None
        if actual is None:
            return await super().chat_completions(call)
        call = attrs.evolve(call, model=actual)
        first = await super().chat_completions(call)
        if not isinstance(first, UnwrappedReply):
            return first
        contents = list(call.body.get("contents") or ())

        async def again(generated: str) -> UpstreamReply:
            more = [
                *contents,
                {"role": "model", "parts": [{"text": generated}]},
                {"role": "user", "parts": [{"text": CONTINUE_PROMPT}]},
            ]
            body = {**call.body, "contents": more}
            return await CodeAssistAdapter.chat_completions(
                self, attrs.evolve(call, body=body, raw_body=None)
            )

        return ContinuedReply(first, again)

    def headers(self, token: str, model: str | None, stream: bool) -> dict[str, str]:
        if model is None:
            return bearer_json(token)
        return bearer_json(
            token,
            **{
                "User-Agent": f"GeminiCLI/{CLI_VERSION}/{model} ({_platform()})",
                "X-Goog-Api-Client": API_CLIENT,
            },
        )

    def wrap(self, model: str, project: str, body: Mapping[str, Any]) -> dict[str, Any]:
        request = inner_request(body)
        generation = request.get("generationConfig")
        thinking = generation.get("thinkingConfig") if isinstance(generation, dict) else None
        if isinstance(thinking, dict) and thinks(model):
            budget = thinking.get("thinkingBudget")
            if "thinkingLevel" in thinking or (budget is not None and budget != 0):
                thinking.setdefault("includeThoughts", True)
        return envelope(model, project, request)

    def quotas(self, raw: Mapping[str, Any]) -> list[tuple[str, float, object]]:
        buckets = raw.get("buckets")
        return [
            (b["modelId"], fraction(b.get("remainingFraction")), b.get("resetTime"))
            for b in (buckets if isinstance(buckets, list) else ())
            if isinstance(b, Mapping) and b.get("modelId") in MODELS
        ]


def actual_model(model: str) -> str | None:
    """The model of an ``anti-<model>`` name (one of :data:`MODELS`), else ``None``."""
    rest = model.removeprefix(ANTI_PREFIX)
    return rest if rest != model and rest in MODELS else None


class ContinuedReply:
    """An ``anti-<model>`` stream: the events of each round as they come; a round that
    ends on ``MAX_TOKENS`` with some text is followed by another (``again(text)``), at
    most :data:`MAX_ROUNDS` in all. A later round that fails ends the stream quietly (its
    first events are already out)."""

    def __init__(
        self, first: UnwrappedReply, again: Callable[[str], Awaitable[UpstreamReply]]
    ) -> None:
        self._first = first
        self._again = again

    @property
    def status(self) -> int:
        return self._first.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._first.headers

    async def read(self) -> bytes:
        return b"".join([data async for data in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        reply: UpstreamReply = self._first
        for round_ in range(MAX_ROUNDS):
            parser, finish = SseParser(), None
            texts: list[str] = []
            try:
                async for data in reply.chunks():
                    yield data
                    for event in parser.feed(data):
                        finish = _round_end(event.data, texts) or finish
            finally:
                reply.close()
            if finish != "MAX_TOKENS" or not texts or round_ == MAX_ROUNDS - 1:
                return
            log.info("anti-truncation: round %d ended on MAX_TOKENS, continuing", round_ + 1)
            reply = await self._again("".join(texts))
            if reply.status != 200:
                reply.close()
                return

    def close(self) -> None:
        self._first.close()


def _round_end(data: str, texts: list[str]) -> str | None:
    """Collect an event's answer text into ``texts``; its ``finishReason`` if any."""
    try:
        event = json.loads(data)
    except ValueError:
        return None
    candidates = event.get("candidates") if isinstance(event, dict) else None
    first = candidates[0] if isinstance(candidates, list) and candidates else None
    if not isinstance(first, dict):
        return None
    content = first.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    for part in parts if isinstance(parts, list) else ():
        if isinstance(part, dict) and isinstance(part.get("text"), str) and not part.get("thought"):
            texts.append(part["text"])
    finish = first.get("finishReason")
    return finish if isinstance(finish, str) else None


GEMINI_CLI = GeminiCliAdapter()


@hookimpl
def cfgstore_gateway_adapters(register: Callable[[Adapter], None]) -> None:
    register(GEMINI_CLI)
