"""What every cfgctl command shares: store options, errors → exit codes, progress.

Exit codes: 0 ok; 1 refused or differences found; 2 usage or input error (malformed
files, bad settings, unreachable or refusing storage). Errors are one line on stderr;
``cfgctl --debug`` adds the traceback.
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

from cfgstore.adapters.plugins import PluginSet, make_plugin_manager
from cfgstore.adapters.settings import Settings, redact_url
from cfgstore.errors import (
    CfgStoreError,
    InvalidData,
    PluginError,
    StorageServerError,
    StorageUnavailable,
)

REDIS_TOOL_CHAIN = ("redis",)
"""Tools talk to Redis directly: an outage is an error to report, not a reason to journal."""

INPUT_ERRORS = (InvalidData, PluginError, StorageUnavailable, StorageServerError)
"""Errors that exit 2; every other cfgstore error is a refusal (exit 1)."""

debug = False
"""Set by ``cfgctl --debug``: show tracebacks."""

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
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


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


def tool_settings(configs: Path | None, cwd: Path | None, redis_url: str | None) -> Settings:
    """Settings for an operator tool: flags over the environment, and never a side effect
    the service has on start (no cold-start counter reset, no file watching; on Redis the
    backend alone, without the service's memory fallback, state directory or journal). A
    malformed setting exits 2 with one line."""
    try:
        settings = Settings.load(
            {
                "configs_dir": configs,
                "cwd": cwd,
                "redis_url": redis_url,
                "reset_counters_on_start": False,
                "watch_interval_ms": 0,
            }
        )
    except InvalidData as exc:
        fail(str(exc), 2, exc)
    if settings.redis_configured and settings.backends is None:
        settings = attrs.evolve(settings, backends=REDIS_TOOL_CHAIN)
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


def redis_location(settings: Settings) -> str:
    """Where the Redis namespace of ``settings`` lives (URL, or host and port), any
    password hidden."""
    return redact_url(settings.redis_url or f"{settings.redis_host}:{settings.redis_port}")


def count_noun(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` with ``noun`` in the right number: ``1 entry``, ``3 entries`` (``plural``
    defaults to ``noun + "s"``)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def run(action: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine, turning errors into one line on stderr and an exit code."""
    try:
        return asyncio.run(_call(action))
    except CfgStoreError as exc:
        fail(str(exc), 2 if isinstance(exc, INPUT_ERRORS) else 1, exc)
    except (KeyboardInterrupt, typer.Exit):
        raise
    except Exception as exc:  # a bug: still one line unless --debug
        fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)", 2, exc)


def fail(message: str, code: int, exc: BaseException | None = None) -> NoReturn:
    """Print ``cfgctl: message`` (and the traceback under ``--debug``) and exit."""
    if debug and exc is not None:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"cfgctl: {message}", file=sys.stderr)
    raise typer.Exit(code)


PLAIN_PROGRESS_FROM = 200
"""Without a terminal, steps shorter than this many items print no progress lines."""


class Progress:
    """Progress of a long step on stderr: a rich bar on a terminal, plain lines (at most
    one per 10%) otherwise. Use as a context manager; call :meth:`advance`."""

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
        return self

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif self.total >= PLAIN_PROGRESS_FROM and self.done * 10 // self.total >= self._next_line:
            print(f"{self.label}: {self.done}/{self.total}", file=sys.stderr)
            self._next_line = self.done * 10 // self.total + 1

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


async def _call(action: Callable[[], Awaitable[T]]) -> T:
    return await action()


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))
