"""Entry point (group ``cfgstore``, name ``memory``): announces the memory layer.

Above a shared backend that offers the replica operations (Redis) the layer is the memory
fallback (:mod:`cfgstore_memory.fallback`); above any other backend (files) it is a read
cache (:mod:`cfgstore_memory.read_cache`).
"""

from __future__ import annotations

from collections.abc import Callable

from cfgstore import hookimpl
from cfgstore.adapters.backend import BackendContext, BackendDescriptor


def make_layer(context: BackendContext) -> object:
    from cfgstore_memory.fallback import MemoryFallback
    from cfgstore_memory.read_cache import ReadCache

    below = context.below
    if below is not None and "cfgstore_replica_apply" in below:
        return MemoryFallback(context)
    return ReadCache(context)


@hookimpl
def cfgstore_register_backends(register: Callable[[BackendDescriptor], None]) -> None:
    register(
        BackendDescriptor(
            name="memory",
            description="memory layer: serves from memory, rides out outages of a shared "
            "backend (snapshot + journal); a read cache over files",
            factory=make_layer,
            layer=True,
            capabilities=frozenset({"outage-fallback"}),
        )
    )
