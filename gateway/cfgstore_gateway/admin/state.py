"""What the admin sub-application keeps per application and per request."""

from __future__ import annotations

import asyncio

import attrs
from aiohttp import web

from cfgstore.model.sessions import UiSession
from cfgstore_gateway.admin.password_work import PasswordWork
from cfgstore_gateway.admin.sessions import SessionGate


@attrs.define
class AdminState:
    gate: SessionGate
    password_work: PasswordWork = attrs.Factory(PasswordWork)
    uploads: asyncio.Lock = attrs.Factory(asyncio.Lock)
    """Serialises this instance's edits of the uploaded files (a set replaced whole)."""
    links: asyncio.Lock = attrs.Factory(asyncio.Lock)
    """Serialises this instance's quick links (a path linked once)."""


ADMIN = web.AppKey("cfgstore_gateway.admin", AdminState)
SESSION = web.RequestKey("cfgstore_gateway.admin.session", tuple[str, UiSession])
"""Request key: ``(token, session)`` of the signed-in operator (set by the middleware)."""


def admin_state(request: web.Request) -> AdminState:
    return request.config_dict[ADMIN]


def current_session(request: web.Request) -> tuple[str, UiSession]:
    return request[SESSION]
