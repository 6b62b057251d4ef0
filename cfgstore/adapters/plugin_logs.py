"""The plugin logs facade (:mod:`cfgstore.hookspecs.plugin_logs`): ``store.plugin_logs``."""

from __future__ import annotations

import collections
import copy
import itertools

from cfgstore.adapters.backend import Operations
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.plugin_logs import MAX_KEEP, capped_entry, check_keep, check_plugin

APPEND = "cfgstore_plugin_log_append"
RECENT = "cfgstore_plugin_log_recent"
CLEAR = "cfgstore_plugin_log_clear"


class PluginLogs:
    """A capped log of JSON objects per plugin, newest first. Entries are capped
    (:func:`~cfgstore.model.plugin_logs.capped_entry`) before the backend sees them. A
    chain whose backends keep no plugin logs keeps them in this process's memory
    (:attr:`stored` is then false): the same contract, nothing shared, lost on exit."""

    def __init__(self, ops: Operations) -> None:
        self._ops = ops
        self._local: dict[str, collections.deque[dict[str, JSONValue]]] = {}

    @property
    def stored(self) -> bool:
        """Whether the logs are the storage's (shared by every instance on it)."""
        return APPEND in self._ops and RECENT in self._ops and CLEAR in self._ops

    async def append(self, plugin: str, entry: dict[str, JSONValue], keep: int) -> None:
        """Put ``entry`` first in ``plugin``'s log and keep its ``keep`` newest entries."""
        check_plugin(plugin)
        check_keep(keep)
        entry = capped_entry(entry)
        if self.stored:
            await self._ops[APPEND](plugin=plugin, entry=entry, keep=keep)
            return
        log = self._local.get(plugin)
        if log is None or log.maxlen != keep:
            log = collections.deque(itertools.islice(log or (), keep), maxlen=keep)
            self._local[plugin] = log
        log.appendleft(copy.deepcopy(entry))

    async def recent(self, plugin: str, limit: int = MAX_KEEP) -> list[dict[str, JSONValue]]:
        """The ``limit`` newest entries of ``plugin``'s log, newest first."""
        check_plugin(plugin)
        if limit <= 0:
            return []
        if self.stored:
            found: list[dict[str, JSONValue]] = await self._ops[RECENT](
                plugin=plugin, limit=min(limit, MAX_KEEP)
            )
            return found
        log = self._local.get(plugin, ())
        return [copy.deepcopy(e) for e in itertools.islice(log, limit)]

    async def clear(self, plugin: str) -> None:
        """Empty ``plugin``'s log."""
        check_plugin(plugin)
        if self.stored:
            await self._ops[CLEAR](plugin=plugin)
        else:
            self._local.pop(plugin, None)
