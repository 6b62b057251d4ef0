"""A real Redis for the test-suite: a private ``redis-server`` process, or whatever we are told.

No pytest in here, so the same code serves fixtures, benches and ad-hoc scripts.

:class:`RedisServerProcess` runs the operating system's ``redis-server`` binary (Debian's
redis 7.0) on a free loopback port, with its own temporary directory, no persistence and no
daemonising, and can stop, kill (SIGKILL), pause (SIGSTOP), resume (SIGCONT) and restart it
on the same port for fault tests. ``config_text`` gives it a config file of its own (sentinels
need one they can rewrite); ``extra_args`` adds command-line options.

:func:`resolve_test_redis` picks the Redis the suite talks to, in this order:

a. ``CFGSTORE_TEST_REDIS_URL`` when set (non-empty): used as-is. Setting it asserts that the
   database it names is disposable, because the fixtures FLUSHDB it. An operator's
   ``REDIS_URL`` is never read.
b. a private ``redis-server`` process when the binary is on ``PATH``;
c. a ``testcontainers`` Redis container when a Docker engine answers a ping;
d. otherwise a :class:`RuntimeError` that says how to get one.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

__all__ = [
    "ENV_TEST_REDIS_URL",
    "HOW_TO_GET_REDIS",
    "ExternalRedis",
    "RedisServerProcess",
    "RedisServerUnavailable",
    "RedisStartError",
    "RedisTarget",
    "free_port",
    "pid_exists",
    "ping_once",
    "resolve_test_redis",
    "server_pid",
]

ENV_TEST_REDIS_URL = "CFGSTORE_TEST_REDIS_URL"

#: How the suite explains getting a Redis; shared by every "no Redis" message.
HOW_TO_GET_REDIS = (
    "Install the server binary (Debian/Ubuntu: `apt-get install redis-server`), "
    f"or set {ENV_TEST_REDIS_URL}=redis://host:port/db to a disposable test database "
    "(it will be flushed), or run a Docker engine so testcontainers can start one."
)

_READY_DEADLINE_S = 10.0
_STOP_TIMEOUT_S = 10.0
_START_ATTEMPTS = 5
_POLL_INTERVAL_S = 0.02
_LOG_TAIL_LINES = 40


class RedisServerUnavailable(RuntimeError):
    """No way to get a Redis server for the tests (or no ``redis-server`` binary)."""


class RedisStartError(RuntimeError):
    """A ``redis-server`` process did not come up (the message carries its log tail)."""


class RedisTarget(Protocol):
    """What :func:`resolve_test_redis` hands out: somewhere to connect, and a way to let go."""

    @property
    def url(self) -> str: ...

    @property
    def description(self) -> str: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping_once(host: str, port: int, timeout: float) -> bool:
    """True when ``host:port`` answers an inline ``PING`` with ``+PONG`` within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(64)
                if not chunk:
                    return False
                reply += chunk
            return reply == b"+PONG\r\n"
    except OSError:
        return False


def server_pid(host: str, port: int, timeout: float) -> int | None:
    """``process_id`` from ``INFO server`` at ``host:port``, or None if it cannot be read."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"INFO server\r\n")
            buf = b""
            while b"\r\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                buf += chunk
            header, _, body = buf.partition(b"\r\n")
            if not header.startswith(b"$"):
                return None
            need = int(header[1:]) + 2
            while len(body) < need:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                body += chunk
    except (OSError, ValueError):
        return None
    for line in body.decode("utf-8", errors="replace").splitlines():
        if line.startswith("process_id:"):
            value = line.partition(":")[2].strip()
            return int(value) if value.isdigit() else None
    return None


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) if kept else "<empty>"


def pid_exists(pid: int) -> bool:
    """True while a process with this pid exists (zombies included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------------------
# a private redis-server

_LIVE: weakref.WeakSet[RedisServerProcess] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    """Last resort: never leave a private server behind when the interpreter exits."""
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


AOF_ALWAYS = ("--appendonly", "yes", "--appendfsync", "always")
"""Server arguments that keep the data across a stop and a restart (every write fsynced)."""


class RedisServerProcess:
    """A private ``redis-server`` on ``127.0.0.1:<free port>`` with its own temp dir.

    Use it as a context manager (``with RedisServerProcess() as srv:``) or call
    :meth:`start` and :meth:`close`. :meth:`stop` ends the process but keeps the port and
    directory so :meth:`restart` can bring the same server back; :meth:`close` also removes
    the directory.
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        ready_deadline: float = _READY_DEADLINE_S,
        stop_timeout: float = _STOP_TIMEOUT_S,
        extra_args: tuple[str, ...] = (),
        config_text: str | None = None,
    ) -> None:
        self._dir: Path | None = None
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self.ready_deadline = ready_deadline
        self.stop_timeout = stop_timeout
        self.extra_args = extra_args
        #: Written once to ``<dir>/redis.conf`` and passed as the config file (first argument);
        #: the server may rewrite that file (sentinel does) and a restart keeps the rewrite.
        self.config_text = config_text
        found = shutil.which(binary or "redis-server")
        if found is None:
            what = f"{binary} is not an executable" if binary else "redis-server is not on PATH"
            raise RedisServerUnavailable(f"{what}. " + HOW_TO_GET_REDIS)
        self.binary = found

    # -- identity -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("RedisServerProcess has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("RedisServerProcess has not been started")
        return self._proc.pid

    @property
    def dir(self) -> Path:
        if self._dir is None:
            raise RuntimeError("RedisServerProcess has not been started")
        return self._dir

    @property
    def config_path(self) -> Path | None:
        """``<dir>/redis.conf`` when ``config_text`` was given, else None."""
        return None if self.config_text is None else self.dir / "redis.conf"

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    @property
    def stdio_path(self) -> Path:
        return self.dir / "stdio.log"

    @property
    def description(self) -> str:
        return f"private redis-server ({self.binary}) pid {self.pid} at {self.url}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last process (negative: killed by that signal); None if running."""
        return None if self._proc is None else self._proc.poll()

    @property
    def paused(self) -> bool:
        return self._paused

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the server log and of its stdout/stderr, for error messages."""
        return (
            f"--- {self.log_path} ---\n{_tail(self.log_path, lines)}\n"
            f"--- {self.stdio_path} ---\n{_tail(self.stdio_path, lines)}"
        )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        """Start on a fresh free port; retries on new ports if the chosen one got taken."""
        if self.running:
            raise RuntimeError(f"already running: {self.description}")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="cfgstore-redis-"))
        config_path = self.config_path
        if config_path is not None and self.config_text is not None and not config_path.exists():
            config_path.write_text(self.config_text, encoding="utf-8")
        failures: list[str] = []
        for _ in range(_START_ATTEMPTS):
            port = free_port()
            try:
                self._launch(port)
            except _PortTaken as exc:
                failures.append(str(exc))
                continue
            return self
        raise RedisStartError(
            f"redis-server could not bind a free port after {_START_ATTEMPTS} attempts:\n"
            + "\n".join(failures)
        )

    def restart(self) -> Self:
        """Stop (if running) and start again on the same port with the same directory."""
        port = self.port
        self.stop()
        try:
            self._launch(port)
        except _PortTaken as exc:
            raise RedisStartError(f"restart could not re-bind port {port}: {exc}") from exc
        return self

    def stop(self) -> None:
        """SIGTERM, wait up to ``stop_timeout``, then SIGKILL. Idempotent."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            if proc is not None:
                proc.wait()
            self._paused = False
            _LIVE.discard(self)
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
            # A stopped process only acts on SIGTERM once it runs again.
            proc.send_signal(signal.SIGCONT)
        self._paused = False
        try:
            proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=self.stop_timeout)
        _LIVE.discard(self)

    def kill(self) -> None:
        """SIGKILL (a crash: no shutdown, no goodbyes) and reap; port and dir stay for restart.

        Idempotent, like :meth:`stop`.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=self.stop_timeout)
        self._paused = False
        _LIVE.discard(self)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def astop(self) -> None:
        """:meth:`stop` from async code, in a worker thread so the event loop keeps running."""
        await asyncio.to_thread(self.stop)

    async def arestart(self) -> Self:
        """:meth:`restart` from async code, in a worker thread.

        The blocking :meth:`restart` called straight from a coroutine freezes the event loop
        for the whole stop/start (up to seconds): background tasks stall and clients do not
        see their old connections close until the next command trips over them.
        """
        return await asyncio.to_thread(self.restart)

    def pause(self) -> None:
        """SIGSTOP: the socket stays open but nothing is answered until :meth:`resume`."""
        proc = self._require_running()
        proc.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        proc = self._require_running()
        proc.send_signal(signal.SIGCONT)
        self._paused = False

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "paused" if self._paused else ("running" if self.running else "stopped")
        return f"<RedisServerProcess port={self._port} {state}>"

    # -- internals ------------------------------------------------------------------------

    def _require_running(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise RuntimeError("redis-server is not running")
        return proc

    def _command(self, port: int) -> list[str]:
        config_path = self.config_path
        config = [] if config_path is None else [str(config_path)]
        return [
            self.binary,
            *config,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--logfile", str(self.log_path),
            *self.extra_args,
        ]  # fmt: skip

    def _launch(self, port: int) -> None:
        """Spawn on ``port`` and wait for PING; raise :class:`_PortTaken` on a bind clash."""
        log_size = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.stdio_path.open("ab") as stdio:
            proc = subprocess.Popen(
                self._command(port),
                stdin=subprocess.DEVNULL,
                stdout=stdio,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
            )
        self._proc = proc
        self._port = port
        self._paused = False
        _LIVE.add(self)

        deadline = time.monotonic() + self.ready_deadline
        while True:
            if proc.poll() is not None:
                new_log = _read_from(self.log_path, log_size)
                _LIVE.discard(self)
                if "Address already in use" in new_log:
                    raise _PortTaken(f"port {port}: {new_log.strip().splitlines()[-1:]}")
                raise RedisStartError(
                    f"redis-server exited with code {proc.returncode} before answering PING "
                    f"on 127.0.0.1:{port}.\n{self.log_tail()}"
                )
            if ping_once("127.0.0.1", port, timeout=0.5):
                owner = server_pid("127.0.0.1", port, timeout=0.5)
                if owner == proc.pid:
                    return
                if owner is not None:  # someone else's server holds the port
                    self.stop()
                    raise _PortTaken(f"port {port} is served by another redis (pid {owner})")
            if time.monotonic() >= deadline:
                self.stop()
                raise RedisStartError(
                    f"redis-server (pid {proc.pid}) did not answer PING on 127.0.0.1:{port} "
                    f"within {self.ready_deadline:.0f}s.\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL_S)


class _PortTaken(Exception):
    pass


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


# ----------------------------------------------------------------------------------------
# other sources


class ExternalRedis:
    """A Redis somebody else runs (``CFGSTORE_TEST_REDIS_URL``); closing it does nothing."""

    def __init__(self, url: str) -> None:
        self._url = url

    @property
    def url(self) -> str:
        return self._url

    @property
    def description(self) -> str:
        return f"{ENV_TEST_REDIS_URL}={self._url}"

    def close(self) -> None:
        return None


class _ContainerRedis:
    """A testcontainers Redis; closing it stops the container."""

    def __init__(self, container: Any, url: str) -> None:
        self._container = container
        self._url = url

    @property
    def url(self) -> str:
        return self._url

    @property
    def description(self) -> str:
        return f"testcontainers redis at {self._url}"

    def close(self) -> None:
        self._container.stop()


def _docker_answers(timeout: float = 3.0) -> bool:
    """A cheap yes/no: does a Docker engine answer a ping? Never raises."""
    try:
        # Imported by name: the docker SDK ships no type information.
        docker: Any = importlib.import_module("docker")
        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _start_container(image: str = "redis:7.0") -> _ContainerRedis:
    try:
        from testcontainers.community.redis import RedisContainer
    except ImportError:  # testcontainers < 4.14 kept it at the top level
        from testcontainers.redis import RedisContainer

    container = RedisContainer(image)
    try:
        container.start()
        host = container.get_container_host_ip()
        port = container.get_exposed_port(6379)
    except Exception as exc:
        with contextlib.suppress(Exception):
            container.stop()
        raise RedisServerUnavailable(
            f"a Docker engine answered but the {image} container did not start: {exc}. "
            + HOW_TO_GET_REDIS
        ) from exc
    return _ContainerRedis(container, f"redis://{host}:{port}/0")


def resolve_test_redis() -> RedisTarget:
    """The Redis the test-suite uses; see the module docstring for the order."""
    url = os.environ.get(ENV_TEST_REDIS_URL, "").strip()
    if url:
        return ExternalRedis(url)
    if shutil.which("redis-server") is not None:
        return RedisServerProcess().start()
    if _docker_answers():
        return _start_container()
    raise RedisServerUnavailable(
        "No Redis for the tests: redis-server is not on PATH, "
        f"{ENV_TEST_REDIS_URL} is not set, and no Docker engine answered. " + HOW_TO_GET_REDIS
    )
