"""``cfgctl status``: the active backend chain and what it holds.

Per backend: its location (passwords hidden) and mode, the entity counts, the details the
backend reports (for Redis: server version, ``maxmemory-policy``, key-schema version,
namespace id, when it was initialised, the last migration) and its warnings; under the
backend at the bottom of the chain (the storage), a migration that did not finish, or a
namespace never initialised (on Redis: without markers; elsewhere: holding no config
either), read through the store's metadata on every chain. Then the
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
    BackendsOption,
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
from cfgstore.model.versions import ABSENT_VERSION

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
        backends: BackendsOption = None,
        json: JsonOption = False,
    ) -> None:
        """Show the active backend chain and count what it holds."""
        settings = tool_settings(configs, cwd, redis_url, backends)

        async def collect() -> Collected:
            async with Store.open(settings, plugins=plugin_set()) as store:
                chain, statuses = store.backend_names, await store.status()
                config, holds_config = await _config_problems(store)
                readiness = await Readiness.read(store)
                if "redis" not in chain:
                    return Collected(
                        chain, statuses, readiness=readiness, config=config, empty=not holds_config
                    )
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
                report["initialised"] = collected.readiness.initialised
                report["interrupted_migration"] = collected.readiness.interrupted()
            if isinstance(collected.config, str):
                report["config_error"] = collected.config
            else:
                report["config_problems"] = collected.config
            emit_json(report)
            return
        typer.echo(f"backend chain: {' → '.join(chain)}")
        for index, backend in enumerate(statuses):
            typer.echo(f"{backend.name}: {backend.location} ({backend.mode})")
            if backend.name == "redis" and prefix is not None:
                typer.echo(f"  key prefix: {{{prefix}}}")
            for field, label in LABELS.items():
                typer.echo(f"  {label:<16}{getattr(backend.counts, field):>8}")
            for label, value in backend.details.items():
                typer.echo(f"  {label}: {value}")
            if index == len(statuses) - 1:  # the storage: where the namespace lives
                note = _namespace_note(collected, backend)
                if note is not None:
                    typer.echo(f"  {note}")
            for warning in backend.warnings:
                typer.echo(f"  warning: {warning}")
        _print_config_problems(collected.config)
        if collected.instances is not None:
            _print_instances(collected.instances, collected.instances_error)


@attrs.frozen
class Collected:
    """What ``status`` read: the chain, each backend's status, the namespace's readiness
    (initialised, an interrupted migration) and, on Redis, the live instances (``None`` off
    Redis; empty with ``instances_error`` when listing failed)."""

    chain: list[str]
    statuses: list[BackendStatus]
    instances: list[InstanceInfo] | None = None
    instances_error: str | None = None
    readiness: Readiness | None = None
    config: dict[str, str] | str = attrs.Factory(dict)
    """The config's unusable keys (key → what is wrong), or why it could not be read."""
    empty: bool = False
    """Off Redis: the store holds no config (nothing was ever put there)."""


def _namespace_note(collected: Collected, storage: BackendStatus) -> str | None:
    """A line about the namespace under the storage backend: an unfinished migration, or
    a namespace never initialised (on Redis: no markers; elsewhere: no namespace id and no
    config, so a Node folder the file backend serves needs no ``init``)."""
    readiness = collected.readiness
    if readiness is None:
        return None
    interrupted = readiness.interrupted()
    if interrupted is not None:
        return f"warning: {interrupted}"
    if storage.name == "redis":
        never = not any(m in storage.details for m in MARKERS)
    else:
        never = not readiness.initialised and collected.empty
    if never:
        return "note: namespace not initialised (`cfgctl init` or `cfgctl migrate`)"
    return None


async def _config_problems(store: Store) -> tuple[dict[str, str] | str, bool]:
    """The config's unusable keys, or why it could not be read; and whether the store holds
    a config at all (an unreadable one counts)."""
    try:
        config = await store.config.get()
    except CfgStoreError as exc:  # never fails the status: a warning line instead
        return f"config not readable: {exc}", True
    return config.problems, config.version != ABSENT_VERSION


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
