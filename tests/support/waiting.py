"""Bounded waits (:func:`cfgstore.testing.waiting.until`), shared with the contract suite."""

from cfgstore.testing.waiting import WAIT_S, until

__all__ = ["WAIT_S", "until"]
