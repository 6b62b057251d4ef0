"""Plugin logs kept by the memory fallback while the storage below cannot take them
(:mod:`cfgstore.hookspecs.plugin_logs`).

Debug data, so none of it is journaled: an entry appended during an outage stays in this
process's memory only, is read back while the outage lasts, and is lost on restart (and no
longer shown once the storage answers again: the storage's log is the one shown then).
"""

from __future__ import annotations

import collections
import copy
import itertools

from cfgstore.model.jsjson import JSONValue

Entry = dict[str, JSONValue]


class LocalPluginLogs:
    """Capped logs in memory, newest first."""

    def __init__(self) -> None:
        self._logs: dict[str, collections.deque[Entry]] = {}

    def append(self, plugin: str, entry: Entry, keep: int) -> None:
        log = self._logs.get(plugin)
        if log is None or log.maxlen != keep:
            log = collections.deque(itertools.islice(log or (), keep), maxlen=keep)
            self._logs[plugin] = log
        log.appendleft(copy.deepcopy(entry))

    def recent(self, plugin: str, limit: int) -> list[Entry]:
        log = self._logs.get(plugin, ())
        return [copy.deepcopy(e) for e in itertools.islice(log, max(0, limit))]

    def clear(self, plugin: str) -> None:
        self._logs.pop(plugin, None)
