"""The contract of gateway plugins: request middleware and admin routes (issue 19, US8/FR-019).

A gateway plugin is an object registered through the ``cfgstore_gateway_plugins`` hook
(entry-point group ``cfgstore``, like adapters). It is named as in ``plugins.json``
(``api-potluck``, ``model-usage-stats``, ``ai-monitor``, ``default-auth``, or a third
party's name); whether it runs is that file's ``enabled`` flag, read from the store, so a
toggle on one instance takes effect on every instance within a second, without a restart.
A plugin absent from ``plugins.json`` runs when :attr:`GatewayPlugin.enabled_by_default`.

Order: enabled plugins run by ascending :attr:`GatewayPlugin.priority` (the Node service's
numbers: ``api-potluck`` 10, ``ai-monitor`` 100, ``model-usage-stats`` 9000,
``default-auth`` 9999; third parties default to 100), ties by name. A plugin that raises (or
times out) is logged and bypassed: it never fails a request. An authenticating plugin that
raises has no opinion, so the request falls through to the next one and, last, to the
built-in client-key check: a broken plugin never lets a request in.

Every member past the four required ones is optional (checked with ``getattr``):

* ``async admit(call: ClientCall) -> Admit | Refuse | None`` runs for every client request
  (the routes that take the client key) before routing and before the body is read.
  :class:`Admit` lets it in (no other check runs), :class:`Refuse` answers it at once in the
  client protocol's own error shape, ``None`` leaves the decision to the next plugin. Only
  plugins with a true ``authenticates`` may admit; another plugin's :class:`Admit` counts as
  ``None`` (it may still refuse). ``default-auth`` is the built-in key check shown as a
  plugin: it cannot be disabled unless another authenticating plugin is enabled.
* ``async finished(outcome: Outcome) -> None`` runs after every client request that was let
  in, once its answer is complete (a stream: after its last chunk), off the request's path:
  it never delays the client's answer.
* ``wants_exchange: bool``: when true, :attr:`Outcome.exchange` holds the bodies (before and
  after conversion; streams aggregated), size-capped. Off, the gateway does not keep them.
* ``routes: Sequence[PluginRoute]``: admin or public routes under ``/api/…``, answered only
  while the plugin is enabled (404 otherwise, like a route that does not exist).
* ``console: ConsoleTab``: a tab in the web console.
* ``async start(context: PluginContext) -> None`` / ``async stop() -> None``: called once when
  the gateway starts and stops (whether or not the plugin is enabled).

A plugin keeps its state in the store (``context.store``: its entity, never a file of its
own), so every instance sees the same keys, counts and limits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import attrs
from aiohttp import web

from cfgstore.model.jsjson import JSONValue

if TYPE_CHECKING:
    from cfgstore.adapters import Store

DEFAULT_PRIORITY = 100


@runtime_checkable
class GatewayPlugin(Protocol):
    """A gateway plugin (see the module docstring for the optional members)."""

    @property
    def name(self) -> str:
        """Its key in ``plugins.json``."""
        ...

    @property
    def description(self) -> str: ...

    @property
    def priority(self) -> int: ...

    @property
    def enabled_by_default(self) -> bool: ...


@attrs.frozen
class ClientCall:
    """A client request as plugins see it before routing (the body is not read yet)."""

    request_id: str
    method: str
    path: str
    protocol: str
    """The client protocol of the route: ``openai``, ``claude``, ``gemini``,
    ``openaiResponses``."""
    headers: Mapping[str, str]
    query: Mapping[str, str]
    keys: tuple[str, ...]
    """Every key the request offers, in the places clients put one (``Authorization:
    Bearer``, ``x-api-key``, ``x-goog-api-key``, ``?key=``), in that order."""
    remote: str | None


@attrs.frozen
class Admit:
    """Let the request in. ``identity`` names the client in logs (never a whole secret:
    ``maki_1a2b…``); ``data`` travels with the request to every plugin's ``finished``."""

    identity: str
    data: Mapping[str, JSONValue] = attrs.field(factory=dict)


@attrs.frozen
class Refuse:
    """Answer the request at once: ``status`` with ``message`` in the client protocol's
    error shape; ``code`` (``quota_exceeded``) and ``details`` (``{"quota": {...}}``) go into
    the error object where the protocol has room for them."""

    status: int
    message: str
    code: str
    details: Mapping[str, JSONValue] = attrs.field(factory=dict)


@attrs.frozen
class TokenUsage:
    """Tokens of one answer, as the upstream counted them (0 when it said nothing)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@attrs.frozen
class Exchange:
    """The bodies of one request, for plugins with ``wants_exchange`` (each capped at the
    gateway's limit, ``truncated`` then true). A stream's replies are its chunks joined."""

    client_request: bytes
    upstream_request: bytes | None
    upstream_reply: bytes | None
    client_reply: bytes | None
    truncated: bool = False


@attrs.frozen
class Outcome:
    """How a client request that was let in ended."""

    request_id: str
    path: str
    protocol: str
    """The client's protocol."""
    status: int
    stream: bool
    latency_ms: float
    model: str | None
    """The model routed to (after custom-model and fallback rewriting)."""
    provider_type: str | None
    """The type that answered (or last tried); ``None`` when no node was reached."""
    node: str | None
    upstream_protocol: str | None
    usage: TokenUsage | None
    """``None`` when the upstream reported no usage (or none was reached)."""
    admitted_by: str | None
    """The plugin that admitted the request (``None``: the built-in key check)."""
    admission: Mapping[str, JSONValue]
    """That plugin's :attr:`Admit.data`."""
    exchange: Exchange | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    """The client request's headers, as sent (secrets included: mask what you show)."""
    keys: tuple[str, ...] = ()
    """The keys the request offered (:attr:`ClientCall.keys`), to mask wherever they
    appear. The request's own, carried with its outcome: nothing keyed by its request id
    (the client may choose that, ``X-Request-Id``) has to be kept in between."""


Access = Literal["admin", "public", "client"]
"""``admin``: an admin session (as the console's API); ``public``: anyone (the plugin checks
what it needs, as ``/api/potluckuser/usage`` checks the key itself); ``client``: the client
key (or an authenticating plugin's admission)."""


@attrs.frozen
class PluginRoute:
    """One route of a plugin. ``path`` is an aiohttp path under ``/api/`` (``/api/potluck/keys``,
    ``/api/potluck/keys/{id}``); a path the gateway already serves is refused at start."""

    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    access: Access = "admin"


@attrs.frozen
class ConsoleTab:
    """A console tab: ``title`` in the navigation, ``script`` an ES module (bytes served at
    ``/static/plugins/<plugin>.js``) exporting ``render(element, api)``; ``api(path, init)``
    is the console's authenticated fetch: ``init`` takes ``method`` and ``json`` (or
    ``body``), and it resolves to the answer's parsed JSON (an error answer rejects)."""

    title: str
    script: bytes


@attrs.frozen
class PluginContext:
    """What a plugin gets at start."""

    store: Store
    instance_id: str
    is_enabled: Callable[[], bool]
    """Whether the plugin is enabled now (cheap: the gateway's live copy of ``plugins.json``)."""
    entry: Callable[[], Mapping[str, JSONValue]] = attrs.field(default=lambda: {})
    """The plugin's entry of ``plugins.json`` now (``enabled`` and its own settings, e.g.
    ``ai-monitor``'s ``keepInStore``; empty when absent), from the same live copy: never
    mutate it."""


PluginsCallback = Callable[[GatewayPlugin], None]


def plugin_members(plugin: object) -> Sequence[str]:
    """The optional members ``plugin`` implements, for diagnostics (``cfgctl plugins``)."""
    optional = ("admit", "finished", "routes", "console", "start", "stop")
    return [name for name in optional if getattr(plugin, name, None) is not None]
