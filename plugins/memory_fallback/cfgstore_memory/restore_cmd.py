"""``cfgctl restore``: re-seed an emptied Redis namespace from a snapshot file, so that the
instances that ran on it recognise it and replay their journals.

``cfgctl restore --snapshot FILE``
    Re-seeds an emptied Redis namespace from a snapshot file
    (:mod:`cfgstore.model.snapshot`): pools with their counters, credentials, config,
    system prompt, custom models, plugins, stored password, usage cache, then — last — the
    meta marker with the snapshot's namespace id, which is what lets the instances that ran
    on that namespace recognise it and replay their journals. Refused (exit 1, nothing
    written) when the namespace is not empty (as ``cfgctl init`` decides it) or the
    snapshot was taken under another key prefix, unless ``--force``.

Exit codes as everywhere in cfgctl: 0 done, 1 refused, 2 unusable input or storage (a
missing or damaged snapshot, Redis unreachable). Nothing here prints a secret: credential
documents, the password and the config's API key never reach the output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import attrs
import typer

from cfgstore.adapters.settings import Settings
from cfgstore.adapters.store import Store
from cfgstore.cli.common import (
    JsonOption,
    Progress,
    RedisUrlOption,
    emit_json,
    fail,
    plugin_set,
    redis_location,
    redis_settings,
    run,
)
from cfgstore.cli.init_cmd import Existing
from cfgstore.cli.interrupts import checkpoint, stoppable
from cfgstore.cli.os_errors import describe_os_error
from cfgstore.errors import InvalidData, VersionConflict
from cfgstore.model.snapshot import StoreSnapshot, snapshot_from_bytes
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore.model.versions import SCHEMA_VERSION


@attrs.frozen
class RestoreOutcome:
    prefix: str
    location: str
    existing: Existing
    written: bool
    restored_at: str = ""


def read_snapshot(path: Path) -> StoreSnapshot:
    """The snapshot in ``path``; exits 2 with one line when it is missing, unreadable or
    damaged (nothing was written then)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        fail(f"snapshot {path} does not exist", 2)
    except OSError as exc:
        fail(f"cannot read the snapshot: {describe_os_error(exc)}", 2, exc)
    try:
        snapshot = snapshot_from_bytes(raw, str(path))
    except InvalidData as exc:
        fail(f"{exc} (nothing was written)", 2, exc)
    if not snapshot.namespace_id:
        fail(f"{path}: $.namespace_id: empty; a snapshot must name its namespace", 2)
    return snapshot


async def _restore(
    settings: Settings, snapshot: StoreSnapshot, source: Path, force: bool
) -> RestoreOutcome:
    prefix = settings.redis_prefix
    location = redis_location(settings)
    async with Store.open(settings, plugins=plugin_set()) as store:
        existing = await Existing.read(store)
        if not existing.empty and not force:
            return RestoreOutcome(prefix, location, existing, written=False)
        config_version = (await store.config.get()).version
        total = len(snapshot.credentials)
        restored = 0
        again = f"run `cfgctl restore {source} --force` to complete it"

        def done() -> str:
            return (
                f"restore wrote the pools and {restored} of {total} credentials, each whole; "
                f"the namespace is not marked restored: {again}"
            )

        stop = stoppable(f"The namespace is not marked restored: {again}.")
        with stop, Progress("restoring credentials", total) as progress:
            await store.pools.import_all(snapshot.pools, keep_live_state=False)
            for credential in snapshot.credentials:
                checkpoint(done)
                expected = None
                if not existing.empty:
                    current = await store.credentials.get(credential.provider_type, credential.uuid)
                    expected = current.version if current is not None else None
                await store.credentials.put(credential, expected)
                restored += 1
                progress.advance()
            checkpoint(done)
        try:
            await store.config.put(snapshot.config.document, config_version)
        except VersionConflict:
            fail(
                f"config of namespace {{{prefix}}} changed while restore ran (an admin edit "
                "or another tool?); the meta marker was not written — check with `cfgctl "
                "status` and run restore again with --force",
                1,
            )
        if snapshot.system_prompt is not None:
            await store.system_prompt.put(snapshot.system_prompt)
        await store.custom_models.put_all(snapshot.custom_models)
        await store.plugin_config.put(snapshot.plugins)
        if snapshot.password is not None:
            await store.password.put_stored(snapshot.password)
        if snapshot.usage_cache is not None:
            await store.usage_cache.put(snapshot.usage_cache)
        restored_at = iso_ms(now_ms())
        meta = {
            "schema": str(SCHEMA_VERSION),
            "namespace": snapshot.namespace_id,
            "restored_at": restored_at,
            "restored_from": str(source),
            "restored_revision": str(snapshot.revision),
        }
        if existing.migrating is not None:
            meta["migrating"] = ""  # everything a migration wrote is replaced
        # Last: the marker makes the namespace the snapshot's again.
        await store.meta.update(meta)
        return RestoreOutcome(prefix, location, existing, True, restored_at)


def _restore_command(
    snapshot_file: Path, redis_url: str | None, force: bool, as_json: bool
) -> None:
    snapshot = read_snapshot(snapshot_file)
    settings = redis_settings("restore", redis_url)
    prefix = settings.redis_prefix
    if snapshot.prefix != prefix and not force:
        reason = (
            f"snapshot {snapshot_file} was taken under key prefix {{{snapshot.prefix}}}, not "
            f"the configured {{{prefix}}}"
        )
        if as_json:
            emit_json({"restored": False, "redis_prefix": prefix, "reason": reason})
        fail(f"refusing to restore: {reason}. Nothing was written; --force restores anyway", 1)
    outcome = run(lambda: _restore(settings, snapshot, snapshot_file, force))
    if not outcome.written:
        found = outcome.existing.describe()
        if as_json:
            emit_json(
                {
                    "restored": False,
                    "redis_prefix": prefix,
                    "location": outcome.location,
                    "existing": found,
                }
            )
        fail(
            f"refusing to restore into namespace {{{prefix}}} at {outcome.location}: it is not "
            f"empty, it holds {'; '.join(found)}. Nothing was written; --force overwrites it",
            1,
        )
    _print_restore(outcome, snapshot, snapshot_file, force, as_json)


def _snapshot_counts(snapshot: StoreSnapshot) -> dict[str, int]:
    return {
        "provider_types": len(snapshot.pools.types),
        "nodes": snapshot.pools.node_count(),
        "credentials": len(snapshot.credentials),
        "custom_models": len(snapshot.custom_models),
        "plugins": len(snapshot.plugins.plugins),
    }


def _print_restore(
    outcome: RestoreOutcome, snapshot: StoreSnapshot, source: Path, force: bool, as_json: bool
) -> None:
    previous = outcome.existing.namespace_id
    forced = force and not outcome.existing.empty
    optional = {
        "system_prompt": snapshot.system_prompt is not None,
        "password": snapshot.password is not None,
        "usage_cache": snapshot.usage_cache is not None,
    }
    if as_json:
        emit_json(
            {
                "restored": True,
                "forced": forced,
                "redis_prefix": outcome.prefix,
                "location": outcome.location,
                "snapshot": str(source),
                "namespace_id": snapshot.namespace_id,
                "previous_namespace_id": previous,
                "snapshot_prefix": snapshot.prefix,
                "snapshot_revision": snapshot.revision,
                "snapshot_saved_at": iso_ms(snapshot.saved_at_ms),
                "restored_at": outcome.restored_at,
                "counts": _snapshot_counts(snapshot),
                "restored_optional": optional,
            }
        )
        return
    action = "restored (forced over existing data)" if forced else "restored"
    typer.echo(f"{action} namespace {{{outcome.prefix}}} at {outcome.location} from {source}")
    typer.echo(f"  namespace id      {snapshot.namespace_id}")
    if previous is not None and previous != snapshot.namespace_id:
        typer.echo(
            f"  replaced id       {previous} (instances on it will set their journals aside)"
        )
    typer.echo(
        f"  snapshot          revision {snapshot.revision}, saved {iso_ms(snapshot.saved_at_ms)}"
    )
    if snapshot.prefix != outcome.prefix:
        typer.echo(f"  snapshot prefix   {{{snapshot.prefix}}} (restored under --force)")
    for name, count in _snapshot_counts(snapshot).items():
        typer.echo(f"  {name.replace('_', ' '):<18}{count}")
    for name, present in optional.items():
        state = "restored" if present else "none in the snapshot"
        typer.echo(f"  {name.replace('_', ' '):<18}{state}")
    typer.echo("")
    typer.echo(
        f"Running instances that served namespace {snapshot.namespace_id} now recognise it "
        "and replay their journals; orphaned journals: `cfgctl journal list --state-dir DIR` "
        "and `cfgctl journal replay`."
    )


def register(app: typer.Typer) -> None:
    """Add ``cfgctl restore``."""

    @app.command("restore")
    def restore(
        snapshot: Annotated[
            Path, typer.Option("--snapshot", help="The snapshot file (snapshot.json).")
        ],
        redis_url: RedisUrlOption = None,
        force: Annotated[
            bool,
            typer.Option(
                "--force",
                help="Restore into a namespace that holds data, or from another key prefix.",
            ),
        ] = False,
        json: JsonOption = False,
    ) -> None:
        """Re-seed an emptied Redis namespace from a snapshot file."""
        _restore_command(snapshot, redis_url, force, json)
