"""The ``openai-codex-oauth`` adapter: OpenAI Responses against the ChatGPT Codex backend
(entry point ``gateway-codex``, group ``cfgstore``; aiclient-protocols §2.4.5, §3.7, §4.2).

Where: ``POST <base>/responses``, the base being the node's ``CODEX_BASE_URL`` (else the
root key of ``config.json``, else ``UPSTREAM_BASE_URLS[type]``, as for every adapter),
default ``https://chatgpt.com/backend-api/codex``: the Codex backend itself, as in the Node
service (no longer an OpenAI-compatible relay). The call always streams; a client that
asked for a whole answer gets the stream collected into one Responses object
(:mod:`cfgstore_gateway.adapters.codex_sse`).

Who: the node's Codex OAuth credential (``access_token`` as Bearer, refreshed by the
gateway; a 401 makes it refresh once and retry) and its ChatGPT account, sent as
``chatgpt-account-id``: the credential's ``account_id``, else the id token's
``https://api.openai.com/auth``.``chatgpt_account_id`` claim, else its ``sub``. The other
headers are the Codex CLI's (``version``, ``originator: codex-tui``, its user agent, the
beta-feature headers); ``Conversation_id`` and ``Session_id`` carry the request's
``prompt_cache_key``. The Node service also forces ``Host: chatgpt.com``; here the host is
the base URL's, so a configured relay gets its own name.

What: the body is a Responses request (the gateway converts chat, Anthropic and Gemini
clients into it), rewritten for Codex by :func:`codex_body`:

* ``model``: one of :data:`MODELS` (anything else becomes ``gpt-5.2``, Node's fallback);
  ``-fast`` is removed and asks for ``service_tier: "priority"`` and effort ``xhigh``;
  ``gpt-image-2`` is ``gpt-5.4`` with the image generation tool as its only tool;
* ``stream: true``, ``store: false``; ``parallel_tool_calls`` default true; ``include``
  default ``["reasoning.encrypted_content"]``; ``reasoning`` = the client's effort
  (``reasoning_effort`` or ``reasoning.effort``; ``minimal`` → ``none``) or ``medium``,
  summary ``auto`` by default; ``service_tier`` only when ``priority``;
* dropped: ``max_output_tokens``, ``max_completion_tokens``, ``temperature``, ``top_p``,
  ``user``, ``metadata``, ``messages`` and the Node service's internal ``_…`` keys;
* ``input``: a string becomes one user message; items without a ``type`` are messages.
  The backend requires ``instructions``: when the request has none, its system/developer
  messages become them (taken out of ``input``; the Node service keeps them there as
  ``developer`` messages and sends no instructions), else ``You are a helpful
  assistant.``; when it has some, system/developer messages are dropped, as the Node
  service does;
* ``text.format`` given as a string becomes ``{"type": …}``; ``json_object`` is removed;
* tools: the client's, plus ``web_search`` (not in JSON mode) and, except for ``*spark``
  models, ``image_generation`` (PNG), as the Node service adds them;
* ``prompt_cache_key``: a UUID per node and session (``metadata.session_id``,
  ``conversation_id`` or ``user_id``; else ``<model>-default``), kept for an hour (at
  most :data:`MAX_SESSIONS` per process, the oldest forgotten first).

Errors: a 429 (or a 403 saying ``usage_limit_reached``/``insufficient_quota``) with
``resets_at`` or ``resets_in_seconds`` carries ``quota_reset_ms``: the gateway cools the
node down until then and switches. An ``error`` event before any output (the backend's
``insufficient_quota``) becomes an error answer: 429 (with the reset time when named) for
a spent quota, else 502, so the gateway switches.

Models: the Node service's fixed list (:data:`MODELS`). Quota: :meth:`CodexAdapter.usage`
asks ``GET …/backend-api/wham/usage`` (beside a base ending in ``/codex``; else
chatgpt.com's) and answers the Node service's usage object.

Outbound proxy: ``PROXY_URL`` / ``PROXY_ENABLED_PROVIDERS``, as for the other adapters
(:func:`~cfgstore_gateway.adapters.openai_compat.proxy_for`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp

from cfgstore.hookspecs import hookimpl
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import Credential
from cfgstore.model.pools import ProviderNode
from cfgstore.model.timefmt import iso_ms, now_ms, parse_time_ms
from cfgstore_gateway.adapters import (
    Adapter,
    CredentialRejected,
    ModelsCall,
    UpstreamCall,
    UpstreamReply,
    UpstreamUnavailable,
)
from cfgstore_gateway.adapters.codex_sse import error_answer, stream_reply, whole_reply
from cfgstore_gateway.adapters.openai_compat import (
    TypeProfile,
    configured_base_url,
    describe_error,
    proxy_for,
    setting_text,
)
from cfgstore_gateway.adapters.usage_format import percent_item, percent_object
from cfgstore_gateway.token_requests import CODEX_AUTH_CLAIM, jwt_claims

PROVIDER_TYPE = "openai-codex-oauth"
DEFAULT_BASE_URL = "https://chatgpt.com/backend-api/codex"
DEFAULT_USAGE_URL = "https://chatgpt.com/backend-api/wham/usage"
PROFILE = TypeProfile("CODEX_BASE_URL", None, DEFAULT_BASE_URL)

CODEX_VERSION = "0.130.0"
USER_AGENT = (
    f"codex-tui/{CODEX_VERSION} (Windows 10.0.26100; x86_64) WindowsTerminal "
    f"(codex-tui; {CODEX_VERSION})"
)

BASE_MODELS = (
    "gpt-5.2",
    "gpt-5.3-codex",
    "gpt-5.3-codex-spark",
    "gpt-5.4",
    "gpt-5.4-mini",
    "gpt-5.5",
    "gpt-image-2",
)
MODELS = BASE_MODELS + tuple(f"{m}-fast" for m in BASE_MODELS)
"""The Node service's Codex models: each base model, then each with ``-fast``."""
IMAGE_MODELS = {"gpt-image-2": "gpt-5.4"}
"""Image models and the upstream model that serves them (with the image tool)."""

DEFAULT_INSTRUCTIONS = "You are a helpful assistant."
DROPPED_KEYS = (
    "max_output_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "user",
    "metadata",
    "messages",
    "reasoning_effort",
    "_monitorRequestId",
    "_requestBaseUrl",
    "_imageSize",
)
SESSION_TTL_MS = 3_600_000
SESSION_SWEEP_MS = 15 * 60_000
MAX_SESSIONS = 10_000


# ------------------------------------------------------------------------------ request


def upstream_model(model: str) -> tuple[str, bool]:
    """(the model asked for, known or Node's fallback; whether it is a ``-fast`` one)."""
    chosen = model.strip() if model.strip() in MODELS else MODELS[0]
    return chosen, chosen.endswith("-fast")


def session_key(body: Mapping[str, Any], model: str) -> str:
    """The prompt-cache session a request belongs to (see the module docstring)."""
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping):
        for key in ("session_id", "conversation_id", "user_id"):
            value = metadata.get(key)
            if isinstance(value, str) and value:
                return value
    return f"{model}-default"


def codex_body(body: Mapping[str, Any], model: str, prompt_cache_key: str) -> dict[str, Any]:
    """The Responses request ``body`` for ``model`` (from :func:`upstream_model`) rewritten
    for the Codex backend (see the module docstring)."""
    fast = model.endswith("-fast")
    base = model.removesuffix("-fast")
    image_size = body.get("_imageSize")
    out = {k: v for k, v in body.items() if k not in DROPPED_KEYS}
    out["model"] = IMAGE_MODELS.get(base, base)
    instructions, items = _instructions_and_input(body)
    out["instructions"] = instructions
    out["input"] = items
    json_mode = _text_format(out)
    if base in IMAGE_MODELS:
        tool: dict[str, Any] = {"type": "image_generation"}
        if isinstance(image_size, str) and image_size:
            tool["size"] = image_size
        out["tools"] = [tool]
    else:
        out["tools"] = _tools(body.get("tools"), base, json_mode)
    reasoning = body.get("reasoning")
    reasoning = dict(reasoning) if isinstance(reasoning, Mapping) else {}
    effort = body.get("reasoning_effort") or reasoning.get("effort") or "medium"
    reasoning["effort"] = "xhigh" if fast else ("none" if effort == "minimal" else effort)
    reasoning["summary"] = reasoning.get("summary") or "auto"
    out["reasoning"] = reasoning
    if fast:
        out["service_tier"] = "priority"
    elif out.get("service_tier") != "priority":
        out.pop("service_tier", None)
    out["stream"] = True
    out["store"] = False
    if out.get("parallel_tool_calls") is None:
        out["parallel_tool_calls"] = True
    if not out.get("include"):
        out["include"] = ["reasoning.encrypted_content"]
    out["prompt_cache_key"] = prompt_cache_key
    return out


def _instructions_and_input(body: Mapping[str, Any]) -> tuple[str, list[Any]]:
    raw = body.get("input")
    if isinstance(raw, str):
        part = {"type": "input_text", "text": raw}
        raw = [{"type": "message", "role": "user", "content": [part]}]
    items: list[Any] = []
    system: list[str] = []
    given = body.get("instructions")
    given = given if isinstance(given, str) and given.strip() else None
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, Mapping):
            continue
        item = dict(item)
        item.setdefault("type", "message")
        if item["type"] == "message" and item.get("role") in ("system", "developer"):
            if given is None:
                text = _message_text(item.get("content"))
                if text:
                    system.append(text)
            continue
        items.append(item)
    instructions = given or "\n\n".join(system) or DEFAULT_INSTRUCTIONS
    return instructions, items


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "\n".join(
        p["text"] for p in parts if isinstance(p, Mapping) and isinstance(p.get("text"), str)
    )


def _text_format(body: dict[str, Any]) -> bool:
    """Normalise ``text.format`` in place; whether the client asked for JSON mode."""
    json_mode = False
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_object":
        json_mode = True
    text = body.get("text")
    if not isinstance(text, Mapping):
        return json_mode
    text = dict(text)
    form = text.get("format")
    if isinstance(form, str):
        form = {"type": form}
    if isinstance(form, Mapping) and form.get("type") == "json_object":
        json_mode = True
        text.pop("format", None)
    elif form is not None:
        text["format"] = form
    body["text"] = text
    return json_mode


def _tools(raw: Any, base_model: str, json_mode: bool) -> list[Any]:
    tools = [t for t in raw if isinstance(t, Mapping)] if isinstance(raw, list) else []
    kinds = {t.get("type") for t in tools}
    if json_mode:
        tools = [t for t in tools if t.get("type") != "web_search"]
    elif "web_search" not in kinds:
        tools.append({"type": "web_search"})
    if not base_model.endswith("spark") and "image_generation" not in kinds:
        tools.append({"type": "image_generation", "output_format": "png"})
    return tools


class PromptCacheKeys:
    """A ``prompt_cache_key`` per node and session, kept :data:`SESSION_TTL_MS`; expired
    ones are swept at most every :data:`SESSION_SWEEP_MS` (on use, no timer), and beyond
    :data:`MAX_SESSIONS` the oldest made is forgotten."""

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        self._clock = clock
        self._keys: dict[tuple[str, str], tuple[str, int]] = {}
        self._swept = clock()

    def key(self, node: str, session: str) -> str:
        now = self._clock()
        if now - self._swept >= SESSION_SWEEP_MS:
            self._keys = {k: v for k, v in self._keys.items() if v[1] >= now}
            self._swept = now
        found = self._keys.get((node, session))
        if found is None or found[1] < now:
            found = (str(uuid.uuid4()), now + SESSION_TTL_MS)
            self._keys.pop((node, session), None)
            while len(self._keys) >= MAX_SESSIONS:
                del self._keys[next(iter(self._keys))]
            self._keys[(node, session)] = found
        return found[0]


# ------------------------------------------------------------------------------ account


def account_id_of(document: Mapping[str, Any]) -> str | None:
    """The ChatGPT account of a Codex credential (see the module docstring)."""
    found = setting_text(document.get("account_id"))
    if found is not None:
        return found
    id_token = setting_text(document.get("id_token"))
    claims = jwt_claims(id_token) if id_token else {}
    auth = claims.get(CODEX_AUTH_CLAIM)
    if isinstance(auth, dict):
        found = setting_text(auth.get("chatgpt_account_id"))
        if found is not None:
            return found
    return setting_text(claims.get("sub"))


def auth_headers(credential: Credential | None) -> dict[str, str]:
    if credential is None:
        raise UpstreamUnavailable(f"no credential for this {PROVIDER_TYPE} node")
    document = credential.effective()
    token = setting_text(document.get("access_token"))
    if token is None:
        raise UpstreamUnavailable(f"the {PROVIDER_TYPE} credential has no access_token")
    headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}
    account = account_id_of(document)
    if account is not None:
        headers["chatgpt-account-id"] = account
    return headers


# ------------------------------------------------------------------------------ usage


def usage_time(value: Any) -> str | None:
    """A reset time as ISO text: numbers below 1e10 are seconds, others ms; text is read as
    a date (``None`` when unreadable or absent)."""
    if isinstance(value, bool) or not value:
        return None
    if isinstance(value, (int, float)):
        return iso_ms(int(value * 1000 if value < 1e10 else value))
    ms = parse_time_ms(value)
    return iso_ms(ms) if ms is not None else None


def _window(rate_limit: Mapping[str, Any], snake: str, camel: str) -> Mapping[str, Any] | None:
    window = rate_limit.get(snake) or rate_limit.get(camel)
    return window if isinstance(window, Mapping) else None


def _percent(window: Mapping[str, Any]) -> float:
    for key in ("used_percent", "usedPercent"):
        value = window.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    return 0


def format_usage(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The Node service's usage object of a ``wham/usage`` answer (``raw``, with the added
    ``account``): one item per rate-limit window (``Request Quota (5h)``, ``Weekly Limit``),
    the summary the fuller of the two."""
    rate_limit = raw.get("rate_limit") or raw.get("rateLimit")
    rate_limit = rate_limit if isinstance(rate_limit, Mapping) else {}
    items: list[dict[str, Any]] = []
    used, reset_at = 0.0, None
    windows = (
        ("primary_window", "primaryWindow", "Request Quota (5h)"),
        ("secondary_window", "secondaryWindow", "Weekly Limit"),
    )
    for snake, camel, label in windows:
        window = _window(rate_limit, snake, camel)
        if window is None:
            continue
        percent = _percent(window)
        at = window.get("reset_at", window.get("resetAt"))
        if not items or percent > used:
            used, reset_at = percent, at
        items.append(percent_item(snake, label, percent, usage_time(at)))
    plan = raw.get("plan_type") or raw.get("planType") or "FREE"
    plan = plan if isinstance(plan, str) else str(plan)
    return percent_object(used, usage_time(reset_at), plan, items, raw)


# ------------------------------------------------------------------------------ adapter


class CodexAdapter:
    """See the module docstring."""

    name = "openai-codex"
    protocol = "openaiResponses"
    provider_types = (PROVIDER_TYPE,)

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        self._cache_keys = PromptCacheKeys(clock)

    def serves(self, provider_type: str) -> bool:
        return provider_type == PROVIDER_TYPE

    def needs_credential(self, provider_type: str) -> bool:
        return True

    def check_node(self, provider_type: str, node: ProviderNode, config: MainConfig) -> None:
        proxy_for(provider_type, node, config)  # an unsupported proxy fails here, not later

    def static_models(self, provider_type: str) -> Sequence[str]:
        return MODELS

    async def list_models(self, call: ModelsCall) -> list[str]:
        return list(MODELS)

    def base_url(self, provider_type: str, node: ProviderNode, config: MainConfig) -> str:
        url = configured_base_url(provider_type, PROFILE, node, config) or DEFAULT_BASE_URL
        return url.rstrip("/")

    def usage_url(self, provider_type: str, node: ProviderNode, config: MainConfig) -> str:
        base = self.base_url(provider_type, node, config)
        if base.endswith("/codex"):
            return base.removesuffix("/codex") + "/wham/usage"
        return DEFAULT_USAGE_URL

    async def chat_completions(self, call: UpstreamCall) -> UpstreamReply:
        model, _ = upstream_model(call.model or str(call.body.get("model") or ""))
        cache_key = self._cache_keys.key(call.node.uuid, session_key(call.body, model))
        body = codex_body(call.body, model, cache_key)
        headers = {
            **auth_headers(call.credential),
            "version": CODEX_VERSION,
            "x-codex-beta-features": "powershell_utf8",
            "x-oai-web-search-eligible": "true",
            "originator": "codex-tui",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "Conversation_id": cache_key,
            "Session_id": cache_key,
        }
        url = self.base_url(call.provider_type, call.node, call.config) + "/responses"
        proxy = proxy_for(call.provider_type, call.node, call.config)
        try:
            response = await call.session.post(
                url, data=json.dumps(body).encode(), headers=headers, proxy=proxy
            )
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamUnavailable(describe_error(exc)) from None
        if not 200 <= response.status < 300:
            return await error_answer(response)
        return await (stream_reply(response) if call.stream else whole_reply(response))

    async def usage(self, call: ModelsCall) -> dict[str, Any]:
        """The account's Codex limits (``GET …/wham/usage``) as the Node service shows them
        (:func:`format_usage`); :class:`UpstreamUnavailable` when the backend cannot say,
        :class:`CredentialRejected` when it refused the token."""
        headers = {**auth_headers(call.credential), "Accept": "*/*"}
        url = self.usage_url(call.provider_type, call.node, call.config)
        proxy = proxy_for(call.provider_type, call.node, call.config)
        try:
            async with call.session.get(url, headers=headers, proxy=proxy) as response:
                if response.status == 401:  # the gateway refreshes the token and asks again
                    raise CredentialRejected("GET wham/usage answered HTTP 401")
                if response.status != 200:
                    raise UpstreamUnavailable(f"GET wham/usage answered HTTP {response.status}")
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamUnavailable(describe_error(exc)) from None
        if not isinstance(document, dict):
            raise UpstreamUnavailable("GET wham/usage answered something other than an object")
        email = None
        if call.credential is not None:
            email = setting_text(call.credential.effective().get("email"))
        return format_usage({**document, "account": email})


@hookimpl
def cfgstore_gateway_adapters(register: Callable[[Adapter], None]) -> None:
    register(CodexAdapter())
