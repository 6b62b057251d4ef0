"""The contract suite's traffic tests, run on this repository's backends (see conftest)."""

from cfgstore.testing.test_traffic import *  # noqa: F403
