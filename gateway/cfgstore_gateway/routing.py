"""Which pool types a request goes to, in order (aiclient-formats §3.5 steps 1–2).

The *effective type* is, first found wins:

1. the ``model-provider`` request header;
2. the ``/{type}/v1/...`` path prefix (the app only routes known types there);
3. a model written ``type:model`` whose ``type`` is a known provider type (a pool type, a
   built-in id, or ``<built-in>-<suffix>``); the prefix is then removed from the model
   sent upstream. ``qwen3:8b`` stays a model name, as ``qwen3`` is no provider type;
4. ``MODEL_PROVIDER`` of ``config.json``, normalised as the Node service does (a string,
   comma list or array; items matched case-insensitively to known ids or accepted as
   ``<known id>-<suffix>``; unknown items dropped; nothing left → ``gemini-cli-oauth``).

``auto`` in the header or the path means "not given" (the Node service's pseudo type).

The *targets* are then ``[type, *providerFallbackChain[type]]``: a fallback type is kept
only when it shares the effective type's protocol prefix (the part before the first ``-``:
``openai``, ``claude``, ``gemini``…) and, when it has a static model list, lists the model.
Last comes ``modelFallbackMapping[model]`` (``{targetProviderType, targetModel}``) with its
own fallback chain. Each (type, model) appears once. Pure functions over the config and the
known types: no I/O.

Custom models (``custom_models.json``, aiclient-formats §6.2) are applied afterwards by
:func:`with_custom_model`: a requested model equal to an entry's ``id`` or ``alias`` is
sent as its ``actualModel`` (default: the ``id``) to its ``actualProvider`` (when the key
is present it wins, even empty) or else its ``provider``; an empty or absent type keeps the
routed one. The targets are then rebuilt for that (type, model) as above.
:func:`listed_custom_models` says which of them ``GET /v1/models`` lists.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import attrs

from cfgstore.model.config import MainConfig
from cfgstore.model.custom_models import CustomModel

AUTO = "auto"
DEFAULT_PROVIDER = "gemini-cli-oauth"

BUILTIN_PROVIDER_TYPES: tuple[str, ...] = (
    "claude-kiro-oauth",
    "gemini-cli-oauth",
    "gemini-antigravity",
    "openai-qwen-oauth",
    "openai-iflow",
    "openai-codex-oauth",
    "grok-web",
    "openai-custom",
    "openaiResponses-custom",
    "atlascloud",
    "claude-custom",
    "forward-api",
)
"""The Node service's provider ids (aiclient-formats §3.2)."""

RESERVED_TYPE_NAMES = frozenset({"api", "ui", "v1", "v1beta", "health", "metrics"})
"""Words of the gateway's own paths, never a provider type (any case): the admin API
refuses them for a new pool and ``/{type}/v1/...`` never routes to them, so no pool can
stand in a path that belongs to the gateway."""


def is_reserved_type(name: str) -> bool:
    return name.lower() in RESERVED_TYPE_NAMES


@attrs.frozen
class Target:
    """One pool type to try, with the model to ask it for. ``via`` names the config entry
    that added a fallback target (``""`` for the routed type itself); it is for messages
    and plays no part in equality."""

    provider_type: str
    model: str
    via: str = attrs.field(default="", eq=False)


@attrs.frozen
class Route:
    """The outcome of routing: the targets in order, and how the type was decided
    (``header``, ``path``, ``model`` or ``default``) for the log."""

    targets: tuple[Target, ...]
    source: str
    custom_model: str | None = None
    """The ``custom_models.json`` id that redirected the route, if one did."""

    @property
    def provider_type(self) -> str:
        return self.targets[0].provider_type


def is_known_type(provider_type: str, pool_types: Collection[str]) -> bool:
    """A pool type, a built-in id, or a built-in id with a ``-suffix``."""
    if provider_type in pool_types or provider_type in BUILTIN_PROVIDER_TYPES:
        return True
    return any(provider_type.startswith(known + "-") for known in BUILTIN_PROVIDER_TYPES)


def canonical_type(name: str, pool_types: Collection[str]) -> str | None:
    """``name`` matched case-insensitively to a known type (or ``<known>-<suffix>``)."""
    lowered = name.strip().lower()
    if not lowered:
        return None
    for known in (*pool_types, *BUILTIN_PROVIDER_TYPES):
        if known.lower() == lowered:
            return known
    for known in BUILTIN_PROVIDER_TYPES:
        if lowered.startswith(known.lower() + "-"):
            return name.strip()
    return None


def default_providers(config: MainConfig, pool_types: Collection[str]) -> list[str]:
    """``MODEL_PROVIDER`` normalised (``DEFAULT_MODEL_PROVIDERS`` in the Node service)."""
    value = config.get("MODEL_PROVIDER")
    items: list[str] = []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list):
        items = [item for item in value if isinstance(item, str)]
    found: list[str] = []
    for item in items:
        known = canonical_type(item, pool_types)
        if known is not None and known not in found:
            found.append(known)
    return found or [DEFAULT_PROVIDER]


def protocol_prefix(provider_type: str) -> str:
    return provider_type.split("-", 1)[0]


def split_model(model: str, pool_types: Collection[str]) -> tuple[str | None, str]:
    """``type:model`` → (type, model) when ``type`` is known, else (None, model)."""
    prefix, sep, rest = model.partition(":")
    if sep and rest and is_known_type(prefix, pool_types):
        return prefix, rest
    return None, model


def resolve(
    *,
    header_type: str | None,
    path_type: str | None,
    model: str,
    config: MainConfig,
    pool_types: Collection[str],
    static_models: Callable[[str], Sequence[str]],
) -> Route:
    """The route of one request (see the module docstring)."""
    model_type, bare_model = split_model(model, pool_types)
    if model_type is not None:
        model = bare_model
    header_type = header_type.strip() if header_type else None
    if header_type and header_type != AUTO:
        provider_type, source = header_type, "header"
    elif path_type and path_type != AUTO:
        provider_type, source = path_type, "path"
    elif model_type is not None:
        provider_type, source = model_type, "model"
    else:
        provider_type, source = default_providers(config, pool_types)[0], "default"
    return Route(tuple(_targets(provider_type, model, config, static_models)), source)


def find_custom_model(model: str, models: Sequence[CustomModel]) -> CustomModel | None:
    """The custom model whose ``id`` is ``model``, else the first whose ``alias`` is."""
    for custom in models:
        if custom.id == model:
            return custom
    for custom in models:
        if custom.document.get("alias") == model:
            return custom
    return None


def listed_custom_models(
    models: Sequence[CustomModel], wanted_type: str | None
) -> list[tuple[str, str]]:
    """``(id, owned_by)`` of the custom models a model listing shows: all of them when no
    type is asked (``wanted_type`` ``None``), else those whose ``provider`` is that type and
    the global ones (no ``provider``). ``owned_by`` is the ``provider``, else the
    ``actualProvider``, else the type asked, else ``"custom"``."""
    listed: list[tuple[str, str]] = []
    for custom in models:
        provider = _nonempty(custom.document.get("provider"))
        if wanted_type is not None and provider is not None and provider != wanted_type:
            continue
        owner = provider or _nonempty(custom.document.get("actualProvider"))
        listed.append((custom.id, owner or wanted_type or "custom"))
    return listed


def _nonempty(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def custom_target(custom: CustomModel, routed_type: str) -> Target:
    """Where a custom model's requests go (see the module docstring)."""
    doc = custom.document
    provider = doc["actualProvider"] if "actualProvider" in doc else doc.get("provider")
    actual = doc.get("actualModel")
    return Target(
        provider if isinstance(provider, str) and provider.strip() else routed_type,
        actual if isinstance(actual, str) and actual.strip() else custom.id,
    )


def with_custom_model(
    route: Route,
    model: str,
    models: Sequence[CustomModel],
    config: MainConfig,
    static_models: Callable[[str], Sequence[str]],
) -> Route:
    """``route`` redirected by the custom model that ``model`` (the routed model, without
    a ``type:`` prefix) names; ``route`` itself when none does."""
    custom = find_custom_model(model, models)
    if custom is None:
        return route
    target = custom_target(custom, route.provider_type)
    targets = _targets(target.provider_type, target.model, config, static_models)
    return Route(tuple(targets), route.source, custom.id)


def _targets(
    provider_type: str,
    model: str,
    config: MainConfig,
    static_models: Callable[[str], Sequence[str]],
) -> list[Target]:
    """``[type, *chain]`` then ``modelFallbackMapping[model]`` with its chain."""
    targets = _with_fallbacks(provider_type, model, config, static_models)
    mapping = config.get("modelFallbackMapping")
    entry = mapping.get(model) if isinstance(mapping, dict) else None
    if isinstance(entry, dict):
        target_type = entry.get("targetProviderType")
        target_model = entry.get("targetModel")
        if isinstance(target_type, str) and target_type:
            target_model = target_model if isinstance(target_model, str) and target_model else model
            found = _with_fallbacks(target_type, target_model, config, static_models)
            found[0] = attrs.evolve(found[0], via=f"modelFallbackMapping[{model!r}]")
            for target in found:
                if target not in targets:
                    targets.append(target)
    return targets


def _with_fallbacks(
    provider_type: str,
    model: str,
    config: MainConfig,
    static_models: Callable[[str], Sequence[str]],
) -> list[Target]:
    targets = [Target(provider_type, model)]
    chains = config.get("providerFallbackChain")
    chain = chains.get(provider_type) if isinstance(chains, dict) else None
    if not isinstance(chain, list):
        return targets
    prefix = protocol_prefix(provider_type)
    for fallback in chain:
        if not isinstance(fallback, str) or protocol_prefix(fallback) != prefix:
            continue
        listed = static_models(fallback)
        if listed and model not in listed:
            continue
        target = Target(fallback, model, f"providerFallbackChain[{provider_type!r}]")
        if target not in targets:
            targets.append(target)
    return targets
