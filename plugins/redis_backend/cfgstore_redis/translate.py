"""redis-py errors → cfgstore's error types, at the edge where they enter."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis.exceptions import RedisError

from cfgstore_redis.connection import classify


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turn redis-py errors into :class:`~cfgstore.errors.StorageUnavailable` (outages) or
    :class:`~cfgstore.errors.StorageServerError` (everything else the server refuses)."""
    try:
        yield
    except (RedisError, OSError, TimeoutError) as exc:
        raise classify(exc) from exc
