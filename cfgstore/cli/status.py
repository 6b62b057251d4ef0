"""``cfgctl status``: the active backend chain and what it holds."""

from __future__ import annotations

import attrs
import typer

from cfgstore.adapters.store import Store
from cfgstore.cli.common import (
    ConfigsOption,
    CwdOption,
    JsonOption,
    RedisUrlOption,
    emit_json,
    plugin_set,
    run,
    tool_settings,
)
from cfgstore.model.status import BackendStatus

LABELS = {
    "provider_types": "provider types",
    "nodes": "nodes",
    "healthy_nodes": "healthy nodes",
    "credentials": "credentials",
    "sessions": "sessions",
    "plugins": "plugins",
    "custom_models": "custom models",
}


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        configs: ConfigsOption = None,
        cwd: CwdOption = None,
        redis_url: RedisUrlOption = None,
        json: JsonOption = False,
    ) -> None:
        """Show the active backend and count what it holds."""
        settings = tool_settings(configs, cwd, redis_url)

        async def collect() -> tuple[list[str], list[BackendStatus]]:
            async with Store.open(settings, plugins=plugin_set()) as store:
                return store.backend_names, await store.status()

        chain, statuses = run(collect)
        if json:
            emit_json({"chain": chain, "backends": [attrs.asdict(s) for s in statuses]})
            return
        typer.echo(f"backend chain: {' → '.join(chain)}")
        for backend in statuses:
            typer.echo(f"{backend.name}: {backend.location} ({backend.mode})")
            for field, label in LABELS.items():
                typer.echo(f"  {label:<16}{getattr(backend.counts, field):>8}")
            for label, value in backend.details.items():
                typer.echo(f"  {label}: {value}")
            for warning in backend.warnings:
                typer.echo(f"  warning: {warning}")
