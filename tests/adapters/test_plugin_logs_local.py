"""A chain whose backends keep no plugin logs: ``store.plugin_logs`` keeps them in the
process's memory under the same contract (the contract suite's chain-independent tests,
run on the facade alone)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from cfgstore.adapters import Store
from cfgstore.adapters.backend import Operations
from cfgstore.adapters.plugin_logs import PluginLogs
from cfgstore.testing import test_plugin_logs as contract


async def test_without_the_hooks_the_logs_are_the_process_s_under_the_same_contract() -> None:
    def fresh() -> Store:
        logs = PluginLogs(Operations({}))
        assert not logs.stored
        return cast(Store, SimpleNamespace(plugin_logs=logs))

    await contract.test_a_log_is_newest_first_trimmed_to_keep_and_cleared_per_plugin(fresh())
    await contract.test_an_entry_is_capped_before_it_is_stored(fresh())
