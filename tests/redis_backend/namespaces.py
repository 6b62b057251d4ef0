"""A test's own namespace on the shared test Redis, described by plain values so that a
worker process can open the same store (``settings_of(json.loads(...))``)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from cfgstore.adapters import Settings

CHAINS = {"redis": ("redis",), "memory+redis": ("memory", "redis")}

Spec = dict[str, Any]
"""``redis_url``, ``redis_prefix``, ``backends`` (a list) and ``state_root`` (a folder
each instance makes its state directory in)."""


def settings_of(spec: Spec) -> Settings:
    """Settings of a new instance on the spec's namespace (its own state directory)."""
    return Settings(
        configs_dir=Path("unused"),
        backends=tuple(spec["backends"]),
        redis_url=spec["redis_url"],
        redis_prefix=spec["redis_prefix"],
        state_dir=Path(tempfile.mkdtemp(prefix="state-", dir=spec["state_root"])),
    )
