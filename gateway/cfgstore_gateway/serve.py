"""Running the gateway: one process, or N worker processes sharing one port.

:func:`serve` is what ``cfgctl serve`` runs (:mod:`cfgstore_gateway.cli`):

* **Storage**: the chain ``--backends`` / ``CFGSTORE_BACKENDS`` names, else the settings'
  default chain: without Redis the file backend under the memory cache; with a Redis URL
  the memory fallback over Redis (an empty, never-used namespace falls back to the files
  with a warning, as ``Store.open`` does).
* **A first start** (:mod:`cfgstore_gateway.first_start`): on a chain over the files,
  when ``<configs>/config.json`` does not exist, a default deployment is created first
  (:func:`ensure_default_configs`): ``config.json`` from
  :func:`~cfgstore.model.defaults.default_config` with a newly generated client API key,
  a generated web-UI admin password in ``pwd`` (hashed; both printed once, on stdout),
  ``plugins.json`` and an empty ``provider_pools.json`` (files that exist are never
  touched; new folders are mode 0700, new files 0600). A folder with a ``config.json``
  but no password (no ``pwd``, or a blank one) gets a generated password the same way:
  the Node default ``admin123`` is never accepted. On another chain named explicitly the
  same defaults are seeded into the *store* (:func:`seed_store`), never into files, and
  printed once.
* **Address**: ``--host`` / ``--port`` over ``HOST`` / ``SERVER_PORT`` of ``config.json``
  (``0.0.0.0:3000``). Port 0 picks a free port. A line ``cfgctl serve: listening on
  http://HOST:PORT (...)`` on stdout says when the gateway answers.
* **Workers** (``--workers N`` > 1): N processes (``spawn``) listening on the same port
  with ``SO_REUSEPORT`` (the kernel spreads connections); worker *i* keeps its own state
  directory ``<state-dir>/worker-<i>`` (instance id, snapshot, journal). The supervisor
  reads the address from the config once and does the start-time work once (default
  configs or a seeded store; in file mode the Node service's cold-start counter reset), so
  the workers never reset each other's counts. With port 0 the supervisor reserves a free
  port (a bound, non-listening ``SO_REUSEPORT`` socket) for the workers.
* **Stopping**: SIGTERM or SIGINT stops accepting connections, lets in-flight requests
  finish (at most ``shutdown_timeout_s``; streams included), flushes the store
  (``store.flush()``: every accepted count is durable) and closes it; exit status 0. The
  supervisor forwards the signal to its workers and exits 0 when they all did; a worker
  that dies on its own stops the others and the supervisor exits 1.
* **Logs** (stderr): ``--log-format text`` (default) is one line per record
  (:data:`LOG_FORMAT`); ``json`` is one JSON object per line (:class:`JsonFormatter`:
  ``time``, ``level``, ``logger``, ``process``, ``message``, plus the record's ``extra``
  fields and ``exc`` for a traceback). The per-request line names the request id, type,
  node, status and latency inside ``message``. No line holds a key or token: the gateway
  never logs request headers, bodies or query strings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import attrs
from aiohttp import web

from cfgstore.adapters import Settings, Store
from cfgstore.adapters.settings import DEFAULT_FILE_CHAIN
from cfgstore.cli.common import tool_chain
from cfgstore.cli.os_errors import describe_os_error
from cfgstore.errors import CfgStoreError, NotInitialised, StorageUnavailable
from cfgstore.model.config import MainConfig
from cfgstore_gateway.app import create_app
from cfgstore_gateway.first_start import (
    FreshDeployment,
    ensure_default_configs,
    fresh_folder_lines,
    seed_store,
    seeded_store_lines,
    seeds_store,
    stores_in_files,
)
from cfgstore_gateway.graceful_stop import cleanup_runner
from cfgstore_gateway.services import GatewayOptions

log = logging.getLogger("cfgstore_gateway.serve")

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 3000
WORKER_START_TIMEOUT_S = 120.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
LOG_FORMATS = ("text", "json")
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
"""Attributes every log record has: anything else on a record came from ``extra=``."""


@attrs.frozen
class ServeConfig:
    """What :func:`serve` needs (the parsed ``cfgctl serve`` flags)."""

    settings: Settings
    host: str | None = None
    port: int | None = None
    workers: int = 1
    shutdown_timeout_s: float = 30.0
    log_level: str = "INFO"
    log_format: str = "text"
    """``text`` or ``json`` (see the module docstring)."""
    options: GatewayOptions = attrs.Factory(GatewayOptions)


class ServeError(Exception):
    """The gateway could not start (address in use, storage refused…): one line."""


def say(message: str) -> None:
    """One line for the operator on stdout (flushed: a supervisor may be reading it)."""
    print(f"cfgctl serve: {message}", flush=True)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr at ``level``, as text lines or JSON lines (``log_format``)."""
    if log_format not in LOG_FORMATS:
        raise ServeError(f"--log-format: unknown format {log_format!r} (text or json)")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


# ----------------------------------------------------------------------------- one process


async def run_gateway(
    config: ServeConfig,
    *,
    stop: asyncio.Event,
    on_ready: Callable[[str, int, str], None],
    reuse_port: bool = False,
    seed: bool = False,
) -> None:
    """Open the store, serve until ``stop`` is set, then stop gracefully (see the module
    docstring). ``on_ready(host, port, storage_mode)`` is called once the socket listens.
    ``seed``: give the store its first-start defaults first (:func:`seed_store`; in this
    store, as a backend may hold its data in this process only)."""
    async with Store.open(config.settings) as store:
        if seed:
            _announce_seeded(store, await seed_store(store))
        main_config = await store.config.get()
        host = config.host or _text(main_config.get("HOST")) or DEFAULT_HOST
        port = config.port if config.port is not None else main_config.int_value("SERVER_PORT")
        app = create_app(store, options=config.options)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=config.shutdown_timeout_s
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
            try:
                await site.start()
            except OSError as exc:
                raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            bound = _bound_port(runner, port)
            statuses = await store.status()
            on_ready(host, bound, statuses[0].mode if statuses else "unknown")
            await stop.wait()
            log.info("stopping: no new connections; finishing requests in flight")
        finally:
            await cleanup_runner(runner)
        await store.flush()
        log.info("store flushed; closing")


def _bound_port(runner: web.AppRunner, default: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return default


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _announce_seeded(store: Store, fresh: FreshDeployment | None) -> None:
    if fresh is not None:
        for line in seeded_store_lines(store.backend_names, fresh):
            say(line)


async def _ensure_default_files(settings: Settings) -> None:
    """On a chain over the files: create what the folder lacks, and say it once."""
    fresh = await asyncio.to_thread(ensure_default_configs, settings.configs_dir)
    if fresh is not None:
        for line in fresh_folder_lines(settings.configs_dir, fresh):
            say(line)


async def _seed_shared_store(settings: Settings) -> MainConfig:
    """Seed the store through the chain without its outage layers (a store of its own: the
    one the workers share, or one a memory fallback would not open while it is empty);
    return the config it then holds. When the storage cannot be reached now: a warning
    and the defaults (the service may start degraded)."""
    seed_settings = attrs.evolve(
        settings,
        backends=tool_chain(settings.chain),
        watch_interval_ms=0,
        reset_counters_on_start=False,
    )
    try:
        async with Store.open(seed_settings) as store:
            _announce_seeded(store, await seed_store(store))
            main_config = await store.config.get()
            await store.flush()
            return main_config
    except StorageUnavailable as exc:
        log.warning("cannot check the store for its first-start defaults now: %s", exc)
        return MainConfig()


async def serve_single(config: ServeConfig) -> None:
    """``cfgctl serve`` with one worker: this process serves."""
    settings = config.settings
    seed_here = False
    if stores_in_files(settings):
        await _ensure_default_files(settings)
    elif seeds_store(settings):
        if tool_chain(settings.chain) != settings.chain:  # a fallback over a shared backend
            await _seed_shared_store(settings)
        else:  # in the serving store: a backend may keep its data in this process only
            seed_here = True
    stop = asyncio.Event()

    def ready(host: str, port: int, mode: str) -> None:
        say(f"listening on http://{host}:{port} (storage: {mode}, 1 worker, pid {os.getpid()})")

    with _stop_on_signals(stop):
        await run_gateway(config, stop=stop, on_ready=ready, seed=seed_here)
    say("stopped")


# ----------------------------------------------------------------------------- workers


@attrs.frozen
class WorkerSpec:
    index: int
    config: ServeConfig
    host: str
    port: int


def worker_settings(settings: Settings, index: int) -> Settings:
    """Worker ``index``'s settings: its own state directory."""
    return attrs.evolve(settings, state_dir=settings.resolved_state_dir / f"worker-{index}")


def _worker_main(spec: WorkerSpec, channel: multiprocessing.connection.Connection) -> None:
    """Entry point of a worker process (spawned)."""
    configure_logging(spec.config.log_level, spec.config.log_format)

    async def main() -> None:
        stop = asyncio.Event()

        def ready(host: str, port: int, mode: str) -> None:
            channel.send(("ready", port, mode))

        with _stop_on_signals(stop):
            await run_gateway(
                attrs.evolve(spec.config, host=spec.host, port=spec.port),
                stop=stop,
                on_ready=ready,
                reuse_port=True,
            )

    try:
        asyncio.run(main())
    except (CfgStoreError, ServeError) as exc:
        with contextlib.suppress(OSError):
            channel.send(("error", str(exc), ""))
        sys.exit(2)
    except OSError as exc:  # a path it cannot use: the path and what to do, no traceback
        with contextlib.suppress(OSError):
            channel.send(("error", describe_os_error(exc), ""))
        sys.exit(2)
    except Exception as exc:
        log.exception("worker %d failed", spec.index)
        with contextlib.suppress(OSError):
            channel.send(("error", f"{type(exc).__name__}: {exc}", ""))
        sys.exit(1)


async def _prepare_supervisor(config: ServeConfig) -> tuple[str, int]:
    """The supervisor's one-time start work; returns the address from flags or config."""
    settings = config.settings
    if stores_in_files(settings):
        await _ensure_default_files(settings)
        # The Node service's cold-start reset happens once, here, not in every worker.
        async with Store.open(attrs.evolve(settings, watch_interval_ms=0)) as store:
            main_config = await store.config.get()
            await store.flush()
    elif seeds_store(settings):
        # Seeded once, here: the store the workers share gets one key and one password.
        main_config = await _seed_shared_store(settings)
    else:
        main_config = await _read_redis_config(settings)
    host = config.host or _text(main_config.get("HOST")) or DEFAULT_HOST
    port = config.port if config.port is not None else main_config.int_value("SERVER_PORT")
    return host, port


async def _read_redis_config(settings: Settings) -> MainConfig:
    """``config.json`` as the workers will see it: from Redis (the backend alone: the
    supervisor is no instance), from the files when the namespace was never initialised,
    and the defaults when Redis is unreachable now (the workers may start degraded)."""
    read_settings = attrs.evolve(settings, backends=("redis",), watch_interval_ms=0)
    try:
        async with Store.open(read_settings) as store:
            return await store.config.get()
    except NotInitialised:
        file_settings = attrs.evolve(
            read_settings, backends=DEFAULT_FILE_CHAIN, reset_counters_on_start=False
        )
        async with Store.open(file_settings) as store:
            return await store.config.get()
    except StorageUnavailable as exc:
        log.warning("cannot read the config from Redis (%s); using flags and defaults", exc)
        return MainConfig()


def _reserve_port(host: str) -> socket.socket:
    """A bound, non-listening ``SO_REUSEPORT`` socket on a free port of ``host``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def serve_workers(config: ServeConfig) -> int:
    """``cfgctl serve --workers N`` (N > 1): supervise N worker processes; the exit status."""
    host, port = asyncio.run(_prepare_supervisor(config))
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ServeError("--workers needs SO_REUSEPORT, which this platform lacks")
    reserved = _reserve_port(host) if port == 0 else None
    if reserved is not None:
        port = reserved.getsockname()[1]
    worker_config = config
    if stores_in_files(config.settings):
        worker_config = attrs.evolve(
            config, settings=attrs.evolve(config.settings, reset_counters_on_start=False)
        )
    context = multiprocessing.get_context("spawn")
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    workers: list[multiprocessing.process.BaseProcess] = []
    channels: list[multiprocessing.connection.Connection] = []
    try:
        for index in range(config.workers):
            parent_end, child_end = context.Pipe(duplex=False)
            spec = WorkerSpec(
                index,
                attrs.evolve(
                    worker_config, settings=worker_settings(worker_config.settings, index)
                ),
                host,
                port,
            )
            process = context.Process(
                target=_worker_main, args=(spec, child_end), name=f"worker-{index}"
            )
            process.start()
            child_end.close()
            workers.append(process)
            channels.append(parent_end)
        try:
            modes = _await_ready(workers, channels, received)
        except WorkerFailed as failed:
            _stop_all(workers)
            if any(w.exitcode == 2 for w in workers):  # the worker's own one-line error
                raise ServeError(str(failed)) from None
            say(str(failed))
            return 1
        if modes is None:
            _stop_all(workers)
            return 1
        if modes:
            say(
                f"listening on http://{host}:{port} (storage: {modes[0]}, "
                f"{config.workers} workers, pid {os.getpid()})"
            )
        return _supervise(workers, received)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if reserved is not None:
            reserved.close()
        for channel in channels:
            channel.close()


def _supervise(workers: list[multiprocessing.process.BaseProcess], received: list[int]) -> int:
    """Wait for a stop signal (forwarded to every worker) or a worker's death (the others
    are stopped); the exit status once all are gone."""
    stopping = crashed = False
    while True:
        if received and not stopping:
            stopping = True
            log.info("stopping %d workers", len(workers))
            _signal_all(workers, signal.SIGTERM)
        alive = [w for w in workers if w.exitcode is None]
        if not alive:
            break
        if not stopping and len(alive) < len(workers):
            log.error("a worker exited on its own; stopping the others")
            stopping = crashed = True
            _signal_all(workers, signal.SIGTERM)
        multiprocessing.connection.wait([w.sentinel for w in alive], timeout=0.2)
    failed = [w for w in workers if w.exitcode != 0]
    if failed:
        log.error("workers exited with %s", ", ".join(f"{w.name}: {w.exitcode}" for w in failed))
    if crashed or failed:
        return 1
    say("stopped")
    return 0


class WorkerFailed(Exception):
    """A worker reported that it could not start (the message says why)."""


def _await_ready(
    workers: list[multiprocessing.process.BaseProcess],
    channels: list[multiprocessing.connection.Connection],
    received: list[int],
) -> list[str] | None:
    """Wait until every worker listens: their storage modes; ``[]`` when a stop signal
    came first; ``None`` (after logging why) when one died or none started in time;
    :class:`WorkerFailed` when one reported why it could not start."""
    modes: dict[int, str] = {}
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while len(modes) < len(workers):
        if received:
            return []
        if time.monotonic() > deadline:
            log.error("workers did not start within %.0f s", WORKER_START_TIMEOUT_S)
            return None
        for index, channel in enumerate(channels):
            if index in modes:
                continue
            try:
                if not channel.poll(0.05):
                    if workers[index].exitcode is not None:
                        log.error("worker %d exited with %s", index, workers[index].exitcode)
                        return None
                    continue
                message: tuple[Any, ...] = channel.recv()
            except (EOFError, OSError):
                log.error("worker %d exited before it was ready", index)
                return None
            if message[0] == "ready":
                modes[index] = str(message[2])
            else:
                raise WorkerFailed(f"worker {index} failed: {message[1]}")
    return [modes[i] for i in range(len(workers))]


def _signal_all(workers: list[multiprocessing.process.BaseProcess], signum: int) -> None:
    for worker in workers:
        if worker.exitcode is None and worker.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum)


def _stop_all(workers: list[multiprocessing.process.BaseProcess]) -> None:
    _signal_all(workers, signal.SIGTERM)
    for worker in workers:
        worker.join(timeout=60)
        if worker.exitcode is None:
            worker.kill()
            worker.join()


def serve(config: ServeConfig) -> int:
    """Run ``cfgctl serve``; the process exit status. Raises :class:`ServeError` or a
    :class:`~cfgstore.errors.CfgStoreError` when the gateway cannot start."""
    configure_logging(config.log_level, config.log_format)
    if config.workers < 1:
        raise ServeError("--workers must be at least 1")
    if config.workers == 1:
        asyncio.run(serve_single(config))
        return 0
    return serve_workers(config)
