"""What every cfgctl command shares: store options, opening a store, errors → exit codes.

Exit codes: 0 ok, 1 refused or differences found (or storage unreachable), 2 usage or
input error.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from cfgstore.adapters.plugins import PluginSet, make_plugin_manager
from cfgstore.adapters.settings import Settings
from cfgstore.errors import CfgStoreError, InvalidData, PluginError

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
    the service has on start (no cold-start counter reset, no file watching)."""
    return Settings.load(
        {
            "configs_dir": configs,
            "cwd": cwd,
            "redis_url": redis_url,
            "reset_counters_on_start": False,
            "watch_interval_ms": 0,
        }
    )


def run(action: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine, turning cfgstore errors into a message and an exit code."""
    try:
        return asyncio.run(_call(action))
    except (InvalidData, PluginError) as exc:
        print(f"cfgctl: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    except CfgStoreError as exc:
        print(f"cfgctl: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None


async def _call(action: Callable[[], Awaitable[T]]) -> T:
    return await action()


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))
