"""The contract suite's lease tests, run on this repository's backends (see conftest)."""

from cfgstore.testing.test_leases import *  # noqa: F403
