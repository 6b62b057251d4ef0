"""``usage-cache.json`` (aiclient-formats §6.3): a timestamp and one entry per type.

Entries are provider-native payloads and stay opaque."""

from __future__ import annotations

import attrs

from cfgstore.errors import InvalidData
from cfgstore.model.jsjson import JSONValue


@attrs.define
class UsageCache:
    timestamp: str | None
    providers: dict[str, JSONValue] = attrs.Factory(dict)
    extra: dict[str, JSONValue] = attrs.Factory(dict)
    """Top-level keys other than ``timestamp``/``providers``, kept for the round trip."""

    def to_json(self) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {"timestamp": self.timestamp, "providers": self.providers}
        out.update(self.extra)
        return out


def usage_cache_from_json(doc: JSONValue, source: str) -> UsageCache:
    if not isinstance(doc, dict):
        raise InvalidData(source, "$", "usage cache must be a JSON object")
    providers = doc.get("providers", {})
    if not isinstance(providers, dict):
        raise InvalidData(source, "$.providers", "expected an object of type → entry")
    timestamp = doc.get("timestamp")
    if timestamp is not None and not isinstance(timestamp, str):
        raise InvalidData(source, "$.timestamp", "expected an ISO time string")
    extra = {k: v for k, v in doc.items() if k not in ("timestamp", "providers")}
    return UsageCache(timestamp, dict(providers), extra)
