"""The gateway's plugin runtime: the registry, the live enabled state, admission, outcomes,
routes and console tabs of the plugins of :mod:`cfgstore_gateway.plugin_api`.

* **Registry**: the plugins the ``cfgstore_gateway_plugins`` hook offers (loaded once when
  the application is built, like adapters), plus the built-in ``default-auth``; ordered by
  ascending ``priority``, ties by name. A name registered twice keeps the first (logged).
* **Enabled state**: ``plugins.json`` read at start and again whenever the store announces
  a ``plugin_config`` change (this process's writes and other instances', through the
  store's change feed), and every ``recheck_s`` in case a notification never comes. A
  request never reads the store: it reads the runtime's live tuples.
* **Admission** (:meth:`PluginRuntime.admit`): for a client route, the enabled plugins'
  ``admit`` in order; the first :class:`~cfgstore_gateway.plugin_api.Refuse` answers, the
  first :class:`~cfgstore_gateway.plugin_api.Admit` of an authenticating plugin lets the
  request in. ``default-auth`` is the built-in client-key check at its place in the order;
  disabled, the configured key admits nobody. Nobody admitting is a refusal (401): a
  plugin that raises or times out counts as no opinion, so it can never let a request in.
* **Outcomes** (:meth:`PluginRuntime.finish`): queued (bounded, :data:`QUEUE_MAX`; a full
  queue drops with a warning) and handed to every enabled plugin's ``finished`` by one
  worker task, each call isolated (timeout, exceptions logged); the queue is drained at
  stop. Nothing of this runs on a request's path but the ``put``.
* **Routes**: mounted on the admin sub-application (``/api``) when the application is
  built, marked with their access; a disabled plugin's route answers 404. A path another
  route already answers (placeholder names aside) is refused (an error naming both) and
  left out.
* **Console tabs**: ``GET /static/plugins/<name>.js`` serves the tab's script (404 while
  disabled); :meth:`PluginRuntime.console_tabs` lists the enabled ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

import attrs
from aiohttp import web

from cfgstore import hookimpl
from cfgstore.adapters import Store
from cfgstore.errors import CfgStoreError
from cfgstore.model.events import ChangeEvent
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.plugin_config import PluginConfig
from cfgstore_gateway.access import Access, RouteAccess
from cfgstore_gateway.plugin_api import (
    DEFAULT_PRIORITY,
    Admit,
    ClientCall,
    ConsoleTab,
    Exchange,
    GatewayPlugin,
    Outcome,
    PluginContext,
    PluginRoute,
    Refuse,
)

log = logging.getLogger("cfgstore_gateway.plugins")

DEFAULT_AUTH = "default-auth"
QUEUE_MAX = 1024
"""Outcomes waiting for the plugins' ``finished``; past it new ones are dropped."""
EXCHANGE_CAP = 64 * 1024
"""Largest body kept per part of an :class:`~cfgstore_gateway.plugin_api.Exchange`."""


class DefaultAuth:
    """``default-auth``: the built-in client-key check (``REQUIRED_API_KEY``,
    :mod:`cfgstore_gateway.auth`) shown as a plugin. The runtime runs the check itself at
    this plugin's place in the order."""

    name = DEFAULT_AUTH
    description = "The client API key check (REQUIRED_API_KEY)"
    priority = 9999
    enabled_by_default = True
    authenticates = True
    built_in = True


@attrs.frozen
class Admission:
    """The verdict on one client request: ``refusal`` set, or ``admitted``."""

    admitted: bool
    admitted_by: str | None = None
    """The plugin that admitted it (``None``: the built-in key check)."""
    data: Mapping[str, JSONValue] = attrs.field(factory=dict)
    refusal: Refuse | None = None


KEY_CHECK_ADMITTED = Admission(True)
NOBODY_ADMITTED = Admission(False)


class ExchangeRecorder:
    """The bodies of one request, each capped at ``cap`` bytes (``truncated`` then)."""

    def __init__(self, cap: int = EXCHANGE_CAP) -> None:
        self.cap = cap
        self.truncated = False
        self.client_request = b""
        self.upstream_request: bytearray | None = None
        self.upstream_reply: bytearray | None = None
        self.client_reply: bytearray | None = None

    def _capped(self, held: bytearray | None, data: bytes) -> bytearray:
        held = bytearray() if held is None else held
        room = self.cap - len(held)
        if len(data) > room:
            self.truncated = True
            data = data[: max(0, room)]
        held += data
        return held

    def set_client_request(self, data: bytes) -> None:
        self.client_request = bytes(self._capped(None, data))

    def set_upstream_request(self, data: bytes) -> None:
        self.upstream_request = self._capped(None, data)  # the last attempt's

    def start_reply(self) -> None:
        """A new attempt's answer begins (an earlier attempt's is dropped)."""
        self.upstream_reply = self.client_reply = None

    def add_upstream_reply(self, data: bytes) -> None:
        self.upstream_reply = self._capped(self.upstream_reply, data)

    def add_client_reply(self, data: bytes) -> None:
        self.client_reply = self._capped(self.client_reply, data)

    def exchange(self) -> Exchange:
        def frozen(held: bytearray | None) -> bytes | None:
            return bytes(held) if held is not None else None

        return Exchange(
            client_request=self.client_request,
            upstream_request=frozen(self.upstream_request),
            upstream_reply=frozen(self.upstream_reply),
            client_reply=frozen(self.client_reply),
            truncated=self.truncated,
        )


def priority_of(plugin: GatewayPlugin) -> int:
    value = getattr(plugin, "priority", DEFAULT_PRIORITY)
    return value if isinstance(value, int) else DEFAULT_PRIORITY


def authenticates(plugin: object) -> bool:
    return getattr(plugin, "authenticates", False) is True


def is_built_in(plugin: object) -> bool:
    return getattr(plugin, "built_in", False) is True


class PluginRuntime:
    """See the module docstring. Register it with the store's plugin manager (done by
    :meth:`start`) to receive change events."""

    def __init__(
        self,
        plugins: Iterable[GatewayPlugin],
        *,
        admit_timeout_s: float = 5.0,
        finished_timeout_s: float = 30.0,
        recheck_s: float = 5.0,
        exchange_cap: int = EXCHANGE_CAP,
    ) -> None:
        self.default_auth = DefaultAuth()
        by_name: dict[str, GatewayPlugin] = {DEFAULT_AUTH: self.default_auth}
        for plugin in plugins:
            name = getattr(plugin, "name", None)
            if not isinstance(name, str) or not name:
                log.error("gateway plugin %r skipped: it has no name", plugin)
                continue
            if name in by_name:
                log.error("gateway plugin %s registered twice: %r skipped", name, plugin)
                continue
            by_name[name] = plugin
        self.plugins: tuple[GatewayPlugin, ...] = tuple(
            sorted(by_name.values(), key=lambda p: (priority_of(p), p.name))
        )
        self.admit_timeout_s = admit_timeout_s
        self.finished_timeout_s = finished_timeout_s
        self.recheck_s = recheck_s
        self.exchange_cap = exchange_cap
        self._config = PluginConfig()
        self._enabled: frozenset[str] = frozenset()
        self.admitters: tuple[GatewayPlugin, ...] = ()
        self.finishers: tuple[GatewayPlugin, ...] = ()
        self.wants_exchange = False
        self.key_check_only = True
        self._apply(PluginConfig())
        self._queue: asyncio.Queue[Outcome] = asyncio.Queue(QUEUE_MAX)
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._generation = 0
        self._reloading: asyncio.Task[None] | None = None
        self._store: Store | None = None
        self._dropped = 0
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ enabled state

    def get(self, name: str) -> GatewayPlugin | None:
        return next((p for p in self.plugins if p.name == name), None)

    def is_enabled(self, name: str) -> bool:
        """Whether the plugin ``name`` runs now (the live copy of ``plugins.json``)."""
        return name in self._enabled

    @property
    def config(self) -> PluginConfig:
        """The ``plugins.json`` last read."""
        return self._config

    def _apply(self, config: PluginConfig) -> None:
        enabled = frozenset(
            p.name
            for p in self.plugins
            if (
                config.is_enabled(p.name)
                if p.name in config.plugins
                else getattr(p, "enabled_by_default", False) is True
            )
        )
        changed = enabled != self._enabled
        self._config, self._enabled = config, enabled
        active = [p for p in self.plugins if p.name in enabled]
        self.admitters = tuple(
            p for p in active if p is self.default_auth or getattr(p, "admit", None) is not None
        )
        self.finishers = tuple(p for p in active if getattr(p, "finished", None) is not None)
        self.wants_exchange = any(getattr(p, "wants_exchange", False) is True for p in active)
        self.key_check_only = self.admitters == (self.default_auth,)
        if changed:
            log.info("gateway plugins enabled: %s", ", ".join(sorted(enabled)) or "none")
            if not any(authenticates(p) for p in active):
                log.warning(
                    "no authenticating gateway plugin is enabled (default-auth is off in "
                    "plugins.json): every client request is refused"
                )

    async def reload(self) -> None:
        """Read ``plugins.json`` again (a read that a newer change overtakes is read
        once more)."""
        if self._store is None:
            return
        while True:
            generation = self._generation
            try:
                config = await self._store.plugin_config.get()
            except CfgStoreError as exc:
                log.error("plugins.json unreadable, the plugins keep their state: %s", exc)
                return
            except Exception:
                log.exception("plugins.json not read, the plugins keep their state")
                return
            if generation == self._generation:
                self._apply(config)
                self._changed.set()
                self._changed = asyncio.Event()
                return

    def changed(self) -> Coroutine[Any, Any, bool]:
        """An awaitable of the next re-read of ``plugins.json`` after this call (tests,
        diagnostics): take it before checking the state, then await it."""
        return self._changed.wait()

    @hookimpl
    def cfgstore_changed(self, event: ChangeEvent) -> None:
        if event.entity != "plugin_config" or self._loop is None:
            return
        self._generation += 1
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to update
            self._loop.call_soon_threadsafe(self._schedule_reload)

    def _schedule_reload(self) -> None:
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.ensure_future(self._reload_until_current())

    async def _reload_until_current(self) -> None:
        while True:
            seen = self._generation
            await self.reload()
            if seen == self._generation:
                return

    async def _recheck(self) -> None:
        while True:
            await asyncio.sleep(self.recheck_s)
            await self.reload()

    # ------------------------------------------------------------------ start / stop

    async def start(self, store: Store) -> None:
        """Read ``plugins.json``, follow its changes, start the outcome worker and every
        plugin's ``start`` (one that raises is logged; it stays registered)."""
        self._store = store
        self._loop = asyncio.get_running_loop()
        store.plugins.manager.register(self, name=f"cfgstore-gateway-plugins:{id(self)}")
        await self.reload()
        self._tasks = [
            asyncio.create_task(self._work(), name="gateway plugins: outcomes"),
            asyncio.create_task(self._recheck(), name="gateway plugins: recheck"),
        ]
        for plugin in self.plugins:
            start = getattr(plugin, "start", None)
            if start is None:
                continue
            context = PluginContext(
                store=store,
                instance_id=store.instance_id,
                is_enabled=_enabled_check(self, plugin.name),
                entry=_entry_of(self, plugin.name),
            )
            try:
                async with asyncio.timeout(self.finished_timeout_s):
                    await start(context)
            except Exception:  # a timeout included: the gateway starts all the same
                log.exception("gateway plugin %s failed to start", plugin.name)

    async def stop(self, drain_s: float = 10.0) -> None:
        """Drain the outcomes (at most ``drain_s``), then every plugin's ``stop``."""
        if self._store is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_s):
                await self._queue.join()
        for task in [*self._tasks, self._reloading]:
            if task is not None:
                task.cancel()
        for task in [*self._tasks, self._reloading]:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks = []
        with contextlib.suppress(KeyError, ValueError):
            self._store.plugins.manager.unregister(self)
        for plugin in reversed(self.plugins):
            stop = getattr(plugin, "stop", None)
            if stop is None:
                continue
            try:
                async with asyncio.timeout(self.finished_timeout_s):
                    await stop()
            except Exception:
                log.exception("gateway plugin %s failed to stop", plugin.name)
        self._store = None

    # ------------------------------------------------------------------ admission

    async def admit(
        self, call: Callable[[], ClientCall], key_check: Callable[[], bool]
    ) -> Admission:
        """The verdict for a client request (see the module docstring). ``call`` builds
        what plugins see (only when one will look); ``key_check`` is the built-in check."""
        if self.key_check_only:
            return KEY_CHECK_ADMITTED if key_check() else NOBODY_ADMITTED
        client_call: ClientCall | None = None
        for plugin in self.admitters:
            if plugin is self.default_auth:
                if key_check():
                    return KEY_CHECK_ADMITTED
                continue
            if client_call is None:
                client_call = call()
            verdict = await self._ask(plugin, client_call)
            if isinstance(verdict, Refuse):
                return Admission(False, plugin.name, refusal=verdict)
            if isinstance(verdict, Admit) and authenticates(plugin):
                return Admission(True, plugin.name, dict(verdict.data))
        return NOBODY_ADMITTED

    async def _ask(self, plugin: GatewayPlugin, call: ClientCall) -> Admit | Refuse | None:
        admit: Callable[[ClientCall], Awaitable[Any]] = getattr(plugin, "admit")  # noqa: B009
        try:
            async with asyncio.timeout(self.admit_timeout_s):
                verdict = await admit(call)
        except TimeoutError:
            log.error(
                "req=%s gateway plugin %s: admit timed out after %.1fs, bypassed",
                call.request_id,
                plugin.name,
                self.admit_timeout_s,
            )
            return None
        except Exception:
            log.exception(
                "req=%s gateway plugin %s: admit failed, bypassed", call.request_id, plugin.name
            )
            return None
        if verdict is None or isinstance(verdict, Admit | Refuse):
            return verdict
        log.error(
            "req=%s gateway plugin %s: admit returned %r, bypassed",
            call.request_id,
            plugin.name,
            type(verdict).__name__,
        )
        return None

    # ------------------------------------------------------------------ outcomes

    def finish(self, outcome: Callable[[], Outcome]) -> None:
        """Queue the outcome of an admitted client request for the enabled plugins'
        ``finished`` (built only when one is enabled). Never blocks, never raises."""
        if not self.finishers or not self._tasks:
            return
        try:
            self._queue.put_nowait(outcome())
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.warning(
                    "gateway plugins: %d request outcomes dropped (the plugins are behind)",
                    self._dropped,
                )
        except Exception:
            log.exception("gateway plugins: the outcome of a request could not be built")

    async def _work(self) -> None:
        while True:
            outcome = await self._queue.get()
            try:
                for plugin in self.finishers:
                    await self._tell(plugin, outcome)
            finally:
                self._queue.task_done()

    async def _tell(self, plugin: GatewayPlugin, outcome: Outcome) -> None:
        finished: Callable[[Outcome], Awaitable[Any]] = getattr(plugin, "finished")  # noqa: B009
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.finished_timeout_s):
                await finished(outcome)
        except TimeoutError:
            log.error(
                "req=%s gateway plugin %s: finished timed out after %.1fs",
                outcome.request_id,
                plugin.name,
                time.monotonic() - started,
            )
        except Exception:
            log.exception(
                "req=%s gateway plugin %s: finished failed", outcome.request_id, plugin.name
            )

    # ------------------------------------------------------------------ routes and tabs

    def mount(self, api: web.Application, access: RouteAccess) -> None:
        """Add the plugins' routes to ``api`` (the admin sub-application at ``/api``,
        before it is mounted), marked in ``access``."""
        taken: dict[tuple[str, str], str] = {}
        for plugin in self.plugins:
            try:
                routes: Sequence[object] = tuple(getattr(plugin, "routes", None) or ())
            except Exception:
                log.exception("gateway plugin %s: its routes could not be read", plugin.name)
                continue
            for route in routes:
                if not isinstance(route, PluginRoute):
                    log.error("gateway plugin %s: %r is not a PluginRoute", plugin.name, route)
                    continue
                problem = _route_problem(route, api, taken)
                if problem is not None:
                    log.error(
                        "gateway plugin %s: route %s %s refused: %s",
                        plugin.name,
                        route.method,
                        route.path,
                        problem,
                    )
                    continue
                added = api.router.add_route(
                    route.method.upper(),
                    route.path[len("/api") :],
                    _while_enabled(self, plugin.name, route.handler),
                )
                taken[(route.method.upper(), route.path)] = plugin.name
                access.mark(_ACCESS[route.access], added)

    def mount_scripts(self, app: web.Application, access: RouteAccess) -> None:
        """``GET /static/plugins/<name>.js``: the console tabs' scripts."""
        access.mark(Access.UI, app.router.add_get("/static/plugins/{file}", self._script))

    async def _script(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"].removesuffix(".js")
        tab = self._tab(name)
        if tab is None or not request.match_info["file"].endswith(".js"):
            raise web.HTTPNotFound()
        return web.Response(
            body=tab.script,
            content_type="text/javascript",
            headers={"Cache-Control": "no-cache"},
        )

    def _tab(self, name: str) -> ConsoleTab | None:
        plugin = self.get(name)
        if plugin is None or not self.is_enabled(name):
            return None
        tab = getattr(plugin, "console", None)
        return tab if isinstance(tab, ConsoleTab) else None

    def console_tabs(self) -> list[dict[str, str]]:
        """The enabled plugins' console tabs: ``{"plugin", "title", "script"}``."""
        tabs = []
        for plugin in self.plugins:
            tab = self._tab(plugin.name)
            if tab is not None:
                tabs.append(
                    {
                        "plugin": plugin.name,
                        "title": tab.title,
                        "script": f"/static/plugins/{plugin.name}.js",
                    }
                )
        return tabs


_ACCESS = {"admin": Access.ADMIN, "public": Access.PUBLIC, "client": Access.CLIENT}


def _route_problem(
    route: PluginRoute, api: web.Application, taken: Mapping[tuple[str, str], str]
) -> str | None:
    if route.access not in _ACCESS:
        return f"unknown access {route.access!r}"
    if not route.path.startswith("/api/"):
        return "a plugin's path lies under /api/"
    method = route.method.upper()
    shape = _shape(route.path)
    other = next(
        (name for (m, p), name in taken.items() if m == method and _shape(p) == shape), None
    )
    if other is not None:
        return f"gateway plugin {other} has it already"
    inner = route.path[len("/api") :]
    for resource in api.router.resources():
        if _shape(resource.canonical) == _shape(inner) or _matches(resource, inner):
            methods = {r.method for r in resource}
            if method in methods or "*" in methods or method == "*":
                return f"the gateway answers it already ({resource.canonical})"
    return None


_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _shape(path: str) -> str:
    """``path`` with its placeholders' names and patterns left out (``/keys/{id}`` and
    ``/keys/{key}`` are one route: the one registered first would answer both; aiohttp's
    ``canonical`` drops the patterns, and two patterns may overlap)."""
    return _PLACEHOLDER.sub("{}", path)


def _matches(resource: web.AbstractResource, path: str) -> bool:
    match = getattr(resource, "_match", None)
    if match is None or "{" in path:
        return False
    try:
        return match(path) is not None
    except Exception:
        return False


def _while_enabled(
    runtime: PluginRuntime,
    name: str,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def answer(request: web.Request) -> web.StreamResponse:
        if not runtime.is_enabled(name):
            raise web.HTTPNotFound()
        return await handler(request)

    return answer


def _enabled_check(runtime: PluginRuntime, name: str) -> Callable[[], bool]:
    return lambda: runtime.is_enabled(name)


def _entry_of(runtime: PluginRuntime, name: str) -> Callable[[], Mapping[str, JSONValue]]:
    return lambda: runtime.config.plugins.get(name, {})


PLUGINS = web.AppKey("cfgstore_gateway.plugins", PluginRuntime)
"""Where the gateway application keeps its :class:`PluginRuntime`."""
