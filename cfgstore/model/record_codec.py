"""Hot-path records as JSON: how the outage journal (and anything else) stores them.

One JSON object per record: a ``"type"`` tag naming the record class, then the record's
fields under their attribute names, in declaration order::

    {"type": "failure", "provider_type": "openai-custom", "uuid": "…", "at_ms": 1773576000000,
     "message": "500 Internal Server Error", "max_error_count": 3, "immediate": false}

This is cfgstore's own format (the Node service never sees it), so the keys are the Python
attribute names. Every field is written, defaults included, so a change of a default never
changes the meaning of a stored record. Reading is strict, like every other format: an
unknown tag, a missing or unknown field, or a value of the wrong JSON type raises
:class:`~cfgstore.errors.InvalidData` naming the source and the JSON path — a record whose
meaning is not certain is never applied.
"""

from __future__ import annotations

from typing import Any

import attrs

from cfgstore.errors import InvalidData
from cfgstore.model.convert import converter, json_path, structure
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.records import (
    Cooldown,
    Failure,
    HealthCheckResult,
    NeedRefresh,
    NodeRecord,
    Recovered,
    Selected,
    Success,
)

TYPE_KEY = "type"

RECORD_TYPES: dict[str, type[NodeRecord]] = {
    "selected": Selected,
    "success": Success,
    "failure": Failure,
    "cooldown": Cooldown,
    "need_refresh": NeedRefresh,
    "recovered": Recovered,
    "health_check": HealthCheckResult,
}
"""Type tag → record class. Tags are stored: never rename one."""

_TAGS: dict[type[NodeRecord], str] = {cls: tag for tag, cls in RECORD_TYPES.items()}

_FIELDS: dict[type[NodeRecord], frozenset[str]] = {
    cls: frozenset(field.name for field in attrs.fields(cls)) for cls in RECORD_TYPES.values()
}


def record_to_json(record: NodeRecord) -> dict[str, JSONValue]:
    """The record as a JSON object: ``{"type": <tag>, <field>: <value>, …}``."""
    tag = _TAGS.get(type(record))
    if tag is None:
        raise TypeError(f"unknown record type {type(record).__name__}")
    fields: dict[str, Any] = converter.unstructure(record)
    return {TYPE_KEY: tag, **fields}


def record_from_json(doc: JSONValue, source: str, path: str = "$") -> NodeRecord:
    """The record ``doc`` describes; :class:`InvalidData` (``source``, JSON path under
    ``path``) when the tag is unknown or a field is missing, unknown or of the wrong type."""
    if not isinstance(doc, dict):
        raise InvalidData(source, path, "expected a record object")
    tag = doc.get(TYPE_KEY)
    if not isinstance(tag, str):
        raise InvalidData(source, f"{path}.{TYPE_KEY}", "expected a record type string")
    cls = RECORD_TYPES.get(tag)
    if cls is None:
        raise InvalidData(source, f"{path}.{TYPE_KEY}", f"unknown record type {tag!r}")
    fields = {key: value for key, value in doc.items() if key != TYPE_KEY}
    for key in fields:
        if key not in _FIELDS[cls]:
            where = json_path(key) if isinstance(key, str) else "$"
            raise InvalidData(source, path + where[1:], f"unknown field of a {tag} record")
    return structure(fields, cls, source, path)
