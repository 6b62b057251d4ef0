"""Account quotas into the usage cache (US7, aiclient-protocols §4, aiclient-formats §6.3).

**What is asked.** A provider type whose adapter has the optional ``usage(call)``
(:mod:`cfgstore_gateway.adapters`) is a *quota type*: refreshing it asks every node of the
type, at most :attr:`UsageQuotas.concurrency` at once in the process, each bounded
by :attr:`UsageQuotas.node_timeout_s`. A node gets the credential a request would
(``refresher.credential_for``); when the adapter says the upstream refused it
(:class:`~cfgstore_gateway.adapters.CredentialRejected`) the credential is refreshed once,
forced, and the node asked again. A node answers an instance of the Node service's shape:
``success: true`` with the ``usage`` object, or ``success: false`` with ``error`` (a
disabled node: ``"Provider is disabled"``, not asked). The type's entry counts them
(``totalCount``, ``successCount``, ``errorCount``). Other types keep the entry built from
the gateway's own counters (:func:`counters_entry`), as before.

**Once for all instances.** A refresh of everything, of a type or of one node is single-
flight in this process (callers join the refresh under way) and across instances through
the store's leases (``usage:all``, ``usage:type:<type>``, ``usage:node:<type>:<uuid>``):
the instance that takes the lease asks the upstreams and stores the result; one that finds
it taken waits until it is free and reads what was stored (taking a lease makes the
holder's writes visible: :mod:`cfgstore.hookspecs.leases`). A node refresh patches its
instance into its type's entry, recounted, under the type's lease, so it never interleaves
with a whole-type write.

**Spent accounts.** A node whose usage says its quota is spent — ``summary.usedPercent``
at or over 100, or every item at or over its limit — with a known reset time in the future
is put in cooldown until then (``Quota exhausted until <iso>``, as a request that met the
limit), unless it already is until at least then. Nothing else about a node is recorded.

**Scheduled refresh.** ``USAGE_REFRESH_INTERVAL_MS`` (config, default
:data:`DEFAULT_INTERVAL_MS`, ``0`` off) refreshes every type once per interval. Periods are
aligned on the epoch (period *k* starts at ``k × interval``) and the instance whose timer
fires first in a period takes the period's lease (``usage:scheduled``, held for the period
minus :data:`SCHEDULE_SKEW_MS` (at most half of it), not released): with several
instances, one asks per period. The first pass
comes one interval after the start at the earliest; the config is re-read every pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import web

from cfgstore.adapters import Store
from cfgstore.errors import CfgStoreError, NotFound
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import credential_path_of
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import ProviderNode
from cfgstore.model.timefmt import iso_ms, now_ms, parse_time_ms
from cfgstore_gateway.adapters import (
    Adapter,
    AdapterRegistry,
    CredentialRejected,
    ModelsCall,
    UpstreamUnavailable,
)
from cfgstore_gateway.adapters.quota_reset import epoch_ms
from cfgstore_gateway.refresh import RefreshFailed
from cfgstore_gateway.services import Services

__all__ = [
    "DEFAULT_INTERVAL_MS",
    "INTERVAL_KEY",
    "QUOTAS",
    "UsageQuotas",
    "counters_entry",
    "spent_until",
    "usage_method",
]

log = logging.getLogger("cfgstore_gateway.usage_quotas")

T = TypeVar("T")

INTERVAL_KEY = "USAGE_REFRESH_INTERVAL_MS"
DEFAULT_INTERVAL_MS = 600_000
"""Ten minutes: one quota query per account every ten minutes, whatever the instances."""
QUOTA_MESSAGE = "Quota exhausted"
DISABLED_MESSAGE = "Provider is disabled"
SCHEDULE_SKEW_MS = 5_000
"""How late (clock skew, a busy loop) another instance's timer may fire and still find the
period's pass taken (at most half an interval)."""
OFF_RECHECK_S = 60.0
"""While the scheduled refresh is off, how often the config is looked at again."""
_POLL_S = (0.02, 0.05, 0.1, 0.2, 0.5)
"""Waiting for another instance's lease: the pauses between looks, then the last one."""

UsageMethod = Callable[[ModelsCall], Awaitable[Any]]


def usage_method(adapter: Adapter | None) -> UsageMethod | None:
    """The adapter's optional ``usage`` (``None`` when it has none)."""
    method = getattr(adapter, "usage", None) if adapter is not None else None
    return method if callable(method) else None


def interval_ms(config: MainConfig) -> int:
    """``USAGE_REFRESH_INTERVAL_MS`` (``0``: off; unset or unusable: the default)."""
    value = config.get(INTERVAL_KEY)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return DEFAULT_INTERVAL_MS
    return max(0, int(value))


def counters_entry(provider_type: str, nodes: Sequence[ProviderNode]) -> JSONValue:
    """One type's usage-cache entry from the pool's own counters (a type with no quota API)."""
    instances: list[JSONValue] = []
    for node in nodes:
        state = node.state
        instance = _instance_base(provider_type, node)
        instance.update(
            success=True,
            usage={
                "summary": {
                    "unit": "requests",
                    "totalUsed": state.usage_count,
                    "errors": state.error_count,
                    "lastUsed": state.last_used,
                    "status": "healthy" if state.is_healthy else "unhealthy",
                }
            },
        )
        instances.append(instance)
    return _counted(provider_type, instances)


def _instance_base(provider_type: str, node: ProviderNode) -> dict[str, JSONValue]:
    located = credential_path_of(provider_type, node)
    return {
        "uuid": node.uuid,
        "name": node.custom_name or node.uuid,
        "configFilePath": located[1] if located else None,
        "isHealthy": node.state.is_healthy,
        "isDisabled": node.state.is_disabled,
        "success": False,
        "usage": None,
        "error": None,
    }


def _counted(provider_type: str, instances: list[JSONValue]) -> dict[str, JSONValue]:
    succeeded = sum(1 for i in instances if isinstance(i, dict) and i.get("success") is True)
    return {
        "providerType": provider_type,
        "instances": instances,
        "totalCount": len(instances),
        "successCount": succeeded,
        "errorCount": len(instances) - succeeded,
    }


def recounted(entry: Mapping[str, JSONValue]) -> dict[str, JSONValue]:
    """``entry`` with its counts recomputed from its instances (other keys kept)."""
    instances = entry.get("instances")
    listed = list(instances) if isinstance(instances, list) else []
    counts = _counted(str(entry.get("providerType", "")), listed)
    return {**entry, **{k: v for k, v in counts.items() if k != "providerType"}}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _item_spent(item: Mapping[str, Any]) -> bool:
    used, limit, percent = _number(item.get("used")), _number(item.get("limit")), None
    percent = _number(item.get("percent"))
    if used is not None and limit is not None and limit > 0:
        return used >= limit
    return percent is not None and percent >= 100


def spent_until(usage: object, now: int) -> int | None:
    """When a spent account's quota comes back (epoch ms, in the future), per its usage
    object; ``None`` when it is not spent or the time is unknown or past."""
    if not isinstance(usage, Mapping):
        return None
    summary = usage.get("summary")
    summary = summary if isinstance(summary, Mapping) else {}
    items = [i for i in usage.get("items") or () if isinstance(i, Mapping)]
    summary_reset = epoch_ms(summary.get("resetAt"))
    used_percent = _number(summary.get("usedPercent"))
    if used_percent is not None and used_percent >= 100:
        resets = [summary_reset] if summary_reset is not None else []
        resets += [r for i in items if (r := epoch_ms(i.get("resetAt"))) is not None]
        future = [r for r in resets if r > now]
        return (summary_reset if summary_reset in future else max(future)) if future else None
    if items and all(_item_spent(i) for i in items):
        future = [r for i in items if (r := epoch_ms(i.get("resetAt"))) is not None and r > now]
        if future:
            return min(future)  # the first item back makes the account usable
        return summary_reset if summary_reset is not None and summary_reset > now else None
    return None


class UsageQuotas:
    """See the module docstring. One per application (:class:`Services`)."""

    def __init__(
        self,
        services: Services,
        *,
        concurrency: int = 8,
        node_timeout_s: float = 30.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.services = services
        self.concurrency = concurrency
        self.node_timeout_s = node_timeout_s
        self._clock = clock
        self._limit = asyncio.Semaphore(max(1, concurrency))
        self._flights: dict[str, asyncio.Task[Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self.passes: list[int] = []
        """The periods whose scheduled pass this instance ran (it took their lease)."""

    @property
    def _store(self) -> Store:
        return self.services.store

    @property
    def _registry(self) -> AdapterRegistry:
        return self.services.registry

    # -- which types ---------------------------------------------------------------------

    def asks(self, provider_type: str) -> bool:
        """Whether ``provider_type``'s adapter reports quotas (has ``usage``)."""
        return usage_method(self._registry.for_type(provider_type)) is not None

    async def supported_types(self) -> list[str]:
        """The types whose adapter has ``usage``: the types adapters list, then the pools'."""
        pools = await self._store.pools.view()
        candidates = dict.fromkeys([*self._registry.declared_types(), *pools])
        return [t for t in candidates if self.asks(t)]

    # -- refreshes -----------------------------------------------------------------------

    async def refresh_all(self) -> None:
        """Refresh every pool type's entry (quota types asked, the others counted)."""
        pools = await self._store.pools.view()
        nodes = sum(len(n) for n in pools.values())
        # Its types' refreshes share this process's bound; one may wait for another
        # instance's refresh of the same type (bounded by that lease) before its own.
        await self._flight("usage:all", self._refresh_all, self._ttl_ms(nodes) * 2)

    async def refresh_type(self, provider_type: str) -> None:
        """Refresh one type's entry. Raises :class:`NotFound` for a type without nodes."""
        pools = await self._store.pools.view()
        if provider_type not in pools:
            raise NotFound("provider type", provider_type)
        await self._flight(
            f"usage:type:{provider_type}",
            lambda: self._refresh_type(provider_type),
            self._ttl_ms(len(pools[provider_type])),
        )

    async def refresh_node(self, provider_type: str, uuid: str) -> dict[str, JSONValue]:
        """Ask one node afresh, patch its instance into the stored entry (recounted) and
        return the instance. Raises :class:`NotFound` for an absent node."""
        node = await self._store.pools.get_node(provider_type, uuid)
        if node is None:
            raise NotFound("provider", f"{provider_type}/{uuid}")
        asked = await self._flight(
            f"usage:node:{provider_type}:{uuid}",
            lambda: self._refresh_node(provider_type, uuid),
            self._ttl_ms(1) * 2,
        )
        if asked is not None:
            return dict(asked)
        stored = await self._stored_instance(provider_type, uuid)  # asked by another instance
        if stored is None:  # that instance could not store it: ask here
            return await self._refresh_node(provider_type, uuid)
        return stored

    async def _refresh_all(self) -> None:
        pools = await self._store.pools.view()

        async def one(provider_type: str) -> None:
            with contextlib.suppress(NotFound):  # its last node went meanwhile
                await self.refresh_type(provider_type)

        await asyncio.gather(*(one(t) for t in list(pools)))

    async def _refresh_type(self, provider_type: str) -> dict[str, JSONValue]:
        nodes = list((await self._store.pools.view()).get(provider_type, ()))
        if self.asks(provider_type):
            config = await self.services.config.get()
            instances: list[JSONValue] = list(
                await asyncio.gather(*(self._ask(provider_type, n, config) for n in nodes))
            )
            entry = _counted(provider_type, instances)
        else:
            counted = counters_entry(provider_type, nodes)
            assert isinstance(counted, dict)
            entry = counted
        await self._store.usage_cache.put_type(provider_type, entry, iso_ms(self._clock()))
        return entry

    async def _refresh_node(self, provider_type: str, uuid: str) -> dict[str, JSONValue]:
        node = await self._store.pools.get_node(provider_type, uuid)
        if node is None:
            raise NotFound("provider", f"{provider_type}/{uuid}")
        if self.asks(provider_type):
            instance = await self._ask(provider_type, node, await self.services.config.get())
        else:
            counted = counters_entry(provider_type, [node])
            assert isinstance(counted, dict) and isinstance(counted["instances"], list)
            instance = counted["instances"][0]
            assert isinstance(instance, dict)
        await self._patch(provider_type, instance)
        return instance

    async def _patch(self, provider_type: str, instance: dict[str, JSONValue]) -> None:
        """Put ``instance`` into its type's stored entry (replacing the one of its uuid, or
        added), recounted; under the type's lease, waited for."""
        name = f"usage:type:{provider_type}"
        token = await self._hold(name, self._ttl_ms(1))
        try:
            cache = await self._store.usage_cache.get()
            entry = cache.providers.get(provider_type) if cache is not None else None
            if not isinstance(entry, dict):
                entry = {"providerType": provider_type, "instances": []}
            listed = entry.get("instances")
            instances = list(listed) if isinstance(listed, list) else []
            for index, other in enumerate(instances):
                if isinstance(other, dict) and other.get("uuid") == instance["uuid"]:
                    instances[index] = instance
                    break
            else:
                instances.append(instance)
            patched = recounted({**entry, "instances": instances})
            await self._store.usage_cache.put_type(provider_type, patched, iso_ms(self._clock()))
        finally:
            with contextlib.suppress(CfgStoreError):
                await self._store.leases.release(name, token)

    async def _stored_instance(self, provider_type: str, uuid: str) -> dict[str, JSONValue] | None:
        cache = await self._store.usage_cache.get()
        entry = cache.providers.get(provider_type) if cache is not None else None
        listed = entry.get("instances") if isinstance(entry, dict) else None
        for instance in listed if isinstance(listed, list) else ():
            if isinstance(instance, dict) and instance.get("uuid") == uuid:
                return instance
        return None

    # -- one node ------------------------------------------------------------------------

    async def _ask(
        self,
        provider_type: str,
        node: ProviderNode,
        config: MainConfig,
    ) -> dict[str, JSONValue]:
        instance = _instance_base(provider_type, node)
        if node.state.is_disabled:
            instance["error"] = DISABLED_MESSAGE
            return instance
        adapter = self._registry.for_type(provider_type)
        usage = usage_method(adapter)
        if adapter is None or usage is None:
            instance["error"] = f"no adapter reports the usage of {provider_type}"
            return instance
        async with self._limit:
            try:
                async with asyncio.timeout(self.node_timeout_s):
                    found = await self._usage(provider_type, node, config, adapter, usage)
            except TimeoutError:
                instance["error"] = f"no usage answer within {self.node_timeout_s:g}s"
            except (UpstreamUnavailable, RefreshFailed, CfgStoreError) as exc:
                instance["error"] = str(exc) or type(exc).__name__
            except Exception as exc:  # an adapter's bug: one node's error, not the refresh's
                log.exception("usage query of %s/%s failed", provider_type, node.uuid)
                instance["error"] = f"usage query failed: {type(exc).__name__}"
            else:
                if isinstance(found, dict):
                    instance.update(success=True, usage=found)
                else:
                    instance["error"] = "the adapter answered no usage object"
        if instance["success"] is True:
            current = await self._store.pools.get_node(provider_type, node.uuid)
            await self._cool_down_if_spent(provider_type, current or node, instance, config)
        current = await self._store.pools.get_node(provider_type, node.uuid)
        if current is not None:
            instance["isHealthy"] = current.state.is_healthy
        return instance

    async def _usage(
        self,
        provider_type: str,
        node: ProviderNode,
        config: MainConfig,
        adapter: Adapter,
        usage: UsageMethod,
    ) -> Any:
        adapter.check_node(provider_type, node, config)
        refresher = self.services.refresher
        credential = None
        if adapter.needs_credential(provider_type):
            credential = await refresher.credential_for(provider_type, node)
            if credential is None:
                raise UpstreamUnavailable("no credential stored for the node")
        for attempt in range(2):
            call = ModelsCall(
                provider_type=provider_type,
                node=node,
                config=config,
                credential=credential,
                session=self.services.session,
                request_id=f"usage-{node.uuid[:8]}",
                pools=self.services.store.pools,
            )
            try:
                return await usage(call)
            except CredentialRejected:
                if credential is None or attempt:
                    raise
            credential = await refresher.refresh(
                provider_type, node, force=True, seen_version=credential.version
            )
        raise AssertionError("unreachable")

    async def _cool_down_if_spent(
        self,
        provider_type: str,
        node: ProviderNode,
        instance: Mapping[str, JSONValue],
        config: MainConfig,
    ) -> None:
        now = self._clock()
        until = spent_until(instance.get("usage"), now)
        if until is None:
            return
        scheduled = parse_time_ms(node.state.scheduled_recovery_time)
        if not node.state.is_healthy and scheduled is not None and scheduled >= until:
            return  # already cooling down at least that long
        try:
            await self._store.pools.record_cooldown(
                provider_type,
                node.uuid,
                f"{QUOTA_MESSAGE} until {iso_ms(until)}",
                max_error_count=config.max_error_count,
                recovery_at_ms=until,
                at_ms=now,
            )
        except CfgStoreError as exc:
            log.error(
                "the quota cooldown of %s/%s was not recorded: %s", provider_type, node.uuid, exc
            )
            return
        log.info("%s/%s: quota exhausted until %s", provider_type, node.uuid, iso_ms(until))

    # -- single flight ---------------------------------------------------------------------

    def _ttl_ms(self, nodes: int) -> int:
        """A lease's time to live: long enough for the work it guards (asking ``nodes``
        nodes) to end, so a live holder keeps it; short enough that a dead one blocks the
        others' refreshes (they wait for it) no longer than that."""
        rounds = max(1, math.ceil(nodes / max(1, self.concurrency)))
        per_round_s = self.node_timeout_s * 2 + 5  # an ask, a forced refresh, a second ask
        return int((rounds * per_round_s + 30) * 1000)

    async def _flight(self, name: str, work: Callable[[], Awaitable[T]], ttl_ms: int) -> T | None:
        """Run ``work`` once for everyone: callers in this process join the run under way;
        across instances the one holding lease ``name`` runs it. ``None`` when another
        instance did (its result is in the store)."""
        task = self._flights.get(name)
        if task is None:
            task = asyncio.create_task(self._leased(name, work, ttl_ms), name=f"cfgstore-{name}")
            self._flights[name] = task

            def forget(done: asyncio.Task[Any]) -> None:
                if self._flights.get(name) is done:
                    del self._flights[name]

            task.add_done_callback(forget)
        result: T | None = await asyncio.shield(task)
        return result

    async def _leased(self, name: str, work: Callable[[], Awaitable[T]], ttl_ms: int) -> T | None:
        leases = self._store.leases
        token = await leases.take(name, ttl_ms)
        if token is None:
            # Another instance is at it: wait until it is done, then read what it stored.
            released = await self._hold(name, ttl_ms)
            with contextlib.suppress(CfgStoreError):
                await leases.release(name, released)
            return None
        try:
            return await work()
        finally:
            with contextlib.suppress(CfgStoreError):  # else it runs out by itself
                await leases.release(name, token)

    async def _hold(self, name: str, ttl_ms: int) -> str:
        """Take lease ``name``, waiting while someone holds it (a holder that died lets go
        after its time to live)."""
        looks = 0
        while True:
            token = await self._store.leases.take(name, ttl_ms)
            if token is not None:
                return token
            await asyncio.sleep(_POLL_S[min(looks, len(_POLL_S) - 1)])
            looks += 1

    # -- scheduled refresh -------------------------------------------------------------------

    async def scheduled_pass(self, period: int, interval: int) -> bool:
        """Run the pass of period ``period`` (of ``interval`` ms) unless another instance
        took it; whether this instance ran it."""
        # Held nearly the whole period (not released): the other instances' timers for
        # this period, late by their clocks' skew or a busy loop, find it taken.
        hold_ms = interval - min(interval // 2, SCHEDULE_SKEW_MS)
        token = await self._store.leases.take("usage:scheduled", max(1, hold_ms))
        if token is None:
            return False
        log.debug("scheduled quota refresh, period %d", period)
        self.passes.append(period)
        await self.refresh_all()
        return True

    def start(self) -> None:
        """Run the scheduled refresh in a background task of the running loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="cfgstore-usage-quotas")

    async def stop(self) -> None:
        """Cancel the scheduled refresh and the refreshes under way, and wait for them."""
        tasks = [t for t in (self._task, *self._flights.values()) if t is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        earliest = self._clock()  # no pass before one interval after the start
        last = (0, -1)  # (interval, period) of the last pass
        while True:
            try:
                interval = interval_ms(await self.services.config.get())
            except CfgStoreError as exc:
                log.warning("scheduled quota refresh: config unreadable: %s", exc)
                interval = 0
            if interval <= 0:
                await asyncio.sleep(OFF_RECHECK_S)
                earliest = self._clock()
                continue
            now = self._clock()
            period = -(-max(now, earliest + interval) // interval)  # the next period's start
            if last[0] == interval:
                period = max(period, last[1] + 1)
            await asyncio.sleep(max(0, period * interval - now) / 1000)
            last = (interval, period)
            try:
                await self.scheduled_pass(period, interval)
            except CfgStoreError as exc:
                log.warning("scheduled quota refresh failed: %s", exc)
            except Exception:
                log.exception("scheduled quota refresh failed")


QUOTAS = web.AppKey("cfgstore_gateway.usage_quotas", UsageQuotas)
"""Where the application keeps its :class:`UsageQuotas` (the admin usage routes read it)."""
