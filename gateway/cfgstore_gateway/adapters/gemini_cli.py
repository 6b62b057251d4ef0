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

Not done: the ``anti-<model>`` continuation after ``MAX_TOKENS``.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Mapping
from typing import Any

from cfgstore.hookspecs import hookimpl
from cfgstore.model.config import MainConfig
from cfgstore.model.pools import ProviderNode
from cfgstore_gateway.adapters import Adapter
from cfgstore_gateway.adapters.code_assist import (
    CodeAssistAdapter,
    bearer_json,
    envelope,
    inner_request,
)
from cfgstore_gateway.adapters.openai_compat import TypeProfile, configured_base_url
from cfgstore_gateway.adapters.usage_format import fraction

DEFAULT_BASE_URL = "https://cloudcode-pa.googleapis.com"
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
        return model if model in MODELS else sorted(MODELS)[0]

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
            if thinking.get("thinkingLevel") or (budget is not None and budget != 0):
                thinking["includeThoughts"] = True
        return envelope(model, project, request)

    def quotas(self, raw: Mapping[str, Any]) -> list[tuple[str, float, object]]:
        buckets = raw.get("buckets")
        return [
            (b["modelId"], fraction(b.get("remainingFraction")), b.get("resetTime"))
            for b in (buckets if isinstance(buckets, list) else ())
            if isinstance(b, Mapping) and b.get("modelId") in MODELS
        ]


GEMINI_CLI = GeminiCliAdapter()


@hookimpl
def cfgstore_gateway_adapters(register: Callable[[Adapter], None]) -> None:
    register(GEMINI_CLI)
