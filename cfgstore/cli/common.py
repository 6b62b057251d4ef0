"""What every cfgctl command shares: store options, errors → exit codes, progress.

Exit codes: 0 ok; 1 refused or differences found; 2 usage or input error (malformed
files, bad settings, unreachable or refusing storage, a filesystem error: see
:mod:`cfgstore.cli.os_errors`); 130 stopped by SIGINT or SIGTERM (see
:mod:`cfgstore.cli.interrupts`). Errors are one line on stderr — with ``--json``, also a
JSON object ``{"error": …, "exit_code": …}`` on stdout; ``cfgctl --debug`` adds the
traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import attrs
import typer

from cfgstore.adapters.chain import OUTAGE_FALLBACK, REPLICA, descriptors
from cfgstore.adapters.plugins import PluginSet, make_plugin_manager
from cfgstore.adapters.settings import Settings, redact_url
from cfgstore.cli.interrupts import EXIT_INTERRUPTED, Interrupted, last_signal, stop_signals
from cfgstore.cli.os_errors import describe_os_error
from cfgstore.errors import (
    CfgStoreError,
    InvalidData,
    PluginError,
    StorageServerError,
    StorageUnavailable,
)

FILE_BACKEND = "file"
"""The built-in backend whose store is a configs folder (``Settings.configs_dir``)."""

REDIS_TOOL_CHAIN = ("redis",)
"""Tools talk to Redis directly: an outage is an error to report, not a reason to journal."""

INPUT_ERRORS = (InvalidData, PluginError, StorageUnavailable, StorageServerError)
"""Errors that exit 2; every other cfgstore error is a refusal (exit 1)."""

debug = False
"""Set by ``cfgctl --debug``: show tracebacks."""

json_output = False
"""Set by a command's ``--json``: errors are also a JSON object on stdout."""

_json_emitted = False
"""Whether this invocation printed its JSON document already (an error adds none then)."""

T = TypeVar("T")

ConfigsOption = Annotated[
    Path | None,
    typer.Option("--configs", help="The configs folder (default ./configs; CFGSTORE_CONFIGS_DIR)."),
]
CwdOption = Annotated[
    Path | None,
    typer.Option(
        "--cwd",
        help="Working directory relative paths resolve against (default: parent of --configs).",
    ),
]
RedisUrlOption = Annotated[
    str | None,
    typer.Option("--redis-url", help="Redis URL (default CFGSTORE_REDIS_URL, then REDIS_URL)."),
]
BackendsOption = Annotated[
    str | None,
    typer.Option(
        "--backends",
        help="The backend chain, top first, comma-separated: e.g. file, redis, or a "
        "third-party backend (default CFGSTORE_BACKENDS; redis with a Redis URL).",
    ),
]


def _json_requested(value: bool) -> bool:
    global json_output
    json_output = bool(value)
    return value


JsonOption = Annotated[
    bool,
    typer.Option(
        "--json/--no-json",
        help="Machine-readable output (errors too: a JSON object on stdout).",
        callback=_json_requested,
    ),
]


def reset_invocation() -> None:
    """Forget the options of a previous invocation (one process may run several)."""
    global debug, json_output, _json_emitted
    debug = json_output = _json_emitted = False


_active_plugins: PluginSet | None = None


def use_plugins(plugins: PluginSet) -> None:
    """Make ``plugins`` the set commands use (``build_app`` calls this once)."""
    global _active_plugins
    _active_plugins = plugins


def plugin_set() -> PluginSet:
    """The plugins cfgctl was built with, so commands never discover them a second time."""
    global _active_plugins
    if _active_plugins is None:
        _active_plugins = make_plugin_manager()
    return _active_plugins


def tool_settings(
    configs: Path | None,
    cwd: Path | None,
    redis_url: str | None,
    backends: str | None = None,
) -> Settings:
    """Settings for an operator tool: flags over the environment, and never a side effect
    the service has on start (no cold-start counter reset, no file watching, no outage
    layer: see :func:`tool_chain`). The chain is ``--backends`` / ``CFGSTORE_BACKENDS``
    (parsed by :meth:`Settings.load`, as for ``cfgctl serve``); without one, Redis alone
    when a Redis URL is set, else the default file chain. A malformed setting exits 2 with
    one line."""
    try:
        settings = Settings.load(
            {
                "configs_dir": configs,
                "cwd": cwd,
                "redis_url": redis_url,
                "backends": backends,
                "reset_counters_on_start": False,
                "watch_interval_ms": 0,
            }
        )
    except InvalidData as exc:
        fail(str(exc), 2, exc)
    if settings.backends:
        return attrs.evolve(settings, backends=tool_chain(settings.backends))
    if settings.redis_configured:
        return attrs.evolve(settings, backends=REDIS_TOOL_CHAIN)
    return attrs.evolve(settings, backends=None)  # "" or "," named no chain


def tool_chain(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` without the layers that ride out outages of the backend below them (the
    memory fallback over Redis): a tool reports an outage instead of journaling, and is
    no instance of the service (no heartbeat, no state directory). Decided by the
    backends' declared capabilities, not their names; unknown names are left for the
    Store to report."""
    try:
        known = descriptors(plugin_set().manager)
    except CfgStoreError:
        return names  # the Store reports the conflict when it builds the chain
    kept = []
    for index, name in enumerate(names):
        below = known.get(names[index + 1]) if index + 1 < len(names) else None
        layer = known.get(name)
        if (
            layer is not None
            and below is not None
            and OUTAGE_FALLBACK in layer.capabilities
            and REPLICA in below.capabilities
        ):
            continue
        kept.append(name)
    return tuple(kept)


def chain_settings(
    command: str,
    redis_url: str | None,
    backends: str | None,
    configs: Path | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Settings for a command that reads or writes a store (``migrate``, ``verify``,
    ``export``, ``init``): :func:`tool_settings` with a chain that was named — by
    ``--backends`` / ``CFGSTORE_BACKENDS`` or a Redis URL. Without one, exit 2 with a
    clear line (a default ``./configs`` is no target to guess)."""
    settings = tool_settings(configs, cwd, redis_url, backends)
    if not settings.backends:
        fail(
            f"{command} needs a backend chain: give --backends (or CFGSTORE_BACKENDS), e.g. "
            "--backends file, or a Redis URL (--redis-url, CFGSTORE_REDIS_URL)",
            2,
        )
    return settings


def redis_settings(
    command: str, redis_url: str | None, configs: Path | None = None, cwd: Path | None = None
) -> Settings:
    """Settings for a command that needs Redis (and, when given, an existing configs
    folder); exits 2 with a clear line otherwise."""
    if configs is not None and not configs.is_dir():
        fail(f"{configs}: the configs folder does not exist", 2)
    settings = tool_settings(configs, cwd, redis_url)
    if not settings.redis_configured:
        fail(f"{command} needs Redis: give --redis-url or set CFGSTORE_REDIS_URL", 2)
    return attrs.evolve(settings, backends=REDIS_TOOL_CHAIN)  # whatever else is set


def require_folder(path: Path, what: str = "folder") -> None:
    """Exit 2 unless ``path`` is a folder, saying which way it is not: absent, or a file."""
    if path.is_dir():
        return
    if path.exists():
        fail(f"{path}: the {what} is a file, not a folder", 2)
    fail(f"{path}: the {what} does not exist", 2)


def holds_folder(settings: Settings, configs: Path, cwd: Path) -> bool:
    """Whether the chain of ``settings`` stores in the deployment at ``configs`` (working
    directory ``cwd``): its file backend's configs folder is ``configs`` or lies inside
    it, or its working directory is ``cwd`` (relative token paths would name that
    deployment's files). A tool never writes into the store it reads, nor compares a
    folder with itself."""
    if FILE_BACKEND not in settings.chain:
        return False
    return (
        settings.configs_dir.resolve().is_relative_to(configs.resolve())
        or settings.working_dir.resolve() == cwd.resolve()
    )


def redis_location(settings: Settings) -> str:
    """Where the Redis namespace of ``settings`` lives (URL, or host and port), any
    password hidden."""
    return redact_url(settings.redis_url or f"{settings.redis_host}:{settings.redis_port}")


def count_noun(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` with ``noun`` in the right number: ``1 entry``, ``3 entries`` (``plural``
    defaults to ``noun + "s"``)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def run(action: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine, turning errors into one line on stderr and an exit code; SIGINT
    and SIGTERM stop it (:mod:`cfgstore.cli.interrupts`)."""
    results: list[T] = []
    try:
        with stop_signals():
            asyncio.run(_call(action, results))
        return results[0]
    except CfgStoreError as exc:
        fail(str(exc), 2 if isinstance(exc, INPUT_ERRORS) else 1, exc)
    except (KeyboardInterrupt, typer.Exit):
        raise
    except (OSError, Interrupted) as exc:
        fail_on(exc)
    except Exception as exc:  # a bug: still one line unless --debug
        fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", 2, exc)


def fail_on(exc: BaseException) -> NoReturn:
    """Exit as cfgctl does on ``exc`` when it ends a command: a filesystem error exits 2
    naming the path and what to do; a stop signal exits 130 (at a safe point, saying what
    was done). Anything else is re-raised."""
    if isinstance(exc, OSError):
        fail(describe_os_error(exc), 2, exc)
    if isinstance(exc, Interrupted):
        fail(str(exc), EXIT_INTERRUPTED, exc)
    if isinstance(exc, KeyboardInterrupt):
        fail(f"stopped by {last_signal()}", EXIT_INTERRUPTED, exc)
    raise exc


def fail(message: str, code: int, exc: BaseException | None = None) -> NoReturn:
    """Print ``cfgctl: message`` (and the traceback under ``--debug``) and exit; under
    ``--json`` also ``{"error": message, "exit_code": code}`` on stdout, unless the
    command printed its JSON document already."""
    if debug and exc is not None:
        traceback.print_exception(exc, file=sys.stderr)
    if json_output and not _json_emitted:
        emit_json({"error": message, "exit_code": code})
    print(f"cfgctl: {message}", file=sys.stderr)
    raise typer.Exit(code)


PLAIN_PROGRESS_FROM = 200
"""Without a terminal, steps shorter than this many items print no progress lines."""


class Progress:
    """Progress of a long step on stderr: a rich bar on a terminal, plain lines otherwise
    (``LABEL: 0/TOTAL`` at the start, then at most one per 10%). Use as a context
    manager; call :meth:`advance`."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self._next_line = 0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.total and sys.stderr.isatty():
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        elif self.total >= PLAIN_PROGRESS_FROM:
            # The step's start, announced: an operator (or a script) sees the phase begin.
            print(f"{self.label}: 0/{self.total}", file=sys.stderr, flush=True)
            self._next_line = 1
        return self

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif self.total >= PLAIN_PROGRESS_FROM and self.done * 10 // self.total >= self._next_line:
            print(f"{self.label}: {self.done}/{self.total}", file=sys.stderr, flush=True)
            self._next_line = self.done * 10 // self.total + 1

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


async def _call(action: Callable[[], Awaitable[T]], results: list[T]) -> None:
    # The result is handed over outside the main task: asyncio.run's SIGINT handler holds
    # the task, and Python 3.11 formats that handler (task and result included) when it
    # restores it — seconds for a snapshot of many Kiro tokens in one folder.
    results.append(await action())


def json_emitted() -> bool:
    """Whether this invocation printed a JSON document already."""
    return _json_emitted


def emit_json(value: Any) -> None:
    global _json_emitted
    _json_emitted = True
    print(json.dumps(value, indent=2, ensure_ascii=False))
