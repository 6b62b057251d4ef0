"""``gemini-antigravity``: Google Code Assist as the Antigravity IDE calls it (entry point
``gateway-antigravity``, group ``cfgstore``); the shared envelope, unwrapping, errors and
project discovery are :mod:`~cfgstore_gateway.adapters.code_assist`'s.

* Base URLs, tried in order (:data:`BASE_URLS`); the node's ``ANTIGRAVITY_BASE_URL`` (else
  ``config.json``'s, else ``UPSTREAM_BASE_URLS[type]``) replaces the whole list; without
  it, the keys the Node service's UI form writes on a node, ``ANTIGRAVITY_BASE_URL_DAILY``
  and ``ANTIGRAVITY_BASE_URL_AUTOPUSH``, replace the list's daily and autopush URLs when
  they are not empty (the Node service itself no longer reads them; an operator who set
  them meant them). A
  generation moves on to the next URL after a network error or a 429 that names no time
  to wait (no quota reset, no ``Retry-After``); any other answer (a 5xx included: the
  gateway retries it) is the reply. Account calls (discovery, models, quota) also move on
  after a 5xx.
* Every call sends ``User-Agent: antigravity/1.104.0 darwin/arm64``; a stream also
  ``Accept: text/event-stream``.
* Model: ``gemini-claude-X`` is sent as ``claude-X``; a model neither in :data:`MODELS` nor
  ``gemini-claude-*`` becomes ``gemini-3-flash``.
* Envelope: ``{"model", "userAgent": "antigravity", "requestType": "agent", "project",
  "requestId": "agent-<uuid>", "request": {..., "sessionId"}}``; image models
  (``*image*``) ``requestType: "image_gen"``, ``requestId: "image_gen/<ms>/<uuid>/12"``, no
  session, ``imageConfig.imageSize: "4K"`` and no thoughts. ``sessionId`` is ``-`` and the
  first 8 bytes (63 bits) of the SHA-256 of the first user text, else a random number
  below 9000. The request loses ``safetySettings`` and ``maxOutputTokens``; Claude models
  lose ``tools`` and ``toolConfig``; models other than ``gemini-3-*`` get
  ``thinkingBudget: -1`` for a ``thinkingLevel``; a requested thinking budget is held to
  1024…100000 (``-1`` kept), a Claude model below 1024 loses thinking, a model that does
  not think loses ``thinkingConfig``; ``gemini-3-pro*`` and Claude models get the
  Antigravity persona before the client's system text; a tool's ``parameters`` keep only
  Google's schema subset (:func:`gemini_schema`; ``parametersJsonSchema`` is sent as it is).
* Answers: ``usageMetadata`` only on an answer or event that has a ``finishReason``.
* Models (:meth:`list_models`): ``fetchAvailableModels`` ``{"project"}`` over the base
  URLs, keeping listed ids and ``claude-*`` (shown as ``gemini-claude-*``); the static list
  when no URL answers. Quota (:meth:`usage`): the same call's ``models[id].quotaInfo``.
* Discovery that fails uses a random ``<adjective>-<noun>-<5 hex>`` project.

* A whole answer of a Claude model is asked for as a stream and merged
  (:class:`~cfgstore_gateway.adapters.code_assist.MergedReply`), as the Node service does.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid as uuidlib
from collections.abc import Callable, Mapping
from typing import Any

from cfgstore.hookspecs import hookimpl
from cfgstore.model.config import MainConfig
from cfgstore.model.pools import ProviderNode
from cfgstore_gateway.adapters import Adapter, ModelsCall, UpstreamUnavailable
from cfgstore_gateway.adapters.code_assist import (
    CodeAssistAdapter,
    access_token,
    bearer_json,
    envelope,
    inner_request,
)
from cfgstore_gateway.adapters.code_assist_projects import JsonAnswer
from cfgstore_gateway.adapters.openai_compat import (
    TypeProfile,
    configured_base_url,
    effective_setting,
    proxy_for,
    setting_text,
)
from cfgstore_gateway.adapters.usage_format import fraction

BASE_URLS = (
    "https://daily-cloudcode-pa.sandbox.googleapis.com",
    "https://daily-cloudcode-pa.googleapis.com",
    "https://autopush-cloudcode-pa.sandbox.googleapis.com",
)
USER_AGENT = "antigravity/1.104.0 darwin/arm64"
FALLBACK_MODEL = "gemini-3-flash"
MODELS = (
    "gemini-3-flash",
    "gemini-3.5-flash-low",
    "gemini-3.5-flash-high",
    "gemini-3.1-pro-low",
    "gemini-3.1-pro-high",
    "gemini-3.1-flash-image",
    "gemini-3-flash-agent",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.5-flash-thinking",
    "gemini-claude-sonnet-4-6",
    "gemini-claude-opus-4-6-thinking",
)
PROFILE = TypeProfile("ANTIGRAVITY_BASE_URL", None)
THINKING_MIN, THINKING_MAX = 1024, 100_000
PERSONA = (
    "You are Antigravity, a powerful agentic AI coding assistant designed by the Google "
    "Deepmind team working on Advanced Agentic Coding.You are pair programming with a USER "
    "to solve their coding task. The task may require creating a new codebase, modifying or "
    "debugging an existing codebase, or simply answering a question.**Absolute paths only**"
    "**Proactiveness**"
)


def is_claude(model: str) -> bool:
    return "claude" in model.lower()


def is_image(model: str) -> bool:
    return "image" in model.lower()


def thinks(model: str) -> bool:
    name = model.lower()
    return name.startswith(("gemini-3", "gemini-2.5-")) or "-thinking" in name


def session_id(request: Mapping[str, Any]) -> str:
    """``-`` + 63 bits of the SHA-256 of the first user text, else a small random number."""
    for content in request.get("contents") or ():
        if isinstance(content, Mapping) and content.get("role") == "user":
            parts = content.get("parts")
            text = parts[0].get("text") if isinstance(parts, list) and parts else None
            if isinstance(text, str) and text:
                digest = hashlib.sha256(text.encode()).digest()
                return f"-{int.from_bytes(digest[:8], 'big') & 0x7FFF_FFFF_FFFF_FFFF}"
    return f"-{random.randrange(9000)}"


def random_project() -> str:
    adjective = random.choice(("useful", "bright", "swift", "calm", "bold"))
    noun = random.choice(("fuze", "wave", "spark", "flow", "core"))
    return f"{adjective}-{noun}-{uuidlib.uuid4().hex[:5]}"


def _system_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, Mapping):
        return ""
    parts = value.get("parts")
    if isinstance(parts, list):
        texts = [p if isinstance(p, str) else p.get("text") for p in parts if p]
        return "\n".join(t for t in texts if isinstance(t, str) and t)
    text = value.get("text")
    return text if isinstance(text, str) else ""


class AntigravityAdapter(CodeAssistAdapter):
    """See the module docstring."""

    name = "antigravity"
    provider_type = "gemini-antigravity"
    models = MODELS
    falls_back = True
    quota_method = "fetchAvailableModels"

    def base_urls(self, provider_type: str, node: ProviderNode, config: MainConfig) -> list[str]:
        url = configured_base_url(provider_type, PROFILE, node, config)
        if url:
            return [url.rstrip("/")]
        daily = setting_text(effective_setting(node, config, "ANTIGRAVITY_BASE_URL_DAILY"))
        autopush = setting_text(effective_setting(node, config, "ANTIGRAVITY_BASE_URL_AUTOPUSH"))
        dailies = [daily.rstrip("/")] if daily else list(BASE_URLS[:2])
        return dailies + ([autopush.rstrip("/")] if autopush else list(BASE_URLS[2:]))

    def upstream_model(self, model: str) -> str:
        if model.startswith("gemini-claude-"):
            return model.removeprefix("gemini-")
        return model if model in MODELS else FALLBACK_MODEL

    def headers(self, token: str, model: str | None, stream: bool) -> dict[str, str]:
        extra = {"User-Agent": USER_AGENT}
        if stream:
            extra["Accept"] = "text/event-stream"
        return bearer_json(token, **extra)

    def wrap(self, model: str, project: str, body: Mapping[str, Any]) -> dict[str, Any]:
        request = inner_request(body)
        claude, image = is_claude(model), is_image(model)
        system = _system_text(request.pop("systemInstruction", None))
        if "gemini-3-pro" in model.lower() or claude:
            parts = [
                {"text": PERSONA},
                {"text": f"Please ignore following [ignore]{PERSONA}[/ignore]"},
            ]
            parts += [{"text": system}] if system else []
            request["systemInstruction"] = {"role": "user", "parts": parts}
        elif system:
            request["systemInstruction"] = {"role": "user", "parts": [{"text": system}]}
        request.pop("safetySettings", None)
        if claude:
            request.pop("tools", None)
            request.pop("toolConfig", None)
        generation = request.get("generationConfig")
        if isinstance(generation, dict):
            generation.pop("maxOutputTokens", None)
        for tool in request.get("tools") or ():
            for declaration in (
                (tool.get("functionDeclarations") or ()) if isinstance(tool, dict) else ()
            ):
                if isinstance(declaration, dict) and "parameters" in declaration:
                    declaration["parameters"] = gemini_schema(declaration["parameters"])
        _thinking(model, request, claude=claude, image=image)
        if image:
            extra = {
                "requestType": "image_gen",
                "requestId": f"image_gen/{int(time.time() * 1000)}/{uuidlib.uuid4()}/12",
            }
        else:
            request["sessionId"] = session_id(request)
            extra = {"requestType": "agent", "requestId": f"agent-{uuidlib.uuid4()}"}
        return envelope(model, project, request, userAgent="antigravity", **extra)

    def adjust(self, answer: dict[str, Any]) -> dict[str, Any]:
        candidates = answer.get("candidates")
        first = candidates[0] if isinstance(candidates, list) and candidates else None
        if not (isinstance(first, Mapping) and first.get("finishReason")):
            answer.pop("usageMetadata", None)
        return answer

    def project_after_failure(self) -> str | None:
        return random_project()

    def streams_only(self, model: str) -> bool:
        return is_claude(model)

    async def list_models(self, call: ModelsCall) -> list[str]:
        try:
            answer = await self._available(call)
        except UpstreamUnavailable:
            return list(MODELS)
        found = answer.document().get("models")
        if answer.status != 200 or not isinstance(found, Mapping):
            return list(MODELS)
        return [
            f"gemini-{m}" if m.startswith("claude-") else m
            for m in found
            if isinstance(m, str) and (m in MODELS or m.startswith("claude-"))
        ]

    async def _available(self, call: ModelsCall) -> JsonAnswer:
        token = access_token(call.credential, call.provider_type)
        urls = self.base_urls(call.provider_type, call.node, call.config)
        proxy = proxy_for(call.provider_type, call.node, call.config)
        project = self.projects.configured(call.node, call.config)
        known = self.projects.account(call.pools, call.provider_type, call.node.uuid)
        project = project or (known.project if known else None)
        caller = self._account_caller(call.session, urls, token, proxy)
        answer = await caller("fetchAvailableModels", {"project": project} if project else {})
        return answer

    def quotas(self, raw: Mapping[str, Any]) -> list[tuple[str, float, object]]:
        models = raw.get("models")
        out: list[tuple[str, float, object]] = []
        for model, data in models.items() if isinstance(models, Mapping) else ():
            alias = f"gemini-{model}" if model.startswith("claude-") else model
            if alias not in MODELS and not model.startswith("claude-"):
                continue
            info = data.get("quotaInfo") if isinstance(data, Mapping) else None
            if not isinstance(info, Mapping):
                continue
            remaining = info.get("remainingFraction")
            if not isinstance(remaining, int | float):
                remaining = info.get("remaining")
            out.append((alias, fraction(remaining), info.get("resetTime")))
        return out


SCHEMA_KEYS = frozenset(
    ("type", "description", "properties", "required", "enum", "items", "nullable")
)


def gemini_schema(schema: Any) -> Any:
    """A tool's ``parameters`` with only what Google's schema subset takes (the Node
    service's clean-up): the keys of :data:`SCHEMA_KEYS`, ``type`` in capitals (a type list
    naming ``null`` becomes its other type plus ``nullable``), nested schemas alike."""
    if isinstance(schema, list):
        return [gemini_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in SCHEMA_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: gemini_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = gemini_schema(value)
        elif key == "type":
            if isinstance(value, list) and "null" in value:
                out["nullable"] = True
            named = (
                next((t for t in value if t != "null"), None) if isinstance(value, list) else value
            )
            if isinstance(named, str):
                out["type"] = named.upper()
        else:
            out[key] = value
    return out


def _thinking(model: str, request: dict[str, Any], *, claude: bool, image: bool) -> None:
    generation = request.get("generationConfig")
    if image:
        generation = request.setdefault("generationConfig", {})
        generation.setdefault("imageConfig", {})["imageSize"] = "4K"
        generation.setdefault("thinkingConfig", {})["includeThoughts"] = False
    if not isinstance(generation, dict):
        return
    thinking = generation.get("thinkingConfig")
    if not isinstance(thinking, dict):
        return
    if not model.startswith("gemini-3-") and thinking.get("thinkingLevel"):
        del thinking["thinkingLevel"]
        thinking["thinkingBudget"] = -1
    if not thinks(model):
        del generation["thinkingConfig"]
        return
    budget = thinking.get("thinkingBudget")
    if ("thinkingLevel" in thinking or (budget is not None and budget != 0)) and (
        "includeThoughts" not in thinking
    ):
        thinking["includeThoughts"] = True
    if not isinstance(budget, int | float) or isinstance(budget, bool):
        return
    if claude and 0 <= budget < THINKING_MIN:
        del generation["thinkingConfig"]
        return
    if budget != -1:
        thinking["thinkingBudget"] = min(max(budget, THINKING_MIN), THINKING_MAX)


ANTIGRAVITY = AntigravityAdapter()


@hookimpl
def cfgstore_gateway_adapters(register: Callable[[Adapter], None]) -> None:
    register(ANTIGRAVITY)
