"""Marking a test's Redis namespace as initialised, as ``cfgctl init``/``migrate`` would.

The memory fallback refuses to serve an empty namespace it never ran on (it is not
migrated); tests that start from an empty namespace give it a namespace id first."""

from __future__ import annotations

import uuid

import redis

from cfgstore.model.versions import SCHEMA_VERSION


def seed_namespace(redis_url: str, prefix: str) -> str:
    """Give namespace ``{prefix}`` an id (kept if it has one); return the id."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        key = "{" + prefix + "}:meta"
        client.hsetnx(key, "namespace", uuid.uuid4().hex)
        client.hsetnx(key, "schema", str(SCHEMA_VERSION))
        namespace_id: str = client.hget(key, "namespace")  # type: ignore[assignment]
        return namespace_id
    finally:
        client.close()
