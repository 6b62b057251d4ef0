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
import json
import secrets

import attrs

from cfgstore.model import jsjson
from cfgstore.model.pools import ProviderPools, node_to_json
from cfgstore.model.snapshot import StoreSnapshot, snapshot_to_json

ENCODE_CHUNK = 50
"""Nodes encoded per loop turn (~40–100 µs each in the Node write format)."""

_TYPE_INDENT = "    "  # a provider type's key inside "pools" (depth 2)
_NODE_INDENT = "      "  # a node inside its type's array (depth 3)


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
        done = 0
        for index, (provider_type, nodes) in enumerate(types):
            key = json.dumps(provider_type, ensure_ascii=False)
            if not nodes:
                pieces.append(_utf8(f"{_TYPE_INDENT}{key}: []"))
            else:
                pieces.append(_utf8(f"{_TYPE_INDENT}{key}: [\n"))
                last = len(nodes) - 1
                for position, node in enumerate(nodes):
                    text = jsjson.dumps(node_to_json(node)).replace("\n", "\n" + _NODE_INDENT)
                    end = "\n" if position == last else ",\n"
                    pieces.append(_utf8(_NODE_INDENT + text + end))
                    done += 1
                    if done % ENCODE_CHUNK == 0:
                        await asyncio.sleep(0)
                pieces.append(_utf8(_TYPE_INDENT + "]"))
            pieces.append(b",\n" if index < len(types) - 1 else b"\n")
        pieces.append(b"  }")
    pieces.append(_utf8(tail))
    return pieces


def _without_pools(snapshot: StoreSnapshot) -> StoreSnapshot:
    return attrs.evolve(snapshot, pools=ProviderPools())
