"""``cfgctl``: a typer app whose commands all come from the ``cfgctl_register_commands``
hook. Plugins are discovered before arguments are parsed; one that fails to load or to
register is reported on stderr in one line (``cfgctl --debug`` adds the traceback) and
skipped, and the rest of the tool keeps working.

Each plugin adds its commands to a scratch app first, so that a plugin whose command
names are taken (by a built-in, or by a plugin registered before it) adds none of them:
that is an error naming both distributions, and the plugin is skipped. The built-in
commands register first, so no plugin can replace one.
"""

from __future__ import annotations

import logging
import sys
import traceback

import typer
import typer.main

from cfgstore.adapters.offers import one_line
from cfgstore.adapters.plugins import PluginSet, make_plugin_manager
from cfgstore.cli import common
from cfgstore.cli.common import use_plugins

BUILTIN_COMMANDS = "cfgctl-builtins"
"""The entry point of cfgstore's own commands."""


def build_app(plugins: PluginSet | None = None, *, debug: bool = False) -> typer.Typer:
    """The cfgctl app with every loaded plugin's commands; problems go to stderr, one line
    per plugin (with the traceback when ``debug``)."""
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

    _add_commands(app, plugins)
    for failure in plugins.failures:
        if debug and failure.traceback:
            print(failure.traceback, end="", file=sys.stderr)
        print(f"cfgctl: {failure.line()}", file=sys.stderr)
    return app


def _add_commands(app: typer.Typer, plugins: PluginSet) -> None:
    owners: dict[str, str] = {}
    impls = plugins.manager.hook.cfgctl_register_commands.get_hookimpls()
    for impl in sorted(impls, key=lambda i: i.plugin_name != BUILTIN_COMMANDS):
        scratch = typer.Typer()
        try:
            impl.function(scratch)
            names = list(typer.main.get_group(scratch).commands)
        except Exception as exc:
            plugins.skip(
                impl.plugin_name,
                f"cfgctl_register_commands raised {one_line(exc)}",
                trace="".join(traceback.format_exception(exc)),
            )
            continue
        taken = [name for name in names if name in owners]
        if taken:
            plugins.skip(
                impl.plugin_name,
                f"its command {taken[0]!r} is already a command of plugin "
                f"{owners[taken[0]]}; rename it",
            )
            continue
        if scratch.registered_callback is not None:
            plugins.skip(
                impl.plugin_name,
                "cfgctl_register_commands set the app's callback; add commands or groups only",
            )
            continue
        app.registered_commands.extend(scratch.registered_commands)
        app.registered_groups.extend(scratch.registered_groups)
        owners.update(dict.fromkeys(names, plugins.origin(impl.plugin_name)))


def _debug_requested(argv: list[str]) -> bool:
    """Whether ``--debug`` is among the global options (those before the command)."""
    for arg in argv:
        if arg == "--debug":
            return True
        if not arg.startswith("-"):
            return False
    return False


def main() -> None:
    # Until the options are parsed, a plugin problem is reported by build_app, not also by
    # Python's last-resort log handler.
    logging.basicConfig(level=logging.ERROR, format="cfgctl: %(name)s: %(message)s")
    build_app(debug=_debug_requested(sys.argv[1:]))()
