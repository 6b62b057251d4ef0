"""A test's private Redis namespace and the settings of the stores over it: a Redis-only
store (an operator's tool) and gateway instances with the memory fallback over Redis, each
with its own state directory, as separate service processes would run."""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from pathlib import Path

import attrs
import redis

from cfgstore.adapters import Settings
from tests.support.namespace_seed import seed_namespace


@attrs.frozen
class Namespace:
    """One test's Redis namespace and the folder for the instances' state directories."""

    url: str
    prefix: str
    root: Path

    def redis_settings(self) -> Settings:
        """Redis only (every read goes to Redis)."""
        return Settings(
            configs_dir=Path("unused"),
            backends=("redis",),
            redis_url=self.url,
            redis_prefix=self.prefix,
        )

    def instance_settings(self, name: str) -> Settings:
        """A gateway instance: the memory fallback over Redis, its own state directory."""
        return Settings(
            configs_dir=Path("unused"),
            backends=("memory", "redis"),
            redis_url=self.url,
            redis_prefix=self.prefix,
            state_dir=self.root / f"state-{name}",
        )


def new_prefix(tag: str) -> str:
    return f"{tag}{uuidlib.uuid4().hex[:12]}"


async def seeded_namespace(redis_url: str, root: Path, tag: str = "t") -> Namespace:
    """A fresh namespace under ``tag`` seeded with the default documents."""
    prefix = new_prefix(tag)
    await asyncio.to_thread(seed_namespace, redis_url, prefix)
    return Namespace(redis_url, prefix, root)


def delete_namespace(url: str, prefix: str) -> None:
    """Delete every key of the namespace ``prefix``."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match="{" + prefix + "}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()
