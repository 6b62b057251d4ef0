"""The contract suite's model usage statistics tests, run on this repository's backends (see
conftest)."""

from cfgstore.testing.test_usage_stats import *  # noqa: F403
