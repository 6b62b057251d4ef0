"""Web-UI sessions (``token-store.json``, aiclient-formats §5.2)."""

from __future__ import annotations

import hashlib
from typing import Any

import attrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from cfgstore.errors import InvalidData
from cfgstore.model.convert import converter, json_path, structure
from cfgstore.model.jsjson import JSONValue


@attrs.define
class UiSession:
    username: str
    login_time: int
    expiry_time: int

    def expired(self, now_ms: int) -> bool:
        return now_ms >= self.expiry_time


_KEYS = {"login_time": "loginTime", "expiry_time": "expiryTime"}
_RENAMES: dict[str, Any] = {attr: override(rename=key) for attr, key in _KEYS.items()}
converter.register_structure_hook(
    UiSession, make_dict_structure_fn(UiSession, converter, **_RENAMES)
)
converter.register_unstructure_hook(
    UiSession, make_dict_unstructure_fn(UiSession, converter, **_RENAMES)
)


def session_to_json(session: UiSession) -> dict[str, Any]:
    result: dict[str, Any] = converter.unstructure(session)
    return result


def sessions_from_json(doc: JSONValue, source: str) -> dict[str, UiSession]:
    """Parse ``{"tokens": {token: session}}``; a missing ``tokens`` key means no sessions."""
    if not isinstance(doc, dict):
        raise InvalidData(source, "$", "token store must be a JSON object")
    tokens = doc.get("tokens", {})
    if not isinstance(tokens, dict):
        raise InvalidData(source, "$.tokens", "expected an object of token → session")
    return {
        token: structure(entry, UiSession, source, json_path("tokens", token), _KEYS)
        for token, entry in tokens.items()
    }


def sessions_to_json(sessions: dict[str, UiSession]) -> dict[str, JSONValue]:
    return {"tokens": {token: session_to_json(s) for token, s in sessions.items()}}


def token_digest(token: str) -> str:
    """What stores keep instead of a raw session token (SHA-256 hex)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
