"""Entry point (group ``cfgstore``, name ``file``): announces the file backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cfgstore import hookimpl
from cfgstore.adapters.backend import BackendDescriptor

if TYPE_CHECKING:
    from cfgstore.protocols import (
        LifecycleBackend,
        StorageBackend,
        TrafficBackend,
        UsageStatsBackend,
    )
    from cfgstore_file.backend import FileBackend

    # mypy compares the backend with the protocols of the hookspecs it implements.
    _implements: tuple[
        type[StorageBackend],
        type[LifecycleBackend],
        type[TrafficBackend],
        type[UsageStatsBackend],
    ] = (FileBackend, FileBackend, FileBackend, FileBackend)


@hookimpl
def cfgstore_register_backends(register: Callable[[BackendDescriptor], None]) -> None:
    from cfgstore.adapters.backend import FOLDER_SIBLINGS, POTLUCK, SHARED, TRAFFIC, USAGE_STATS
    from cfgstore_file.backend import FileBackend

    register(
        BackendDescriptor(
            name="file",
            description="AIClient-2-API JSON files in a configs folder (the embedded default)",
            factory=FileBackend,
            capabilities=frozenset({SHARED, TRAFFIC, USAGE_STATS, POTLUCK, FOLDER_SIBLINGS}),
        )
    )
