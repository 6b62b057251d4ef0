"""Builders shared by contract tests."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from cfgstore.model.pools import ProviderNode, node_from_json


def make_node(uuid: str | None = None, **fields: Any) -> ProviderNode:
    """A provider node with ``uuid`` (random when ``None``) and the given JSON fields."""
    doc: dict[str, Any] = {"customName": None, "uuid": uuid or str(uuidlib.uuid4())}
    doc.update(fields)
    return node_from_json(doc, "test")
