"""A test's own namespace on the shared test Redis, described by plain values so that a
worker process can open the same store (``settings_of(json.loads(...))``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfgstore.adapters import Settings

CHAINS = {"redis": ("redis",), "memory+redis": ("memory", "redis")}

Spec = dict[str, Any]
"""``redis_url``, ``redis_prefix`` and ``backends`` (a list)."""


def settings_of(spec: Spec) -> Settings:
    return Settings(
        configs_dir=Path("unused"),
        backends=tuple(spec["backends"]),
        redis_url=spec["redis_url"],
        redis_prefix=spec["redis_prefix"],
    )
