"""The OpenAI-compatible adapter (entry point ``gateway-openai``, group ``cfgstore``).

Serves every provider type whose calls can go to an upstream speaking OpenAI's
``/chat/completions`` and ``/models``, each with its ``<type>-<suffix>`` variants
(``openai-custom-deepseek``, ``openai-iflow-eu``). Bodies pass through unchanged
(streams chunk by chunk, as they arrive); no protocol is converted.

* **OpenAI-protocol types**: the API-key types ``openai-custom`` and ``atlascloud``, and
  the OAuth types ``openai-qwen-oauth`` (Qwen's portal) and ``openai-iflow``.
* **Pass-through types** (issue 6): none is built in any more (every OAuth type that
  speaks another protocol at its vendor has an adapter of its own, below). A profile with
  ``pass_through`` (a plugin's, or a test's) serves such a type as an OpenAI-compatible
  pass-through to the upstream the operator
  configured for the node (an OpenAI-compatible relay in front of the vendor), with the
  node's OAuth token; it has no built-in upstream.

``claude-custom`` (Anthropic Messages), ``openaiResponses-custom`` (Responses) and
``forward-api`` (any protocol, forwarded as it is) have adapters of their own
(:mod:`cfgstore_gateway.adapters.vendor_api`), as has ``claude-kiro-oauth``
(:mod:`cfgstore_gateway.adapters.kiro`, where ``KIRO_BASE_URL`` is Kiro's generate URL, as
in the Node service).

``gemini-cli-oauth`` and ``gemini-antigravity`` (Google Code Assist:
:mod:`cfgstore_gateway.adapters.gemini_cli`, :mod:`cfgstore_gateway.adapters.antigravity`)
and ``openai-codex-oauth`` (:mod:`cfgstore_gateway.adapters.codex`) have adapters of their
own too, speaking their vendor's protocol.

``grok-web`` is not served: its ``GROK_BASE_URL`` is the grok.com web application, reached
with a cookie session, never an OpenAI-compatible endpoint.

Where a call goes, first found wins:

1. the node's own base-URL key for its type (the ``base_url_key`` of :data:`PROFILES`:
   ``OPENAI_BASE_URL``, ``QWEN_BASE_URL``, ``IFLOW_BASE_URL``, or a pass-through
   profile's key), else the same key at the root of ``config.json``: every node's
   effective config is ``{...config.json, ...node}``, so a node's empty string wins over
   the root value and means "not set", as in the Node service;
2. ``UPSTREAM_BASE_URLS[type]`` in ``config.json`` (an object type → base URL; a suffixed
   type falls back to its base type's entry);
3. for Qwen, ``https://<resource_url>/v1`` from the credential;
4. the type's built-in default (OpenAI, Qwen's portal, iFlow), if it has one.

The base URL ends before ``/chat/completions`` (``https://host/v1``). A node of a type
with no base URL found this way gets a clear error, not a crash: ``UpstreamUnavailable``
naming the keys to set, recorded as the node's failure (its ``lastErrorMessage``); the
client gets a 502 ``upstream_unavailable`` unless another node serves. A pass-through
type without one is not the node's fault (the gateway simply has no adapter for its own
protocol): :class:`~cfgstore_gateway.adapters.NotServed`, nothing recorded, the node left
out of selection, health checks and refresh. The gateway fetches
an OAuth node's credential (refreshed when due) before it calls the adapter, so such a
node's token may still be refreshed first.

Authentication is ``Authorization: Bearer <secret>``. API-key types send the node's
key (``OPENAI_API_KEY``, or the root key of
``config.json``). OAuth types send the credential's token, refreshed by the
gateway first when needed: iFlow its ``apiKey``, Qwen its ``access_token`` (a
pass-through type's credential its ``access_token`` or ``accessToken``). No client header
is ever forwarded
upstream (the client's gateway key stays here).

Outbound proxy: with ``PROXY_URL`` set (an ``http://`` or ``https://`` URL) and the
node's type listed in ``PROXY_ENABLED_PROVIDERS`` (a suffixed type is covered by its base
type's entry), every upstream call of the node (chat and models) goes through that proxy.
Both keys are read from the node's effective config, so a node can override either (an
empty string on the node means "no proxy"). A ``socks5://`` proxy is not supported by this
adapter: the call fails with ``UpstreamUnavailable`` saying so (recorded for the node).

Precedence over dedicated adapters: this adapter declares itself ``generic``, and
:class:`~cfgstore_gateway.adapters.AdapterRegistry` lets a generic adapter serve a type only
when no dedicated adapter serves it (the type itself or a base of it), whatever the
registration order: a plugin that registers a protocol adapter for ``openai-iflow``
(or any type here) takes that type over, suffixed variants included. This adapter claims
base types only, never a suffixed type by itself. Its hook implementation is also
``trylast`` (registered before other plugins' adapters), so a plugin registering another
generic adapter for some of these types (an :class:`OpenAICompatAdapter` with its own
``profiles``) wins over this one for them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import aiohttp
import attrs

from cfgstore.hookspecs import hookimpl
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import Credential
from cfgstore.model.pools import ProviderNode
from cfgstore_gateway.adapters import (
    Adapter,
    ModelsCall,
    NotServed,
    UpstreamCall,
    UpstreamReply,
    UpstreamUnavailable,
)

generic_adapters_hookimpl = hookimpl(optionalhook=True, trylast=True)
"""The gateway's ``adapters_hookimpl`` marker plus ``trylast``: pluggy lists this
implementation first, so the gateway registers this adapter before any other plugin's."""

log = logging.getLogger("cfgstore_gateway.openai")


@attrs.frozen
class TypeProfile:
    """How one provider type reaches an OpenAI-compatible upstream."""

    base_url_key: str
    api_key_key: str | None
    """Node key holding the API key; ``None`` for OAuth types (the credential's token)."""
    default_base_url: str | None = None
    pass_through: bool = False
    """The type speaks another protocol at its vendor: without a configured upstream (an
    OpenAI-compatible relay) no adapter serves it here (:class:`NotServed`)."""


PROFILES: dict[str, TypeProfile] = {
    # OpenAI-protocol types.
    "openai-custom": TypeProfile("OPENAI_BASE_URL", "OPENAI_API_KEY", "https://api.openai.com/v1"),
    "atlascloud": TypeProfile("OPENAI_BASE_URL", "OPENAI_API_KEY"),
    "openai-qwen-oauth": TypeProfile("QWEN_BASE_URL", None, "https://portal.qwen.ai/v1"),
    "openai-iflow": TypeProfile("IFLOW_BASE_URL", None, "https://apis.iflow.cn/v1"),
    # No pass-through type is built in (a plugin's profiles may add some).
}
"""The types this adapter serves (suffixed variants included) and their keys."""

UPSTREAM_BASE_URLS_KEY = "UPSTREAM_BASE_URLS"
SUPPORTED_PROXY_SCHEMES = ("http://", "https://")


def proxy_for(provider_type: str, node: ProviderNode, config: MainConfig) -> str | None:
    """The outbound proxy URL of a node's calls (see the module docstring), ``None`` for
    a direct call; :class:`UpstreamUnavailable` for an unsupported proxy scheme."""
    url = setting_text(effective_setting(node, config, "PROXY_URL"))
    if url is None:
        return None
    enabled = effective_setting(node, config, "PROXY_ENABLED_PROVIDERS")
    if isinstance(enabled, str):
        enabled = [item.strip() for item in enabled.split(",")]
    if not isinstance(enabled, list):
        return None
    listed = {item: None for item in enabled if isinstance(item, str) and item}
    if base_type(provider_type, listed) is None:
        return None
    if not url.lower().startswith(SUPPORTED_PROXY_SCHEMES):
        raise UpstreamUnavailable(
            "PROXY_URL must be an http:// or https:// URL (socks proxies are not supported)"
        )
    return url


def base_type(provider_type: str, known: Mapping[str, object]) -> str | None:
    """The key of ``known`` that ``provider_type`` is or extends (``openai-custom-x`` →
    ``openai-custom``), longest first; ``None`` when none."""
    candidate = provider_type
    while True:
        if candidate in known:
            return candidate
        if "-" not in candidate:
            return None
        candidate = candidate.rsplit("-", 1)[0]


def setting_text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


class OpenAICompatAdapter:
    """See the module docstring. ``profiles`` replaces the served types (tests, or a
    plugin that points more types at OpenAI-compatible upstreams)."""

    name = "openai-compatible"
    generic = True
    """A fallback: any dedicated adapter serving one of these types wins over this one."""

    def __init__(self, profiles: Mapping[str, TypeProfile] | None = None) -> None:
        self._profiles = dict(PROFILES if profiles is None else profiles)

    @property
    def provider_types(self) -> tuple[str, ...]:
        """The types of its profiles (see :func:`~cfgstore_gateway.adapters.declared_types`)."""
        return tuple(self._profiles)

    def _profile(self, provider_type: str) -> TypeProfile:
        key = base_type(provider_type, self._profiles)
        if key is None:
            raise UpstreamUnavailable(f"the OpenAI adapter does not serve {provider_type}")
        return self._profiles[key]

    # -- Adapter -----------------------------------------------------------------------

    def serves(self, provider_type: str) -> bool:
        return provider_type in self._profiles

    def needs_credential(self, provider_type: str) -> bool:
        return self._profile(provider_type).api_key_key is None

    def check_node(self, provider_type: str, node: ProviderNode, config: MainConfig) -> None:
        if self._profile(provider_type).base_url_key != "QWEN_BASE_URL":  # Qwen: see base_url
            self.base_url(provider_type, node, config, None)

    def static_models(self, provider_type: str) -> Sequence[str]:
        return ()

    async def chat_completions(self, call: UpstreamCall) -> UpstreamReply:
        url = self.base_url(call.provider_type, call.node, call.config, call.credential)
        data = call.raw_body if call.raw_body is not None else json.dumps(call.body).encode()
        headers = self._auth_headers(call.provider_type, call.node, call.config, call.credential)
        headers["Content-Type"] = "application/json"
        headers["Accept"] = "text/event-stream" if call.stream else "application/json"
        headers["X-Request-Id"] = call.request_id
        proxy = proxy_for(call.provider_type, call.node, call.config)
        try:
            response = await call.session.post(
                url + "/chat/completions", data=data, headers=headers, proxy=proxy
            )
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamUnavailable(describe_error(exc)) from None
        return AiohttpReply(response)

    async def list_models(self, call: ModelsCall) -> list[str]:
        url = self.base_url(call.provider_type, call.node, call.config, call.credential)
        headers = self._auth_headers(call.provider_type, call.node, call.config, call.credential)
        headers["Accept"] = "application/json"
        headers["X-Request-Id"] = call.request_id
        proxy = proxy_for(call.provider_type, call.node, call.config)
        try:
            async with call.session.get(url + "/models", headers=headers, proxy=proxy) as response:
                if response.status != 200:
                    raise UpstreamUnavailable(f"GET /models answered HTTP {response.status}")
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamUnavailable(describe_error(exc)) from None
        items = document.get("data") if isinstance(document, dict) else None
        if not isinstance(items, list):
            return []
        return [
            item["id"] for item in items if isinstance(item, dict) and setting_text(item.get("id"))
        ]

    # -- where and how ------------------------------------------------------------------

    def base_url(
        self,
        provider_type: str,
        node: ProviderNode,
        config: MainConfig,
        credential: Credential | None,
    ) -> str:
        """The upstream base URL (no trailing slash); raises :class:`UpstreamUnavailable`
        when none is configured."""
        profile = self._profile(provider_type)
        url = configured_base_url(provider_type, profile, node, config)
        if url is None and profile.base_url_key == "QWEN_BASE_URL" and credential is not None:
            resource = setting_text(credential.effective().get("resource_url"))
            if resource is not None:
                url = resource if resource.startswith("http") else f"https://{resource}/v1"
        url = url or profile.default_base_url
        if url is None:
            missing = NotServed if profile.pass_through else UpstreamUnavailable
            raise missing(
                f"no upstream base URL for {provider_type}: set the node's "
                f"{profile.base_url_key} or {UPSTREAM_BASE_URLS_KEY}[{provider_type!r}] "
                f"in config.json to an OpenAI-compatible endpoint"
            )
        return url.rstrip("/")

    def _auth_headers(
        self,
        provider_type: str,
        node: ProviderNode,
        config: MainConfig,
        credential: Credential | None,
    ) -> dict[str, str]:
        profile = self._profile(provider_type)
        if profile.api_key_key is not None:
            secret = setting_text(effective_setting(node, config, profile.api_key_key))
        else:
            secret = _token_of(credential)
        if secret is None:
            raise UpstreamUnavailable(f"no API key or token for this {provider_type} node")
        return {"Authorization": f"Bearer {secret}"}


def configured_base_url(
    provider_type: str, profile: TypeProfile, node: ProviderNode, config: MainConfig
) -> str | None:
    """The base URL the operator configured for a node: its profile's key in the node's
    effective config, else ``UPSTREAM_BASE_URLS`` (a suffixed type falls back to its base
    type's entry); ``None`` when neither sets one."""
    url = setting_text(effective_setting(node, config, profile.base_url_key))
    if url is None:
        table = config.get(UPSTREAM_BASE_URLS_KEY)
        if isinstance(table, dict):
            key = base_type(provider_type, table)
            url = setting_text(table.get(key)) if key is not None else None
    return url


def effective_setting(node: ProviderNode, config: MainConfig, key: str) -> object:
    """A key of the node's effective config (``{...config.json, ...node}``)."""
    return node.settings[key] if key in node.settings else config.get(key)


def _token_of(credential: Credential | None) -> str | None:
    if credential is None:
        return None
    document = credential.effective()
    for key in ("apiKey", "api_key", "access_token", "accessToken"):
        value = setting_text(document.get(key))
        if value is not None:
            return value
    return None


def describe_error(exc: BaseException) -> str:
    """The cause, for logs and ``lastErrorMessage``: user info in URLs is hidden."""
    if isinstance(exc, TimeoutError):
        return "upstream timed out"
    return _USERINFO.sub("//***@", f"{type(exc).__name__}: {exc}")


_USERINFO = re.compile(r"//[^/@\s]+@")


class AiohttpReply:
    """An :class:`~cfgstore_gateway.adapters.UpstreamReply` over an aiohttp response; read
    errors become :class:`UpstreamUnavailable`."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(describe_error(exc)) from None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._response.content.iter_any():
                yield data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(describe_error(exc)) from None

    def close(self) -> None:
        self._response.release()


@generic_adapters_hookimpl
def cfgstore_gateway_adapters(register: Callable[[Adapter], None]) -> None:
    """Register the generic adapter first (``trylast``): any other plugin's adapter for one
    of its types registers later and wins (see the module docstring)."""
    register(OpenAICompatAdapter())
