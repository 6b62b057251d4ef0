"""The contract suite's api-potluck tests, run on this repository's backends (see conftest)."""

from cfgstore.testing.test_potluck import *  # noqa: F403
