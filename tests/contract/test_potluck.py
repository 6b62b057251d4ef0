"""The contract suite's api-potluck tests, run on this repository's backends (see conftest),
and what only the file backend promises: stores on one folder merge their counts, and a
malformed keys file stops only the api-potluck operations."""

from __future__ import annotations

import pytest

from cfgstore.errors import InvalidData
from cfgstore.testing.deployment import Deployment
from cfgstore.testing.test_potluck import *  # noqa: F403
from cfgstore.testing.test_potluck import T0


def on_files(deployment: Deployment) -> None:
    if deployment.settings.chain[-1] != "file":
        pytest.skip("the file backend's api-potluck-keys.json")


async def test_files_of_two_stores_lose_no_count(deployment: Deployment) -> None:
    """Stores on one configs folder each count in their memory and merge at every write."""
    on_files(deployment)
    async with deployment.open() as first:
        kid = (await first.potluck.create("shared", 0, now=T0))["id"]
    async with deployment.open() as one, deployment.open() as two:
        for i in range(10):
            assert (await one.potluck.admit(kid, T0 + i)).admitted
            assert (await two.potluck.admit(kid, T0 + i)).admitted
        await one.flush()
        await two.flush()
    async with deployment.open() as fresh:
        key = await fresh.potluck.get(kid, T0)
        assert key is not None and key["totalUsage"] == 20


async def test_a_malformed_keys_file_does_not_stop_the_store(deployment: Deployment) -> None:
    on_files(deployment)
    configs = deployment.settings.configs_dir
    configs.mkdir(parents=True, exist_ok=True)
    (configs / "api-potluck-keys.json").write_bytes(b'{"keys": {')
    async with deployment.open() as store:
        assert (await store.plugin_config.get()) is not None
        with pytest.raises(InvalidData):
            await store.potluck.list()
        with pytest.raises(InvalidData):
            await store.potluck.admit("maki_" + "0" * 32)
    assert (configs / "api-potluck-keys.json").read_bytes() == b'{"keys": {'
