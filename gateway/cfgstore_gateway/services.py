"""What one gateway process holds while it serves: the store, the adapters, the selector
and its slots, the refresher, the one shared upstream client session, the config cache,
the tuning options and the application's metrics (:mod:`cfgstore_gateway.metrics`).

:class:`ConfigCache` keeps the current ``config.json`` (as :class:`MainConfig`) so a request
does not copy the document: it is dropped when the store announces a config change
(``cfgstore_changed``, this process's writes and, once noticed, other instances'), and
re-read at the latest after ``max_age_s`` in case a notification never comes. The cached
object is shared by every request: read it, never mutate it.

A stored config with unusable values is served with the defaults of those keys (the store
names them in :attr:`MainConfig.problems`); the cache logs one warning per such key when
it first sees it. A config that cannot be read at all (not JSON, after a hand edit) keeps
the last one read in service, with one error line, until it is fixed.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import aiohttp
import attrs
from aiohttp import web

from cfgstore import hookimpl
from cfgstore.adapters import Store
from cfgstore.errors import InvalidData
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import Credential
from cfgstore.model.events import ChangeEvent
from cfgstore.model.pools import ProviderNode
from cfgstore_gateway.adapters import AdapterRegistry
from cfgstore_gateway.metrics import GatewayMetrics
from cfgstore_gateway.protocols import ConverterRegistry
from cfgstore_gateway.selection import Selector, SlotTable

log = logging.getLogger("cfgstore_gateway.config")


@attrs.frozen
class GatewayOptions:
    """Tuning of one gateway process.

    ``upstream_connections`` caps the shared client's pooled connections (aiohttp's
    connector ``limit``). Each in-flight proxied request holds one for its whole duration
    (a stream lasts as long as the generation), so it is the number of concurrent upstream
    calls per process; past it a request waits for a free connection, counted against
    ``upstream_connect_timeout_s``. 512 leaves room for the client side under the usual
    1024 open-files limit; raise both together.
    """

    upstream_connections: int = 512
    upstream_connect_timeout_s: float = 30.0
    """Waiting for a pooled connection plus connecting."""
    upstream_sock_connect_timeout_s: float = 10.0
    upstream_read_timeout_s: float = 600.0
    """Longest silence between two reads of an upstream answer (no total limit: streams)."""
    keepalive_timeout_s: float = 30.0
    queue_timeout_s: float = 300.0
    """Longest wait for a node's slot (``concurrencyLimit`` / ``queueLimit``)."""
    models_cache_s: float = 300.0
    """How long a model list fetched from an upstream is reused."""
    health_cache_s: float = 1.0
    config_max_age_s: float = 5.0
    client_max_size: int = 64 * 1024 * 1024
    """Largest request body accepted (images in chat requests are large)."""


class RefresherLike(Protocol):
    """What the proxy needs of :class:`cfgstore_gateway.refresh.Refresher`."""

    async def credential_for(self, provider_type: str, node: ProviderNode) -> Credential | None: ...

    async def refresh(
        self,
        provider_type: str,
        node: ProviderNode,
        *,
        force: bool = False,
        seen_version: str | None = None,
    ) -> Credential: ...

    async def aclose(self) -> None: ...


class ConfigCache:
    """See the module docstring. Register it as a plugin to receive change events."""

    def __init__(self, store: Store, max_age_s: float = 5.0) -> None:
        self._store = store
        self._max_age_s = max_age_s
        self._value: MainConfig | None = None
        self._read_at = 0.0
        self._generation = 0
        self._last_good: MainConfig | None = None
        self._reported: dict[str, str] = {}
        self._unreadable: str | None = None

    async def get(self) -> MainConfig:
        value = self._value
        if value is not None and time.monotonic() - self._read_at < self._max_age_s:
            return value
        generation = self._generation
        try:
            value = await self._store.config.get()
        except InvalidData as exc:
            if self._last_good is None:
                raise
            value = self._kept_after(exc)
        else:
            self._last_good, self._unreadable = value, None
            self._report(value.problems)
        if generation == self._generation:  # no change announced while reading
            self._value = value
            self._read_at = time.monotonic()
        return value

    def _kept_after(self, exc: InvalidData) -> MainConfig:
        assert self._last_good is not None
        if str(exc) != self._unreadable:
            self._unreadable = str(exc)
            log.error("config unreadable, still serving the last one read: %s", exc)
        return self._last_good

    def _report(self, problems: dict[str, str]) -> None:
        """One warning per key newly found unusable (a key fixed and broken again is
        reported again)."""
        for key, problem in problems.items():
            if self._reported.get(key) != problem:
                log.warning("config key %r ignored, its default is used: %s", key, problem)
        self._reported = dict(problems)

    def invalidate(self) -> None:
        self._generation += 1
        self._value = None

    @hookimpl
    def cfgstore_changed(self, event: ChangeEvent) -> None:
        if event.entity == "config":
            self.invalidate()


@attrs.define
class Services:
    """Everything a request handler uses (one per application)."""

    store: Store
    registry: AdapterRegistry
    selector: Selector
    slots: SlotTable
    config: ConfigCache
    session: aiohttp.ClientSession
    refresher: RefresherLike
    options: GatewayOptions
    converters: ConverterRegistry = attrs.Factory(ConverterRegistry)
    """Protocol converters by name: the built-ins and the plugins' (requests and answers
    between a client's protocol and an adapter's)."""
    metrics: GatewayMetrics = attrs.Factory(GatewayMetrics)
    """This application's Prometheus metrics (its own registry)."""
    models_cache: dict[str, tuple[float, list[str]]] = attrs.Factory(dict)
    """Provider type → (monotonic expiry, model ids fetched from an upstream)."""
    health_cache: tuple[float, str] | None = None
    """(monotonic expiry, storage mode) of the last ``/health`` status read."""


SERVICES = web.AppKey("cfgstore_gateway.services", Services)
"""Where the application keeps its :class:`Services` (sub-applications read it through
``request.config_dict``)."""
