"""``cfgctl plugins``: installed plugins, their versions, the hooks each implements, the
backends they offer, and the plugins that were skipped with the reason.

It always answers: a broken plugin is a line of the listing, and two plugins announcing
one backend name are listed before the command exits 2 naming both.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from cfgstore.adapters.offers import offered_backends
from cfgstore.cli.common import JsonOption, emit_json, plugin_set


def register(app: typer.Typer) -> None:
    @app.command("plugins")
    def plugins_command(json: JsonOption = False) -> None:
        """List installed cfgstore plugins, the backends they offer and broken plugins."""
        loaded = plugin_set()
        manager = loaded.manager
        rows: list[dict[str, Any]] = []
        for name, plugin in manager.list_name_plugin():
            dist, version = loaded.distributions.get(name, (None, None))
            hooks = sorted(h.name for h in manager.get_hookcallers(plugin) or [])
            rows.append({"name": name, "distribution": dist, "version": version, "hooks": hooks})
        offer = offered_backends(manager)
        backends = [
            {
                "name": a.descriptor.name,
                "description": a.descriptor.description,
                "layer": a.descriptor.layer,
            }
            for a in offer.announcements
        ]
        failures = [
            {"name": f.name, "distribution": f.distribution, "error": f.error}
            for f in loaded.failures
        ] + [{"name": r.plugin, "distribution": None, "error": r.error} for r in offer.refusals]
        if json:
            emit_json({"plugins": rows, "backends": backends, "failures": failures})
        else:
            _print_text(rows, backends, failures)
        # A conflict between plugins (two backends with one name) is what this command
        # must help diagnose: report it after the listing.
        conflicts = {n: a for n, a in offer.by_name().items() if len(a) > 1}
        for name, announcements in conflicts.items():
            origins = " and ".join(loaded.origin(a.plugin) for a in announcements)
            message = f"two plugins announce a backend named {name!r}: {origins}"
            print(f"cfgctl: {message}", file=sys.stderr)
        if conflicts:
            raise typer.Exit(2)


def _print_text(
    rows: list[dict[str, Any]], backends: list[dict[str, Any]], failures: list[dict[str, Any]]
) -> None:
    for row in rows:
        version = f" {row['distribution']} {row['version']}" if row["version"] else ""
        typer.echo(f"{row['name']}{version}: {', '.join(row['hooks'])}")
    typer.echo("backends:")
    for backend in backends:
        kind = "layer" if backend["layer"] else "backend"
        typer.echo(f"  {backend['name']} ({kind}): {backend['description']}")
    for failure in failures:
        origin = f" ({failure['distribution']})" if failure["distribution"] else ""
        typer.echo(f"not loaded: {failure['name']}{origin}: {failure['error']}")
