"""``cfgctl serve`` (entry point ``cfgctl-serve``, group ``cfgstore``): run the gateway.

Registered through the ``cfgctl_register_commands`` hook like every cfgctl command; the
runner is :mod:`cfgstore_gateway.serve`. Options follow the other commands (``--configs``,
``--cwd``, ``--redis-url``, ``--backends``; settings precedence: flags, ``CFGSTORE_*``,
``REDIS_URL``) plus
``--state-dir``, ``--host``, ``--port``, ``--workers``, ``--shutdown-timeout``,
``--log-level``, ``--log-format`` (``text`` or ``json`` lines) and
``--upstream-connections``. Exit status: 0 after a graceful stop, 1
when a worker died, 2 when the gateway could not start (bad settings, address in use,
storage unreachable or refusing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cfgstore import hookimpl
from cfgstore.adapters.settings import Settings
from cfgstore.cli.common import (
    INPUT_ERRORS,
    BackendsOption,
    ConfigsOption,
    CwdOption,
    RedisUrlOption,
    fail,
)
from cfgstore.errors import CfgStoreError, InvalidData


def serve_command(
    configs: ConfigsOption = None,
    cwd: CwdOption = None,
    redis_url: RedisUrlOption = None,
    backends: BackendsOption = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="This instance's state directory (default <cwd>/.cfgstore-state; "
            "worker i uses <state-dir>/worker-<i>).",
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Listen address (default: HOST of config.json).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", help="Listen port (default: SERVER_PORT of config.json; 0 = any)."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes sharing the port.")
    ] = 1,
    shutdown_timeout: Annotated[
        float,
        typer.Option("--shutdown-timeout", help="Seconds in-flight requests get at a stop."),
    ] = 30.0,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
    log_format: Annotated[
        str,
        typer.Option("--log-format", help="text, or json (one JSON object per line)."),
    ] = "text",
    upstream_connections: Annotated[
        int | None,
        typer.Option(
            "--upstream-connections",
            min=1,
            help="Pooled upstream connections per worker: the most concurrent upstream "
            "calls (default 512).",
        ),
    ] = None,
) -> None:
    """Run the gateway: an OpenAI-compatible endpoint over the provider pools."""
    # Imported here: every cfgctl start loads this plugin, only `serve` needs aiohttp.
    from cfgstore_gateway.serve import ServeConfig, ServeError, serve
    from cfgstore_gateway.services import GatewayOptions

    try:
        settings = Settings.load(
            {
                "configs_dir": configs,
                "cwd": cwd,
                "redis_url": redis_url,
                "backends": backends,
                "state_dir": state_dir,
            }
        )
    except InvalidData as exc:
        fail(str(exc), 2, exc)
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail(f"--log-level: unknown level {log_level!r}", 2)
    if log_format.lower() not in ("text", "json"):
        fail(f"--log-format: unknown format {log_format!r} (text or json)", 2)
    config = ServeConfig(
        settings=settings,
        host=host,
        port=port,
        workers=workers,
        shutdown_timeout_s=shutdown_timeout,
        log_level=log_level.upper(),
        log_format=log_format.lower(),
        options=(
            GatewayOptions()
            if upstream_connections is None
            else GatewayOptions(upstream_connections=upstream_connections)
        ),
    )
    try:
        code = serve(config)
    except ServeError as exc:
        fail(str(exc), 2, exc)
    except CfgStoreError as exc:
        fail(str(exc), 2 if isinstance(exc, INPUT_ERRORS) else 1, exc)
    raise typer.Exit(code)


@hookimpl
def cfgctl_register_commands(app: typer.Typer) -> None:
    """Add ``cfgctl serve``."""
    app.command("serve")(serve_command)
