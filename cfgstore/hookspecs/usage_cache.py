"""The provider usage cache (``usage-cache.json``, aiclient-formats §6.3): a timestamp and
one opaque entry per provider type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.model.jsjson import JSONValue
    from cfgstore.model.usage_cache import UsageCache


@hookspec
async def cfgstore_usage_cache_get() -> UsageCache | None:
    """Return the whole cache, or ``None`` when nothing was cached yet."""


@hookspec
async def cfgstore_usage_cache_put(cache: UsageCache) -> None:
    """Replace the whole cache ("refresh all")."""


@hookspec
async def cfgstore_usage_cache_put_type(
    provider_type: str, entry: JSONValue, timestamp: str
) -> None:
    """Replace one type's entry and set the cache timestamp ("refresh type"); other types
    are kept. Creates the cache when absent."""
