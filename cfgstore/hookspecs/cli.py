"""``cfgctl`` commands are plugins: built-in commands register through this hook too."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    import typer


@hookspec
def cfgctl_register_commands(app: typer.Typer) -> None:
    """Add commands to the ``cfgctl`` typer app (``@app.command()``, ``app.add_typer``).

    Called before arguments are parsed. A plugin whose registration raises is reported on
    stderr and skipped; the other commands stay available.
    """
