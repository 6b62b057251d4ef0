"""Smoke tests of the real-Redis harness itself (tests/support/redis_server.py, redis_fixture)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from pathlib import Path

import pytest
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.support.redis_server import (
    ENV_TEST_REDIS_URL,
    ExternalRedis,
    RedisServerProcess,
    RedisServerUnavailable,
    RedisStartError,
    pid_exists,
    ping_once,
    resolve_test_redis,
    server_pid,
)

# Upper bound for any single awaited step here; a hang fails the test instead of the run.
STEP_DEADLINE_S = 10.0

# For tests that build a RedisServerProcess themselves (the fixture skips on its own).
requires_redis_binary = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server binary not on PATH"
)


def _fast_client(url: str, timeout: float = 0.3) -> Redis:
    """A client that gives up quickly and never retries, so faults are visible at once."""
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _connection_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            return False
    except ConnectionRefusedError:
        return True


# ---------------------------------------------------------------------------------------
# the session Redis through the async client fixture


async def test_ping(redis_client: Redis) -> None:
    assert await redis_client.ping() is True


async def test_set_get_round_trip(redis_client: Redis) -> None:
    assert await redis_client.set("harness:key", "värde") is True
    assert await redis_client.get("harness:key") == "värde".encode()
    assert await redis_client.get("harness:missing") is None


async def test_client_starts_on_an_empty_database(redis_client: Redis) -> None:
    assert await redis_client.dbsize() == 0


def test_redis_url_answers_ping(redis_url: str) -> None:
    assert redis_url.startswith("redis://")
    host_port = redis_url.removeprefix("redis://").split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    assert ping_once(host, int(port), timeout=2.0)


# ---------------------------------------------------------------------------------------
# the private process


def test_private_server_is_ours_and_on_loopback(
    redis_server_process: RedisServerProcess,
) -> None:
    srv = redis_server_process
    assert srv.url == f"redis://127.0.0.1:{srv.port}/0"
    assert server_pid("127.0.0.1", srv.port, timeout=2.0) == srv.pid
    assert srv.dir.is_dir()
    assert srv.log_path.is_file()


def test_stop_really_stops(redis_server_process: RedisServerProcess) -> None:
    srv = redis_server_process
    port, pid = srv.port, srv.pid
    assert pid_exists(pid)

    srv.stop()

    assert not srv.running
    assert srv.returncode == 0  # SIGTERM was honoured; no SIGKILL needed
    assert not pid_exists(pid)
    assert _connection_refused(port)
    srv.stop()  # idempotent


@requires_redis_binary
def test_close_removes_the_directory() -> None:
    srv = RedisServerProcess().start()
    directory, pid = srv.dir, srv.pid
    srv.close()
    assert not directory.exists()
    assert not pid_exists(pid)


@requires_redis_binary
def test_context_manager_starts_and_stops() -> None:
    with RedisServerProcess() as srv:
        port, pid = srv.port, srv.pid
        assert ping_once("127.0.0.1", port, timeout=2.0)
    assert not pid_exists(pid)
    assert _connection_refused(port)


async def test_pause_times_out_then_resume_answers(
    redis_server_process: RedisServerProcess,
) -> None:
    srv = redis_server_process
    client = _fast_client(srv.url, timeout=0.3)
    try:
        async with asyncio.timeout(STEP_DEADLINE_S):
            assert await client.ping() is True

            srv.pause()
            started = time.monotonic()
            with pytest.raises(redis.exceptions.TimeoutError):
                await client.ping()
            elapsed = time.monotonic() - started
            assert 0.25 <= elapsed < 3.0, elapsed

            srv.resume()
            assert await client.ping() is True
            assert await client.set("after-resume", "1") is True
    finally:
        if srv.paused:
            srv.resume()
        await client.aclose()


def test_stop_while_paused_is_graceful(redis_server_process: RedisServerProcess) -> None:
    srv = redis_server_process
    pid = srv.pid
    srv.pause()
    srv.stop()
    assert srv.returncode == 0  # SIGCONT let SIGTERM through; not killed
    assert not pid_exists(pid)


async def test_restart_keeps_port_and_drops_data(
    redis_server_process: RedisServerProcess,
) -> None:
    srv = redis_server_process
    port, url, old_pid, directory = srv.port, srv.url, srv.pid, srv.dir
    before = _fast_client(url, timeout=2.0)
    try:
        async with asyncio.timeout(STEP_DEADLINE_S):
            await before.set("survives?", "no")
    finally:
        await before.aclose()

    await srv.arestart()

    assert srv.port == port
    assert srv.url == url
    assert srv.dir == directory
    assert srv.pid != old_pid
    assert not pid_exists(old_pid)
    assert server_pid("127.0.0.1", port, timeout=2.0) == srv.pid
    after = _fast_client(url, timeout=2.0)
    try:
        async with asyncio.timeout(STEP_DEADLINE_S):
            assert await after.ping() is True
            assert await after.get("survives?") is None  # no persistence: --save ""
    finally:
        await after.aclose()


async def test_pooled_client_reconnects_across_arestart(
    redis_server_process: RedisServerProcess,
) -> None:
    """``arestart`` keeps the event loop running, so the pool sees its sockets close.

    protocol=2 on purpose: redis-py 8.1.0 under RESP3 (its default) skips the checkout
    probe that replaces server-closed pooled connections (redis/redis-py#4252, fixed by
    #4260), and the first command after a restart fails with "Connection closed by server".
    """
    srv = redis_server_process
    client = Redis.from_url(
        srv.url,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        retry=Retry(NoBackoff(), 0),
        protocol=2,
    )
    try:
        async with asyncio.timeout(STEP_DEADLINE_S):
            assert await client.ping() is True
            await srv.arestart()
            assert await client.ping() is True
    finally:
        await client.aclose()


def test_restart_onto_a_taken_port_fails_clearly(
    redis_server_process: RedisServerProcess,
) -> None:
    srv = redis_server_process
    srv.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", srv.port))
        squatter.listen(1)
        with pytest.raises(RedisStartError, match=str(srv.port)):
            srv.restart()
    assert not srv.running


@requires_redis_binary
def test_start_failure_reports_the_log_tail() -> None:
    srv = RedisServerProcess(extra_args=("--no-such-directive", "x"))
    try:
        with pytest.raises(RedisStartError) as info:
            srv.start()
        message = str(info.value)
        assert "exited with code" in message
        assert "no-such-directive" in message  # redis's own complaint, from the log tail
    finally:
        srv.close()


# ---------------------------------------------------------------------------------------
# resolve_test_redis


def test_resolve_uses_the_env_url_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "redis://db.invalid:6390/7"
    monkeypatch.setenv(ENV_TEST_REDIS_URL, url)
    target = resolve_test_redis()
    try:
        assert isinstance(target, ExternalRedis)
        assert target.url == url
    finally:
        target.close()


@requires_redis_binary
def test_resolve_ignores_operator_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TEST_REDIS_URL, raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://operator.invalid:6379/0")
    target = resolve_test_redis()
    try:
        assert "operator.invalid" not in target.url
        assert isinstance(target, RedisServerProcess)
        assert ping_once("127.0.0.1", target.port, timeout=2.0)
    finally:
        target.close()


def test_resolve_without_any_source_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(ENV_TEST_REDIS_URL, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server binary
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-docker.sock'}")
    started = time.monotonic()
    with pytest.raises(RedisServerUnavailable) as info:
        resolve_test_redis()
    assert time.monotonic() - started < 10.0
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "apt-get install redis-server" in message
    assert f"{ENV_TEST_REDIS_URL}=redis://host:port/db" in message
    assert "Docker" in message


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RedisServerUnavailable, match="apt-get install redis-server"):
        RedisServerProcess()
    with pytest.raises(RedisServerUnavailable, match="absent"):
        RedisServerProcess(binary=str(tmp_path / "absent"))
