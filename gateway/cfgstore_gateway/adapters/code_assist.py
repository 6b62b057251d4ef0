"""Google Code Assist (``v1internal``): what ``gemini-cli-oauth`` and ``gemini-antigravity``
share (:mod:`~cfgstore_gateway.adapters.gemini_cli`, :mod:`~cfgstore_gateway.adapters.antigravity`).

Every call is ``POST <base>/v1internal:<method>`` with the account's OAuth bearer token
(the credential's ``access_token``, refreshed by the gateway; a 401 answer makes the gateway
refresh and call again). A generation wraps the Gemini ``generateContent`` request in an
envelope, ``{"model", "project", "request": {...}}`` (plus what a type adds), and the answer,
whole or each ``data:`` event of ``streamGenerateContent?alt=sse``, comes wrapped as
``{"response": {...}}``. :class:`UnwrappedReply` gives the gateway plain Gemini JSON or
Gemini SSE, unwrapped as the bytes arrive (events cut anywhere are reassembled), keeping
only ``candidates``, ``usageMetadata``, ``promptFeedback`` and
``automaticFunctionCallingHistory`` as the Node service does.

Errors (§3.0): an error answer is read whole and handed on as it came. When it says the
account's quota is spent until some time (``error.details[].retryDelay``,
``details[].metadata.quotaResetDelay`` or ``quotaResetTimeStamp``, a top-level
``retryDelay``, or "… after N s" in the message, of a 429 or ``RESOURCE_EXHAUSTED``), the
reply carries ``quota_reset_ms`` and the gateway cools the node down until then. A
``Retry-After`` header alone is left to the gateway's own 429 handling.

Project discovery is :mod:`~cfgstore_gateway.adapters.code_assist_projects`'s; the
usage object (:meth:`CodeAssistAdapter.usage`) is built by
:func:`~cfgstore_gateway.adapters.usage_format.percent_usage`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import aiohttp

from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import Credential
from cfgstore.model.pools import ProviderNode
from cfgstore_gateway.adapters import (
    CredentialRejected,
    ModelsCall,
    UpstreamCall,
    UpstreamReply,
    UpstreamUnavailable,
)
from cfgstore_gateway.adapters.buffered_reply import BufferedReply
from cfgstore_gateway.adapters.code_assist_projects import (
    AccountCall,
    DiscoveryFailed,
    JsonAnswer,
    ProjectDirectory,
    account_of,
    load_body,
)
from cfgstore_gateway.adapters.openai_compat import (
    describe_error,
    proxy_for,
    setting_text,
)
from cfgstore_gateway.adapters.quota_reset import epoch_ms, quota_reset_ms
from cfgstore_gateway.adapters.usage_format import percent_usage
from cfgstore_gateway.protocols.sse import SseParser, frame

log = logging.getLogger("cfgstore_gateway.code_assist")

VERSION = "v1internal"
KEPT_FIELDS = ("candidates", "usageMetadata", "promptFeedback", "automaticFunctionCallingHistory")

Adjust = Callable[[dict[str, Any]], dict[str, Any]]
"""A type's change to each unwrapped answer or stream event (Antigravity's usage rule)."""


# ----------------------------------------------------------------------- request envelope


def inner_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Gemini ``generateContent`` body made ready for ``request``: a copy without
    ``model``, ``system_instruction`` renamed ``systemInstruction``, the system instruction
    and every content given a role (``user`` when missing)."""
    request: dict[str, Any] = json.loads(json.dumps(body))
    request.pop("model", None)
    if "system_instruction" in request:
        request.setdefault("systemInstruction", request.pop("system_instruction"))
    system = request.get("systemInstruction")
    if isinstance(system, dict) and not system.get("role"):
        system["role"] = "user"
    for content in request.get("contents") or ():
        if isinstance(content, dict) and not content.get("role"):
            content["role"] = "user"
    return request


def envelope(model: str, project: str, request: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """``{"model", "project", **extra, "request"}``: a generation as Code Assist takes it."""
    return {"model": model, "project": project, **extra, "request": dict(request)}


def unwrap(document: object, adjust: Adjust | None = None) -> dict[str, Any]:
    """The Gemini answer inside a Code Assist answer (``{"response": {...}}``; an answer
    without the wrapper is taken as it is), with the four kept fields only."""
    inner = document.get("response", document) if isinstance(document, Mapping) else {}
    kept = {k: inner[k] for k in KEPT_FIELDS if isinstance(inner, Mapping) and k in inner}
    return adjust(kept) if adjust is not None else kept


def method_url(base: str, method: str, *, stream: bool = False) -> str:
    return f"{base.rstrip('/')}/{VERSION}:{method}" + ("?alt=sse" if stream else "")


def access_token(credential: Credential | None, provider_type: str) -> str:
    token = setting_text(credential.effective().get("access_token")) if credential else None
    if token is None:
        raise UpstreamUnavailable(f"no access_token in the credential of this {provider_type} node")
    return token


# ------------------------------------------------------------------------------ replies


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers an answer read whole keeps: its content type and ``Retry-After``."""
    return {k: v for k, v in headers.items() if k.lower() in _KEPT_HEADERS}


_KEPT_HEADERS = {"content-type", "retry-after"}


class UnwrappedReply:
    """A successful Code Assist answer as plain Gemini: JSON (:meth:`read`) or SSE frames
    (:meth:`chunks`), unwrapped event by event as the bytes arrive."""

    def __init__(self, response: aiohttp.ClientResponse, adjust: Adjust | None = None) -> None:
        self._response = response
        self._adjust = adjust

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        kind = self._response.headers.get("Content-Type", "application/json")
        return {"Content-Type": kind}

    async def read(self) -> bytes:
        try:
            data = await self._response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(describe_error(exc)) from None
        try:
            document = json.loads(data)
        except ValueError:
            raise UpstreamUnavailable("Code Assist answered something that is not JSON") from None
        return json.dumps(unwrap(document, self._adjust), ensure_ascii=False).encode()

    async def chunks(self) -> AsyncIterator[bytes]:
        parser = SseParser()
        try:
            async for data in self._response.content.iter_any():
                out = self._frames(e.data for e in parser.feed(data))
                if out:
                    yield out
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(describe_error(exc)) from None
        out = self._frames(e.data for e in parser.close())
        if out:
            yield out

    def _frames(self, datas: Iterable[str]) -> bytes:
        out = bytearray()
        for data in datas:
            try:
                document = json.loads(data)
            except ValueError:
                continue  # "[DONE]" or noise: nothing a Gemini client reads
            out += frame(unwrap(document, self._adjust))
        return bytes(out)

    def close(self) -> None:
        self._response.release()


class MergedReply:
    """A whole Gemini answer made of a streamed one (Antigravity answers Claude models only
    as streams): adjacent text parts joined, adjacent thought parts joined with their last
    ``thoughtSignature``, other parts kept in order; the last ``finishReason``,
    ``usageMetadata`` and ``modelVersion``."""

    def __init__(self, stream: UnwrappedReply) -> None:
        self._stream = stream

    @property
    def status(self) -> int:
        return self._stream.status

    @property
    def headers(self) -> Mapping[str, str]:
        return {"Content-Type": "application/json"}

    async def read(self) -> bytes:
        parser = SseParser()
        events = []
        async for data in self._stream.chunks():
            events += parser.feed(data)
        events += parser.close()
        return json.dumps(merge([json.loads(e.data) for e in events]), ensure_ascii=False).encode()

    async def chunks(self) -> AsyncIterator[bytes]:
        yield await self.read()

    def close(self) -> None:
        self._stream.close()


def merge(chunks: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One answer from a stream's unwrapped events (see :class:`MergedReply`)."""
    parts: list[dict[str, Any]] = []
    role, finish, usage, version = "model", None, None, None
    for chunk in chunks:
        candidates = chunk.get("candidates")
        first = candidates[0] if isinstance(candidates, list) and candidates else {}
        first = first if isinstance(first, Mapping) else {}
        content = first.get("content")
        if isinstance(content, Mapping):
            role = content.get("role") or role
            for part in content.get("parts") or ():
                if isinstance(part, Mapping):
                    _add_part(parts, dict(part))
        finish = first.get("finishReason") or finish
        usage = chunk.get("usageMetadata") or usage
        version = chunk.get("modelVersion") or version
    kept = [p for p in parts if not _blank(p)]
    candidate: dict[str, Any] = {"content": {"role": role, "parts": kept}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    answer: dict[str, Any] = {"candidates": [candidate]}
    if usage:
        answer["usageMetadata"] = usage
    if version:
        answer["modelVersion"] = version
    return answer


def _add_part(parts: list[dict[str, Any]], part: dict[str, Any]) -> None:
    signature = part.pop("thought_signature", None) or part.get("thoughtSignature")
    if signature:
        part["thoughtSignature"] = signature
    last = parts[-1] if parts else None
    if (
        last is not None
        and _textual(part)
        and _textual(last)
        and bool(last.get("thought")) == bool(part.get("thought"))
    ):
        last["text"] += part["text"]
        if signature:
            last["thoughtSignature"] = signature
        return
    parts.append(part)


def _textual(part: Mapping[str, Any]) -> bool:
    return "text" in part and set(part) <= {"text", "thought", "thoughtSignature"}


def _blank(part: Mapping[str, Any]) -> bool:
    """A text part with only white space (a thought with a signature is kept)."""
    if set(part) - {"text", "thought", "thoughtSignature"}:
        return False
    text = part.get("text")
    return isinstance(text, str) and not text.strip() and not part.get("thoughtSignature")


async def reply_of(
    response: aiohttp.ClientResponse, adjust: Adjust | None = None, now_ms: int | None = None
) -> BufferedReply | UnwrappedReply:
    """The reply for a generation's HTTP answer: unwrapped when successful, else read
    whole with its quota reset (if it names one)."""
    if 200 <= response.status < 300:
        return UnwrappedReply(response, adjust)
    try:
        body = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamUnavailable(describe_error(exc)) from None
    finally:
        response.release()
    reset = quota_reset(response.status, body, response.headers, now_ms)
    return BufferedReply(response.status, body, reset, kept_headers(response.headers))


# --------------------------------------------------------------------------- quota reset


def quota_reset(
    status: int, body: bytes, headers: Mapping[str, str], now_ms: int | None = None
) -> int | None:
    """Epoch ms until which an error answer (a 429, or ``RESOURCE_EXHAUSTED``) says the
    account's quota is spent: what :func:`~cfgstore_gateway.adapters.quota_reset.quota_reset_ms`
    reads in the body, else a detail's ``metadata.quotaResetTimeStamp``; ``None`` when it
    says no such thing. A ``Retry-After`` header alone is left to the gateway's own 429
    handling (``RATE_LIMIT_COOLDOWN_*``)."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    error = document.get("error") if isinstance(document, Mapping) else None
    error = error if isinstance(error, Mapping) else {}
    if status < 400 or (status != 429 and error.get("status") != "RESOURCE_EXHAUSTED"):
        return None
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    found = quota_reset_ms(now_ms=now, body=document)
    if found is not None:
        return found
    details = error.get("details")
    for detail in details if isinstance(details, list) else ():
        metadata = detail.get("metadata") if isinstance(detail, Mapping) else None
        if isinstance(metadata, Mapping):
            stamp = epoch_ms(metadata.get("quotaResetTimeStamp"))
            if stamp is not None:
                return stamp
    return None


# ------------------------------------------------------------------------------ calling


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    proxy: str | None,
) -> JsonAnswer:
    """POST a JSON body and read the answer whole; :class:`UpstreamUnavailable` when no
    answer came."""
    try:
        async with session.post(
            url, data=json.dumps(body).encode(), headers=dict(headers), proxy=proxy
        ) as response:
            data = await response.read()
            return JsonAnswer(response.status, dict(response.headers), data)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise UpstreamUnavailable(describe_error(exc)) from None


def bearer_json(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **extra}


# ------------------------------------------------------------------------------ adapter


class CodeAssistAdapter:
    """What both Code Assist types do; a type says where (:meth:`base_urls`), with which
    headers, model and envelope, and whether it falls back to its next base URL."""

    name = "code-assist"
    protocol = "gemini"
    provider_type = ""
    models: tuple[str, ...] = ()
    falls_back = False
    """Try the next base URL after a network error or a 429 that names no time to wait."""
    quota_method = ""

    def __init__(self) -> None:
        self.projects = ProjectDirectory()

    # -- what a type says ----------------------------------------------------------------

    def base_urls(self, provider_type: str, node: ProviderNode, config: MainConfig) -> list[str]:
        raise NotImplementedError

    def upstream_model(self, model: str) -> str:
        return model

    def headers(self, token: str, model: str | None, stream: bool) -> dict[str, str]:
        """Headers of a call; ``model`` is ``None`` for the account calls."""
        return bearer_json(token)

    def wrap(self, model: str, project: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return envelope(model, project, inner_request(body))

    def adjust(self, answer: dict[str, Any]) -> dict[str, Any]:
        return answer

    def project_after_failure(self) -> str | None:
        """The project used when discovery fails (``None``: the call fails)."""
        return None

    def streams_only(self, model: str) -> bool:
        """Whether ``model`` answers only as a stream (a whole answer is then merged)."""
        return False

    def quotas(self, raw: Mapping[str, Any]) -> list[tuple[str, float, object]]:
        raise NotImplementedError

    # -- Adapter ---------------------------------------------------------------------------

    @property
    def provider_types(self) -> tuple[str, ...]:
        return (self.provider_type,)

    def serves(self, provider_type: str) -> bool:
        return provider_type == self.provider_type

    def needs_credential(self, provider_type: str) -> bool:
        return True

    def check_node(self, provider_type: str, node: ProviderNode, config: MainConfig) -> None:
        self.base_urls(provider_type, node, config)

    def static_models(self, provider_type: str) -> tuple[str, ...]:
        return self.models

    async def chat_completions(self, call: UpstreamCall) -> UpstreamReply:
        token = access_token(call.credential, call.provider_type)
        urls = self.base_urls(call.provider_type, call.node, call.config)
        proxy = proxy_for(call.provider_type, call.node, call.config)
        account = self._account_caller(call.session, urls, token, proxy)
        try:
            project = await self.projects.project(
                call.pools, call.provider_type, call.node, call.config, account
            )
        except DiscoveryFailed as exc:
            if exc.answer is not None:
                answer = exc.answer
                reset = quota_reset(answer.status, answer.body, answer.headers)
                return BufferedReply(
                    answer.status, answer.body, reset, kept_headers(answer.headers)
                )
            fallback = self.project_after_failure()
            if fallback is None:
                raise UpstreamUnavailable(
                    f"Could not discover a valid Google Cloud Project ID: {exc}"
                ) from None
            log.warning(
                "%s node %s: %s; using %s", call.provider_type, call.node.uuid, exc, fallback
            )
            project = fallback
        model = self.upstream_model(call.model or str(call.body.get("model") or ""))
        stream = call.stream or self.streams_only(model)
        method = "streamGenerateContent" if stream else "generateContent"
        data = json.dumps(self.wrap(model, project, call.body), ensure_ascii=False).encode()
        headers = self.headers(token, model, stream)
        for index, base in enumerate(urls):
            last = index == len(urls) - 1
            try:
                response = await call.session.post(
                    method_url(base, method, stream=stream),
                    data=data,
                    headers=headers,
                    proxy=proxy,
                )
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                if last or not self.falls_back:
                    raise UpstreamUnavailable(describe_error(exc)) from None
                log.info("%s: %s unreachable, trying the next base URL", call.provider_type, base)
                continue
            reply = await reply_of(response, self.adjust)
            if self.falls_back and not last and _unnamed_limit(reply):
                log.info("%s: %s answered 429, trying the next base URL", call.provider_type, base)
                continue
            if stream and not call.stream and isinstance(reply, UnwrappedReply):
                return MergedReply(reply)
            return reply
        raise UpstreamUnavailable(f"no base URL for {call.provider_type}")  # urls never empty

    async def list_models(self, call: ModelsCall) -> list[str]:
        return list(self.models)

    async def usage(self, call: ModelsCall) -> dict[str, Any]:
        """The account's quota per model in the usage object's shape (§4.2); raises
        :class:`CredentialRejected` when Code Assist refuses the token (HTTP 401)."""
        token = access_token(call.credential, call.provider_type)
        urls = self.base_urls(call.provider_type, call.node, call.config)
        proxy = proxy_for(call.provider_type, call.node, call.config)
        caller = self._account_caller(call.session, urls, token, proxy)
        known = self.projects.account(call.pools, call.provider_type, call.node.uuid)
        if known is None:  # tier and e-mail: loadCodeAssist says them (memory only)
            loaded = _answered(await caller("loadCodeAssist", load_body()))
            known, _ = account_of(loaded.document())
            if known.project is not None:
                self.projects.remember(call.pools, call.provider_type, call.node.uuid, known)
        project = self.projects.configured(call.node, call.config) or known.project
        if project is None:
            try:
                project = await self.projects.project(
                    call.pools, call.provider_type, call.node, call.config, caller
                )
            except DiscoveryFailed as exc:
                if exc.answer is not None:
                    _answered(exc.answer, "no project for the quota: ")
                raise UpstreamUnavailable(f"no project for the quota: {exc}") from None
        answer = _answered(await caller(self.quota_method, {"project": project}))
        raw = {**answer.document(), "tierId": known.tier, "account": known.email}
        return percent_usage(self.quotas(raw), raw)

    # -- calling ---------------------------------------------------------------------------

    def _account_caller(
        self, session: aiohttp.ClientSession, urls: list[str], token: str, proxy: str | None
    ) -> AccountCall:
        """``call(method, body)`` → :class:`JsonAnswer`: an account call (discovery, models,
        quota), over the base URLs as a generation would be."""

        async def call(method: str, body: Mapping[str, Any]) -> JsonAnswer:
            headers = self.headers(token, None, False)
            for index, base in enumerate(urls):
                last = index == len(urls) - 1
                try:
                    answer = await post_json(
                        session, method_url(base, method), headers, body, proxy
                    )
                except UpstreamUnavailable:
                    if last or not self.falls_back:
                        raise
                    continue
                if self.falls_back and not last and answer.status in (429, 500, 502, 503, 504):
                    continue
                return answer
            raise UpstreamUnavailable("no base URL")

        return call


def _answered(answer: JsonAnswer, context: str = "") -> JsonAnswer:
    """``answer`` when it is a 200; else :class:`CredentialRejected` (401) or
    :class:`UpstreamUnavailable` naming the status."""
    if answer.status == 200:
        return answer
    kind = CredentialRejected if answer.status == 401 else UpstreamUnavailable
    raise kind(f"{context}Code Assist answered HTTP {answer.status}")


def _unnamed_limit(reply: BufferedReply | UnwrappedReply) -> bool:
    """A 429 that names no time to wait, in its body or a ``Retry-After`` (Antigravity then
    tries its next base URL)."""
    return (
        reply.status == 429
        and getattr(reply, "quota_reset_ms", None) is None
        and "Retry-After" not in reply.headers
    )
