"""``cfgctl plugins``: installed plugins, their versions, the hooks each implements, and
the backends they offer."""

from __future__ import annotations

import typer

from cfgstore.adapters.chain import descriptors
from cfgstore.adapters.plugins import make_plugin_manager
from cfgstore.cli.common import JsonOption, emit_json


def register(app: typer.Typer) -> None:
    @app.command("plugins")
    def plugins_command(json: JsonOption = False) -> None:
        """List installed cfgstore plugins and the backends they offer."""
        loaded = make_plugin_manager()
        manager = loaded.manager
        rows = []
        for name, plugin in manager.list_name_plugin():
            dist, version = loaded.distributions.get(name, (None, None))
            hooks = sorted(h.name for h in manager.get_hookcallers(plugin) or [])
            rows.append({"name": name, "distribution": dist, "version": version, "hooks": hooks})
        backends = [
            {"name": d.name, "description": d.description, "layer": d.layer}
            for d in descriptors(manager).values()
        ]
        failures = [{"name": f.name, "error": f.error} for f in loaded.failures]
        if json:
            emit_json({"plugins": rows, "backends": backends, "failures": failures})
            return
        for row in rows:
            version = f" {row['distribution']} {row['version']}" if row["version"] else ""
            typer.echo(f"{row['name']}{version}: {', '.join(row['hooks'])}")
        typer.echo("backends:")
        for backend in backends:
            kind = "layer" if backend["layer"] else "backend"
            typer.echo(f"  {backend['name']} ({kind}): {backend['description']}")
        for failure in failures:
            typer.echo(f"not loaded: {failure['name']}: {failure['error']}")
