"""JSON text nested to any depth, built as text (Python's serialisers recurse, so they
cannot write what the attacks in these tests send or store)."""

from __future__ import annotations


def nested(depth: int) -> str:
    """A JSON array ``depth`` levels deep: ``[[...]]``."""
    return "[" * depth + "]" * depth
