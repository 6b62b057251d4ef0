"""Fixtures shared by the Redis backend tests."""

from __future__ import annotations

from uuid import uuid4

import pytest

from tests.redis_backend.namespaces import CHAINS, Spec


@pytest.fixture(params=sorted(CHAINS))
def spec(request: pytest.FixtureRequest, redis_url: str) -> Spec:
    """A fresh namespace on the session's Redis, and the chain to open it with."""
    return {
        "redis_url": redis_url,
        "redis_prefix": f"t{uuid4().hex[:12]}",
        "backends": list(CHAINS[request.param]),
    }
