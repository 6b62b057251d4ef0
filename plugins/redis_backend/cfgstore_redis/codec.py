"""Provider nodes ↔ Redis hash fields.

A node is one hash. Every hot-path key present in the document is a field of its own
whose value is the JSON text of the value (``true``, ``12``, ``"2026-…Z"``, ``null``), so
scripts change one field without decoding anything; everything else is one JSON object
in ``@doc``; ``@layout`` is the document's key order (names joined by ``\\x1f``);
``@ver`` counts changes, ``@docver`` counts admin edits (their compare-and-set), and
``@errms`` mirrors ``lastErrorTime`` in epoch ms (``nan`` when unreadable) for the
failure window, and ``@cred`` is the identity of the token file the node names (its
credential's key suffix; empty: none).
"""

from __future__ import annotations

import json

from cfgstore.model import jsjson
from cfgstore.model.credentials import credential_file_key
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import HOT_KEYS, STATE_KEYS, ProviderNode, node_from_json, node_to_json
from cfgstore.model.timefmt import parse_time_ms
from cfgstore_redis.keys import SEPARATOR

HOT_ORDER = tuple(STATE_KEYS.values())
DOC, LAYOUT, VERSION, DOC_VERSION, ERROR_MS = "@doc", "@layout", "@ver", "@docver", "@errms"
CRED = "@cred"
READ_FIELDS = (*HOT_ORDER, DOC, LAYOUT, DOC_VERSION)


def encode_scalar(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def error_ms_field(last_error_time: object) -> str | None:
    """``@errms`` for a ``lastErrorTime`` value (``None``: no field)."""
    if last_error_time is None:
        return None
    ms = parse_time_ms(last_error_time)
    return "nan" if ms is None else str(ms)


def node_to_fields(provider_type: str, node: ProviderNode) -> dict[str, str]:
    """Every field of a fresh node hash (``@ver``/``@docver`` excluded)."""
    doc = node_to_json(node)
    for key in doc:
        if SEPARATOR in key:
            raise ValueError(f"key {key!r} contains \\x1f")
    fields = {key: encode_scalar(value) for key, value in doc.items() if key in HOT_KEYS}
    settings = {k: v for k, v in doc.items() if k not in HOT_KEYS and k != "uuid"}
    fields[DOC] = json.dumps(settings, ensure_ascii=False)
    fields[LAYOUT] = SEPARATOR.join(doc)
    fields[CRED] = credential_file_key(provider_type, node) or ""
    errms = error_ms_field(doc.get("lastErrorTime"))
    if errms is not None:
        fields[ERROR_MS] = errms
    return fields


_COMMON_SCALARS: dict[str, JSONValue] = {"true": True, "false": False, "null": None, "0": 0}
"""Hot-field values most nodes hold: taken as they are, not parsed (a full read decodes
several hot fields per node)."""


def _hot_value(raw: str, source: str) -> JSONValue:
    value = _COMMON_SCALARS.get(raw, _COMMON_SCALARS)
    return jsjson.loads(raw, source) if value is _COMMON_SCALARS else value


def node_from_fields(uuid: str, fields: dict[str, str | None], source: str) -> ProviderNode:
    """Rebuild a node from the values of :data:`READ_FIELDS` (``None`` = absent field)."""
    settings = jsjson.loads(fields.get(DOC) or "{}", source)
    layout = (fields.get(LAYOUT) or "uuid").split(SEPARATOR)
    doc: dict[str, object] = {}
    for key in layout:
        if key == "uuid":
            doc["uuid"] = uuid
        elif key in HOT_KEYS:
            raw = fields.get(key)
            if raw is not None:
                doc[key] = _hot_value(raw, source)
        elif key in settings:
            doc[key] = settings[key]
    for key, value in settings.items():
        doc.setdefault(key, value)
    # A hot key a record added after an admin edit rewrote @layout: append it.
    for key in HOT_ORDER:
        raw = fields.get(key)
        if raw is not None and key not in doc:
            doc[key] = _hot_value(raw, source)
    return node_from_json(doc, source)
