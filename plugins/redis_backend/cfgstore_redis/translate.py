"""redis-py errors → cfgstore's error types, at the edge where they enter."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis.exceptions import RedisClusterException, RedisError

from cfgstore_redis.connection import RedisConnection

REDIS_FAILURES = (RedisError, RedisClusterException, OSError, TimeoutError)


@contextlib.contextmanager
def translated(connection: RedisConnection) -> Iterator[None]:
    """Turn redis-py errors into :class:`~cfgstore.errors.StorageUnavailable` (outages) or
    :class:`~cfgstore.errors.StorageServerError` (everything else the server refuses),
    with the connection's passwords scrubbed; note success for the connection's log."""
    try:
        yield
    except REDIS_FAILURES as exc:
        raise connection.classify(exc) from exc
    connection.note_ok()
