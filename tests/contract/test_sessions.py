"""The contract suite's sessions tests, run on this repository's backends (see conftest)."""

from cfgstore.testing.test_sessions import *  # noqa: F403
