"""cfgstore_redis.connection: URL parsing, client construction, connecting, error mapping.

Everything that talks to Redis talks to a real ``redis-server`` (the session server or a
private one per test); nothing here mocks Redis. Sentinel and Cluster are only parsed and
constructed here (no I/O); their live behaviour is tested with real topologies elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MaxConnectionsError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cfgstore.adapters.settings import Settings
from cfgstore.errors import InvalidData, NotFound, StorageServerError, StorageUnavailable
from cfgstore_redis.connection import (
    HEALTH_CHECK_INTERVAL_S,
    RESP_PROTOCOL,
    RedisConnection,
    RedisNode,
    RedisTarget,
    build_connection,
    classify,
    connect,
    parse_target,
)
from tests.support.redis_server import RedisServerProcess, free_port

SECRET = "pw-Sekr1t-42"
ADMIN_PASSWORD = "admin-Pa55-77"
#: Every live test finishes well within this, or fails instead of hanging.
TEST_DEADLINE_S = 20.0


def _settings(**values: Any) -> Settings:
    return Settings(**values)


def _assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets or (SECRET,):
        assert secret not in text, f"secret leaked into: {text}"


def _need_redis_server() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server binary on PATH")


StartServer = Callable[..., RedisServerProcess]


@pytest.fixture
def private_server() -> Iterator[StartServer]:
    """Starts private servers with the command-line arguments a test chooses; stops them
    after the test."""
    _need_redis_server()
    servers: list[RedisServerProcess] = []

    def start(*extra_args: str) -> RedisServerProcess:
        server = RedisServerProcess(extra_args=extra_args).start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()


@pytest.fixture
async def fast_connection(
    redis_server_process: RedisServerProcess,
) -> AsyncIterator[RedisConnection]:
    """A connection to the private server with short timeouts, for fault tests."""
    connection = await connect(
        _settings(
            redis_url=redis_server_process.url,
            redis_socket_timeout_ms=300,
            redis_connect_timeout_ms=300,
            redis_max_connections=4,
        )
    )
    try:
        yield connection
    finally:
        if redis_server_process.paused:
            redis_server_process.resume()
        await connection.close()


# ----------------------------------------------------------------------------------------
# parse_target: URLs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis://127.0.0.1:6379/0",
            RedisTarget("standalone", (RedisNode("127.0.0.1", 6379),)),
        ),
        ("redis://localhost", RedisTarget("standalone", (RedisNode("localhost", 6379),))),
        ("REDIS://Cache:7000/", RedisTarget("standalone", (RedisNode("Cache", 7000),))),
        (
            f"rediss://alice:{SECRET}@redis.example:6380/2?ssl_ca_certs=/etc/ca.pem",
            RedisTarget(
                "standalone",
                (RedisNode("redis.example", 6380),),
                db=2,
                username="alice",
                password=SECRET,
                tls=True,
                ssl_ca_certs="/etc/ca.pem",
            ),
        ),
        (
            f"redis://:{SECRET}@h/1",
            RedisTarget("standalone", (RedisNode("h", 6379),), db=1, password=SECRET),
        ),
        (
            "redis://alice@h",
            RedisTarget("standalone", (RedisNode("h", 6379),), username="alice"),
        ),
        (
            "redis://u:p%40ss%2Fw%3A%23@h",
            RedisTarget("standalone", (RedisNode("h", 6379),), username="u", password="p@ss/w:#"),
        ),
        ("redis://[::1]:6380/3", RedisTarget("standalone", (RedisNode("::1", 6380),), db=3)),
        (
            "redis://h?ssl_cert_reqs=NONE&ssl_check_hostname=false&ssl_certfile=/c&ssl_keyfile=/k",
            RedisTarget(
                "standalone",
                (RedisNode("h", 6379),),
                tls=True,
                ssl_cert_reqs="none",
                ssl_check_hostname=False,
                ssl_certfile="/c",
                ssl_keyfile="/k",
            ),
        ),
        (
            f"redis+sentinel://u:{SECRET}@s1:26379,s2:26380/mymaster/1?sentinel_password=sp",
            RedisTarget(
                "sentinel",
                (RedisNode("s1", 26379), RedisNode("s2", 26380)),
                db=1,
                username="u",
                password=SECRET,
                master="mymaster",
                sentinel_password="sp",
            ),
        ),
        (
            "redis+sentinel://s1/my%20master/",
            RedisTarget("sentinel", (RedisNode("s1", 26379),), master="my master"),
        ),
        (
            "rediss+sentinel://s1:5000/mymaster?sentinel_username=watch&sentinel_password=sp",
            RedisTarget(
                "sentinel",
                (RedisNode("s1", 5000),),
                master="mymaster",
                tls=True,
                sentinel_username="watch",
                sentinel_password="sp",
            ),
        ),
        (
            "redis+cluster://a:7000,b:7001,[::1]:7002",
            RedisTarget(
                "cluster", (RedisNode("a", 7000), RedisNode("b", 7001), RedisNode("::1", 7002))
            ),
        ),
        (
            f"rediss+cluster://u:{SECRET}@a:7000/0",
            RedisTarget(
                "cluster", (RedisNode("a", 7000),), username="u", password=SECRET, tls=True
            ),
        ),
        ("redis+cluster://a", RedisTarget("cluster", (RedisNode("a", 6379),))),
    ],
)
def test_parse_target_reads_every_scheme(url: str, expected: RedisTarget) -> None:
    assert parse_target(_settings(redis_url=url)) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"redis_url": "redis://old:1/0", "redis_host": "new"},
            RedisTarget("standalone", (RedisNode("new", 1),)),
        ),
        (
            {"redis_url": "redis://h:1/0", "redis_port": 2},
            RedisTarget("standalone", (RedisNode("h", 2),)),
        ),
        (
            {
                "redis_url": "redis://u:other@h/0",
                "redis_username": "alice",
                "redis_password": SECRET,
                "redis_db": 4,
            },
            RedisTarget(
                "standalone", (RedisNode("h", 6379),), db=4, username="alice", password=SECRET
            ),
        ),
        (
            {"redis_host": "10.0.0.5"},
            RedisTarget("standalone", (RedisNode("10.0.0.5", 6379),)),
        ),
        (
            {"redis_host": "[::1]", "redis_port": 7000, "redis_db": 2, "redis_password": SECRET},
            RedisTarget("standalone", (RedisNode("::1", 7000),), db=2, password=SECRET),
        ),
        (
            {
                "redis_host": "h",
                "redis_tls_ca_certs": "/ca.pem",
                "redis_tls_certfile": "/c.pem",
                "redis_tls_keyfile": "/k.pem",
            },
            RedisTarget(
                "standalone",
                (RedisNode("h", 6379),),
                tls=True,
                ssl_ca_certs="/ca.pem",
                ssl_certfile="/c.pem",
                ssl_keyfile="/k.pem",
            ),
        ),
        (
            {"redis_url": "rediss://h?ssl_ca_certs=/url.pem", "redis_tls_ca_certs": "/ca.pem"},
            RedisTarget("standalone", (RedisNode("h", 6379),), tls=True, ssl_ca_certs="/ca.pem"),
        ),
        (
            {"redis_url": "redis+sentinel://s1,s2/m/1", "redis_db": 3},
            RedisTarget(
                "sentinel", (RedisNode("s1", 26379), RedisNode("s2", 26379)), db=3, master="m"
            ),
        ),
        (
            {"redis_url": "redis+sentinel://s1,s2/m", "redis_host": "s9", "redis_port": 5},
            RedisTarget("sentinel", (RedisNode("s9", 5),), master="m"),
        ),
        (
            {"redis_url": "redis+sentinel://s1,s2/m", "redis_host": "s9"},
            RedisTarget("sentinel", (RedisNode("s9", 26379),), master="m"),
        ),
        (
            {"redis_url": "redis+cluster://a:7000", "redis_db": 0},
            RedisTarget("cluster", (RedisNode("a", 7000),)),
        ),
    ],
)
def test_discrete_settings_override_the_url(values: dict[str, Any], expected: RedisTarget) -> None:
    assert parse_target(_settings(**values)) == expected


@pytest.mark.parametrize(
    ("values", "source", "where", "problem"),
    [
        ({"redis_url": f"http://u:{SECRET}@h"}, "CFGSTORE_REDIS_URL", "scheme", "'http'"),
        ({"redis_url": f"unix://u:{SECRET}@/tmp/r.sock"}, "CFGSTORE_REDIS_URL", "scheme", ""),
        ({"redis_url": f"u:{SECRET}@localhost:6379"}, "CFGSTORE_REDIS_URL", "scheme", "no scheme"),
        (
            {"redis_url": f"redis+sentinel://u:{SECRET}@h:26379"},
            "CFGSTORE_REDIS_URL",
            "path",
            "missing master name",
        ),
        (
            {"redis_url": f"redis+sentinel://u:{SECRET}@h:26379/"},
            "CFGSTORE_REDIS_URL",
            "path",
            "missing master name",
        ),
        (
            {"redis_url": f"redis+sentinel://u:{SECRET}@h/m/0/x"},
            "CFGSTORE_REDIS_URL",
            "path",
            "/<master>[/db]",
        ),
        ({"redis_url": f"redis://u:{SECRET}@h:abc/0"}, "CFGSTORE_REDIS_URL", "host", "port"),
        ({"redis_url": f"redis://u:{SECRET}@h:70000"}, "CFGSTORE_REDIS_URL", "host", "port"),
        ({"redis_url": f"redis://u:{SECRET}@h:0"}, "CFGSTORE_REDIS_URL", "host", "port"),
        (
            {"redis_url": f"redis+cluster://u:{SECRET}@a:1,b:x"},
            "CFGSTORE_REDIS_URL",
            "node 2",
            "port",
        ),
        ({"redis_url": f"redis://u:{SECRET}@h/x"}, "CFGSTORE_REDIS_URL", "db", "integer"),
        ({"redis_url": f"redis://u:{SECRET}@h/-1"}, "CFGSTORE_REDIS_URL", "db", "integer"),
        ({"redis_url": f"redis://u:{SECRET}@h/0/1"}, "CFGSTORE_REDIS_URL", "path", "/<db>"),
        (
            {"redis_url": f"redis+sentinel://u:{SECRET}@h/m/x"},
            "CFGSTORE_REDIS_URL",
            "db",
            "integer",
        ),
        (
            {"redis_url": f"redis+cluster://u:{SECRET}@a:7000/1"},
            "CFGSTORE_REDIS_URL",
            "db",
            "only database 0",
        ),
        ({"redis_url": f"redis://u:{SECRET}@a,b"}, "CFGSTORE_REDIS_URL", "host", "one server"),
        ({"redis_url": f"redis://u:{SECRET}@/0"}, "CFGSTORE_REDIS_URL", "host", "no host"),
        ({"redis_url": f"redis+cluster://u:{SECRET}@a,,b"}, "CFGSTORE_REDIS_URL", "node 2", ""),
        ({"redis_url": f"redis://u:{SECRET}@[::1/0"}, "CFGSTORE_REDIS_URL", "host", ""),
        (
            {"redis_url": f"redis://u:{SECRET}@h/0?foo=1"},
            "CFGSTORE_REDIS_URL",
            "query",
            "unknown option foo",
        ),
        (
            {"redis_url": f"redis://u:{SECRET}@h/0?ssl_cert_reqs=maybe"},
            "CFGSTORE_REDIS_URL",
            "ssl_cert_reqs",
            "",
        ),
        (
            {"redis_url": f"redis://u:{SECRET}@h/0?ssl_check_hostname=perhaps"},
            "CFGSTORE_REDIS_URL",
            "ssl_check_hostname",
            "",
        ),
        (
            {"redis_url": f"redis://u:{SECRET}@h/0?sentinel_password=x"},
            "CFGSTORE_REDIS_URL",
            "sentinel_password",
            "redis+sentinel",
        ),
        (
            {"redis_url": "redis+sentinel://h/m?sentinel_password=a&sentinel_password=b"},
            "CFGSTORE_REDIS_URL",
            "sentinel_password",
            "twice",
        ),
        # Unencoded special characters split the password; no piece of it may be echoed.
        ({"redis_url": "redis://u:pw-Sekr1t/42@h:6379/0"}, "CFGSTORE_REDIS_URL", "user", "@"),
        ({"redis_url": "redis://u:pw-Sekr1t?42@h:6379/0"}, "CFGSTORE_REDIS_URL", "user", "@"),
        ({"redis_url": "redis://u:pw-Sekr1t#42@h:6379/0"}, "CFGSTORE_REDIS_URL", "user", "@"),
        ({"redis_url": "redis://u:pw-Sekr1t?x=42@h:6379"}, "CFGSTORE_REDIS_URL", "host", "port"),
        ({}, "redis settings", "redis_url", "no Redis configured"),
        ({"redis_host": "h", "redis_port": 0}, "redis settings", "redis_port", "65535"),
        ({"redis_host": "h", "redis_db": -1}, "redis settings", "redis_db", "non-negative"),
        ({"redis_host": "a,b"}, "redis settings", "redis_host", "one host"),
        (
            {"redis_url": "redis+cluster://a:1", "redis_db": 1, "redis_password": SECRET},
            "redis settings",
            "redis_db",
            "only database 0",
        ),
        (
            {"redis_url": "redis+sentinel://s1,s2/m", "redis_port": 5},
            "redis settings",
            "redis_port",
            "2 nodes",
        ),
    ],
)
def test_bad_settings_raise_invalid_data_without_the_password(
    values: dict[str, Any], source: str, where: str, problem: str
) -> None:
    with pytest.raises(InvalidData) as caught:
        parse_target(_settings(**values))
    error = caught.value
    assert error.source == source
    assert where in error.where
    assert problem in error.problem
    for text in (str(error), repr(error), error.where, error.problem):
        _assert_no_secret(text, SECRET, "Sekr1t", "42")


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"redis_socket_timeout_ms": 0}, "redis_socket_timeout_ms"),
        ({"redis_connect_timeout_ms": -5}, "redis_connect_timeout_ms"),
        ({"redis_max_connections": 0}, "redis_max_connections"),
    ],
)
def test_bad_pool_settings_raise_invalid_data(values: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidData) as caught:
        build_connection(_settings(redis_host="h", **values))
    assert caught.value.source == "redis settings"
    assert caught.value.where == where


@pytest.mark.parametrize(
    ("url", "text"),
    [
        (f"redis://alice:{SECRET}@127.0.0.1:6379/0", "redis://alice:***@127.0.0.1:6379/0"),
        (f"rediss://:{SECRET}@h:6380/2", "rediss://:***@h:6380/2"),
        ("redis://alice@h", "redis://alice@h:6379/0"),
        ("redis://[::1]", "redis://[::1]:6379/0"),
        (
            f"redis+sentinel://u:{SECRET}@127.0.0.1:26379,127.0.0.1:26380/mymaster"
            f"?sentinel_password={SECRET}x",
            "sentinel master mymaster db 0 via 127.0.0.1:26379,127.0.0.1:26380 "
            "(user u, password ***, sentinel password ***)",
        ),
        ("rediss+sentinel://s:1/m/3", "sentinel master m db 3 via s:1 (TLS)"),
        (
            f"rediss+cluster://u:{SECRET}@a:7000,b:7001",
            "redis cluster via a:7000,b:7001 (user u, password ***, TLS)",
        ),
        ("redis+cluster://a:7000", "redis cluster via a:7000"),
    ],
)
def test_describe_is_log_safe(url: str, text: str) -> None:
    target = parse_target(_settings(redis_url=url))
    assert target.describe() == text
    _assert_no_secret(repr(target))


# ----------------------------------------------------------------------------------------
# build_connection: the right client, configured on purpose (no I/O)


def _assert_no_hidden_retries(retry: Retry) -> None:
    assert isinstance(retry, Retry)
    assert retry.get_retries() == 0


async def test_standalone_client_is_a_blocking_pool_with_explicit_policy() -> None:
    settings = _settings(
        redis_url=f"redis://u:{SECRET}@127.0.0.1:6390/3",
        redis_socket_timeout_ms=1500,
        redis_connect_timeout_ms=700,
        redis_max_connections=7,
    )
    connection = build_connection(settings)
    try:
        client = connection.client
        assert isinstance(client, Redis)
        pool = client.connection_pool
        assert isinstance(pool, BlockingConnectionPool)
        assert pool.max_connections == 7
        assert pool.timeout == 1.5
        kwargs = pool.connection_kwargs
        assert kwargs["host"] == "127.0.0.1"
        assert kwargs["port"] == 6390
        assert kwargs["db"] == 3
        assert kwargs["socket_timeout"] == 1.5
        assert kwargs["socket_connect_timeout"] == 0.7
        assert kwargs["health_check_interval"] == HEALTH_CHECK_INTERVAL_S
        assert kwargs["protocol"] == RESP_PROTOCOL == 2
        _assert_no_hidden_retries(kwargs["retry"])
        # redis/redis-py#4252: with notifications on, checkout skips the liveness check.
        assert not pool.maint_notifications_enabled()
        assert connection.describe() == "redis://u:***@127.0.0.1:6390/3"
    finally:
        await connection.close()


async def test_tls_client_uses_ssl_connections() -> None:
    connection = build_connection(
        _settings(redis_url="rediss://h:6380?ssl_ca_certs=/ca.pem&ssl_cert_reqs=none")
    )
    try:
        assert isinstance(connection.client, Redis)
        pool = connection.client.connection_pool
        assert pool.connection_class.__name__ == "SSLConnection"
        assert pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem"
        assert pool.connection_kwargs["ssl_cert_reqs"] == "none"
        assert pool.connection_kwargs["ssl_check_hostname"] is False
    finally:
        await connection.close()


async def test_sentinel_client_is_a_master_client_on_a_blocking_sentinel_pool() -> None:
    settings = _settings(
        redis_url=f"redis+sentinel://u:{SECRET}@127.0.0.1:1,127.0.0.1:2/mymaster/2"
        "?sentinel_password=sp",
        redis_max_connections=5,
    )
    connection = build_connection(settings)
    try:
        client = connection.client
        assert isinstance(client, Redis)
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert isinstance(pool, BlockingConnectionPool)
        assert pool.service_name == "mymaster"
        assert pool.is_master
        assert pool.max_connections == 5
        assert pool.connection_kwargs["db"] == 2
        assert pool.connection_kwargs["username"] == "u"
        assert pool.connection_kwargs["password"] == SECRET
        assert pool.connection_kwargs["protocol"] == RESP_PROTOCOL
        _assert_no_hidden_retries(pool.connection_kwargs["retry"])
        assert not pool.maint_notifications_enabled()
        sentinels = pool.sentinel_manager.sentinels
        assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
        for sentinel in sentinels:
            kwargs = sentinel.connection_pool.connection_kwargs
            assert kwargs["password"] == "sp"  # the URL's password is for the data nodes
            assert kwargs["protocol"] == RESP_PROTOCOL
            _assert_no_hidden_retries(kwargs["retry"])
            assert not sentinel.connection_pool.maint_notifications_enabled()
    finally:
        await connection.close()


async def test_cluster_client_is_a_redis_cluster_without_hidden_retries() -> None:
    settings = _settings(
        redis_url=f"redis+cluster://u:{SECRET}@127.0.0.1:7000,127.0.0.1:7001",
        redis_max_connections=6,
    )
    connection = build_connection(settings)
    try:
        client = connection.client
        assert isinstance(client, RedisCluster)
        _assert_no_hidden_retries(client.retry)
        assert [node.name for node in client.startup_nodes] == [
            "127.0.0.1:7000",
            "127.0.0.1:7001",
        ]
        for node in client.startup_nodes:
            assert node.max_connections == 6
            assert node.connection_kwargs["protocol"] == RESP_PROTOCOL
            assert node.connection_kwargs["password"] == SECRET
        assert client.maint_notifications_config is not None
        assert not client.maint_notifications_config.enabled
        assert client._oss_cluster_maint_notifications_handler is None
    finally:
        await connection.close()


# ----------------------------------------------------------------------------------------
# connect against real servers


async def test_connect_pings_the_test_redis(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cfgstore.redis")
    async with asyncio.timeout(TEST_DEADLINE_S):
        connection = await connect(_settings(redis_url=redis_url))
        try:
            key = f"cfgstore-test:{uuid.uuid4()}"
            assert await connection.client.incr(key) == 1
            await connection.client.delete(key)
            assert connection.target == parse_target(_settings(redis_url=redis_url))
        finally:
            await connection.close()
            await connection.close()  # idempotent
    messages = [r.getMessage() for r in caplog.records if r.name == "cfgstore.redis"]
    assert f"connected to {connection.describe()}" in messages
    assert f"closed connection to {connection.describe()}" in messages


async def test_refused_port_is_unavailable_quickly() -> None:
    port = free_port()
    settings = _settings(redis_url=f"redis://127.0.0.1:{port}/0", redis_connect_timeout_ms=1000)
    started = time.monotonic()
    async with asyncio.timeout(TEST_DEADLINE_S):
        with pytest.raises(StorageUnavailable) as caught:
            await connect(settings)
    assert time.monotonic() - started < 3.0
    assert str(caught.value).startswith(f"cannot reach redis://127.0.0.1:{port}/0: ")
    assert isinstance(caught.value.__cause__, RedisConnectionError)


async def test_password_protected_server(private_server: StartServer) -> None:
    # RedisServerProcess waits for an unauthenticated PING, so a `--requirepass` server
    # never looks ready: the password is set once the server is up instead.
    server = private_server("--user", *f"alice on >{ADMIN_PASSWORD} ~* &* +@all".split())
    url = f"redis://127.0.0.1:{server.port}/0"
    async with asyncio.timeout(TEST_DEADLINE_S):
        admin = await connect(_settings(redis_url=url))
        try:
            await admin.client.config_set("requirepass", SECRET)
        finally:
            await admin.close()
        # The right password, in the URL or as a discrete setting, works.
        for settings in (
            _settings(redis_url=f"redis://:{SECRET}@127.0.0.1:{server.port}/0"),
            _settings(redis_url=url, redis_password=SECRET),
            _settings(redis_url=url, redis_username="alice", redis_password=ADMIN_PASSWORD),
        ):
            connection = await connect(settings)
            assert await connection.client.ping()
            await connection.close()

        # A wrong one is a server error (not an outage) that names neither password.
        for settings in (
            _settings(redis_url=url, redis_password="wrong-" + ADMIN_PASSWORD),
            _settings(redis_url=url, redis_username="alice", redis_password=SECRET),
        ):
            with pytest.raises(StorageServerError) as wrong:
                await connect(settings)
            assert "WRONGPASS" in str(wrong.value)
            assert isinstance(wrong.value.__cause__, AuthenticationError)
            _assert_no_secret(str(wrong.value), SECRET, ADMIN_PASSWORD)
            _assert_no_secret(repr(wrong.value.__cause__), SECRET, ADMIN_PASSWORD)

        # No password at all: NOAUTH.
        with pytest.raises(StorageServerError) as missing:
            await connect(_settings(redis_url=url))
        assert "NOAUTH" in str(missing.value)


async def test_password_sent_to_a_server_without_one_is_a_server_error(
    redis_server_process: RedisServerProcess,
) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{redis_server_process.port}/0"
    async with asyncio.timeout(TEST_DEADLINE_S):
        with pytest.raises(StorageServerError) as caught:
            await connect(_settings(redis_url=url))
    assert "no password configured" in str(caught.value)
    _assert_no_secret(str(caught.value))


async def test_database_out_of_range_is_a_server_error(
    redis_server_process: RedisServerProcess,
) -> None:
    url = f"redis://127.0.0.1:{redis_server_process.port}/999"
    async with asyncio.timeout(TEST_DEADLINE_S):
        with pytest.raises(StorageServerError) as caught:
            await connect(_settings(redis_url=url))
    assert "DB index is out of range" in str(caught.value)


async def test_next_command_after_a_restart_succeeds(
    redis_server_process: RedisServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Every pooled connection goes stale in a restart; none of them may fail a command.

    Standalone (and Sentinel, same pool class) check each connection at checkout and
    reconnect a closed one, so not even the first command fails. Contrast
    :func:`test_redis_py_default_client_fails_the_first_command_after_a_restart`.
    """
    caplog.set_level(logging.WARNING, logger="cfgstore.redis")
    connection = await connect(
        _settings(redis_url=redis_server_process.url, redis_max_connections=4)
    )
    client = connection.client
    assert isinstance(client, Redis)
    pool = client.connection_pool
    try:
        async with asyncio.timeout(TEST_DEADLINE_S):
            held = [await pool.get_connection() for _ in range(4)]
            for conn in held:
                await pool.release(conn)
            assert await client.incr("counter") == 1
            old_pid = redis_server_process.pid
            await redis_server_process.arestart()
            assert redis_server_process.pid != old_pid

            # 1 again: the data went with the old process, this is the new server.
            assert await client.incr("counter") == 1  # the first command after the restart
            for _ in range(4):
                await client.incr("counter")
            # Concurrent commands check out the other three stale connections too.
            results = await asyncio.gather(*(client.incr("counter") for _ in range(8)))
            assert sorted(results) == list(range(6, 14))
    finally:
        await connection.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_redis_py_default_client_fails_the_first_command_after_a_restart(
    redis_server_process: RedisServerProcess,
) -> None:
    """The pitfall our configuration avoids (redis/redis-py#4252), so the test above
    would notice if the configuration regressed. Skips once redis-py fixes it."""
    client = Redis(
        host="127.0.0.1",
        port=redis_server_process.port,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        async with asyncio.timeout(TEST_DEADLINE_S):
            assert await client.ping()
            await redis_server_process.arestart()
            try:
                await client.ping()
            except RedisConnectionError as exc:
                assert "Connection closed by server" in str(exc)
                assert isinstance(classify(exc), StorageUnavailable)
            else:
                pytest.skip("redis-py's default client no longer fails after a restart")
            assert await client.ping()
    finally:
        await client.aclose()


async def test_paused_server_is_unavailable_within_the_socket_timeout(
    redis_server_process: RedisServerProcess,
    fast_connection: RedisConnection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cfgstore.redis")
    client = fast_connection.client
    async with asyncio.timeout(TEST_DEADLINE_S):
        assert await client.incr("k") == 1
        redis_server_process.pause()
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError) as caught:
            await client.incr("k")
        elapsed = time.monotonic() - started
        error = fast_connection.classify(caught.value)
        assert isinstance(error, StorageUnavailable)
        assert 0.25 <= elapsed < 1.5  # socket timeout 0.3 s

        with pytest.raises(StorageUnavailable, match=r"^cannot reach redis://127\.0\.0\.1"):
            await fast_connection.ping()

        redis_server_process.resume()
        await fast_connection.ping()
        assert int(await client.get("k") or 0) >= 1
    messages = [r.getMessage() for r in caplog.records if r.name == "cfgstore.redis"]
    assert any(m.startswith("lost connection to redis://127.0.0.1") for m in messages)
    assert any(m.endswith("re-established") for m in messages)


async def test_busy_pool_waits_for_a_connection_then_gives_up(
    fast_connection: RedisConnection,
) -> None:
    """Pool of 4, socket timeout 0.3 s: a caller waits for a free connection, and only
    after the whole wait gets StorageUnavailable (never MaxConnectionsError at once)."""
    client = fast_connection.client
    assert isinstance(client, Redis)
    pool = client.connection_pool
    async with asyncio.timeout(TEST_DEADLINE_S):
        held = [await pool.get_connection() for _ in range(4)]
        waiting = asyncio.ensure_future(client.incr("k"))
        await asyncio.sleep(0)  # let the task run up to its wait for a connection
        assert not waiting.done()
        await pool.release(held.pop())
        assert await waiting == 1

        held.append(await pool.get_connection())
        started = time.monotonic()
        with pytest.raises(RedisConnectionError) as caught:
            await client.incr("k")
        assert time.monotonic() - started >= 0.25
        error = classify(caught.value)
        assert isinstance(error, StorageUnavailable)
        assert "no free Redis connection" in str(error)
        for conn in held:
            await pool.release(conn)
        assert await client.incr("k") == 2


async def test_maxmemory_policy_warning(
    redis_server_process: RedisServerProcess, fast_connection: RedisConnection
) -> None:
    async with asyncio.timeout(TEST_DEADLINE_S):
        assert await fast_connection.server_warnings() == []
        await fast_connection.client.config_set("maxmemory-policy", "allkeys-lru")
        assert await fast_connection.server_warnings() == [
            "maxmemory-policy allkeys-lru can evict credentials; set noeviction"
        ]


async def test_maxmemory_policy_check_without_config_permission(
    private_server: StartServer,
) -> None:
    server = private_server(
        "--maxmemory-policy",
        "volatile-lru",
        "--user",
        *f"noconfig on >{SECRET} ~* &* +@all -config".split(),
        "--user",
        *f"blind on >{SECRET} ~* &* +@all -config -info".split(),
    )
    url = f"redis://127.0.0.1:{server.port}/0"
    async with asyncio.timeout(TEST_DEADLINE_S):
        connection = await connect(
            _settings(redis_url=url, redis_username="noconfig", redis_password=SECRET)
        )
        try:  # INFO memory tells; CONFIG GET is never tried (it reads passwords)
            assert await connection.server_warnings() == [
                "maxmemory-policy volatile-lru can evict credentials; set noeviction"
            ]
        finally:
            await connection.close()
        admin = Redis(host="127.0.0.1", port=server.port, socket_timeout=5, decode_responses=True)
        try:
            assert await admin.execute_command("ACL", "LOG") == []
        finally:
            await admin.aclose()
        connection = await connect(
            _settings(redis_url=url, redis_username="blind", redis_password=SECRET)
        )
        try:
            [warning] = await connection.server_warnings()
        finally:
            await connection.close()
    assert warning.startswith("maxmemory-policy could not be checked (INFO memory: ")
    assert "make sure it is noeviction" in warning
    _assert_no_secret(warning)


async def test_out_of_memory_is_a_server_error(
    redis_server_process: RedisServerProcess, fast_connection: RedisConnection
) -> None:
    client = fast_connection.client
    async with asyncio.timeout(TEST_DEADLINE_S):
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", "1mb")
        value = b"x" * (512 * 1024)
        with pytest.raises(OutOfMemoryError) as caught:
            for index in range(8):  # the first writes may still fit
                await client.set(f"big:{index}", value)
    error = classify(caught.value)
    assert isinstance(error, StorageServerError)
    assert str(error) == (
        "Redis is out of memory (maxmemory reached with noeviction): the write was refused"
    )


async def test_wrong_type_is_a_server_error(fast_connection: RedisConnection) -> None:
    client = fast_connection.client
    async with asyncio.timeout(TEST_DEADLINE_S):
        await client.set("plain", "1")
        with pytest.raises(ResponseError) as caught:
            await client.hincrby("plain", "field", 1)
    error = classify(caught.value)
    assert isinstance(error, StorageServerError)
    assert str(error).startswith("Redis key holds the wrong type (WRONGTYPE): WRONGTYPE ")


async def test_acl_denial_is_a_server_error(private_server: StartServer) -> None:
    server = private_server("--user", *f"reader on >{SECRET} ~* &* +@read +ping +client".split())
    url = f"redis://reader:{SECRET}@127.0.0.1:{server.port}/0"
    async with asyncio.timeout(TEST_DEADLINE_S):
        connection = await connect(_settings(redis_url=url))
        try:
            with pytest.raises(NoPermissionError) as caught:
                await connection.client.set("k", "v")
        finally:
            await connection.close()
    error = connection.classify(caught.value)
    assert isinstance(error, StorageServerError)
    assert str(error).startswith("Redis ACL denied the command (NOPERM): ")
    _assert_no_secret(str(error))


# ----------------------------------------------------------------------------------------
# TLS against a real server


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make test certificates")
    folder = tmp_path_factory.mktemp("tls")
    files = {name: folder / f"{name}.pem" for name in ("ca", "ca-key", "server", "server-key")}
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")

    def run(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", files["ca-key"], "-out", files["ca"])  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", files["server-key"], "-out", folder / "server.csr")  # fmt: skip
    run("x509", "-req", "-in", folder / "server.csr", "-CA", files["ca"], "-CAkey",
        files["ca-key"], "-CAcreateserial", "-days", "2", "-extfile", folder / "ext.cnf",
        "-out", files["server"])  # fmt: skip
    return files


async def test_tls_connection(private_server: StartServer, tls_files: dict[str, Path]) -> None:
    tls_port = free_port()
    private_server(
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(tls_files["server"]),
        "--tls-key-file", str(tls_files["server-key"]),
        "--tls-ca-cert-file", str(tls_files["ca"]),
        "--tls-auth-clients", "no",
    )  # fmt: skip
    ca = tls_files["ca"]
    async with asyncio.timeout(TEST_DEADLINE_S):
        for settings in (
            _settings(redis_url=f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}"),
            _settings(redis_host="127.0.0.1", redis_port=tls_port, redis_tls_ca_certs=str(ca)),
        ):
            connection = await connect(settings)
            try:
                assert connection.target.tls
                assert await connection.client.ping()
            finally:
                await connection.close()
        # An unknown CA is a configuration problem, not an outage.
        with pytest.raises(StorageServerError, match="TLS certificate of Redis was rejected"):
            await connect(_settings(redis_url=f"rediss://127.0.0.1:{tls_port}/0"))


# ----------------------------------------------------------------------------------------
# classify


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (RedisConnectionError("Error 111 connecting"), StorageUnavailable, "Error 111"),
        (RedisTimeoutError("Timeout reading from socket"), StorageUnavailable, "in time"),
        (TimeoutError(), StorageUnavailable, "in time"),
        (ConnectionResetError(104, "reset"), StorageUnavailable, "reset"),
        (BusyLoadingError("Redis is loading"), StorageUnavailable, "(LOADING)"),
        (ReadOnlyError("You can't write"), StorageUnavailable, "(READONLY)"),
        (ResponseError("READONLY You can't write"), StorageUnavailable, "(READONLY)"),
        (MasterDownError("Link with MASTER is down"), StorageUnavailable, "(MASTERDOWN)"),
        (TryAgainError("Multiple keys request"), StorageUnavailable, "(TRYAGAIN)"),
        (ClusterDownError("The cluster is down"), StorageUnavailable, "(CLUSTERDOWN)"),
        (SlotNotCoveredError("slot 5 not covered"), StorageUnavailable, "reconfiguring"),
        (MaxConnectionsError(), StorageUnavailable, "no free Redis connection"),
        (
            MasterNotFoundError("No master found for 'm' : <Redis<...>> - network:ConnectionError"),
            StorageUnavailable,
            "Redis Sentinel: No master found for 'm' (sentinel errors: network:ConnectionError)",
        ),
        (
            MasterNotFoundError(
                "No master found for 'm' : <Redis<...>> - auth:AuthenticationError"
            ),
            StorageServerError,
            "sentinels refused the credentials",
        ),
        (RedisConnectionError("No connection available."), StorageUnavailable, "no free"),
        (OutOfMemoryError("command not allowed"), StorageServerError, "out of memory"),
        (ResponseError("OOM command not allowed"), StorageServerError, "out of memory"),
        (ResponseError("WRONGTYPE Operation"), StorageServerError, "(WRONGTYPE)"),
        (
            AuthenticationError("Authentication required.", status_code="NOAUTH"),
            StorageServerError,
            "(NOAUTH)",
        ),
        (
            AuthenticationError("invalid username-password pair", status_code="WRONGPASS"),
            StorageServerError,
            "(WRONGPASS)",
        ),
        (ResponseError("NOAUTH Authentication required."), StorageServerError, "(NOAUTH)"),
        (NoPermissionError("no permissions", status_code="NOPERM"), StorageServerError, "ACL"),
        (ResponseError("NOPERM this user has no permissions"), StorageServerError, "ACL"),
        (ResponseError("unknown command 'X'", status_code="ERR"), StorageServerError, "ERR "),
        (ResponseError("BUSY Redis is busy running a script."), StorageUnavailable, "(BUSY)"),
    ],
)
def test_classify_maps_redis_errors(exc: Exception, kind: type[Exception], text: str) -> None:
    error = classify(exc)
    assert type(error) is kind
    assert text in str(error)


def test_classify_keeps_our_errors_and_bugs() -> None:
    ours = NotFound("node", "x")
    assert classify(ours) is ours
    bug = KeyError("oops")
    assert classify(bug) is bug
    assert isinstance(classify(asyncio.CancelledError()), RuntimeError)


def test_classify_is_raised_with_the_original_as_cause() -> None:
    original = ResponseError("WRONGTYPE Operation against a key")
    with pytest.raises(StorageServerError) as caught:
        try:
            raise original
        except ResponseError as exc:
            raise classify(exc) from exc
    assert caught.value.__cause__ is original


def test_classify_scrubs_secrets_a_server_echoed() -> None:
    echoed = ResponseError(
        f"unknown command 'HELLO', with args beginning with: '3' 'AUTH' 'u' '{SECRET}'"
    )
    error = classify(echoed, secrets=[SECRET])
    assert isinstance(error, StorageServerError)
    _assert_no_secret(str(error))
    assert "***" in str(error)
