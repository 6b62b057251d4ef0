"""pytest fixtures for a real Redis (no fakeredis, no mocks).

``tests/conftest.py`` pulls them in with ``from tests.support.redis_fixture import *``.

* ``redis_target`` / ``redis_url`` (session): the Redis picked by
  :func:`tests.support.redis_server.resolve_test_redis` — ``CFGSTORE_TEST_REDIS_URL`` if set,
  else a private ``redis-server`` process, else a testcontainers container — released when
  the session ends.
* ``redis_client`` (function, async): a ``redis.asyncio.Redis`` on ``redis_url`` with explicit
  socket timeouts and no hidden retries, on a database that was just emptied with FLUSHDB.
* ``redis_server_process`` (function): a fresh private
  :class:`~tests.support.redis_server.RedisServerProcess` for fault tests (stop, pause,
  restart); skipped when the ``redis-server`` binary is absent. ``aof_server``: the same
  with AOF, so a stop and a restart keep every acknowledged write.

Flushing rule: ``redis_client`` runs FLUSHDB before every test. That is safe for the private
server and the container (both exist only for this session). When ``CFGSTORE_TEST_REDIS_URL``
is set, the person who set it asserts that the database it names is a disposable test
database, and the suite flushes it the same way. Never point it at data you want to keep; an
operator's ``REDIS_URL`` is never read.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.support.redis_server import (
    AOF_ALWAYS,
    HOW_TO_GET_REDIS,
    RedisServerProcess,
    RedisTarget,
    resolve_test_redis,
)

__all__ = [
    "REDIS_CLIENT_CONNECT_TIMEOUT_S",
    "REDIS_CLIENT_SOCKET_TIMEOUT_S",
    "aof_server",
    "redis_client",
    "redis_server_process",
    "redis_target",
    "redis_url",
]

#: Socket timeouts of the ``redis_client`` fixture: generous for a slow CI box, but bounded.
REDIS_CLIENT_SOCKET_TIMEOUT_S = 5.0
REDIS_CLIENT_CONNECT_TIMEOUT_S = 5.0


@pytest.fixture(scope="session")
def redis_target() -> Iterator[RedisTarget]:
    """The session's Redis (see :func:`resolve_test_redis`); closed at session end."""
    target = resolve_test_redis()
    try:
        yield target
    finally:
        target.close()


@pytest.fixture(scope="session")
def redis_url(redis_target: RedisTarget) -> str:
    """``redis://host:port/db`` of the session's Redis."""
    return redis_target.url


@pytest.fixture
def redis_server_process() -> Iterator[RedisServerProcess]:
    """A private ``redis-server`` for this test only, closed (and its dir removed) after it."""
    if shutil.which("redis-server") is None:
        pytest.skip(
            "fault tests need a private redis-server process and the binary is not on PATH. "
            + HOW_TO_GET_REDIS
        )
    with RedisServerProcess() as server:
        yield server


@pytest.fixture
def aof_server() -> Iterator[RedisServerProcess]:
    """A private ``redis-server`` with AOF (``appendfsync always``): a stop and a restart
    keep every acknowledged write."""
    if shutil.which("redis-server") is None:
        pytest.skip("outage tests need a private redis-server process. " + HOW_TO_GET_REDIS)
    with RedisServerProcess(extra_args=AOF_ALWAYS) as server:
        yield server


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """An async client on a freshly flushed database (see the module docstring)."""
    client = Redis.from_url(
        redis_url,
        socket_timeout=REDIS_CLIENT_SOCKET_TIMEOUT_S,
        socket_connect_timeout=REDIS_CLIENT_CONNECT_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        await client.flushdb()
        yield client
    finally:
        await client.aclose()
