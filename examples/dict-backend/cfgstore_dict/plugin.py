"""Entry point (group ``cfgstore``, name ``dict``): announces the backend."""

from __future__ import annotations

from collections.abc import Callable

from cfgstore import CFGSTORE_API_VERSION, hookimpl
from cfgstore.adapters import BackendDescriptor

if CFGSTORE_API_VERSION.split(".")[0] != "1":  # written against the 1.x hook specifications
    raise ImportError(f"cfgstore-dict needs cfgstore API 1.x, not {CFGSTORE_API_VERSION}")


@hookimpl
def cfgstore_register_backends(register: Callable[[BackendDescriptor], None]) -> None:
    from cfgstore_dict.backend import DictBackend

    # No capabilities: one process owns the file, so several instances must not share it
    # (the contract suite then skips its several-instance tests).
    register(
        BackendDescriptor(
            name="dict",
            description="example: everything in memory, saved to one JSON file on flush",
            factory=DictBackend,
        )
    )
