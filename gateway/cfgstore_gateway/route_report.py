"""What a request that found no node is told: the type routed to, what chose it, and why
each candidate type was skipped.

The Node service answers ``No healthy provider found in pool for <type> supporting model:
<model>``; the gateway keeps those words and adds what an operator needs to fix it:

* **what chose the type**: the ``Model-Provider`` header, the ``/{type}/v1/`` path prefix,
  the model's ``type:`` prefix or ``MODEL_PROVIDER`` in ``config.json`` (the Node service's
  precedence, :mod:`cfgstore_gateway.routing`), and the custom model that redirected it;
* **each target tried** (the type, then its ``providerFallbackChain`` and
  ``modelFallbackMapping`` entries) with its skip reason: ``no adapter installed``, ``none
  configured`` (no node of that type), or what kept each node out: ``disabled``,
  ``unhealthy``, ``needs a token refresh``, ``model not supported`` (``supportedModels`` /
  ``notSupportedModels``), ``at its concurrency limit``, ``already tried``;
* **where the model is**: a model written without a ``type:`` prefix goes to the routed
  type only, as in the Node service (it does not look for a type serving the model). When
  other pool types list the model (their nodes' ``supportedModels``, or an upstream model
  list ``GET /v1/models`` fetched), the message names them and how to ask for one.

Pure functions over the route, the nodes and the config: no I/O. They run only when a
request found no node, never per pick.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import attrs

from cfgstore.model.config import MainConfig
from cfgstore.model.pools import ProviderNode
from cfgstore.model.timefmt import parse_time_ms
from cfgstore_gateway.errors import NO_HEALTHY_PROVIDER
from cfgstore_gateway.routing import DEFAULT_PROVIDER, Route, Target, canonical_type
from cfgstore_gateway.selection import uses_managed_model_list

NONE_CONFIGURED = "none configured"
DISABLED = "disabled"
UNHEALTHY = "unhealthy"
NEEDS_REFRESH = "needs a token refresh"
MODEL_NOT_SUPPORTED = "model not supported"
BUSY = "at its concurrency limit"
TRIED = "already tried"


@attrs.frozen
class Skip:
    """One target that gave no node, and why."""

    target: Target
    reason: str
    no_adapter: bool = False
    """No adapter serves the type at all (or none of its nodes)."""


def serves_model(provider_type: str, node: ProviderNode, model: str) -> bool:
    """Whether selection would consider ``node`` for ``model`` (the model filter of
    :mod:`cfgstore_gateway.selection`: a non-empty ``supportedModels`` of a managed-list
    type lists exactly the models served, otherwise ``notSupportedModels`` excludes)."""
    if not model:
        return True
    settings = node.settings
    if uses_managed_model_list(provider_type):
        listed = settings.get("supportedModels")
        if isinstance(listed, list):
            normal = {t for item in listed if isinstance(item, str) and (t := item.strip())}
            if normal:
                return model in normal
    excluded = settings.get("notSupportedModels")
    return not (isinstance(excluded, list) and model in excluded)


def node_skip_reason(
    provider_type: str,
    node: ProviderNode,
    model: str,
    *,
    now_ms: int,
    unserved: Mapping[str, str],
    attempted: Collection[str],
    busy: Collection[str],
) -> str | None:
    """Why ``node`` was not picked for ``model`` (``None``: nothing kept it out)."""
    state = node.state
    if node.uuid in unserved:
        return "no adapter installed"
    if node.uuid in attempted:
        return TRIED
    if node.uuid in busy:
        return BUSY
    if state.is_disabled:
        return DISABLED
    if not state.is_healthy:
        due = parse_time_ms(state.scheduled_recovery_time or "")
        if due is None or now_ms < due:
            return UNHEALTHY
    if state.needs_refresh:
        return NEEDS_REFRESH
    if not serves_model(provider_type, node, model):
        return MODEL_NOT_SUPPORTED
    return None


def pool_skip_reason(
    target: Target,
    nodes: Sequence[ProviderNode],
    *,
    now_ms: int,
    unserved: Mapping[str, str] | None = None,
    attempted: Collection[str] = (),
    busy: Collection[str] = (),
) -> Skip:
    """The skip of a target whose pool (``nodes``) gave no node."""
    provider_type, model = target.provider_type, target.model
    if not nodes:
        return Skip(target, NONE_CONFIGURED)
    unserved = unserved or {}
    if len(unserved) == len(nodes):
        return Skip(target, next(iter(unserved.values())), no_adapter=True)
    counts: dict[str, int] = {}
    for node in nodes:
        reason = node_skip_reason(
            provider_type,
            node,
            model,
            now_ms=now_ms,
            unserved=unserved,
            attempted=attempted,
            busy=busy,
        )
        key = reason or "available (changed meanwhile)"
        counts[key] = counts.get(key, 0) + 1
    total = len(nodes)
    if len(counts) == 1:
        reason = next(iter(counts))
        if reason == MODEL_NOT_SUPPORTED:
            return Skip(target, f"{MODEL_NOT_SUPPORTED} by any of its {_nodes(total)}")
        every = "its only node" if total == 1 else f"all {total} nodes"
        return Skip(target, f"{every} {reason}")
    parts = ", ".join(f"{count} {reason}" for reason, count in counts.items())
    return Skip(target, f"no usable node among {total}: {parts}")


def chosen_by(route: Route, config: MainConfig, pool_types: Collection[str]) -> str:
    """What decided the route's first type, in words naming the header, path or key."""
    if route.source == "header":
        what = "the Model-Provider header"
    elif route.source == "path":
        what = "the /{type}/v1/ path prefix"
    elif route.source == "model":
        what = "the model's 'type:' prefix"
    elif _model_provider_set(config, pool_types):
        what = "MODEL_PROVIDER in config.json"
    else:
        what = f"the default MODEL_PROVIDER ({DEFAULT_PROVIDER}: config.json sets no usable one)"
    if route.custom_model is not None:
        what += f", then custom model {route.custom_model!r} of custom_models.json"
    return what


def types_listing(
    model: str,
    pools: Mapping[str, Sequence[ProviderNode]],
    fetched: Mapping[str, tuple[float, list[str]]],
    exclude: Collection[str],
) -> list[str]:
    """Pool types other than ``exclude`` that list ``model``: an enabled node's
    ``supportedModels``, or the model list fetched from their upstream (cached by
    ``GET /v1/models``, however old)."""
    found: list[str] = []
    for provider_type, nodes in pools.items():
        if provider_type in exclude:
            continue
        listed = any(
            not node.state.is_disabled
            and isinstance(node.settings.get("supportedModels"), list)
            and model in node.settings["supportedModels"]
            for node in nodes
        )
        cached = fetched.get(provider_type)
        if listed or (cached is not None and model in cached[1]):
            found.append(provider_type)
    return found


def no_provider_message(
    route: Route,
    skips: Sequence[Skip],
    config: MainConfig,
    pool_types: Collection[str],
    elsewhere: Sequence[str],
) -> str:
    """The client's message when no target gave a node (see the module docstring)."""
    first = route.targets[0]
    text = f"{NO_HEALTHY_PROVIDER} for {first.provider_type}"
    if first.model:
        text += f" supporting model: {first.model}"
    text += f" (type chosen by {chosen_by(route, config, pool_types)}). Tried: "
    text += "; ".join(_described(skip, first.model) for skip in skips) + "."
    if elsewhere and first.model:
        names = ", ".join(elsewhere)
        other = elsewhere[0]
        text += (
            f" Model {first.model!r} is listed by {names}: ask for '{other}:{first.model}', "
            f"send the header 'Model-Provider: {other}', or put {other} first in MODEL_PROVIDER."
        )
    return text


def _described(skip: Skip, first_model: str) -> str:
    target = skip.target
    via = f" via {target.via}" if target.via else ""
    model = f" for model {target.model}" if target.model != first_model else ""
    return f"{target.provider_type}{model}{via}: {skip.reason}"


def _nodes(count: int) -> str:
    return f"{count} node" if count == 1 else f"{count} nodes"


def _model_provider_set(config: MainConfig, pool_types: Collection[str]) -> bool:
    """Whether ``MODEL_PROVIDER`` names some known type (else the default was used)."""
    value = config.get("MODEL_PROVIDER")
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        return False
    return any(isinstance(i, str) and canonical_type(i, pool_types) is not None for i in items)
