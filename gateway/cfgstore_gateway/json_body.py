"""Parsing JSON a client sent."""

from __future__ import annotations

import json
from typing import Any


class JSONTooDeep(ValueError):
    """Valid-looking JSON nested deeper than the parser can follow."""


def parse_client_json(raw: bytes | str) -> Any:
    """``json.loads(raw)``; raises :class:`ValueError` for anything that is not a JSON
    document, and :class:`JSONTooDeep` (a ``ValueError``) for one nested deeper than the
    parser can follow (``[[[[…`` 100 000 deep raises :class:`RecursionError` in ``json``):
    a bad body, never a server error."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise JSONTooDeep("JSON nested too deeply") from None
