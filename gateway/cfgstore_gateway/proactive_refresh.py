"""Proactive token refresh (``CRON_REFRESH_TOKEN``, ``CRON_NEAR_MINUTES``, §2.2, §3.6), and
:class:`Background`, the gateway's background tasks started together.

:class:`ProactiveRefresher` refreshes, once per pass, the credential of every OAuth node
(not disabled) whose expiry is unknown or less than ``CRON_NEAR_MINUTES`` minutes away,
except the nodes the gateway does not serve (given a registry:
:mod:`cfgstore_gateway.serviceability`): an account it cannot use keeps its tokens as
they were (the Node service serving it natively may rotate them itself).
When ``CRON_REFRESH_TOKEN`` is true a pass runs every ``CRON_NEAR_MINUTES`` minutes (the
config is re-read before each; while false it is re-checked every minute).

Limits (§3.6): at most ``REFRESH_CONCURRENCY_GLOBAL`` provider types refresh at once, each
with at most ``REFRESH_CONCURRENCY_PER_PROVIDER`` refreshes at once; each refresh is bounded
by ``REFRESH_TASK_TIMEOUT_MS``.

Each refresh goes through :meth:`~cfgstore_gateway.refresh.Refresher.refresh` with
``force=True`` and the version read as the basis: the window here is usually wider than the
refresher's own near-expiry window, and the basis keeps it single-flight across instances
— an instance that takes the store's lock after another one refreshed finds a newer
version and calls no endpoint. A credential whose refreshed lifetime is shorter than the
window is refreshed again at the next pass (as the Node service does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import attrs

from cfgstore.adapters import Store
from cfgstore.errors import CfgStoreError
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import path_keys_for
from cfgstore.model.pools import ProviderNode
from cfgstore.model.timefmt import now_ms
from cfgstore_gateway.adapters import AdapterRegistry
from cfgstore_gateway.health_checks import HealthChecker
from cfgstore_gateway.refresh import RefreshFailed
from cfgstore_gateway.serviceability import unserved_reason
from cfgstore_gateway.services import RefresherLike, Services
from cfgstore_gateway.usage_quotas import UsageQuotas
from cfgstore_gateway.webhook import HealthAlertWebhook

__all__ = ["Background", "ProactiveRefresher", "RefreshPass"]

log = logging.getLogger("cfgstore_gateway.proactive_refresh")

ConfigSource = Callable[[], Awaitable[MainConfig]]


@attrs.define
class RefreshPass:
    """What one pass did, as ``type/uuid`` lists."""

    refreshed: list[str] = attrs.Factory(list)
    failed: list[str] = attrs.Factory(list)
    fresh: list[str] = attrs.Factory(list)
    """Credentials outside the window (left alone)."""


class ProactiveRefresher:
    """See the module docstring. ``clock`` is the epoch-ms clock of the expiry decisions;
    ``registry``, when given, leaves out the nodes the gateway does not serve."""

    def __init__(
        self,
        store: Store,
        refresher: RefresherLike,
        *,
        config: ConfigSource | None = None,
        clock: Callable[[], int] = now_ms,
        registry: AdapterRegistry | None = None,
    ) -> None:
        self._registry = registry
        self._store = store
        self._refresher = refresher
        self._config: ConfigSource = config or store.config.get
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> RefreshPass:
        """Refresh every OAuth credential expiring within ``CRON_NEAR_MINUTES`` (whatever
        ``CRON_REFRESH_TOKEN`` says: the caller decided to run a pass)."""
        config = await self._config()
        window_ms = max(1, config.int_value("CRON_NEAR_MINUTES")) * 60_000
        global_limit = asyncio.Semaphore(max(1, config.int_value("REFRESH_CONCURRENCY_GLOBAL")))
        per_type = max(1, config.int_value("REFRESH_CONCURRENCY_PER_PROVIDER"))
        timeout_s = max(1, config.int_value("REFRESH_TASK_TIMEOUT_MS")) / 1000
        pools = await self._store.pools.view()
        result = RefreshPass()

        async def one(provider_type: str, node: ProviderNode, limit: asyncio.Semaphore) -> None:
            async with limit:
                await self._refresh_node(provider_type, node, window_ms, timeout_s, result)

        async def one_type(provider_type: str, nodes: list[ProviderNode]) -> None:
            async with global_limit:
                limit = asyncio.Semaphore(per_type)
                await asyncio.gather(*(one(provider_type, n, limit) for n in nodes))

        by_type = {
            provider_type: [
                n
                for n in nodes
                if not n.state.is_disabled and self._served(provider_type, n, config)
            ]
            for provider_type, nodes in pools.items()
            if path_keys_for(provider_type)
        }
        await asyncio.gather(*(one_type(t, nodes) for t, nodes in by_type.items() if nodes))
        if result.refreshed or result.failed:
            log.info(
                "proactive refresh: %d refreshed, %d failed",
                len(result.refreshed),
                len(result.failed),
            )
        return result

    def _served(self, provider_type: str, node: ProviderNode, config: MainConfig) -> bool:
        registry = self._registry
        return registry is None or unserved_reason(registry, provider_type, node, config) is None

    async def _refresh_node(
        self,
        provider_type: str,
        node: ProviderNode,
        window_ms: int,
        timeout_s: float,
        result: RefreshPass,
    ) -> None:
        ident = f"{provider_type}/{node.uuid}"
        try:
            credential = await self._store.credentials.get(provider_type, node.uuid)
            if credential is None:
                return
            expiry = credential.expiry_ms()
            if expiry is not None and expiry - self._clock() >= window_ms:
                result.fresh.append(ident)
                return
            async with asyncio.timeout(timeout_s):
                await self._refresher.refresh(
                    provider_type, node, force=True, seen_version=credential.version
                )
        except (RefreshFailed, CfgStoreError, TimeoutError) as exc:
            log.warning("proactive refresh of %s failed: %s", ident, exc or type(exc).__name__)
            result.failed.append(ident)
            return
        result.refreshed.append(ident)

    def start(self) -> None:
        """Run the periodic loop in a background task of the running loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="cfgstore-proactive-refresh")

    async def stop(self) -> None:
        """Cancel the background task and wait for it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            delay_s = 60.0
            try:
                config = await self._config()
                if config.get("CRON_REFRESH_TOKEN") is True:
                    await self.run_once()
                    delay_s = max(1, config.int_value("CRON_NEAR_MINUTES")) * 60.0
            except CfgStoreError as exc:
                log.warning("proactive refresh pass failed: %s", exc)
            except Exception:
                log.exception("proactive refresh pass failed")
            await asyncio.sleep(delay_s)


class Background:
    """The gateway's background work over one application's services: the health alert
    webhook plugin, the health checker, the proactive refresher and the scheduled quota
    refresh (:class:`~cfgstore_gateway.usage_quotas.UsageQuotas`, which the admin usage
    routes use too).

    In the application's cleanup context, after the services exist::

        background = Background.start(services)
        ...
        await background.stop()
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self.webhook = HealthAlertWebhook(services.session, services.config.get)
        self.health = HealthChecker.for_services(services)
        self.proactive = ProactiveRefresher(
            services.store,
            services.refresher,
            config=services.config.get,
            registry=services.registry,
        )
        self.quotas = UsageQuotas(services)

    @classmethod
    def start(cls, services: Services) -> Background:
        """Register the webhook and start both loops (needs a running event loop)."""
        background = cls(services)
        background.webhook.register(services.store)
        background.health.start()
        background.proactive.start()
        background.quotas.start()
        return background

    async def stop(self) -> None:
        """Stop both loops, unregister the webhook and wait for its deliveries (call
        before the client session closes)."""
        try:
            await self.health.stop()
            await self.proactive.stop()
            await self.quotas.stop()
        finally:
            self.webhook.unregister(self.services.store)
            await self.webhook.aclose()
