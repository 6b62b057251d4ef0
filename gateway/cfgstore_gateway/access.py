"""Who may use which route: decided by the route a request matched, never by its path.

Every route is marked when it is registered (:meth:`RouteAccess.mark`); the gateway's
middleware asks :meth:`RouteAccess.of` for the matched route
(``request.match_info.route``). A path prefix cannot say this: ``/{provider}/v1/...``
also matches ``/ui/v1/...``, ``/%75i/v1/...`` and ``/ui%2Fx/v1/...``. A route nobody
marked, and a request that matched no route, fall back to its application's default
(:meth:`RouteAccess.default`), and to :attr:`Access.CLIENT` without one: forgetting to mark
a route closes it rather than opening it.

Nothing is read from a request's body before it is let in: the client key and the admin
session are headers. Routes open to anyone take only small bodies
(:data:`PUBLIC_BODY_MAX`).
"""

from __future__ import annotations

import enum

from aiohttp import web

PUBLIC_BODY_MAX = 64 * 1024
"""Largest body a request nobody has authenticated may send (a login is a few bytes)."""


class Access(enum.Enum):
    PUBLIC = "public"
    """Anyone (``/health``)."""
    METRICS = "metrics"
    """Anyone, unless ``METRICS_REQUIRE_API_KEY`` is true in the config: then the client key."""
    UI = "ui"
    """Anyone: the web UI's files and ``GET /api/health`` (the UI's security headers; off
    with ``UI_ENABLED``)."""
    LOGIN = "login"
    """Anyone: ``POST /api/login`` (off with ``UI_ENABLED``)."""
    ADMIN = "admin"
    """An admin session, checked by the admin API before its handlers (off with
    ``UI_ENABLED``)."""
    CLIENT = "client"
    """The client API key (:mod:`cfgstore_gateway.auth`)."""

    @property
    def is_admin(self) -> bool:
        """Part of the web UI or the admin API (both off when ``UI_ENABLED`` is false)."""
        return self in (Access.UI, Access.LOGIN, Access.ADMIN)

    def needs_client_key(self, metrics_require_key: bool) -> bool:
        """Whether the client key is required (``metrics_require_key``: the config's
        ``METRICS_REQUIRE_API_KEY``)."""
        return self is Access.CLIENT or (self is Access.METRICS and metrics_require_key)

    def is_open(self, metrics_require_key: bool) -> bool:
        """Let in before anyone is authenticated (so its body must stay small)."""
        return self is not Access.ADMIN and not self.needs_client_key(metrics_require_key)


class RouteAccess:
    """The access of every route of an application and its sub-applications."""

    def __init__(self) -> None:
        self._routes: dict[web.AbstractRoute, Access] = {}
        self._apps: dict[web.Application, Access] = {}

    def mark(self, access: Access, *routes: web.AbstractRoute) -> None:
        """Give ``routes`` ``access``; a GET route's ``HEAD`` twin (``add_get`` registers
        one) gets the same."""
        for route in routes:
            self._routes[route] = access
            if route.method == "GET" and route.resource is not None:
                for twin in route.resource:
                    if twin.method == "HEAD":
                        self._routes[twin] = access

    def mark_resource(self, access: Access, resource: web.AbstractResource) -> None:
        """Every route of ``resource`` (a static folder has one per method)."""
        self.mark(access, *resource)

    def default(self, app: web.Application, access: Access) -> None:
        """The access of ``app``'s unmarked routes and of the requests it finds no route for
        (a sub-application's not-found answer is its own)."""
        self._apps[app] = access

    def of(self, request: web.Request) -> Access:
        match_info = request.match_info
        access = self._routes.get(match_info.route)
        if access is not None:
            return access
        apps = match_info.apps
        return self._apps.get(apps[-1], Access.CLIENT) if apps else Access.CLIENT


ROUTE_ACCESS = web.AppKey("cfgstore_gateway.route_access", RouteAccess)
"""Where the gateway application keeps its :class:`RouteAccess` (sub-applications read it
through ``request.config_dict``)."""
