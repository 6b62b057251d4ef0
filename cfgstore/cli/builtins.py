"""The built-in cfgctl commands, registered through the same hook as any plugin's."""

from __future__ import annotations

import typer

from cfgstore import hookimpl
from cfgstore.cli import export_cmd, init_cmd, migrate_cmd, plugins_cmd, status, verify_cmd


@hookimpl
def cfgctl_register_commands(app: typer.Typer) -> None:
    status.register(app)
    migrate_cmd.register(app)
    verify_cmd.register(app)
    export_cmd.register(app)
    init_cmd.register(app)
    plugins_cmd.register(app)
