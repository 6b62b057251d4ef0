"""``cfgctl migrate``: a configs folder into a store — exact, idempotent, refusing to
overwrite different data without ``--force``.

The source is always a Node configs folder (``--configs``, read as the Node service reads
it); the target is the backend chain (Redis, ``--backends`` / ``CFGSTORE_BACKENDS``), and
everything is written through the Store API. A chain on the file backend writes another
configs folder (``--target-configs``), never the source folder or its working directory.
"""

from __future__ import annotations

import shlex
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import attrs
import typer

from cfgstore import __version__
from cfgstore.adapters import Settings, Store
from cfgstore.cli.common import (
    FILE_BACKEND,
    BackendsOption,
    CwdOption,
    JsonOption,
    Progress,
    RedisUrlOption,
    chain_settings,
    emit_json,
    fail,
    holds_folder,
    plugin_set,
    run,
)
from cfgstore.cli.differences import differences, live_state_differences
from cfgstore.cli.interrupts import Interrupted, checkpoint, stoppable
from cfgstore.cli.os_errors import describe_os_error
from cfgstore.cli.readiness import MIGRATING, MIGRATING_COMMAND
from cfgstore.cli.snapshot import (
    INCLUDABLE,
    Snapshot,
    SourceReport,
    for_store,
    read_folder,
    read_store,
)
from cfgstore.errors import InvalidData
from cfgstore.model.config_rules import field_errors
from cfgstore.model.convert import json_path
from cfgstore.model.credentials import Credential
from cfgstore.model.password import hash_password, is_hashed
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore.model.versions import ANY_VERSION, SCHEMA_VERSION

V = TypeVar("V")


@attrs.define
class Outcome:
    action: str  # "migrated", "resumed", "unchanged", "refused", "planned"
    differences: list[str]
    report: SourceReport
    counts: dict[str, int]
    warnings: list[str] = attrs.Factory(list)


def parse_include(text: str | None) -> frozenset[str]:
    parts = frozenset(p.strip() for p in (text or "").split(",") if p.strip())
    unknown = parts - set(INCLUDABLE)
    if unknown:
        fail(f"--include: unknown {', '.join(sorted(unknown))} (known: {', '.join(INCLUDABLE)})", 2)
    return parts


def default_cwd(configs: Path, legacy_root: bool) -> Path:
    """Relative paths in the data resolve against the Node process's working directory:
    the parent of ``configs/``, or the folder itself for the pre-2025-12 root layout."""
    return configs if legacy_root else configs.absolute().parent


TargetConfigsOption = Annotated[
    Path | None,
    typer.Option(
        "--target-configs",
        help="With the file backend in the chain: the configs folder it holds (the target; "
        "default CFGSTORE_CONFIGS_DIR), never the source folder.",
    ),
]
TargetCwdOption = Annotated[
    Path | None,
    typer.Option(
        "--target-cwd",
        help="The target folder's working directory (default: the parent of --target-configs).",
    ),
]


def target_settings(
    command: str,
    configs: Path,
    work_dir: Path,
    redis_url: str | None,
    backends: str | None,
    target_configs: Path | None,
    target_cwd: Path | None,
) -> Settings:
    """The chain a configs folder is migrated into or compared with. Exits 2 when the
    source folder does not exist, when no chain was named, or when the chain's file
    backend would hold the source folder or share its working directory (token files,
    named relative to that directory, would be the source's)."""
    if not configs.is_dir():
        fail(f"{configs}: the configs folder does not exist", 2)
    if target_cwd is None and target_configs is not None:
        target_cwd = target_configs.absolute().parent
    settings = chain_settings(command, redis_url, backends, target_configs, target_cwd)
    if holds_folder(settings, configs, work_dir):
        fail(
            f"{command}: the chain's file backend would hold the source folder {configs} "
            f"or share its working directory {work_dir}: name a configs folder in another "
            "working directory with --target-configs",
            2,
        )
    return settings


def register(app: typer.Typer) -> None:
    @app.command()
    def migrate(
        configs: Annotated[
            Path, typer.Option("--configs", help="The configs folder to migrate (the source).")
        ],
        cwd: CwdOption = None,
        redis_url: RedisUrlOption = None,
        backends: BackendsOption = None,
        target_configs: TargetConfigsOption = None,
        target_cwd: TargetCwdOption = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
        force: Annotated[
            bool, typer.Option("--force", help="Overwrite different data in the store.")
        ] = False,
        reset_counters: Annotated[
            bool, typer.Option("--reset-counters", help="With --force: counters from files.")
        ] = False,
        include: Annotated[
            str | None, typer.Option("--include", help="Also: sessions,usage-cache.")
        ] = None,
        strict: Annotated[
            bool,
            typer.Option(
                "--strict",
                help="A missing credential file, or a config value the admin API would "
                "refuse, is fatal.",
            ),
        ] = False,
        legacy_root: Annotated[
            bool, typer.Option("--legacy-root", help="Files in the repo root (pre-2025-12).")
        ] = False,
        json: JsonOption = False,
    ) -> None:
        """Import an AIClient-2-API configs folder into a store: Redis, or the chain
        --backends names (idempotent)."""
        parts = parse_include(include)
        work_dir = cwd or default_cwd(configs, legacy_root)
        settings = target_settings(
            "migrate", configs, work_dir, redis_url, backends, target_configs, target_cwd
        )
        finish = finish_command(configs, work_dir, parts, settings if backends else None)
        config_source = str(configs / "config.json")

        async def go() -> Outcome:
            try:
                files, report = await read_folder(configs, work_dir, parts, strict)
                if files.is_empty():
                    raise InvalidData(
                        str(configs),
                        "folder",
                        "holds no AIClient-2-API data (no config.json, provider_pools.json, "
                        "pwd, plugins.json…): is this the configs folder?",
                    )
                warnings = refused_config_values(files.config.document)
                if strict and warnings:
                    raise InvalidData(
                        config_source,
                        "$",
                        "values the admin API would refuse (--strict): " + "; ".join(warnings),
                    )
            except InvalidData as exc:
                problem = f"{exc.problem} (nothing was written)"
                raise InvalidData(exc.source, exc.where, problem) from exc
            except OSError as exc:
                fail(f"{describe_os_error(exc)} (nothing was written)", 2, exc)
            warnings = [f"{config_source}: {w} (the admin API would refuse it)" for w in warnings]
            async with Store.open(settings, plugins=plugin_set()) as store:
                files = for_store(files, store)
                stored = await read_store(store, "reading the store")
                meta = await store.meta.get()
                # A run that stopped halfway left its marker: finishing it needs no --force.
                resuming = bool(meta.get(MIGRATING))
                diff = [] if stored.is_empty() else differences(files, stored)
                counts = _counts(files)
                if diff and not (force or resuming):
                    return Outcome("refused", diff, report, counts, warnings)
                if force and reset_counters and not stored.is_empty():
                    diff += live_state_differences(files, stored)
                if not stored.is_empty() and not diff and not resuming:
                    # Sessions were carried over by the run that wrote these files; adding
                    # them again would bring back sessions logged out since.
                    return Outcome("unchanged", [], report, counts, warnings)
                if dry_run:
                    return Outcome("planned", diff, report, counts, warnings)
                await store.meta.update({MIGRATING: iso_ms(now_ms()), MIGRATING_COMMAND: finish})
                await write(store, files, keep_live_state=not reset_counters, finish=finish)
                await store.meta.update(_meta(meta, configs))
                action = "resumed" if resuming else "migrated"
                return Outcome(action, diff, report, counts, warnings)

        outcome = run(go)
        _print(outcome, json)
        if outcome.action == "refused":
            raise typer.Exit(1)


async def write(
    store: Store, files: Snapshot, *, keep_live_state: bool, finish: str = "cfgctl migrate"
) -> None:
    """Write a snapshot, entity by entity, each atomically. A stop signal (SIGINT,
    SIGTERM) ends it between two entities with :class:`Interrupted`, saying how much was
    written and that ``finish`` (the same migration again) completes it; a second signal
    stops at once (:mod:`cfgstore.cli.interrupts`)."""
    credentials = files.credential_files()
    steps = 8 + len(credentials) + len(files.sessions)
    written = 0

    def done() -> str:
        return (
            f"migrate wrote {written} of {steps} entities, each whole; the store is marked "
            f"as mid-migration: run migrate again to complete it (same store settings): "
            f"{finish}"
        )

    async def step(action: Coroutine[Any, Any, Any]) -> None:
        nonlocal written
        try:
            checkpoint(done)
        except Interrupted:
            action.close()  # never started
            raise
        await action
        written += 1

    again = f"run migrate again (same store settings): {finish}"
    with stoppable(f"The store is marked as mid-migration; {again}"):
        await step(store.config.put(files.config.document, ANY_VERSION))
        await step(store.pools.import_all(files.pools, keep_live_state=keep_live_state))
        with Progress("writing credentials", len(credentials)) as progress:
            for credential in credentials:
                await step(
                    store.credentials.put(
                        Credential(
                            credential.provider_type,
                            credential.uuid,
                            credential.document,
                            credential.source_path,
                            credential.token_format,
                            siblings=credential.siblings,
                        ),
                        ANY_VERSION,
                    )
                )
                progress.advance()
        await step(_optional(store.system_prompt.put, files.system_prompt))
        await step(store.custom_models.put_all(files.custom_models))
        await step(store.plugin_config.put(files.plugins))
        await step(_optional(store.password.put_stored, _stored_password(files.password)))
        await step(_optional(store.usage_cache.put, files.usage_cache))
        await step(_optional(store.potluck.import_keys, files.potluck))
        await step(_optional(store.usage_stats.replace, files.usage_stats))
        await step(store.kept_files.put(files.kept))
        for token, session in files.sessions.items():
            await step(store.sessions.add(token, session))
        checkpoint(done)


async def _optional(put: Callable[[V], Awaitable[Any]], value: V | None) -> None:
    if value is not None:
        await put(value)


def _stored_password(password: str | None) -> str | None:
    if password is None:
        return None
    return password if is_hashed(password) else hash_password(password)


def finish_command(
    configs: Path, work_dir: Path, include: frozenset[str], chain: Settings | None = None
) -> str:
    """The command that finishes (or repeats) this migration, recorded while it runs;
    with ``chain`` (a chain named by ``--backends``) it names that chain, and the target
    folder when the chain holds one."""
    words = ["cfgctl", "migrate", "--configs", str(configs.absolute())]
    words += ["--cwd", str(work_dir.absolute())]
    if include:
        words += ["--include", ",".join(sorted(include))]
    if chain is not None:
        words += ["--backends", ",".join(chain.chain)]
        if FILE_BACKEND in chain.chain:
            words += ["--target-configs", str(chain.configs_dir.absolute())]
            words += ["--target-cwd", str(chain.working_dir.absolute())]
    return shlex.join(words)


def refused_config_values(document: dict[str, Any]) -> list[str]:
    """``$.KEY: problem`` for every value of ``config.json`` the admin API would refuse
    (the rules of :mod:`cfgstore.model.config_rules`)."""
    return [f"{json_path(key)}: {problem}" for key, problem in field_errors(document).items()]


def _meta(current: dict[str, str], configs: Path) -> dict[str, str]:
    meta = {
        "schema": str(SCHEMA_VERSION),
        "migrated_at": iso_ms(now_ms()),
        MIGRATING: "",
        MIGRATING_COMMAND: "",
        "migrated_from": str(configs.absolute()),
        "created_by": f"cfgstore {__version__}",
    }
    if "namespace" not in current:
        meta["namespace"] = uuidlib.uuid4().hex
    return meta


def _counts(files: Snapshot) -> dict[str, int]:
    return {
        "provider_types": len(files.pools.types),
        "nodes": files.pools.node_count(),
        "credentials": len(files.credential_files()),
        "custom_models": len(files.custom_models),
        "plugins": len(files.plugins.plugins),
        "sessions": len(files.sessions),
        "kept_files": len(files.kept),
    }


def _print(outcome: Outcome, as_json: bool) -> None:
    report = outcome.report
    if as_json:
        payload: dict[str, Any] = {
            "action": outcome.action,
            "differences": outcome.differences,
            "counts": outcome.counts,
            "missing_credentials": report.missing_credentials,
            "not_migrated": report.not_migrated,
            "warnings": outcome.warnings,
        }
        emit_json(payload)
        return
    headline = {
        "migrated": "migrated",
        "resumed": "migrated (completed an interrupted migration)",
        "unchanged": "nothing to do: the store already holds exactly these files",
        "refused": "refused: the store holds different data (use --force to let the files win)",
        "planned": "dry run: nothing written; the migration would write",
    }[outcome.action]
    typer.echo(headline)
    for name, count in outcome.counts.items():
        typer.echo(f"  {name.replace('_', ' ')}: {count}")
    for difference in outcome.differences:
        typer.echo(f"  difference: {difference}")
    for warning in outcome.warnings:
        typer.echo(f"  warning: {warning}")
    for item in report.missing_credentials:
        typer.echo(f"  missing credential file: {item}")
    if report.not_migrated:
        typer.echo(f"  not migrated: {', '.join(report.not_migrated)}")
