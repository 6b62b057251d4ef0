"""Plugin logs on Redis (:mod:`cfgstore.hookspecs.plugin_logs`): one list per plugin,
``{p}:plog:<plugin>``, newest first; an append is ``LPUSH`` + ``LTRIM`` in one
``MULTI``/``EXEC`` (no reader ever sees the list longer than ``keep``, no appender's entry
lost but to the trim). Entries arrive capped (the facade's
:func:`~cfgstore.model.plugin_logs.capped_entry`)."""

from __future__ import annotations

from cfgstore import hookimpl
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.plugin_logs import decode_entry, encode_entry
from cfgstore_redis.base import RedisParts
from cfgstore_redis.translate import translated


class PluginLogOps(RedisParts):
    @hookimpl
    async def cfgstore_plugin_log_append(
        self, plugin: str, entry: dict[str, JSONValue], keep: int
    ) -> None:
        key = self.keys.plugin_log(plugin)
        with translated(self.connection):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lpush(key, encode_entry(entry))
                pipe.ltrim(key, 0, max(1, keep) - 1)
                await pipe.execute()

    @hookimpl
    async def cfgstore_plugin_log_recent(
        self, plugin: str, limit: int
    ) -> list[dict[str, JSONValue]]:
        if limit <= 0:
            return []
        with translated(self.connection):
            raw = await self.redis.lrange(self.keys.plugin_log(plugin), 0, limit - 1)
        return [e for e in map(decode_entry, raw) if e is not None]

    @hookimpl
    async def cfgstore_plugin_log_clear(self, plugin: str) -> None:
        with translated(self.connection):
            await self.redis.delete(self.keys.plugin_log(plugin))
