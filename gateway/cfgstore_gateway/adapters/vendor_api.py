"""Adapters for the API-key types that speak their vendor's own protocol (entry point
``gateway-vendor-api``, group ``cfgstore``).

* ``claude-custom``: Anthropic Messages. ``POST <CLAUDE_BASE_URL>/messages`` with
  ``x-api-key: <CLAUDE_API_KEY>`` and ``anthropic-version: 2023-06-01``. The base URL is the
  API root including its version (``https://api.anthropic.com/v1``, the default); a base
  with no path at all (``https://api.anthropic.com``, as the Node service's sample pools
  file writes it) gets ``/v1``. Models: the Node service's fixed list (Anthropic's list
  needs no call), unless the node lists ``supportedModels``.
* ``openaiResponses-custom``: OpenAI Responses. ``POST <OPENAI_BASE_URL>/responses`` with
  ``Authorization: Bearer <OPENAI_API_KEY>``; base default ``https://api.openai.com/v1``;
  models from ``GET <base>/models``.
* ``forward-api``: whatever the client speaks, forwarded unchanged (no conversion either
  way) to ``<FORWARD_BASE_URL><the client's path>`` — the base is the upstream's root, as
  in the Node service (``https://relay.example`` + ``/v1/messages``) — with the header
  ``FORWARD_HEADER_NAME`` (default ``Authorization``) set to ``FORWARD_HEADER_VALUE_PREFIX``
  (default ``Bearer ``) + ``FORWARD_API_KEY``. No default base. Models from
  ``GET <base>/models``. (The Node service also adds an ``endpoint`` field to the body;
  this adapter sends the client's bytes as they are.)

The base URL may also come from ``UPSTREAM_BASE_URLS[type]`` in ``config.json``, and the
outbound proxy rules are those of the OpenAI-compatible adapter
(:mod:`cfgstore_gateway.adapters.openai_compat`), as is everything a suffixed type
(``claude-custom-work``) inherits. Bodies are in the adapter's protocol (its ``protocol``
attribute): the gateway converts a client's request of another protocol, and the answer
back. These adapters are dedicated ones: they win over the generic OpenAI-compatible
adapter for their types.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

import aiohttp
import attrs

from cfgstore.hookspecs import hookimpl
from cfgstore.model.config import MainConfig
from cfgstore.model.pools import ProviderNode
from cfgstore_gateway.adapters import (
    SAME_AS_CLIENT,
    Adapter,
    ModelsCall,
    UpstreamCall,
    UpstreamReply,
    UpstreamUnavailable,
)
from cfgstore_gateway.adapters.openai_compat import (
    AiohttpReply,
    TypeProfile,
    configured_base_url,
    describe_error,
    effective_setting,
    proxy_for,
    setting_text,
)

ANTHROPIC_VERSION = "2023-06-01"

#: The Node service's fixed ``claude-custom`` model list (its ``listModels``).
CLAUDE_MODELS = (
    "claude-4-sonnet",
    "claude-sonnet-4-20250514",
    "claude-opus-4-20250514",
    "claude-3-7-sonnet-20250219",
    "claude-3-5-sonnet-20241022",
    "claude-3-5-haiku-20241022",
    "claude-3-opus-20240229",
    "claude-3-haiku-20240307",
)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def anthropic_key(key: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}


@attrs.frozen
class VendorApiAdapter:
    """One vendor protocol over HTTP with an API key (see the module docstring)."""

    name: str
    protocol: str
    provider_type: str
    profile: TypeProfile
    path: str
    """Appended to the base URL for a generation (``/messages``, ``/responses``)."""
    auth: Callable[[str], dict[str, str]]
    models: tuple[str, ...] = ()
    """A fixed model list; empty: ``GET <base>/models`` is asked."""
    version_path: str | None = None
    """Added to a base URL that has no path at all (``/v1``)."""
    forwards: bool = False
    """Post to the client's own path (``call.path``) instead of :attr:`path`."""

    @property
    def provider_types(self) -> tuple[str, ...]:
        return (self.provider_type,)

    def serves(self, provider_type: str) -> bool:
        return provider_type == self.provider_type

    def needs_credential(self, provider_type: str) -> bool:
        return False

    def check_node(self, provider_type: str, node: ProviderNode, config: MainConfig) -> None:
        self.base_url(provider_type, node, config)
        self._key(provider_type, node, config)

    def static_models(self, provider_type: str) -> Sequence[str]:
        return self.models

    async def chat_completions(self, call: UpstreamCall) -> UpstreamReply:
        url = self.base_url(call.provider_type, call.node, call.config)
        url += call.path if self.forwards else self.path
        body = dict(call.body)
        if call.stream:
            body["stream"] = True
        data = (
            call.raw_body
            if call.raw_body is not None and call.stream == bool(call.body.get("stream"))
            else None
        )
        headers = {
            **self.auth_headers(call.provider_type, call.node, call.config),
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if call.stream else "application/json",
            "X-Request-Id": call.request_id,
        }
        proxy = proxy_for(call.provider_type, call.node, call.config)
        try:
            response = await call.session.post(
                url,
                data=data if data is not None else json.dumps(body).encode(),
                headers=headers,
                proxy=proxy,
            )
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamUnavailable(describe_error(exc)) from None
        return AiohttpReply(response)

    async def list_models(self, call: ModelsCall) -> list[str]:
        if self.models:
            return list(self.models)
        url = self.base_url(call.provider_type, call.node, call.config) + "/models"
        headers = self.auth_headers(call.provider_type, call.node, call.config)
        headers["Accept"] = "application/json"
        proxy = proxy_for(call.provider_type, call.node, call.config)
        try:
            async with call.session.get(url, headers=headers, proxy=proxy) as response:
                if response.status != 200:
                    raise UpstreamUnavailable(f"GET /models answered HTTP {response.status}")
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamUnavailable(describe_error(exc)) from None
        items = document.get("data") if isinstance(document, Mapping) else None
        if not isinstance(items, list):
            return []
        return [i["id"] for i in items if isinstance(i, Mapping) and setting_text(i.get("id"))]

    def base_url(self, provider_type: str, node: ProviderNode, config: MainConfig) -> str:
        url = configured_base_url(provider_type, self.profile, node, config)
        url = (url or self.profile.default_base_url or "").rstrip("/")
        if not url:
            key = self.profile.base_url_key
            raise UpstreamUnavailable(f"no upstream base URL for {provider_type}: set {key}")
        if self.version_path and urlsplit(url).path in ("", "/"):
            url += self.version_path
        return url

    def auth_headers(
        self, provider_type: str, node: ProviderNode, config: MainConfig
    ) -> dict[str, str]:
        key = self._key(provider_type, node, config)
        if not self.forwards:
            return self.auth(key)
        name = setting_text(effective_setting(node, config, "FORWARD_HEADER_NAME"))
        prefix = effective_setting(node, config, "FORWARD_HEADER_VALUE_PREFIX")
        return {name or "Authorization": (prefix if isinstance(prefix, str) else "Bearer ") + key}

    def _key(self, provider_type: str, node: ProviderNode, config: MainConfig) -> str:
        key_name = self.profile.api_key_key or ""
        key = setting_text(effective_setting(node, config, key_name))
        if key is None:
            raise UpstreamUnavailable(f"no API key for this {provider_type} node: set {key_name}")
        return key


CLAUDE_CUSTOM = VendorApiAdapter(
    name="anthropic-messages",
    protocol="claude",
    provider_type="claude-custom",
    profile=TypeProfile("CLAUDE_BASE_URL", "CLAUDE_API_KEY", "https://api.anthropic.com/v1"),
    path="/messages",
    auth=anthropic_key,
    models=CLAUDE_MODELS,
    version_path="/v1",
)
RESPONSES_CUSTOM = VendorApiAdapter(
    name="openai-responses",
    protocol="openaiResponses",
    provider_type="openaiResponses-custom",
    profile=TypeProfile("OPENAI_BASE_URL", "OPENAI_API_KEY", "https://api.openai.com/v1"),
    path="/responses",
    auth=bearer,
)

FORWARD_API = VendorApiAdapter(
    name="forward",
    protocol=SAME_AS_CLIENT,
    provider_type="forward-api",
    profile=TypeProfile("FORWARD_BASE_URL", "FORWARD_API_KEY"),
    path="",
    auth=bearer,
    forwards=True,
)


@hookimpl
def cfgstore_gateway_adapters(register: Callable[[Adapter], None]) -> None:
    register(CLAUDE_CUSTOM)
    register(RESPONSES_CUSTOM)
    register(FORWARD_API)
