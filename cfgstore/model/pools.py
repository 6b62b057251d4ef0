"""``provider_pools.json``: provider types and their nodes (aiclient-formats §3).

A node's hot-path fields (health, counters, times) are typed in :class:`NodeState`; every
other key rides along untouched in :attr:`ProviderNode.settings`. :attr:`ProviderNode.layout`
remembers which keys the document had and in which order, so a node that was read and not
changed serialises to the same bytes, and a changed one keeps its key order.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from cfgstore.errors import InvalidData
from cfgstore.model.convert import converter, json_path, structure
from cfgstore.model.jsjson import JSONValue


@attrs.define
class NodeState:
    """The fields the hot path reads and writes, with the Node service's load defaults."""

    is_healthy: bool = True
    is_disabled: bool = False
    usage_count: int = 0
    error_count: int = 0
    last_used: str | None = None
    last_error_time: str | None = None
    last_error_message: str | None = None
    last_health_check_time: str | None = None
    last_health_check_model: str | None = None
    scheduled_recovery_time: str | None = None
    needs_refresh: bool = False
    refresh_count: int = 0
    last_refresh_time: int | None = None
    last_selection_seq: int = 0


STATE_KEYS: dict[str, str] = {
    "is_healthy": "isHealthy",
    "is_disabled": "isDisabled",
    "usage_count": "usageCount",
    "error_count": "errorCount",
    "last_used": "lastUsed",
    "last_error_time": "lastErrorTime",
    "last_error_message": "lastErrorMessage",
    "last_health_check_time": "lastHealthCheckTime",
    "last_health_check_model": "lastHealthCheckModel",
    "scheduled_recovery_time": "scheduledRecoveryTime",
    "needs_refresh": "needsRefresh",
    "refresh_count": "refreshCount",
    "last_refresh_time": "lastRefreshTime",
    "last_selection_seq": "_lastSelectionSeq",
}
"""Attribute name → JSON key of every hot-path field."""

HOT_KEYS = frozenset(STATE_KEYS.values())
JSON_TO_ATTR = {v: k for k, v in STATE_KEYS.items()}

COUNTER_KEYS = frozenset({"usageCount", "errorCount", "lastUsed", "lastErrorTime"})
"""Live counters an admin update never overwrites (aiclient-formats §7, PUT /providers)."""

_DEFAULT_STATE = NodeState()

_RENAMES: dict[str, Any] = {a: override(rename=k) for a, k in STATE_KEYS.items()}
converter.register_structure_hook(
    NodeState, make_dict_structure_fn(NodeState, converter, **_RENAMES)
)
converter.register_unstructure_hook(
    NodeState, make_dict_unstructure_fn(NodeState, converter, **_RENAMES)
)


@attrs.define
class ProviderNode:
    """One account of a provider pool.

    ``settings`` holds every key that is neither ``uuid`` nor a hot field, in document
    order; ``layout`` is the document's key order (hot keys included). Hot fields absent
    from ``layout`` are written only once they differ from their load default.
    """

    uuid: str
    state: NodeState = attrs.Factory(NodeState)
    settings: dict[str, JSONValue] = attrs.Factory(dict)
    layout: list[str] = attrs.Factory(list)

    def copy(self) -> ProviderNode:
        return ProviderNode(
            self.uuid, attrs.evolve(self.state), copy.deepcopy(self.settings), list(self.layout)
        )

    def setting(self, key: str, default: JSONValue = None) -> JSONValue:
        return self.settings.get(key, default)

    @property
    def custom_name(self) -> str | None:
        name = self.settings.get("customName")
        return name if isinstance(name, str) else None

    @property
    def concurrency_limit(self) -> int:
        """``concurrencyLimit`` with JavaScript ``parseInt`` leniency; 0 = unlimited."""
        return _parse_int(self.settings.get("concurrencyLimit"))

    @property
    def queue_limit(self) -> int:
        return _parse_int(self.settings.get("queueLimit"))

    def ensure_keys(self, *keys: str) -> None:
        """Append keys to the layout (as the Node service does when it first sets them)."""
        layout = self.layout
        if len(keys) <= 2:
            for key in keys:
                if key not in layout:
                    layout.append(key)
            return
        # A record ensures up to 10 keys of a ~20-key layout: one set beats 10 list scans
        # (the scans were ~15 % of the store's client instructions on the hot path).
        present = set(layout)
        for key in keys:
            if key not in present:
                layout.append(key)
                present.add(key)


def _parse_int(value: JSONValue) -> int:
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        digits = value.strip()
        sign = -1 if digits.startswith("-") else 1
        digits = digits.lstrip("+-")
        count = len(digits) - len(digits.lstrip("0123456789"))
        return sign * int(digits[:count]) if count else 0
    return 0


def node_from_json(doc: JSONValue, source: str, path: str = "$") -> ProviderNode:
    """Structure one node object; raise :class:`InvalidData` with the path of a bad field."""
    if not isinstance(doc, dict):
        raise InvalidData(source, path, "a provider node must be a JSON object")
    uuid = doc.get("uuid")
    if not isinstance(uuid, str) or not uuid:
        raise InvalidData(source, f"{path}.uuid", "every node needs a non-empty string uuid")
    hot = {k: v for k, v in doc.items() if k in HOT_KEYS}
    for key in (
        "isHealthy",
        "isDisabled",
        "needsRefresh",
        "usageCount",
        "errorCount",
        "refreshCount",
        "_lastSelectionSeq",
    ):
        if hot.get(key, 0) is None:  # null where JavaScript code treats the field as unset
            del hot[key]
    state = structure(hot, NodeState, source, path, STATE_KEYS)
    settings = {k: v for k, v in doc.items() if k != "uuid" and k not in HOT_KEYS}
    return ProviderNode(uuid, state, settings, list(doc))


def node_to_json(node: ProviderNode) -> dict[str, JSONValue]:
    """The node as a JSON object, keys in layout order, changed hot fields appended."""
    state: dict[str, Any] = converter.unstructure(node.state)
    defaults: dict[str, Any] = converter.unstructure(_DEFAULT_STATE)
    out: dict[str, JSONValue] = {}
    for key in node.layout:
        if key == "uuid":
            out[key] = node.uuid
        elif key in HOT_KEYS:
            out[key] = state[key]
        elif key in node.settings:
            out[key] = node.settings[key]
    if "uuid" not in out:
        out["uuid"] = node.uuid
    for key, value in node.settings.items():
        out.setdefault(key, value)
    for key, value in state.items():
        if key not in out and value != defaults[key]:
            out[key] = value
    return out


def node_from_settings(fields: Mapping[str, JSONValue], uuid: str, source: str) -> ProviderNode:
    """Build a new node from a plain object (UI form, API), ``uuid`` given separately."""
    doc = dict(fields)
    doc["uuid"] = uuid
    return node_from_json(doc, source)


@attrs.define
class ProviderPools:
    """Provider type → ordered nodes. Type order and node order are data."""

    types: dict[str, list[ProviderNode]] = attrs.Factory(dict)

    def __iter__(self) -> Iterator[tuple[str, ProviderNode]]:
        for provider_type, nodes in self.types.items():
            for node in nodes:
                yield provider_type, node

    def find(self, provider_type: str, uuid: str) -> ProviderNode | None:
        for node in self.types.get(provider_type, ()):
            if node.uuid == uuid:
                return node
        return None

    def index_of(self, provider_type: str, uuid: str) -> int | None:
        for index, node in enumerate(self.types.get(provider_type, ())):
            if node.uuid == uuid:
                return index
        return None

    def node_count(self) -> int:
        return sum(len(nodes) for nodes in self.types.values())

    def copy(self) -> ProviderPools:
        return ProviderPools({t: [n.copy() for n in nodes] for t, nodes in self.types.items()})


def pools_from_json(doc: JSONValue, source: str) -> ProviderPools:
    """Structure a whole ``provider_pools.json`` document."""
    if not isinstance(doc, dict):
        raise InvalidData(source, "$", "provider pools must be a JSON object of type → array")
    pools = ProviderPools()
    for provider_type, nodes in doc.items():
        if not isinstance(nodes, list):
            raise InvalidData(source, json_path(provider_type), "expected an array of nodes")
        seen: set[str] = set()
        parsed = []
        for index, item in enumerate(nodes):
            node = node_from_json(item, source, json_path(provider_type, index))
            if node.uuid in seen:
                raise InvalidData(
                    source, json_path(provider_type, index, "uuid"), f"duplicate uuid {node.uuid}"
                )
            seen.add(node.uuid)
            parsed.append(node)
        pools.types[provider_type] = parsed
    return pools


def pools_to_json(pools: ProviderPools) -> dict[str, JSONValue]:
    return {t: [node_to_json(n) for n in nodes] for t, nodes in pools.types.items()}


def cold_start(node: ProviderNode) -> None:
    """The Node service's cold-start normalisation (aiclient-formats §3.4): zero the live
    counters and append the fields it always fills in."""
    node.state.usage_count = 0
    node.state.error_count = 0
    node.state.last_used = None
    node.state.needs_refresh = False
    node.state.refresh_count = 0
    node.ensure_keys("isHealthy", "lastUsed", "usageCount", "errorCount")
    node.ensure_keys(
        "isDisabled",
        "needsRefresh",
        "refreshCount",
        "lastHealthCheckTime",
        "lastHealthCheckModel",
        "lastErrorMessage",
    )
    if "customName" not in node.settings:
        node.settings["customName"] = None
        node.ensure_keys("customName")


def keep_live_fields(node: ProviderNode, stored: ProviderNode) -> None:
    """Give ``node`` the hot-path state of ``stored`` (a migration with live counters
    kept): the state, and the hot keys ``stored`` has that ``node``'s layout lacks."""
    node.state = attrs.evolve(stored.state)
    node.ensure_keys(*(key for key in stored.layout if key in HOT_KEYS))
