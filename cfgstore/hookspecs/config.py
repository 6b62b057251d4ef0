"""The main configuration (``config.json``).

Stored as the document the operator wrote: every key kept, unknown keys included, key
order preserved. Defaults are not stored; :class:`cfgstore.model.config.MainConfig`
applies them on read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.model.config import MainConfig
    from cfgstore.model.jsjson import JSONValue


@hookspec
async def cfgstore_config_get() -> MainConfig:
    """Return the stored configuration and its version.

    When nothing is stored returns an empty document whose version is
    :data:`cfgstore.model.versions.ABSENT_VERSION`. Keys whose stored values are
    unusable (nested too deeply, wrong type) never fail the read: build the result with
    :func:`cfgstore.model.config.config_from_text` (or ``config_from_json``), which names
    them in ``problems``. Raises :class:`~cfgstore.errors.InvalidData` for a stored
    document that is not a JSON object.
    """


@hookspec
async def cfgstore_config_put(document: dict[str, JSONValue], expected_version: str) -> str:
    """Replace the whole document if the stored version is still ``expected_version``.

    Compare-and-set (FR-003): raises :class:`~cfgstore.errors.VersionConflict` and writes
    nothing on mismatch; :data:`cfgstore.model.versions.ANY_VERSION` skips the check.
    Raises :class:`~cfgstore.errors.InvalidData` and writes nothing when ``document`` is
    not a JSON object (a list, a string…), whatever the version. Returns the new version.
    Never blocks the caller's event loop.
    """
