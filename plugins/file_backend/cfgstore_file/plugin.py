"""Entry point (group ``cfgstore``, name ``file``): announces the file backend."""

from __future__ import annotations

from collections.abc import Callable

from cfgstore import hookimpl
from cfgstore.adapters.backend import BackendDescriptor


@hookimpl
def cfgstore_register_backends(register: Callable[[BackendDescriptor], None]) -> None:
    from cfgstore.adapters.backend import SHARED
    from cfgstore_file.backend import FileBackend

    register(
        BackendDescriptor(
            name="file",
            description="AIClient-2-API JSON files in a configs folder (the embedded default)",
            factory=FileBackend,
            capabilities=frozenset({SHARED}),
        )
    )
