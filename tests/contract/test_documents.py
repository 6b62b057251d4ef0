"""The contract suite's documents tests, run on this repository's backends (see conftest)."""

from cfgstore.testing.test_documents import *  # noqa: F403
