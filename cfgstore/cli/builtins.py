"""The built-in cfgctl commands, registered through the same hook as any plugin's."""

from __future__ import annotations

import typer

from cfgstore import hookimpl
from cfgstore.cli import plugins_cmd, status


@hookimpl
def cfgctl_register_commands(app: typer.Typer) -> None:
    status.register(app)
    plugins_cmd.register(app)
