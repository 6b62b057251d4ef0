"""Optional: plugin logs, a short capped list of JSON objects per gateway plugin that every
instance on the storage shares (``ai-monitor``'s last exchanges with ``keepInStore``).

Debug data, not state: an entry is size-capped before a backend sees it
(:func:`cfgstore.model.plugin_logs.capped_entry`), a log holds at most ``keep`` entries,
and a layer that rides out outages keeps what is appended during one in its own memory
only (not journaled, lost on restart). A chain without these operations keeps the logs in
the process's memory (:class:`cfgstore.adapters.facades.PluginLogs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.model.jsjson import JSONValue


@hookspec
async def cfgstore_plugin_log_append(plugin: str, entry: dict[str, JSONValue], keep: int) -> None:
    """Put ``entry`` (a JSON object, already capped) first in the log of ``plugin`` (a
    name of :func:`~cfgstore.model.plugin_logs.check_plugin`), then trim the log to its
    ``keep`` newest entries (1 ≤ ``keep`` ≤ :data:`~cfgstore.model.plugin_logs.MAX_KEEP`),
    as one step: concurrent appenders in any process lose nothing but what the trim drops.
    May return before the entry is durable (a backend may coalesce writes);
    ``cfgstore_flush`` waits for it, and a read by the same store sees it at once."""


@hookspec
async def cfgstore_plugin_log_recent(plugin: str, limit: int) -> list[dict[str, JSONValue]]:
    """The ``limit`` newest entries of the log of ``plugin``, newest first, equal to what
    was appended (an empty list for a log never written or cleared)."""


@hookspec
async def cfgstore_plugin_log_clear(plugin: str) -> None:
    """Empty the log of ``plugin`` (the other plugins' logs untouched)."""
