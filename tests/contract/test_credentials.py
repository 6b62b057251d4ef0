"""The contract suite's credentials tests, run on this repository's backends (see conftest)."""

from cfgstore.testing.test_credentials import *  # noqa: F403
