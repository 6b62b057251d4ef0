"""Change notifications passed between backends, layers and observers."""

from __future__ import annotations

import attrs


@attrs.frozen
class ChangeEvent:
    """``entity`` changed (``"pools"``, ``"credentials"``, ``"config"``, ``"system_prompt"``,
    ``"custom_models"``, ``"sessions"``, ``"password"``, ``"usage_cache"``, ``"plugin_config"``).

    ``ids`` narrows it down when known (e.g. ``("claude-kiro-oauth/<uuid>",)``); empty means
    "anything of this entity". ``origin`` is the instance that wrote it, ``remote`` whether
    it was noticed from outside this process (another process's write)."""

    entity: str
    ids: tuple[str, ...] = ()
    origin: str = ""
    remote: bool = False


ENTITIES = (
    "pools",
    "credentials",
    "config",
    "system_prompt",
    "custom_models",
    "sessions",
    "password",
    "usage_cache",
    "plugin_config",
)
