"""``cfgctl plugins``: installed plugins, their versions, the hooks each implements, and
the backends they offer."""

from __future__ import annotations

import sys
from typing import Any

import typer

from cfgstore.adapters.chain import descriptors
from cfgstore.cli.common import JsonOption, emit_json, plugin_set
from cfgstore.errors import PluginError


def register(app: typer.Typer) -> None:
    @app.command("plugins")
    def plugins_command(json: JsonOption = False) -> None:
        """List installed cfgstore plugins and the backends they offer."""
        loaded = plugin_set()
        manager = loaded.manager
        rows: list[dict[str, Any]] = []
        for name, plugin in manager.list_name_plugin():
            dist, version = loaded.distributions.get(name, (None, None))
            hooks = sorted(h.name for h in manager.get_hookcallers(plugin) or [])
            rows.append({"name": name, "distribution": dist, "version": version, "hooks": hooks})
        # A conflict between plugins (two backends with one name) is what this command
        # must help diagnose: report it after the listing instead of crashing.
        conflict: PluginError | None = None
        try:
            found = descriptors(manager)
        except PluginError as exc:
            conflict, found = exc, {}
        backends = [
            {"name": d.name, "description": d.description, "layer": d.layer} for d in found.values()
        ]
        failures = [{"name": f.name, "error": f.error} for f in loaded.failures]
        if json:
            emit_json({"plugins": rows, "backends": backends, "failures": failures})
        else:
            _print_text(rows, backends, failures)
        if conflict is not None:
            print(f"cfgctl: {conflict}", file=sys.stderr)
            raise typer.Exit(2)


def _print_text(
    rows: list[dict[str, Any]], backends: list[dict[str, Any]], failures: list[dict[str, str]]
) -> None:
    for row in rows:
        version = f" {row['distribution']} {row['version']}" if row["version"] else ""
        typer.echo(f"{row['name']}{version}: {', '.join(row['hooks'])}")
    typer.echo("backends:")
    for backend in backends:
        kind = "layer" if backend["layer"] else "backend"
        typer.echo(f"  {backend['name']} ({kind}): {backend['description']}")
    for failure in failures:
        typer.echo(f"not loaded: {failure['name']}: {failure['error']}")
