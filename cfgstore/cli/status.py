"""``cfgctl status``: the active backend chain and what it holds.

Per backend: its location (passwords hidden) and mode, the entity counts, the details the
backend reports (for Redis: server version, ``maxmemory-policy``, key-schema version,
namespace id, when it was initialised, the last migration) and its warnings. Never a
secret: nothing here reads the password, the config's API key or session tokens.
"""

from __future__ import annotations

from typing import Any

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

MARKERS = ("schema", "namespace id", "initialised", "last migration")
"""Details a Redis namespace carries once ``cfgctl init`` or ``cfgctl migrate`` ran."""


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
        prefix = settings.redis_prefix if "redis" in chain else None
        if json:
            report: dict[str, Any] = {"chain": chain}
            if prefix is not None:
                report["redis_prefix"] = prefix
            report["backends"] = [attrs.asdict(s) for s in statuses]
            emit_json(report)
            return
        typer.echo(f"backend chain: {' → '.join(chain)}")
        for backend in statuses:
            typer.echo(f"{backend.name}: {backend.location} ({backend.mode})")
            if backend.name == "redis" and prefix is not None:
                typer.echo(f"  key prefix: {{{prefix}}}")
            for field, label in LABELS.items():
                typer.echo(f"  {label:<16}{getattr(backend.counts, field):>8}")
            for label, value in backend.details.items():
                typer.echo(f"  {label}: {value}")
            if backend.name == "redis" and not any(m in backend.details for m in MARKERS):
                typer.echo("  note: namespace not initialised (`cfgctl init` or `cfgctl migrate`)")
            for warning in backend.warnings:
                typer.echo(f"  warning: {warning}")
