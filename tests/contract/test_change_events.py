"""The contract suite's change-event tests, run on this repository's backends (see conftest)."""

from cfgstore.testing.test_change_events import *  # noqa: F403
