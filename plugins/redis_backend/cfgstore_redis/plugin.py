"""Entry point (group ``cfgstore``, name ``redis``): announces the Redis backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cfgstore import hookimpl
from cfgstore.adapters.backend import BackendDescriptor

if TYPE_CHECKING:
    from cfgstore.protocols import (
        KeptFilesBackend,
        LifecycleBackend,
        ReplicaBackend,
        StorageBackend,
        TrafficBackend,
        UsageStatsBackend,
    )
    from cfgstore_redis.backend import RedisBackend

    # mypy compares the backend with the protocols of the hookspecs it implements.
    _implements: tuple[
        type[StorageBackend],
        type[LifecycleBackend],
        type[ReplicaBackend],
        type[KeptFilesBackend],
        type[TrafficBackend],
        type[UsageStatsBackend],
    ] = (RedisBackend, RedisBackend, RedisBackend, RedisBackend, RedisBackend, RedisBackend)


@hookimpl
def cfgstore_register_backends(register: Callable[[BackendDescriptor], None]) -> None:
    from cfgstore.adapters.backend import (
        FOLDER_SIBLINGS,
        POTLUCK,
        SHARED,
        SHARED_LOGINS,
        SHARED_POTLUCK,
        TRAFFIC,
        USAGE_STATS,
    )
    from cfgstore_redis.backend import RedisBackend

    register(
        BackendDescriptor(
            name="redis",
            description="Redis (standalone, Sentinel or Cluster): atomic, versioned, shared",
            factory=RedisBackend,
            capabilities=frozenset(
                {
                    SHARED,
                    SHARED_LOGINS,
                    TRAFFIC,
                    USAGE_STATS,
                    POTLUCK,
                    SHARED_POTLUCK,
                    FOLDER_SIBLINGS,
                    "change-feed",
                    "replica",
                }
            ),
        )
    )
