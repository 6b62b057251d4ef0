"""Encoding the snapshot file on the event loop, a chunk of nodes per loop turn.

:func:`cfgstore.model.snapshot.snapshot_to_bytes` encodes the whole snapshot in one call.
Run in a worker thread it still competes for the GIL, and its long C steps over the whole
text (joining, scanning for lone surrogates, UTF-8 encoding) hold it for tens of
milliseconds at 50,000 nodes: the event loop waited up to ~270 ms during a save.
:func:`snapshot_pieces` produces the same bytes as pieces — the document without its
pools, and each node encoded alone and indented to its depth — yielding to the event
loop every :data:`ENCODE_CHUNK` nodes; the worker thread then only joins and writes them.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import secrets
from json.encoder import encode_basestring as _string

import attrs

from cfgstore.model import jsjson
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import ProviderNode, ProviderPools, node_to_json
from cfgstore.model.snapshot import StoreSnapshot, snapshot_to_json

ENCODE_CHUNK = 50
"""Nodes encoded per loop turn, in one encoder call (~40–100 µs each in the Node write
format)."""

_TYPE_INDENT = "    "  # a provider type's key inside "pools" (depth 2)
_DEPTH_3_FROM_1 = "    "  # moves a node from depth 1 (a top-level array) to depth 3


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


async def snapshot_pieces(snapshot: StoreSnapshot) -> list[bytes]:
    """``snapshot_to_bytes(snapshot)`` as pieces (``b"".join`` gives exactly those bytes),
    encoded :data:`ENCODE_CHUNK` nodes per loop turn. The caller keeps ``snapshot`` unchanged
    meanwhile."""
    document = snapshot_to_json(_without_pools(snapshot))
    marker = "cfgstore-pools-" + secrets.token_hex(16)
    document["pools"] = marker
    head, tail = jsjson.dumps(document).split(json.dumps(marker), 1)
    pieces = [_utf8(head)]
    types = list(snapshot.pools.types.items())
    if not types:
        pieces.append(b"{}")
    else:
        pieces.append(b"{\n")
        for index, (provider_type, nodes) in enumerate(types):
            key = json.dumps(provider_type, ensure_ascii=False)
            if not nodes:
                pieces.append(_utf8(f"{_TYPE_INDENT}{key}: []"))
            else:
                pieces.append(_utf8(f"{_TYPE_INDENT}{key}: [\n"))
                for start in range(0, len(nodes), ENCODE_CHUNK):
                    batch = nodes[start : start + ENCODE_CHUNK]
                    pieces.append(_utf8(_nodes_text(batch)))
                    pieces.append(b"\n" if start + ENCODE_CHUNK >= len(nodes) else b",\n")
                    gc.collect(0)  # the encoder's cycles, now (also while the collector is paused)
                    await asyncio.sleep(0)
                pieces.append(_utf8(_TYPE_INDENT + "]"))
            pieces.append(b",\n" if index < len(types) - 1 else b"\n")
        pieces.append(b"  }")
    pieces.append(_utf8(tail))
    return pieces


def _nodes_text(nodes: list[ProviderNode]) -> str:
    """``nodes`` as they stand inside their type's array (depth 3, a comma between them).

    Nodes of strings, integers, booleans, nulls and lists of those (API-key and OAuth
    nodes) are written by :func:`_flat_node_text`, ~5× faster than the indenting encoder
    (the periodic save of a 5,000-node pool was the largest per-node cost of a gateway
    under load). A batch holding any other node takes :func:`jsjson.dumps`, in one call
    for the whole batch: each call leaves a reference cycle of ~33 objects behind (the
    closures of Python's indenting JSON encoder), and one per node made the collector run
    full collections during a save of 50,000 nodes."""
    documents = [node_to_json(node) for node in nodes]
    texts = [_flat_node_text(document) for document in documents]
    if None not in texts:
        text = ",\n".join(texts)  # type: ignore[arg-type]
        if _SURROGATE.search(text):
            text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
        return text
    text = jsjson.dumps(documents)
    inner = text[len("[\n") : -len("\n]")]  # the nodes at depth 1: "  {…},\n  {…}"
    return _DEPTH_3_FROM_1 + inner.replace("\n", "\n" + _DEPTH_3_FROM_1)


_SURROGATE = re.compile("[\ud800-\udfff]")
"""A lone surrogate, written as ``\\uXXXX`` as :func:`jsjson.dumps` writes it."""

_NODE_INDENT = _DEPTH_3_FROM_1 + "  "  # a node in its type's array: depth 3
_KEY_INDENT = _NODE_INDENT + "  "  # a node's key: depth 4
_ITEM_INDENT = _KEY_INDENT + "  "  # an item of a node's list: depth 5


def _flat_node_text(document: dict[str, JSONValue]) -> str | None:
    """``document`` as :func:`jsjson.dumps` writes it at depth 3 (the same text), or
    ``None`` when it holds anything but strings, integers, booleans, nulls and lists of
    those under keys JavaScript does not reorder (no key starting with a digit)."""
    if not document:
        return None
    lines = []
    for key, value in document.items():
        if key[:1].isdigit():
            return None
        text = _scalar_text(value)
        if text is None:
            if type(value) is not list:
                return None
            if not value:
                text = "[]"
            else:
                items = []
                for item in value:
                    item_text = _scalar_text(item)
                    if item_text is None:
                        return None
                    items.append(_ITEM_INDENT + item_text)
                text = "[\n" + ",\n".join(items) + "\n" + _KEY_INDENT + "]"
        lines.append(f"{_KEY_INDENT}{_string(key)}: {text}")
    return _NODE_INDENT + "{\n" + ",\n".join(lines) + "\n" + _NODE_INDENT + "}"


def _scalar_text(value: JSONValue) -> str | None:
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    return None  # floats (JavaScript's number text), lists, objects


def _without_pools(snapshot: StoreSnapshot) -> StoreSnapshot:
    return attrs.evolve(snapshot, pools=ProviderPools())
