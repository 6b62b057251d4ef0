"""Version tokens. Versions are opaque strings; only these two have a fixed meaning."""

from __future__ import annotations

import hashlib

ABSENT_VERSION = "0"
"""The version of something that is not stored. A compare-and-set with it means
"only if nothing is stored yet"."""

ANY_VERSION = "*"
"""Passed as an expected version: write unconditionally (operator overrides only)."""


def content_version(data: bytes) -> str:
    """A version derived from stored bytes (for backends without a counter, such as files)."""
    return hashlib.blake2b(data, digest_size=10).hexdigest()


SCHEMA_VERSION = 3
"""The layout version of stored data that this cfgstore reads and writes. ``cfgctl init``
and ``migrate`` record it in the store's meta ``schema`` field; a backend refuses to open
data written with a newer one and upgrades an older one in place (Redis: schema 1 kept one
credential per node, 2 one per token file, 3 stores Kiro sibling files once per folder)."""
