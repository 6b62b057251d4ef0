"""Bounds on the JSON documents people write into the store (the config, provider nodes,
credentials, custom models, plugin settings).

A value nested a few hundred levels deep is valid JSON, but Python walks JSON
recursively (parsing, copying, serialising), so such a value, once stored, breaks every
read of its document. Real documents are a few levels deep and a few KiB, so the limits
are far above any honest use. :func:`document_problem` checks both without recursing.
"""

from __future__ import annotations

import json

from cfgstore.model.jsjson import JSONValue

MAX_DOCUMENT_DEPTH = 32
"""Most nested levels of a document; the document itself is level 1 (``{"a": [1]}`` is 2)."""

MAX_DOCUMENT_BYTES = 256 * 1024
"""Largest document, as compact JSON (UTF-8)."""


def depth_of(value: JSONValue, *, stop_after: int = MAX_DOCUMENT_DEPTH) -> int:
    """Nesting depth of ``value`` (a scalar is 0, ``[]`` is 1); the walk stops as soon as
    it passes ``stop_after`` (returning ``stop_after + 1``). Iterative: any depth is safe."""
    deepest = 0
    stack: list[tuple[JSONValue, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if not isinstance(item, dict | list):
            continue
        children = item.values() if isinstance(item, dict) else item
        if level > stop_after:
            return stop_after + 1
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def too_deep(depth_limit: int = MAX_DOCUMENT_DEPTH) -> str:
    return f"nested deeper than {depth_limit} levels (the limit)"


def document_problem(
    value: JSONValue,
    *,
    max_depth: int = MAX_DOCUMENT_DEPTH,
    max_bytes: int | None = MAX_DOCUMENT_BYTES,
) -> str | None:
    """What makes ``value`` unfit to store (deeper than ``max_depth`` levels, larger than
    ``max_bytes``; ``None`` skips the size), or ``None`` when it fits."""
    if depth_of(value, stop_after=max_depth) > max_depth:
        return too_deep(max_depth)
    if max_bytes is not None:
        size_text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        size = len(size_text.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            return f"larger than {max_bytes} bytes as JSON (the limit)"
    return None
