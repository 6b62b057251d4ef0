"""The contract suite's plugin log tests, run on this repository's backends (see conftest)."""

from cfgstore.testing.test_plugin_logs import *  # noqa: F403
