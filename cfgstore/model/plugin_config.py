"""``plugins.json`` (aiclient-formats §6.1): ``{"plugins": {name: {enabled, ...}}}``."""

from __future__ import annotations

import attrs

from cfgstore.errors import InvalidData
from cfgstore.model.convert import json_path
from cfgstore.model.jsjson import JSONValue


@attrs.define
class PluginConfig:
    """Plugin name → its entry (``enabled``, ``description`` and any extra field)."""

    plugins: dict[str, dict[str, JSONValue]] = attrs.Factory(dict)
    extra: dict[str, JSONValue] = attrs.Factory(dict)

    def is_enabled(self, name: str) -> bool:
        """``enabled`` missing counts as enabled (as in the Node service)."""
        entry = self.plugins.get(name)
        return entry is not None and entry.get("enabled", True) is not False

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Toggle one plugin, keeping its other fields (an unknown name is added)."""
        self.plugins.setdefault(name, {})["enabled"] = enabled

    def to_json(self) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {"plugins": self.plugins}
        out.update(self.extra)
        return out


def plugin_config_from_json(doc: JSONValue, source: str) -> PluginConfig:
    if not isinstance(doc, dict):
        raise InvalidData(source, "$", "plugins.json must be a JSON object")
    plugins = doc.get("plugins", {})
    if not isinstance(plugins, dict):
        raise InvalidData(source, "$.plugins", "expected an object of name → entry")
    for name, entry in plugins.items():
        if not isinstance(entry, dict):
            raise InvalidData(source, json_path("plugins", name), "expected an object")
        if "enabled" in entry and not isinstance(entry["enabled"], bool):
            raise InvalidData(source, json_path("plugins", name, "enabled"), "expected a boolean")
    extra = {k: v for k, v in doc.items() if k != "plugins"}
    return PluginConfig({k: dict(v) for k, v in plugins.items()}, extra)
