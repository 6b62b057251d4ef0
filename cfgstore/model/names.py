"""Names every store can hold: provider types, node uuids and document keys.

Provider types and uuids become parts of storage keys, and key names are joined by
:data:`SEPARATOR` where a backend keeps a document's key order (Redis ``@layout``). So a
provider type may not be empty or contain ``:`` or ``\\x1f``; a uuid may not be empty or
contain ``\\x1f``; a node key or usage-cache type may not contain ``\\x1f``. ``cfgctl
migrate`` checks a whole folder against these rules before it writes anything
(:func:`check_pools`); backends check each write.
"""

from __future__ import annotations

from cfgstore.errors import InvalidData
from cfgstore.model.convert import json_path
from cfgstore.model.pools import ProviderPools, node_to_json

SEPARATOR = "\x1f"
"""Joins key names in a stored key order. Names containing it are refused."""


def type_name_problem(provider_type: str) -> str | None:
    if not provider_type or ":" in provider_type or SEPARATOR in provider_type:
        return "a provider type must be non-empty, without ':' or \\x1f"
    return None


def uuid_problem(uuid: str) -> str | None:
    if not uuid or SEPARATOR in uuid:
        return "a node uuid must be non-empty, without \\x1f"
    return None


def key_problem(key: str) -> str | None:
    return "a key name must not contain \\x1f" if SEPARATOR in key else None


def check_pools(pools: ProviderPools, source: str) -> None:
    """Raise :class:`InvalidData` naming ``source`` and the JSON path of the first name in
    ``pools`` that no store can hold."""
    for provider_type, nodes in pools.types.items():
        problem = type_name_problem(provider_type)
        if problem:
            raise InvalidData(source, json_path(provider_type), problem)
        for index, node in enumerate(nodes):
            problem = uuid_problem(node.uuid)
            if problem:
                raise InvalidData(source, json_path(provider_type, index, "uuid"), problem)
            for key in node_to_json(node):
                problem = key_problem(key)
                if problem:
                    raise InvalidData(source, json_path(provider_type, index, key), problem)


def check_type_names(names: list[str], source: str, *parents: str) -> None:
    """Raise :class:`InvalidData` for the first of ``names`` (keys under ``parents``) that
    contains :data:`SEPARATOR`."""
    for name in names:
        problem = key_problem(name)
        if problem:
            raise InvalidData(source, json_path(*parents, name), problem)
