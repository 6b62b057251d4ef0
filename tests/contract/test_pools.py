"""The contract suite's pools tests, run on this repository's backends (see conftest)."""

from cfgstore.testing.test_pools import *  # noqa: F403
