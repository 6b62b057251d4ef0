"""``cfgctl export``: a store (Redis, or the chain ``--backends`` names) back to the
AIClient-2-API layout, for backup or rollback.

The target folder plays the Node process's working directory: ``DIR/configs/…`` and
every credential at the path its node names (relative paths under ``DIR``; an absolute
path is written under ``DIR`` + that path, and reported). Files are written atomically,
mode 0600, in the Node service's exact format. Then the folder is read back as the Node
service would read it and compared with what was exported (as ``verify`` compares): any
difference is listed and the export exits 1.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import attrs
import typer

from cfgstore.adapters import Store
from cfgstore.cli import relocation
from cfgstore.cli.common import (
    BackendsOption,
    ConfigsOption,
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
from cfgstore.cli.differences import differences
from cfgstore.cli.interrupts import checkpoint, stoppable
from cfgstore.cli.kept_files import equivalent, safe_key
from cfgstore.cli.os_errors import describe_os_error
from cfgstore.cli.readiness import Readiness
from cfgstore.cli.relocation import Moved
from cfgstore.cli.snapshot import Snapshot, potluck_as_kept, read_folder, read_store
from cfgstore.fileio import atomic_write, make_private_dirs
from cfgstore.model import jsjson
from cfgstore.model.credentials import credential_path_of
from cfgstore.model.custom_models import CustomModel
from cfgstore.model.pools import pools_to_json
from cfgstore.model.potluck import keys_to_bytes
from cfgstore.model.usage_stats import USAGE_STATS_FILE
from cfgstore.model.versions import ABSENT_VERSION

SESSIONS_NOTE = (
    "token-store.json is written empty: sessions are stored as digests and cannot be "
    "exported (users log in again)"
)


@attrs.define
class ExportPlan:
    files: dict[Path, bytes] = attrs.Factory(dict)
    moved: list[Moved] = attrs.Factory(list)
    """Path strings of the store that lead outside the folder (:mod:`relocation`)."""
    relocated_files: set[Path] = attrs.Factory(set)
    """The files written in the relocation folder in their stead."""
    in_place: set[Path] = attrs.Factory(set)
    """Files written where a path string of the store says (a relocated file must not
    meet one)."""
    skipped: list[str] = attrs.Factory(list)
    """What has no place to be written at all."""


def plan_export(snapshot: Snapshot, root: Path) -> ExportPlan:
    """Every file the export writes, with its bytes: the entities' files, each as the
    original bytes kept for it while they still say what the entity holds, and every
    opaque kept file (:mod:`cfgstore.cli.kept_files`)."""
    plan = model_files(snapshot, root)
    root = Path(os.path.abspath(root))
    for key, data in snapshot.kept.items():
        if not safe_key(key):
            plan.skipped.append(f"{key}: a kept file outside the folder, skipped")
            continue
        target = root / key
        planned = plan.files.get(target)
        if planned is None or equivalent(data, planned):
            plan.files[target] = data
    return plan


def model_files(snapshot: Snapshot, root: Path) -> ExportPlan:
    """The files of the snapshot's entities, in the Node service's format, under ``root``
    (made absolute and normalised). A path leading outside ``root`` is written in the
    relocation folder (:mod:`cfgstore.cli.relocation`): the first one where it meets no
    file the snapshot writes where its own path says."""
    for folder in relocation.folders():
        places = relocation.Places.under(root, folder)
        plan = _model_files(snapshot, places)
        inside = [path for path in plan.files if path not in plan.relocated_files]
        inside += plan.in_place
        # A kept file at a relocated file's place is its original bytes, not another file.
        kept = [places.root / key for key in snapshot.kept if safe_key(key)]
        inside += [path for path in kept if path not in plan.relocated_files]
        if not relocation.collides(plan.relocated_files, inside):
            return plan
    raise AssertionError("unreachable: finitely many files, endless folder names")


def _model_files(snapshot: Snapshot, places: relocation.Places) -> ExportPlan:
    plan = ExportPlan()
    configs = places.root / "configs"
    document = snapshot.config.document

    def place(path_string: str) -> tuple[Path, str | None]:
        target, relocated = places.target(path_string), places.relocation(path_string)
        (plan.in_place if relocated is None else plan.relocated_files).add(target)
        return target, relocated

    def configured(key: str, default: Path) -> Path:
        value = document.get(key)
        if not isinstance(value, str) or not value.strip():
            return default
        target, relocated = place(value)
        if relocated is not None:
            plan.moved.append(Moved(value, relocated, config_key=key))
        return target

    pools_path = configured("PROVIDER_POOLS_FILE_PATH", configs / "provider_pools.json")
    models_path = configured("CUSTOM_MODELS_FILE_PATH", configs / "custom_models.json")
    prompt_path = configured("SYSTEM_PROMPT_FILE_PATH", configs / "input_system_prompt.txt")
    for provider_type, pool_node in snapshot.pools:
        carrier = credential_path_of(provider_type, pool_node)
        if carrier is not None and (moved := places.relocation(carrier[1])) is not None:
            plan.moved.append(
                Moved(
                    carrier[1],
                    moved,
                    provider_type=provider_type,
                    uuid=pool_node.uuid,
                    path_key=carrier[0],
                )
            )

    if snapshot.config.version != ABSENT_VERSION:
        plan.files[configs / "config.json"] = jsjson.dump_bytes(document)
    plan.files[pools_path] = jsjson.dump_bytes(pools_to_json(snapshot.pools))
    siblings_planned: dict[Path, set[str]] = {}
    for (provider_type, uuid), credential in snapshot.credentials.items():
        # The path the node names now (an edited path moves the file), else the one the
        # credential was stored with.
        node = snapshot.pools.find(provider_type, uuid)
        carrier = credential_path_of(provider_type, node) if node else None
        path_string = carrier[1] if carrier else credential.source_path
        if not path_string:
            plan.skipped.append(f"{provider_type}/{uuid}: credential without a path, skipped")
            continue
        target, relocated = place(path_string)
        if relocated is not None and carrier is None:
            plan.moved.append(Moved(path_string, relocated, provider_type=provider_type, uuid=uuid))
        plan.files[target] = jsjson.dump_bytes(credential.document)
        # Every token of a folder has the others as siblings: each file planned once.
        planned = siblings_planned.setdefault(target.parent, set())
        for name, sibling in credential.siblings.items():
            if name in planned:
                continue
            planned.add(name)
            sibling_path = target.parent / name
            if sibling_path not in plan.files:
                plan.files[sibling_path] = jsjson.dump_bytes(sibling)
                (plan.in_place if relocated is None else plan.relocated_files).add(sibling_path)
    if snapshot.password is not None:
        plan.files[configs / "pwd"] = snapshot.password.encode("utf-8")
    plan.files[configs / "plugins.json"] = jsjson.dump_bytes(snapshot.plugins.to_json())
    plan.files[models_path] = jsjson.dump_bytes(_models(snapshot.custom_models))
    if snapshot.system_prompt is not None:
        plan.files[prompt_path] = snapshot.system_prompt.encode("utf-8")
    if snapshot.usage_cache is not None:
        plan.files[configs / "usage-cache.json"] = jsjson.dump_bytes(snapshot.usage_cache.to_json())
    if snapshot.potluck is not None:
        plan.files[configs / "api-potluck-keys.json"] = keys_to_bytes(snapshot.potluck)
    if snapshot.usage_stats is not None:
        plan.files[configs / USAGE_STATS_FILE] = jsjson.dump_bytes(snapshot.usage_stats)
    plan.files[configs / "token-store.json"] = jsjson.dump_bytes({"tokens": {}})
    return plan


def _models(models: list[CustomModel]) -> list[Any]:
    return [m.to_json() for m in models]


def leading_outside(paths: Iterable[Path], root: Path) -> list[str]:
    """The folders of planned files that writing would leave ``root`` through (a folder
    of it that is a symlink leading elsewhere, or a ``..`` in a name), each with where it
    leads; a link in a file's own place is fine (the rename replaces it). Blocking (it
    reads links)."""
    real_root = Path(os.path.realpath(root))
    found: dict[Path, str] = {}
    for path in paths:
        real_folder = Path(os.path.realpath(path.parent))
        inside = path.is_relative_to(root) and ".." not in path.parts
        if not inside or not real_folder.is_relative_to(real_root):
            found.setdefault(path.parent, f"{path.parent} leads to {real_folder}")
    return list(found.values())


def register(app: typer.Typer) -> None:
    @app.command()
    def export(
        to: Annotated[Path, typer.Option("--to", help="Folder to write (the Node cwd).")],
        redis_url: RedisUrlOption = None,
        backends: BackendsOption = None,
        configs: ConfigsOption = None,
        cwd: CwdOption = None,
        force: Annotated[
            bool, typer.Option("--force", help="Write into a non-empty folder.")
        ] = False,
        allow_incomplete: Annotated[
            bool,
            typer.Option(
                "--allow-incomplete",
                help="Export a namespace that is mid-migration or was never initialised.",
            ),
        ] = False,
        relocate_paths: Annotated[
            bool,
            typer.Option(
                "--relocate-paths",
                help="Make the exported pools and config.json name the files written in "
                "relocated/ instead of paths outside the folder.",
            ),
        ] = False,
        json: JsonOption = False,
    ) -> None:
        """Write a store (Redis, or the chain --backends names; with the file backend, the
        folder --configs) back to the AIClient-2-API file layout (backup, rollback).

        Nothing is written outside --to: a file whose path leads outside it (absolute, or
        ../) is written under relocated/ and listed, and the export exits 1 unless
        --relocate-paths makes the exported files name the relocated ones."""
        if to.exists() and not to.is_dir():
            fail(f"{to}: is a file, not a folder; name a folder to export into", 2)
        if to.is_dir() and any(to.iterdir()) and not force:
            fail(f"{to} is not empty: refusing to write into it (use --force)", 1)
        settings = chain_settings("export", redis_url, backends, configs, cwd)
        if holds_folder(settings, to / "configs", to):
            fail(f"{to}: the chain's file backend stores in this folder; export elsewhere", 2)
        root = Path(os.path.abspath(to))

        async def go() -> tuple[str | None, Snapshot | None]:
            async with Store.open(settings, plugins=plugin_set()) as store:
                incomplete = (await Readiness.read(store)).incomplete()
                if incomplete is not None and not allow_incomplete:
                    return incomplete, None
                return incomplete, await read_store(store, "reading the store")

        incomplete, snapshot = run(go)
        if snapshot is None:
            fail(f"refusing to export: {incomplete} (--allow-incomplete exports it anyway)", 2)
        plan = plan_export(snapshot, root)
        # Written and read back first: the folder naming the relocated files, so that the
        # read-back never reads a file outside it. Without --relocate-paths the files that
        # name paths (config.json, the pools file) are then put back as the store has them.
        relocated = relocation.rewrite(snapshot, plan.moved) if plan.moved else snapshot
        view = plan_export(relocated, root) if plan.moved else plan
        final = view.files if relocate_paths else plan.files
        outside = leading_outside({*view.files, *final}, root)
        if outside:
            more = f"; and {len(outside) - 5} more" if len(outside) > 5 else ""
            fail(f"refusing to write outside {root}: " + "; ".join(outside[:5]) + more, 2)
        write_files(view.files, root)
        found = run(lambda: read_back(root, relocated))
        for path, data in final.items():
            if view.files.get(path) != data:
                atomic_write(path, data)
        moved = [item.describe() for item in plan.moved]
        if json:
            emit_json(
                {
                    "written": [str(p) for p in final],
                    "relocated": moved,
                    "paths_rewritten": relocate_paths and bool(moved),
                    "skipped": plan.skipped,
                    "differences": found,
                    "note": SESSIONS_NOTE,
                }
            )
        else:
            typer.echo(f"exported {len(final)} files to {root}")
            if moved:
                typer.echo(
                    f"  {len(moved)} path(s) lead outside the folder; their files are "
                    "written under it instead:"
                )
            for item in moved:
                typer.echo(f"    {item}")
            for item in plan.skipped:
                typer.echo(f"  {item}")
            typer.echo(f"  note: {SESSIONS_NOTE}")
            if found:
                typer.echo(f"  {len(found)} difference(s) between the written files and the store:")
            for difference in found:
                typer.echo(f"    {difference}")
        if moved and not relocate_paths:
            fail(
                f"the exported files still name {len(moved)} path(s) outside {root}, which "
                "the Node service would read instead of the relocated copies: "
                + ", ".join(sorted({item.path for item in plan.moved}))
                + " (--relocate-paths makes them name the relocated files)",
                1,
            )
        if found:
            raise typer.Exit(1)


def write_files(files: dict[Path, bytes], root: Path) -> None:
    """Write the planned files, each atomically (a file is whole or absent). A stop signal
    ends the writing between two files; that, or a filesystem error, exits (130, 2)
    saying how many files were written and that a second export with ``--force`` writes
    them all."""
    total = len(files)
    written = 0

    def done() -> str:
        if not written:
            return f"nothing was written to {root}"
        return (
            f"{written} of {total} files written to {root}, each whole; run the export again "
            "with --force to write them all"
        )

    finish = f"Every file in {root} is whole; run the export again with --force to write them all."
    try:
        with stoppable(finish), Progress("writing files", total) as progress:
            for folder in sorted({p.parent for p in files}):
                make_private_dirs(folder)  # secrets inside: 0700, parents too
            for path, data in files.items():
                checkpoint(done)
                atomic_write(path, data)
                written += 1
                progress.advance()
    except OSError as exc:
        fail(f"{describe_os_error(exc)} ({done()})", 2, exc)


async def read_back(root: Path, snapshot: Snapshot) -> list[str]:
    """What differs between the exported folder, read as the Node service would read it,
    and the snapshot it was written from (``verify``'s comparison, both ways)."""
    include = frozenset({"usage-cache"}) if snapshot.usage_cache is not None else frozenset()
    files, _ = await read_folder(root / "configs", root, include, strict=False)
    if snapshot.potluck is None:  # a store keeping no keys kept their file as bytes
        files = potluck_as_kept(files)
    return differences(files, snapshot, complete=True)
