"""The fixtures contract tests take: ``deployment`` (open instances of the store under test
yourself) and ``store`` (one instance, opened for the test and closed after it).

Each test module imports them (``deployment_fixture``, ``store_fixture``: pytest knows them
by their fixture names), so they reach whatever collects the module: pytest
running ``--pyargs cfgstore.testing``, or a test suite that imports the contract modules
into its own (``from cfgstore.testing.test_pools import *``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from cfgstore.adapters import Settings, Store
from cfgstore.testing.deployment import Deployment


@pytest.fixture(name="deployment")
def deployment_fixture(cfgstore_settings: Settings, tmp_path: Path) -> Deployment:
    """The store under test (fresh storage per test), not opened yet."""
    return Deployment(cfgstore_settings, tmp_path)


@pytest_asyncio.fixture(name="store")
async def store_fixture(deployment: Deployment) -> AsyncIterator[Store]:
    """One opened instance of the store under test."""
    async with deployment.open() as opened:
        yield opened
