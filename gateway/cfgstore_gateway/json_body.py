"""Parsing JSON a client sent."""

from __future__ import annotations

import json
from typing import Any


def parse_json(raw: bytes | str) -> Any:
    """``json.loads(raw)``; raises :class:`ValueError` for anything that is not a JSON
    document, including one nested deeper than the parser can follow (``[[[[…`` 100 000
    deep raises :class:`RecursionError` in ``json``): a bad body, never a server error."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
