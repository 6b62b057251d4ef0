"""``cfgctl``: a typer app whose commands all come from the ``cfgctl_register_commands``
hook. Plugins are discovered before arguments are parsed; one that fails to load or to
register is reported on stderr in one line (``cfgctl --debug`` adds the traceback) and
skipped, and the rest of the tool keeps working.

Each plugin adds its commands to a scratch app first, so that a plugin whose command
names are taken (by a built-in, or by a plugin registered before it) adds none of them:
that is an error naming both distributions, and the plugin is skipped. The built-in
commands register first, so no plugin can replace one.

Whatever the command, a filesystem error ends it in one line naming the path (exit 2) and
a stop signal in one line (exit 130): :class:`CfgctlGroup`. ``--debug`` may be given
before or after the command; ``--version`` prints the version.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

import typer
import typer.main
from typer import TyperException
from typer.core import TyperGroup

import cfgstore
from cfgstore.adapters.offers import one_line
from cfgstore.adapters.plugins import PluginSet, make_plugin_manager
from cfgstore.cli import common
from cfgstore.cli.common import fail_on, use_plugins
from cfgstore.cli.interrupts import Interrupted

BUILTIN_COMMANDS = "cfgctl-builtins"
"""The entry point of cfgstore's own commands."""


ARGS_KEY = "cfgctl.args"
"""Where :class:`CfgctlGroup` keeps the command line it parsed (``ctx.meta``)."""

GLOBAL_FLAGS = ("--debug",)
"""Options of cfgctl itself that may also follow the command."""


def hoist_global_flags(args: list[str]) -> list[str]:
    """``args`` with every :data:`GLOBAL_FLAGS` flag moved in front of the command (none
    after a ``--``)."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
    rest = [a for a in args[:end] if a not in GLOBAL_FLAGS]
    return [*dict.fromkeys(flags), *rest, *args[end:]]


class CfgctlGroup(TyperGroup):
    """The cfgctl command group: global flags anywhere, and the errors no command should
    show as a traceback (a filesystem error, a stop signal) as one line and an exit code
    (:func:`cfgstore.cli.common.fail_on`)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        args = hoist_global_flags(args)
        ctx.meta[ARGS_KEY] = args
        result: list[str] = super().parse_args(ctx, args)
        return result

    def invoke(self, ctx: Any) -> Any:
        common.reset_invocation()
        try:
            return super().invoke(ctx)
        except (OSError, Interrupted, KeyboardInterrupt) as exc:
            fail_on(exc)
        except TyperException as exc:  # a usage error: also JSON when --json was asked for
            args = ctx.meta.get(ARGS_KEY, [])
            options = args[: args.index("--")] if "--" in args else args
            if "--json" in options and not common.json_emitted():
                common.emit_json({"error": exc.format_message(), "exit_code": exc.exit_code})
            raise


def _print_version(value: bool) -> None:
    if value:
        print(f"cfgctl (cfgstore) {cfgstore.__version__}")
        raise typer.Exit(0)


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
        cls=CfgctlGroup,
        # Plain help: rich help shows a flag as taking a value ("--json <bool>").
        rich_markup_mode=None,
    )

    @app.callback()
    def options(
        debug: bool = typer.Option(
            False, "--debug", help="Show tracebacks on errors (before or after the command)."
        ),
        version: bool = typer.Option(
            False,
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
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
        for group in scratch.registered_groups:
            if group.typer_instance is not None:
                group.typer_instance.rich_markup_mode = None  # plain help, as above
        app.registered_groups.extend(scratch.registered_groups)
        owners.update(dict.fromkeys(names, plugins.origin(impl.plugin_name)))


def _debug_requested(argv: list[str]) -> bool:
    """Whether ``--debug`` is given (before or after the command)."""
    return "--debug" in hoist_global_flags(argv)[:1]


def main() -> None:
    # Until the options are parsed, a plugin problem is reported by build_app, not also by
    # Python's last-resort log handler.
    logging.basicConfig(level=logging.ERROR, format="cfgctl: %(name)s: %(message)s")
    build_app(debug=_debug_requested(sys.argv[1:]))()
