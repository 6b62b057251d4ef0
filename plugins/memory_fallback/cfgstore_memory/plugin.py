"""Entry point (group ``cfgstore``, name ``memory``): announces the memory layer."""

from __future__ import annotations

from collections.abc import Callable

from cfgstore import hookimpl
from cfgstore.adapters.backend import BackendDescriptor


@hookimpl
def cfgstore_register_backends(register: Callable[[BackendDescriptor], None]) -> None:
    from cfgstore_memory.read_cache import ReadCache

    register(
        BackendDescriptor(
            name="memory",
            description="memory layer: read cache over the backend below",
            factory=ReadCache,
            layer=True,
        )
    )
