"""Builders shared by the repository's tests (they ship with the contract suite)."""

from cfgstore.testing.builders import make_node

__all__ = ["make_node"]
