"""The ``claude-kiro-oauth`` adapter: Anthropic Messages in front of Kiro (AWS
CodeWhisperer / Amazon Q), as the Node service speaks it (aiclient-protocols §3.2; entry
point ``gateway-kiro``, group ``cfgstore``).

* **Where**: ``POST https://q.{{region}}.amazonaws.com/generateAssistantResponse``, the
  region from the credential (default ``us-east-1``); ``KIRO_BASE_URL`` in the node's
  effective config (or ``UPSTREAM_BASE_URLS[type]``) replaces that whole URL, as in the Node
  service (``{{region}}`` is substituted in it too). Usage: the same URL with
  ``generateAssistantResponse`` → ``getUsageLimits``. The outbound proxy rules are those of
  the OpenAI-compatible adapter (``PROXY_URL`` / ``PROXY_ENABLED_PROVIDERS``).
* **Who**: the node's OAuth credential (``needs_credential``), its merged document
  (:meth:`~cfgstore.model.credentials.Credential.effective`: siblings included):
  ``Authorization: Bearer <accessToken>``, ``profileArn`` in the body for social logins
  only, plus the Kiro IDE's headers (``amz-sdk-*``, ``x-amzn-*``, user agents naming a
  machine id: the SHA-256 of the node's uuid). Unlike the Node service, no ``Connection:
  close``: connections to Kiro are pooled (no TLS handshake per request).
* **What**: the body is built by :mod:`cfgstore_gateway.adapters.kiro_envelope`; the answer
  (AWS event-stream frames) is decoded incrementally (:mod:`.kiro_events`) and given back as
  Claude JSON or Claude SSE (:mod:`.kiro_reply`).
* **Errors** (§3.0): a 403 whose body blames the token (:func:`token_refusal`) is
  answered as 401, so the gateway refreshes the credential and retries once; another 403
  stays 403. A 402 (Kiro's monthly quota) carries ``quota_reset_ms`` = the first of next
  month, 00:00 UTC, as does a 429 naming the monthly limit; a 429 naming when it ends
  (``Retry-After`` and the other forms of :mod:`~cfgstore_gateway.adapters.quota_reset`, or
  a ``resetAt``/``nextDateReset``/``resetTime`` in its body) carries that time. An
  ``exception`` frame before any content is answered as an HTTP error (throttling 429,
  quota 402, validation 400, access 403, else 500).
* **Pacing**: ``KIRO_REQUEST_MIN_INTERVAL_MS`` (node or ``config.json``) spaces the starts
  of this process's generations at least that far apart, every account alike.
* **Models**: the Node service's list (:data:`~.kiro_envelope.MODELS`), no call.
* **Usage**: :meth:`KiroAdapter.usage` asks ``getUsageLimits`` and formats the answer into
  the Node service's usage object (:func:`format_usage`).
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import json
import platform
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from cfgstore.hookspecs import hookimpl
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import Credential
from cfgstore.model.pools import ProviderNode
from cfgstore_gateway.adapters import (
    Adapter,
    CredentialRejected,
    ModelsCall,
    UpstreamCall,
    UpstreamReply,
    UpstreamUnavailable,
)
from cfgstore_gateway.adapters.buffered_reply import BufferedReply
from cfgstore_gateway.adapters.kiro_envelope import MODELS, build_envelope
from cfgstore_gateway.adapters.kiro_events import EventStreamDecoder, EventStreamError
from cfgstore_gateway.adapters.kiro_reply import (
    ClaudeAssembler,
    KiroReply,
    exception_text,
    status_of_exception,
)
from cfgstore_gateway.adapters.kiro_usage import format_usage
from cfgstore_gateway.adapters.openai_compat import (
    TypeProfile,
    configured_base_url,
    describe_error,
    effective_setting,
    proxy_for,
    setting_text,
)
from cfgstore_gateway.adapters.quota_reset import epoch_ms, quota_reset_ms
from cfgstore_gateway.token_requests import kiro_auth_method

KIRO = "claude-kiro-oauth"
DEFAULT_REGION = "us-east-1"
GENERATE_URL = "https://q.{{region}}.amazonaws.com/generateAssistantResponse"
PROFILE = TypeProfile("KIRO_BASE_URL", None, GENERATE_URL)
SDK_VERSION = "1.0.34"
KIRO_VERSION = "0.11.63"
USAGE_QUERY = "isEmailRequired=true&origin=AI_EDITOR&resourceType=AGENTIC_REQUEST"
NOT_THE_TOKEN = (
    "temporarily is suspended",
    "temporarily suspended",
    "disabled",
    "violation of terms",
    "terms of service",
    "appeal",
    "quota",
    "limit exceeded",
    "payment required",
    "not authorized to access",
    "not allowed",
)
"""A 403 saying any of these is about the account, never its token (the Node service's
list)."""
MONTHLY = re.compile(r"monthly|MONTHLY_REQUEST_COUNT|OVERAGE", re.I)
CLAUDE_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    429: "rate_limit_error",
}


def first_of_next_month_ms(now_ms: int | None = None) -> int:
    """00:00 UTC on the first of the month after ``now_ms`` (default: now)."""
    now = datetime.fromtimestamp((now_ms if now_ms is not None else time.time() * 1000) / 1000, UTC)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0)) * 1000


def token_refusal(text: str) -> bool:
    """Whether a 403's text blames the token (so a refresh may cure it): it names the
    token, authorization, authentication or credential *and* calls it expired, invalid or
    unauthorized, and says none of :data:`NOT_THE_TOKEN`."""
    lowered = text.lower()
    if not lowered or any(pattern in lowered for pattern in NOT_THE_TOKEN):
        return False
    names = any(w in lowered for w in ("token", "authorization", "authenticate", "credential"))
    return names and any(w in lowered for w in ("expired", "invalid", "unauthorized"))


def machine_id(node: ProviderNode, document: Mapping[str, Any]) -> str:
    seed = (
        node.uuid
        or setting_text(document.get("profileArn"))
        or setting_text(document.get("clientId"))
    )
    return hashlib.sha256((seed or "KIRO_DEFAULT_MACHINE").encode()).hexdigest()


def _os_name() -> str:
    system = platform.system().lower()
    return {"windows": "windows", "darwin": "macos"}.get(system, system or "linux")


class KiroAdapter:
    """See the module docstring."""

    name = "kiro"
    protocol = "claude"
    provider_types = (KIRO,)

    def __init__(self) -> None:
        self._next_start = 0.0
        """Monotonic time before which no generation starts (``KIRO_REQUEST_MIN_INTERVAL_MS``)."""

    async def _paced(self, node: ProviderNode, config: MainConfig) -> None:
        """Wait for this process's next start slot when ``KIRO_REQUEST_MIN_INTERVAL_MS`` (node
        or config.json) spaces generations apart, all accounts alike, as in the Node
        service. Slots are reserved on the event loop's thread, in call order."""
        interval = effective_setting(node, config, "KIRO_REQUEST_MIN_INTERVAL_MS")
        if isinstance(interval, str) and interval.strip().isdigit():
            interval = int(interval)
        if not isinstance(interval, int | float) or isinstance(interval, bool) or interval <= 0:
            return
        now = time.monotonic()
        slot = max(now, self._next_start)
        self._next_start = slot + interval / 1000
        if slot > now:
            await asyncio.sleep(slot - now)

    def serves(self, provider_type: str) -> bool:
        return provider_type == KIRO

    def needs_credential(self, provider_type: str) -> bool:
        return True

    def check_node(self, provider_type: str, node: ProviderNode, config: MainConfig) -> None:
        proxy_for(provider_type, node, config)

    def static_models(self, provider_type: str) -> Sequence[str]:
        return MODELS

    async def list_models(self, call: ModelsCall) -> list[str]:
        return list(MODELS)

    # -- generation ---------------------------------------------------------------------

    async def chat_completions(self, call: UpstreamCall) -> UpstreamReply:
        document = _document(call.credential)
        url = self.generate_url(call.provider_type, call.node, call.config, document)
        social = kiro_auth_method(document) == "social"
        envelope = build_envelope(
            call.body,
            profile_arn=setting_text(document.get("profileArn")) if social else None,
        )
        data = json.dumps(envelope.body, ensure_ascii=False).encode()
        headers = self.headers(call.node, document, "attempt=1; max=3")
        model = str(call.body.get("model") or "")
        proxy = proxy_for(call.provider_type, call.node, call.config)
        await self._paced(call.node, call.config)
        try:
            response = await call.session.post(url, data=data, headers=headers, proxy=proxy)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamUnavailable(describe_error(exc)) from None
        if response.status != 200:
            try:
                return await _error_reply(response)
            finally:
                response.release()
        decoder = EventStreamDecoder()
        first = []
        try:
            async for chunk in response.content.iter_any():
                first = decoder.feed(chunk)
                if first:
                    break
        except (aiohttp.ClientError, TimeoutError) as exc:
            response.release()
            raise UpstreamUnavailable(describe_error(exc)) from None
        except EventStreamError as exc:
            response.release()
            raise UpstreamUnavailable(f"bad Kiro event stream: {exc}") from None
        if first and first[0].message_type != "event":
            response.release()
            return _exception_reply(first[0].event_type, exception_text(first[0]))
        assembler = ClaudeAssembler(
            model,
            tool_names=envelope.tool_names,
            thinking=envelope.thinking,
            input_estimate=(len(data) - envelope.image_chars + 3) // 4,
        )
        return KiroReply(response, decoder, first, assembler, call.stream)

    def generate_url(
        self,
        provider_type: str,
        node: ProviderNode,
        config: MainConfig,
        document: Mapping[str, Any],
    ) -> str:
        url = configured_base_url(provider_type, PROFILE, node, config) or GENERATE_URL
        region = setting_text(document.get("region")) or DEFAULT_REGION
        return url.replace("{{region}}", region)

    def headers(
        self, node: ProviderNode, document: Mapping[str, Any], attempts: str
    ) -> dict[str, str]:
        token = setting_text(document.get("accessToken"))
        if token is None:
            raise UpstreamUnavailable("the Kiro credential has no accessToken")
        machine = machine_id(node, document)
        kiro_agent = f"KiroIDE-{KIRO_VERSION}-{machine}"
        return {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "amz-sdk-invocation-id": str(uuid.uuid4()),
            "amz-sdk-request": attempts,
            "x-amzn-codewhisperer-optout": "true",
            "x-amzn-kiro-agent-mode": "vibe",
            "x-amz-user-agent": f"aws-sdk-js/{SDK_VERSION} {kiro_agent}",
            "user-agent": (
                f"aws-sdk-js/{SDK_VERSION} ua/2.1 os/{_os_name()}#{platform.release()} "
                f"lang/python md/python#{platform.python_version()} "
                f"api/codewhispererstreaming#{SDK_VERSION} m/E {kiro_agent}"
            ),
        }

    # -- usage --------------------------------------------------------------------------

    async def usage(self, call: ModelsCall) -> dict[str, Any]:
        """``GET getUsageLimits`` formatted as the Node service's usage object;
        :class:`CredentialRejected` when Kiro refused the token (401, or a 403 blaming it),
        :class:`UpstreamUnavailable` when it cannot say."""
        document = _document(call.credential)
        url = self.generate_url(call.provider_type, call.node, call.config, document)
        if "generateAssistantResponse" in url:
            url = url.replace("generateAssistantResponse", "getUsageLimits")
        else:
            url = url.rstrip("/") + "/getUsageLimits"
        url += ("&" if "?" in url else "?") + USAGE_QUERY
        arn = setting_text(document.get("profileArn"))
        if arn and kiro_auth_method(document) == "social":
            url += "&profileArn=" + quote(arn, safe="")
        full = self.headers(call.node, document, "attempt=1; max=1")
        headers = {
            k: full[k]
            for k in ("Authorization", "x-amz-user-agent", "user-agent", "amz-sdk-request")
        }
        proxy = proxy_for(call.provider_type, call.node, call.config)
        try:
            async with call.session.get(url, headers=headers, proxy=proxy) as response:
                if response.status != 200:
                    text = (await response.text())[:200]
                    refused = response.status == 401 or (
                        response.status == 403 and token_refusal(text)
                    )
                    failure = CredentialRejected if refused else UpstreamUnavailable
                    raise failure(f"getUsageLimits answered HTTP {response.status}: {text}")
                raw = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamUnavailable(describe_error(exc)) from None
        if not isinstance(raw, dict):
            raise UpstreamUnavailable("getUsageLimits answered something other than an object")
        return format_usage(raw)


def _document(credential: Credential | None) -> dict[str, Any]:
    if credential is None:
        raise UpstreamUnavailable("this Kiro node has no credential")
    return dict(credential.effective())


def _claude_error(status: int, message: str) -> bytes:
    kind = CLAUDE_ERROR_TYPES.get(status, "api_error")
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


async def _error_reply(response: aiohttp.ClientResponse) -> BufferedReply:
    try:
        raw = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamUnavailable(describe_error(exc)) from None
    text = raw.decode("utf-8", "replace")
    status = response.status
    reset: int | None = None
    if status == 403 and token_refusal(text):
        status = 401
    elif status == 402 or (status == 429 and MONTHLY.search(text)):
        reset = first_of_next_month_ms()
    elif status == 429:
        now = int(time.time() * 1000)
        reset = quota_reset_ms(now_ms=now, headers=response.headers, body=raw) or _reset_in_body(
            raw
        )
    message = _message_of(raw) or f"Kiro answered HTTP {response.status}"
    return BufferedReply(status, _claude_error(status, message), reset)


def _exception_reply(kind: str, message: str) -> BufferedReply:
    text = f"{kind}: {message}" if kind else message
    status = status_of_exception(text)
    reset = None
    if (status == 429 and MONTHLY.search(text)) or status == 402:
        status, reset = 402, first_of_next_month_ms()
    elif status == 403 and token_refusal(message):
        status = 401
    return BufferedReply(status, _claude_error(status, text), reset)


def _message_of(raw: bytes) -> str | None:
    try:
        body = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:500] or None
    if isinstance(body, Mapping):
        for key in ("message", "Message", "error_description"):
            if isinstance(body.get(key), str):
                return str(body[key])
        error = body.get("error")
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
    return raw.decode("utf-8", "replace")[:500]


def _reset_in_body(raw: bytes) -> int | None:
    """A reset time the 429's JSON names (``resetAt``/``nextDateReset``/``resetTime``: ISO
    or epoch seconds/ms, read by :func:`~.quota_reset.epoch_ms`), the first readable one."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, Mapping):
        return None
    for key in ("resetAt", "nextDateReset", "resetTime", "resets_at"):
        moment = epoch_ms(body.get(key))
        if moment is not None:
            return moment
    return None


KIRO_ADAPTER = KiroAdapter()


@hookimpl
def cfgstore_gateway_adapters(register: Callable[[Adapter], None]) -> None:
    register(KIRO_ADAPTER)
