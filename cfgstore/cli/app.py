"""``cfgctl``: a typer app whose commands all come from the ``cfgctl_register_commands``
hook. Plugins are discovered before arguments are parsed; one that fails to load or to
register is reported on stderr and the rest of the tool keeps working."""

from __future__ import annotations

import logging
import sys

import typer

from cfgstore.adapters.plugins import PluginSet, make_plugin_manager
from cfgstore.cli import common
from cfgstore.cli.common import use_plugins


def build_app(plugins: PluginSet | None = None) -> typer.Typer:
    plugins = plugins or make_plugin_manager()
    use_plugins(plugins)
    app = typer.Typer(
        name="cfgctl",
        help="Operate a cfgstore: status, and whatever commands installed plugins add.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def options(
        debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    ) -> None:
        common.debug = debug
        # Errors reach the operator as one line from the command; log lines only with
        # --debug.
        logging.basicConfig(
            level=logging.DEBUG if debug else logging.ERROR,
            format="cfgctl: %(name)s: %(message)s",
            force=True,
        )

    for failure in plugins.failures:
        print(f"cfgctl: plugin {failure.name} not loaded: {failure.error}", file=sys.stderr)
    for impl in plugins.manager.hook.cfgctl_register_commands.get_hookimpls():
        try:
            impl.function(app)
        except Exception as exc:
            print(
                f"cfgctl: plugin {impl.plugin_name} could not add its commands: {exc}",
                file=sys.stderr,
            )
    return app


def main() -> None:
    build_app()()
