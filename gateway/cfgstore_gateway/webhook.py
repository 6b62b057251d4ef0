"""``HEALTH_ALERT_WEBHOOK_URL``: POST each healthy ↔ unhealthy transition of a pool node.

:class:`HealthAlertWebhook` is a store plugin implementing
``cfgstore_provider_health_changed``. The store fires that hook once per transition: with
the memory fallback over Redis, only on the instance whose record batch caused the
transition (the Redis script of the batch computes it), so N instances still send one
alert per transition; on the file backend, in the process whose record caused it.

Request: ``POST <HEALTH_ALERT_WEBHOOK_URL>`` with ``Content-Type: application/json`` and
the body::

    {"providerType": "openai-custom",   # the node's provider type
     "uuid": "8f1c…",                    # the node's uuid
     "healthy": false,                   # the new state: true = back to healthy
     "timestamp": "2026-01-02T03:04:05.678Z"}   # when the gateway noticed (ISO, UTC, ms)

The URL is read from ``config.json`` when the alert is sent (no URL or an empty one: no
request). Delivery is best effort: one attempt bounded by ``timeout_s``; a failure or a
non-2xx answer is logged, never retried, and never affects the request that caused the
transition. The hook itself only schedules the POST (hooks are synchronous); :meth:`drain`
waits for the deliveries under way, :meth:`aclose` does so and stops accepting more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp

from cfgstore import hookimpl
from cfgstore.adapters import Store
from cfgstore.model.config import MainConfig
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.timefmt import iso_ms, now_ms

__all__ = ["WEBHOOK_KEY", "HealthAlertWebhook", "alert_body"]

log = logging.getLogger("cfgstore_gateway.webhook")

WEBHOOK_KEY = "HEALTH_ALERT_WEBHOOK_URL"


def alert_body(provider_type: str, uuid: str, healthy: bool, at_ms: int) -> dict[str, JSONValue]:
    """The JSON body of one alert (see the module docstring)."""
    return {
        "providerType": provider_type,
        "uuid": uuid,
        "healthy": healthy,
        "timestamp": iso_ms(at_ms),
    }


class HealthAlertWebhook:
    """Plugin object posting health transitions to ``HEALTH_ALERT_WEBHOOK_URL``.

    ``config`` returns the current ``config.json`` (the gateway's config cache ``get``);
    ``session`` is the client session the POSTs use (never closed here)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: Callable[[], Awaitable[MainConfig]],
        *,
        timeout_s: float = 10.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._session = session
        self._config = config
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False
        self.sent = 0
        """Alerts the webhook answered with a 2xx status."""
        self.failed = 0
        """Alerts that could not be delivered (no answer or a non-2xx status)."""

    def register(self, store: Store) -> None:
        """Register with the store's plugin manager (unique name per object)."""
        store.plugins.manager.register(self, name=f"cfgstore-gateway-webhook:{id(self)}")

    def unregister(self, store: Store) -> None:
        """Stop receiving transitions (safe if not registered)."""
        manager = store.plugins.manager
        if manager.is_registered(self):
            manager.unregister(self)

    @hookimpl
    def cfgstore_provider_health_changed(
        self, provider_type: str, uuid: str, healthy: bool
    ) -> None:
        """Schedule one POST for this transition."""
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.warning("health alert for %s/%s dropped: no event loop", provider_type, uuid)
            return
        body = alert_body(provider_type, uuid, healthy, self._clock())
        task = loop.create_task(self._deliver(body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _deliver(self, body: dict[str, JSONValue]) -> None:
        ident = f"{body['providerType']}/{body['uuid']}"
        try:
            url = (await self._config()).get(WEBHOOK_KEY)
        except Exception as exc:
            log.warning("health alert for %s dropped: config unreadable: %s", ident, exc)
            self.failed += 1
            return
        if not isinstance(url, str) or not url.strip():
            return
        try:
            async with self._session.post(url.strip(), json=body, timeout=self._timeout) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("health alert for %s not delivered: %s", ident, type(exc).__name__)
            self.failed += 1
            return
        if ok:
            self.sent += 1
        else:
            self.failed += 1
            log.warning("health alert for %s: the webhook answered HTTP %d", ident, status)

    async def drain(self) -> None:
        """Wait for every delivery scheduled so far."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def aclose(self) -> None:
        """Accept no more alerts and wait for the deliveries under way."""
        self._closed = True
        await self.drain()
