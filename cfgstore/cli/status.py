"""``cfgctl status``: the active backend chain and what it holds.

Per backend: its location (passwords hidden) and mode, the entity counts, the details the
backend reports (for Redis: server version, ``maxmemory-policy``, key-schema version,
namespace id, when it was initialised, the last migration) and its warnings. Then the
config keys the service ignores because their stored values are unusable (nested too
deeply, or not what the key needs: it uses their defaults), one line each; a config that
cannot be read at all is a warning line. On Redis, then, the live instances sharing the
namespace, from their heartbeats (id, host, pid, version, mode, journal depth, oldest
journal entry, last error, last resync); a failure to list them is a warning line, never a
failed status. Never a secret: nothing here reads the password or session tokens, and no
config value is shown.
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
from cfgstore.cli.readiness import Readiness
from cfgstore.errors import CfgStoreError
from cfgstore.model.replica import InstanceInfo
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

        async def collect() -> Collected:
            async with Store.open(settings, plugins=plugin_set()) as store:
                chain, statuses = store.backend_names, await store.status()
                config = await _config_problems(store)
                if "redis" not in chain:
                    return Collected(chain, statuses, config=config)
                readiness = await Readiness.read(store)
                try:
                    instances = await store.replicas.instances()
                except Exception as exc:  # never fails the status: a warning line instead
                    what = str(exc) if isinstance(exc, CfgStoreError) else repr(exc)
                    error = f"live instances not listed: {what}"
                    return Collected(chain, statuses, [], error, readiness, config)
                return Collected(chain, statuses, instances, None, readiness, config)

        collected = run(collect)
        chain, statuses = collected.chain, collected.statuses
        prefix = settings.redis_prefix if "redis" in chain else None
        if json:
            report: dict[str, Any] = {"chain": chain}
            if prefix is not None:
                report["redis_prefix"] = prefix
            report["backends"] = [attrs.asdict(s) for s in statuses]
            if collected.instances is not None:
                report["instances"] = [i.to_json() for i in collected.instances]
            if collected.instances_error is not None:
                report["instances_error"] = collected.instances_error
            if collected.readiness is not None:
                report["interrupted_migration"] = collected.readiness.interrupted()
            if isinstance(collected.config, str):
                report["config_error"] = collected.config
            else:
                report["config_problems"] = collected.config
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
            interrupted = collected.readiness.interrupted() if collected.readiness else None
            if backend.name == "redis" and interrupted is not None:
                typer.echo(f"  warning: {interrupted}")
            elif backend.name == "redis" and not any(m in backend.details for m in MARKERS):
                typer.echo("  note: namespace not initialised (`cfgctl init` or `cfgctl migrate`)")
            for warning in backend.warnings:
                typer.echo(f"  warning: {warning}")
        _print_config_problems(collected.config)
        if collected.instances is not None:
            _print_instances(collected.instances, collected.instances_error)


@attrs.frozen
class Collected:
    """What ``status`` read: the chain, each backend's status and, on Redis, the live
    instances (``None`` off Redis; empty with ``instances_error`` when listing failed) and
    whether a migration was interrupted."""

    chain: list[str]
    statuses: list[BackendStatus]
    instances: list[InstanceInfo] | None = None
    instances_error: str | None = None
    readiness: Readiness | None = None
    config: dict[str, str] | str = attrs.Factory(dict)
    """The config's unusable keys (key → what is wrong), or why it could not be read."""


async def _config_problems(store: Store) -> dict[str, str] | str:
    try:
        return (await store.config.get()).problems
    except CfgStoreError as exc:  # never fails the status: a warning line instead
        return f"config not readable: {exc}"


def _print_config_problems(config: dict[str, str] | str) -> None:
    if isinstance(config, str):
        typer.echo(f"warning: {config}")
        return
    if config:
        keys = "key" if len(config) == 1 else "keys"
        typer.echo(f"config: {len(config)} {keys} ignored, their defaults are used:")
        for key, problem in config.items():
            typer.echo(f"  {key!r}: {problem}")


def _print_instances(instances: list[InstanceInfo], error: str | None) -> None:
    if error is not None:
        typer.echo(f"warning: {error}")
        return
    if not instances:
        typer.echo("instances: none")
        return
    typer.echo(f"instances: {len(instances)}")
    for info in instances:
        typer.echo(f"  {info.instance_id}: {info.host} pid {info.pid}, cfgstore {info.version}")
        typer.echo(f"    mode           {info.mode}")
        if info.oldest_entry_age_ms is not None:
            oldest = f", oldest {format_age_ms(max(info.oldest_entry_age_ms, 0))} old"
        else:
            oldest = ""
        entries = "entry" if info.journal_depth == 1 else "entries"
        typer.echo(f"    journal        {info.journal_depth} {entries}{oldest}")
        typer.echo(f"    last error     {info.last_error or '-'}")
        typer.echo(f"    last resync    {info.last_resync or '-'}")
        if info.started_at is not None:
            typer.echo(f"    started        {info.started_at}")
        if info.state_dir is not None:
            typer.echo(f"    state dir      {info.state_dir}")


def format_age_ms(ms: int) -> str:
    """A duration for people: ``850 ms``, ``12.3 s``, ``4.5 min``, ``2.0 h``, ``3.1 d``."""
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
