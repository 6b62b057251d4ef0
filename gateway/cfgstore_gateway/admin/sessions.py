"""Admin sessions: the bearer token check, with a memory of sessions seen valid.

Every admin request's ``Authorization: Bearer <token>`` is checked against the store
(``store.sessions``), so a logout or an expiry on any instance counts at once. While the
storage cannot answer (degraded), a token this instance has already seen valid keeps
working until its own expiry: the operator can still read the pools and watch the
degraded banner, and every mutation is refused by the store anyway. A token first seen
during an outage is refused, unless it is a read-only session this instance issued during
the outage (:mod:`~cfgstore_gateway.admin.outage_sign_in`, kept in :attr:`SessionGate.outage`):
valid here only while the storage stays unreachable.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from aiohttp import web

from cfgstore.adapters import Store
from cfgstore.errors import StorageUnavailable
from cfgstore.model.password import DEFAULT_PASSWORD, verify_password
from cfgstore.model.sessions import UiSession
from cfgstore.model.timefmt import now_ms
from cfgstore_gateway.admin.http import ApiError
from cfgstore_gateway.admin.outage_sign_in import ENDED_AT_RECOVERY, OutageSignIn

log = logging.getLogger("cfgstore_gateway.admin")

_REMEMBERED_MAX = 1024


def bearer_token(request: web.Request) -> str | None:
    """The session token of ``Authorization: Bearer <token>`` (never a query parameter:
    URLs end up in logs and browser history). Tokens are hex: one that is not ASCII (a
    header that was not UTF-8 included) is no token."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    token = value.strip()
    return token if scheme.lower() == "bearer" and token and token.isascii() else None


UNAUTHORIZED = "UNAUTHORIZED"
"""The code of a refused session, the Node service's (its UI and scripts test for it)."""


def unauthorized(message: str = "Unauthorized access, please login first") -> ApiError:
    return ApiError(401, UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


class SessionGate:
    """See the module docstring. One per application."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._remembered: dict[str, UiSession] = {}
        self._default_password: tuple[str | None, bool] | None = None
        self.outage = OutageSignIn()

    @property
    def store(self) -> Store:
        return self._store

    async def require(self, request: web.Request) -> tuple[str, UiSession]:
        """The request's token and session, or :func:`unauthorized`."""
        token = bearer_token(request)
        if token is None:
            raise unauthorized()
        session, ended_at_recovery = await self._check(token)
        if session is None:
            if ended_at_recovery:
                raise ApiError(
                    401,
                    "read_only_ended",
                    ENDED_AT_RECOVERY,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            raise unauthorized("Unauthorized access, please login first (session expired)")
        return token, session

    def is_read_only(self, token: str) -> bool:
        """Whether ``token`` is a read-only session issued during an outage."""
        return self.outage.holds(token)

    async def check(self, token: str) -> UiSession | None:
        """The session of ``token``, or ``None`` (unknown, expired, logged out, or a
        read-only session whose outage is over)."""
        session, _ = await self._check(token)
        return session

    async def _check(self, token: str) -> tuple[UiSession | None, bool]:
        """:meth:`check`, and whether a read-only session just ended because the storage
        answers again."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = now_ms()
        try:
            session = await self._store.sessions.get(token, now)
        except StorageUnavailable:
            if self.outage.holds(token):
                return self.outage.get(token, now), False
            remembered = self._remembered.get(digest)
            if remembered is None or remembered.expired(now):
                return None, False
            return remembered, False
        if session is None:
            self._remembered.pop(digest, None)
            # The storage answers: the outage is over here, and with it a read-only session.
            return None, self.outage.end(token)
        self._remember(digest, session, now)
        return session, False

    def forget(self, token: str) -> None:
        self._remembered.pop(hashlib.sha256(token.encode()).hexdigest(), None)
        self.outage.end(token)

    def forget_all_but(self, token: str) -> None:
        """Forget every remembered session but ``token``'s (the others were ended)."""
        keep = hashlib.sha256(token.encode()).hexdigest()
        self._remembered = {d: s for d, s in self._remembered.items() if d == keep}
        self.outage.end_all_but(token)

    async def is_default_password(self) -> bool:
        """Whether the stored password is still ``admin123`` (hashed once per stored
        value: PBKDF2 is slow, and ``GET /api/config`` asks every time)."""
        stored = await self._store.password.get_stored()
        cached = self._default_password
        if cached is not None and cached[0] == stored:
            return cached[1]
        result = await asyncio.to_thread(verify_password, DEFAULT_PASSWORD, stored)
        self._default_password = (stored, result)
        return result

    def _remember(self, digest: str, session: UiSession, now: int) -> None:
        if len(self._remembered) >= _REMEMBERED_MAX:
            for key in [k for k, s in self._remembered.items() if s.expired(now)]:
                del self._remembered[key]
            if len(self._remembered) >= _REMEMBERED_MAX:
                self._remembered.pop(next(iter(self._remembered)))
        self._remembered[digest] = session
