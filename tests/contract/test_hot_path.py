"""The contract suite's hot-path tests, run on this repository's backends (see conftest)."""

from cfgstore.testing.test_hot_path import *  # noqa: F403
