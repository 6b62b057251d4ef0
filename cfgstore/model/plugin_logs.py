"""Plugin logs (:mod:`cfgstore.hookspecs.plugin_logs`): the rules every layer shares.

A plugin log is a short list of JSON objects a gateway plugin keeps for the console
(``ai-monitor``'s last exchanges), newest first, trimmed to the ``keep`` of the latest
append. Entries are debug data: size-capped here, before any backend sees them
(:func:`capped_entry`), so a log holds at most ``keep`` × :data:`MAX_ENTRY_BYTES`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cfgstore.model.jsjson import JSONValue

MAX_ENTRY_BYTES = 64 * 1024
"""The most one entry takes, as compact UTF-8 JSON."""
MAX_KEEP = 1000
"""The most entries a log keeps."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_STRING_LIMITS = (8192, 2048, 512, 128)


def check_plugin(plugin: str) -> None:
    """A plugin log's name: 1–100 of ``A-Z a-z 0-9 . _ -`` (it names a Redis key and a
    file), starting with a letter or digit."""
    if not isinstance(plugin, str) or not _NAME.fullmatch(plugin):
        raise ValueError(f"invalid plugin log name {plugin!r}")


def check_keep(keep: int) -> None:
    if not 1 <= keep <= MAX_KEEP:
        raise ValueError(f"a plugin log keeps 1 to {MAX_KEEP} entries, not {keep}")


def encode_entry(entry: dict[str, JSONValue]) -> str:
    """Compact JSON text of an entry (non-ASCII kept as is)."""
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def decode_entry(text: str | bytes) -> dict[str, JSONValue] | None:
    """An entry read back, ``None`` when it is not a JSON object (skipped by readers)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def capped_entry(entry: dict[str, JSONValue]) -> dict[str, JSONValue]:
    """``entry`` if it fits :data:`MAX_ENTRY_BYTES`; else a copy whose long strings are
    cut (``…(N more characters)``) until it fits; failing that (too many keys), an entry
    ``{"truncated": true, "bytes": N, "preview": "<its JSON, cut>"}``. Raises
    :class:`TypeError` for an entry that is not a JSON object."""
    if not isinstance(entry, dict):
        raise TypeError("a plugin log entry is a JSON object")
    size = _size(entry)
    if size <= MAX_ENTRY_BYTES:
        return entry
    for limit in _STRING_LIMITS:
        cut = _cut_strings(entry, limit)
        if _size(cut) <= MAX_ENTRY_BYTES:
            return cut  # type: ignore[no-any-return]
    preview = encode_entry(entry)[: MAX_ENTRY_BYTES // 8]
    return {"truncated": True, "bytes": size, "preview": preview}


def _size(entry: dict[str, JSONValue]) -> int:
    return len(encode_entry(entry).encode("utf-8", "surrogatepass"))


def _cut_strings(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return f"{value[:limit]}…({len(value) - limit} more characters)"
    if isinstance(value, dict):
        return {key: _cut_strings(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut_strings(item, limit) for item in value]
    return value
