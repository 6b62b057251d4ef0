"""A read-through cache layer, invalidated by change notifications.

Caches whole documents that are read far more often than written (config, system prompt,
custom models, plugin config, password, usage cache). Pools, credentials and sessions are
not cached here: the backends below already serve them from memory or must answer with
the stored truth (compare-and-set, expiry).

Consistency: every write below publishes a :class:`~cfgstore.model.events.ChangeEvent`
before it returns, and the cache drops the entity synchronously, so a read after a write
in this process never sees the old value. Another process's writes arrive as remote
events (the file backend's watcher, later the Redis change feed). A read that started
before an invalidation never stores its (possibly stale) result.
"""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cfgstore import hookimpl
from cfgstore.adapters.backend import BackendContext, Operations
from cfgstore.errors import PluginError
from cfgstore.model.config import MainConfig
from cfgstore.model.custom_models import CustomModel
from cfgstore.model.events import ChangeEvent
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.usage_cache import UsageCache

_MISSING = object()

CACHED_OPERATIONS = (
    "cfgstore_config_get",
    "cfgstore_system_prompt_get",
    "cfgstore_custom_models_list",
    "cfgstore_plugin_config_get",
    "cfgstore_password_get",
    "cfgstore_usage_cache_get",
)
CACHED_ENTITIES = (
    "config",
    "system_prompt",
    "custom_models",
    "plugin_config",
    "password",
    "usage_cache",
)


class ReadCache:
    def __init__(self, context: BackendContext) -> None:
        assert context.below is not None
        # Each cached read is served from the backend below on a miss: the layer does not
        # implement it on its own, so a chain lacking it below is incomplete.
        missing = [op for op in CACHED_OPERATIONS if op not in context.below]
        if missing:
            raise PluginError(
                "the memory layer needs the backend below it to implement: " + ", ".join(missing)
            )
        self._below: Operations = context.below
        self._values: dict[str, Any] = {}
        self._generation: dict[str, int] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self.hits = 0
        self.misses = 0

    async def _cached(self, entity: str, load: Callable[[], Awaitable[Any]]) -> Any:
        value = self._values.get(entity, _MISSING)
        if value is not _MISSING:
            self.hits += 1
            return copy.deepcopy(value)
        self.misses += 1
        generation = self._generation.get(entity, 0)
        value = await load()
        if self._generation.get(entity, 0) == generation:
            self._values[entity] = value
        return copy.deepcopy(value)

    @hookimpl
    def cfgstore_changed(self, event: ChangeEvent) -> None:
        self._generation[event.entity] = self._generation.get(event.entity, 0) + 1
        self._values.pop(event.entity, None)

    @hookimpl
    async def cfgstore_config_get(self) -> MainConfig:
        value: MainConfig = await self._cached("config", self._below["cfgstore_config_get"])
        return value

    @hookimpl
    async def cfgstore_system_prompt_get(self) -> str | None:
        value: str | None = await self._cached(
            "system_prompt", self._below["cfgstore_system_prompt_get"]
        )
        return value

    @hookimpl
    async def cfgstore_custom_models_list(self) -> list[CustomModel]:
        value: list[CustomModel] = await self._cached(
            "custom_models", self._below["cfgstore_custom_models_list"]
        )
        return value

    @hookimpl
    async def cfgstore_plugin_config_get(self) -> PluginConfig:
        value: PluginConfig = await self._cached(
            "plugin_config", self._below["cfgstore_plugin_config_get"]
        )
        return value

    @hookimpl
    async def cfgstore_password_get(self) -> str | None:
        value: str | None = await self._cached("password", self._below["cfgstore_password_get"])
        return value

    @hookimpl
    async def cfgstore_usage_cache_get(self) -> UsageCache | None:
        value: UsageCache | None = await self._cached(
            "usage_cache", self._below["cfgstore_usage_cache_get"]
        )
        return value

    @hookimpl
    async def cfgstore_lease_take(self, name: str, ttl_ms: int) -> str | None:
        """The lease of the backend below (of this process when it keeps none); a lease
        taken drops the cached copies: the holder reads what an earlier holder wrote
        before releasing."""
        if "cfgstore_lease_take" not in self._below:
            now = time.monotonic()
            held = self._leases.get(name)
            if held is not None and held[1] > now:
                return None
            local = "local-" + secrets.token_hex(16)
            self._leases[name] = (local, now + max(1, ttl_ms) / 1000)
            return local
        token: str | None = await self._below["cfgstore_lease_take"](name=name, ttl_ms=ttl_ms)
        if token is not None:
            self.forget_cached()
        return token

    @hookimpl
    async def cfgstore_lease_release(self, name: str, token: str) -> bool:
        if "cfgstore_lease_release" not in self._below:
            held = self._leases.get(name)
            if held is None or held[0] != token:
                return False
            del self._leases[name]
            return held[1] > time.monotonic()
        released: bool = await self._below["cfgstore_lease_release"](name=name, token=token)
        return released

    def forget_cached(self) -> None:
        """Drop every cached copy (a read in flight does not keep what it read)."""
        for entity in CACHED_ENTITIES:
            self._generation[entity] = self._generation.get(entity, 0) + 1
            self._values.pop(entity, None)
