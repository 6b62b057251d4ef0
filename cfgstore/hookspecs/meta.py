"""Store metadata: schema version, namespace id, initialised/migrated markers.

Plain string fields. Backends without a notion of a namespace (files) keep them in a
small file of their own.
"""

from __future__ import annotations

from collections.abc import Mapping

from cfgstore.hookspecs import hookspec


@hookspec
async def cfgstore_meta_get() -> dict[str, str]:
    """Return every metadata field (empty when nothing was ever recorded)."""


@hookspec
async def cfgstore_meta_update(fields: Mapping[str, str]) -> None:
    """Set the given fields atomically, keeping the others."""
