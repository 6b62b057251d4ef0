"""Web-UI sessions (``token-store.json``, aiclient-formats §5.2).

The caller passes the raw bearer token; the backend decides how to key it (the file
backend keeps the Node format, which stores the raw token; Redis stores only a hash).
Expired sessions are never returned, whether or not they were purged yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.model.sessions import UiSession


@hookspec
async def cfgstore_sessions_add(token: str, session: UiSession) -> None:
    """Store a session under ``token`` until ``session.expiry_time`` (ms). Atomic; concurrent
    adds never drop each other. An existing entry for the same token is replaced."""


@hookspec
async def cfgstore_sessions_get(token: str, now_ms: int) -> UiSession | None:
    """Return the session, or ``None`` when absent or expired at ``now_ms``: a session is
    expired from its ``expiry_time`` on (``now_ms >= expiry_time``,
    :meth:`cfgstore.model.sessions.UiSession.expired`), the same instant for every
    operation here."""


@hookspec
async def cfgstore_sessions_delete(token: str) -> bool:
    """Remove the session (logout); return whether it existed."""


@hookspec
async def cfgstore_sessions_delete_digest(digest: str) -> bool:
    """Remove the session whose token has this digest
    (:func:`cfgstore.model.sessions.token_digest`): a logout recorded without the raw
    token (the memory fallback's journal). Return whether it existed."""


@hookspec
async def cfgstore_sessions_delete_others(keep_token: str | None) -> int:
    """Remove every session except ``keep_token``'s (``None``: every session), e.g. after a
    password change; atomic against concurrent adds and deletes. Return how many were
    removed (expired ones not yet purged may or may not be counted)."""


@hookspec
async def cfgstore_sessions_purge_expired(now_ms: int) -> int:
    """Remove sessions expired at ``now_ms``; return how many were removed."""


@hookspec
async def cfgstore_sessions_count(now_ms: int) -> int:
    """Count sessions still valid at ``now_ms``."""
