"""What every operation mixin of the Redis backend relies on: the connection, the key
schema, the scripts, and the two ways of announcing a change."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from cfgstore.adapters.backend import BackendContext
from cfgstore.adapters.settings import Settings
from cfgstore.model.events import ChangeEvent
from cfgstore_redis.connection import RedisConnection
from cfgstore_redis.keys import Keys
from cfgstore_redis.sibling_folders import Folder
from cfgstore_redis.translate import translated
from cfgstore_redis.writer import GroupCommitWriter

READ_CHUNK = 100
"""Nodes (or credentials) per pipelined round trip of a bulk read. Each chunk is sent,
parsed and decoded before the next (~50–80 µs of client CPU per node): a full read of a
large pool gives the event loop a turn every few milliseconds, for ~0.1 ms of extra round
trip per chunk."""


class RedisParts:
    context: BackendContext
    settings: Settings
    origin: str
    keys: Keys
    connection: RedisConnection
    redis: Any
    scripts: dict[str, Any]
    writer: GroupCommitWriter[Any]
    sibling_folders: dict[str, Folder]
    """Kiro sibling folders as this process last read or wrote them, each at its
    ``@ver`` (:mod:`cfgstore_redis.sibling_folders`)."""

    def _head(self, entity: str, *ids: str) -> str:
        """A change message up to its revision (scripts append the number and ``}``)."""
        body = json.dumps({"entity": entity, "ids": list(ids), "origin": self.origin})
        return body[:-1] + ', "rev": '

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one of the scripts of :mod:`cfgstore_redis.lua`."""
        with translated(self.connection):
            return await self.scripts[name](keys=list(keys), args=list(args))

    async def _run_many(
        self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
    ) -> list[Any]:
        """Run script ``name`` once per ``(keys, args)``, pipelined (one round trip): each
        run atomic on its own, replies in order. The first error is raised after every
        run was sent."""
        script = self.scripts[name]
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        with translated(self.connection):
            for attempt in range(2):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for index in todo:
                        keys, args = calls[index]
                        pipe.evalsha(script.sha, len(keys), *keys, *args)
                    for index, reply in zip(
                        todo, await pipe.execute(raise_on_error=False), strict=True
                    ):
                        replies[index] = reply
                # A server restarted since the script was loaded ran none of these.
                todo = [i for i in todo if isinstance(replies[i], NoScriptError)]
                if not todo or attempt:
                    break
                await self.redis.script_load(script.script)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies

    def _changed(self, entity: str, *ids: str) -> None:
        """Tell the layers above in this process (other processes hear the feed)."""
        self.context.publish(ChangeEvent(entity, tuple(ids), origin=self.origin))
