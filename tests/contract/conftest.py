"""The repository's run of the contract suite (:mod:`cfgstore.testing`).

The test modules here import the suite's modules, so every contract test runs for each
chain the ``cfgstore_chains`` ini option names (pyproject.toml): file, memory+file, redis
and memory+redis, through the same pytest plugin a third-party backend uses. Only the
Redis server is this repository's own: chains on Redis get the session's test server
(``tests/support``) and a fresh namespace per test.
"""

from __future__ import annotations

import uuid as uuidlib

import attrs
import pytest

from cfgstore.adapters import Settings


@pytest.fixture
def cfgstore_settings(cfgstore_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    if "redis" not in cfgstore_settings.chain:
        return cfgstore_settings
    return attrs.evolve(
        cfgstore_settings,
        redis_url=request.getfixturevalue("redis_url"),
        redis_prefix=f"t{uuidlib.uuid4().hex[:12]}",
    )
