"""Whether this gateway can serve a pool node at all, and why not.

A node is *not served* when no adapter serves its type (``registry.for_type`` is ``None``:
``grok-web``, a plugin's type whose plugin is not installed), or when its adapter says so
for the node (:class:`~cfgstore_gateway.adapters.NotServed`: a pass-through type such as
``claude-kiro-oauth`` with no OpenAI-compatible upstream configured). Such nodes belong to
accounts the gateway cannot use, often imported from the Node service, which serves them
natively: the gateway never touches them. Startup and scheduled health checks leave them
out, proactive refresh leaves their credentials alone, selection skips them, and nothing is
recorded against them (no failure, no pick), so their bytes in the pools stay what they
were. The console shows their type as "no adapter installed" (``GET /api/adapters``).

Every function is pure and cheap (dictionary lookups, no I/O): it may run per pick.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cfgstore.model.config import MainConfig
from cfgstore.model.pools import ProviderNode
from cfgstore_gateway.adapters import AdapterRegistry, NotServed, UpstreamUnavailable

NO_ADAPTER = "no adapter installed"
"""The words the console and the routing errors use for a type (or node) not served."""


def unserved_reason(
    registry: AdapterRegistry, provider_type: str, node: ProviderNode, config: MainConfig
) -> str | None:
    """Why the gateway cannot serve ``node`` (starting with :data:`NO_ADAPTER`), or ``None``
    when it can (a node that is merely misconfigured is served: its calls fail and are
    recorded as the node's failures)."""
    adapter = registry.for_type(provider_type)
    if adapter is None:
        return f"{NO_ADAPTER} for {provider_type}"
    try:
        adapter.check_node(provider_type, node, config)
    except NotServed as exc:
        return f"{NO_ADAPTER} for {provider_type}'s own protocol ({exc})"
    except UpstreamUnavailable:
        return None
    return None


def unserved_nodes(
    registry: AdapterRegistry,
    provider_type: str,
    nodes: Sequence[ProviderNode],
    config: MainConfig,
) -> dict[str, str]:
    """``uuid → reason`` of the nodes of ``nodes`` the gateway cannot serve."""
    if registry.for_type(provider_type) is None:
        reason = f"{NO_ADAPTER} for {provider_type}"
        return {node.uuid: reason for node in nodes}
    found: dict[str, str] = {}
    for node in nodes:
        why = unserved_reason(registry, provider_type, node, config)
        if why is not None:
            found[node.uuid] = why
    return found


def type_report(
    registry: AdapterRegistry,
    pools: Mapping[str, Sequence[ProviderNode]],
    config: MainConfig,
) -> dict[str, dict[str, object]]:
    """Per pool type: the adapter serving it (its name, or ``None``), whether the gateway
    serves it (some node served), why not (the first node's reason) and the uuids of its
    nodes not served. The answer of ``GET /api/adapters``."""
    report: dict[str, dict[str, object]] = {}
    for provider_type, nodes in pools.items():
        adapter = registry.for_type(provider_type)
        unserved = unserved_nodes(registry, provider_type, nodes, config)
        served = adapter is not None and (not nodes or len(unserved) < len(nodes))
        reason = None
        if not served:
            reason = next(iter(unserved.values()), f"{NO_ADAPTER} for {provider_type}")
        report[provider_type] = {
            "adapter": adapter.name if adapter is not None else None,
            "served": served,
            "reason": reason,
            "unservedNodes": list(unserved),
        }
    return report
