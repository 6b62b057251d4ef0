"""Fixtures shared by the Redis backend tests."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from tests.redis_backend.namespaces import CHAINS, Spec
from tests.support.namespace_seed import seed_namespace


@pytest.fixture(params=sorted(CHAINS))
def spec(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Spec:
    """A fresh (initialised) namespace on the session's Redis, and the chain to open it
    with."""
    prefix = f"t{uuid4().hex[:12]}"
    seed_namespace(redis_url, prefix)
    return {
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "backends": list(CHAINS[request.param]),
        "state_root": str(tmp_path),
    }
