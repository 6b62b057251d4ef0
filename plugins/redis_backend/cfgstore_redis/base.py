"""What every operation mixin of the Redis backend relies on: the connection, the key
schema, the scripts, and the two ways of announcing a change."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cfgstore.adapters.backend import BackendContext
from cfgstore.adapters.settings import Settings
from cfgstore.model.events import ChangeEvent
from cfgstore_redis.connection import RedisConnection
from cfgstore_redis.keys import Keys
from cfgstore_redis.translate import translated
from cfgstore_redis.writer import GroupCommitWriter


class RedisParts:
    context: BackendContext
    settings: Settings
    origin: str
    keys: Keys
    connection: RedisConnection
    redis: Any
    scripts: dict[str, Any]
    writer: GroupCommitWriter

    def _head(self, entity: str, *ids: str) -> str:
        """A change message up to its revision (scripts append the number and ``}``)."""
        body = json.dumps({"entity": entity, "ids": list(ids), "origin": self.origin})
        return body[:-1] + ', "rev": '

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one of the scripts of :mod:`cfgstore_redis.lua`."""
        with translated(self.connection):
            return await self.scripts[name](keys=list(keys), args=list(args))

    def _changed(self, entity: str, *ids: str) -> None:
        """Tell the layers above in this process (other processes hear the feed)."""
        self.context.publish(ChangeEvent(entity, tuple(ids), origin=self.origin))
