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

from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import attrs
import typer

from cfgstore.adapters import Store
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
from cfgstore.cli.kept_files import equivalent, safe_key
from cfgstore.cli.readiness import Readiness
from cfgstore.cli.snapshot import Snapshot, read_folder, read_store
from cfgstore.fileio import atomic_write, make_private_dirs
from cfgstore.model import jsjson
from cfgstore.model.credentials import credential_path_of, resolve_path
from cfgstore.model.custom_models import CustomModel
from cfgstore.model.pools import pools_to_json
from cfgstore.model.versions import ABSENT_VERSION

SESSIONS_NOTE = (
    "token-store.json is written empty: sessions are stored as digests and cannot be "
    "exported (users log in again)"
)


@attrs.define
class ExportPlan:
    files: dict[Path, bytes] = attrs.Factory(dict)
    relocated: list[str] = attrs.Factory(list)  # absolute paths written under DIR


def plan_export(snapshot: Snapshot, root: Path) -> ExportPlan:
    """Every file the export writes, with its bytes: the entities' files, each as the
    original bytes kept for it while they still say what the entity holds, and every
    opaque kept file (:mod:`cfgstore.cli.kept_files`)."""
    plan = model_files(snapshot, root)
    for key, data in snapshot.kept.items():
        if not safe_key(key):
            plan.relocated.append(f"{key}: a kept file outside the folder, skipped")
            continue
        target = root / key
        planned = plan.files.get(target)
        if planned is None or equivalent(data, planned):
            plan.files[target] = data
    return plan


def model_files(snapshot: Snapshot, root: Path) -> ExportPlan:
    """The files of the snapshot's entities, in the Node service's format."""
    plan = ExportPlan()
    configs = root / "configs"
    document = snapshot.config.document

    def place(path_string: str) -> Path:
        resolved = resolve_path(path_string, root)
        if resolved.is_absolute() and not _inside(resolved, root):
            relocated = root / PurePosixPath(resolved.as_posix().lstrip("/"))
            plan.relocated.append(f"{path_string} → {relocated}")
            return relocated
        return resolved

    def configured(key: str, default: Path) -> Path:
        value = document.get(key)
        return place(value) if isinstance(value, str) and value.strip() else default

    if snapshot.config.version != ABSENT_VERSION:
        plan.files[configs / "config.json"] = jsjson.dump_bytes(document)
    pools_path = configured("PROVIDER_POOLS_FILE_PATH", configs / "provider_pools.json")
    plan.files[pools_path] = jsjson.dump_bytes(pools_to_json(snapshot.pools))
    for (provider_type, uuid), credential in snapshot.credentials.items():
        # The path the node names now (an edited path moves the file), else the one the
        # credential was stored with.
        node = snapshot.pools.find(provider_type, uuid)
        carrier = credential_path_of(provider_type, node) if node else None
        path_string = carrier[1] if carrier else credential.source_path
        if not path_string:
            plan.relocated.append(f"{provider_type}/{uuid}: credential without a path, skipped")
            continue
        target = place(path_string)
        plan.files[target] = jsjson.dump_bytes(credential.document)
        for name, sibling in credential.siblings.items():
            plan.files.setdefault(target.parent / name, jsjson.dump_bytes(sibling))
    if snapshot.password is not None:
        plan.files[configs / "pwd"] = snapshot.password.encode("utf-8")
    plan.files[configs / "plugins.json"] = jsjson.dump_bytes(snapshot.plugins.to_json())
    models_path = configured("CUSTOM_MODELS_FILE_PATH", configs / "custom_models.json")
    plan.files[models_path] = jsjson.dump_bytes(_models(snapshot.custom_models))
    if snapshot.system_prompt is not None:
        prompt_path = configured("SYSTEM_PROMPT_FILE_PATH", configs / "input_system_prompt.txt")
        plan.files[prompt_path] = snapshot.system_prompt.encode("utf-8")
    if snapshot.usage_cache is not None:
        plan.files[configs / "usage-cache.json"] = jsjson.dump_bytes(snapshot.usage_cache.to_json())
    plan.files[configs / "token-store.json"] = jsjson.dump_bytes({"tokens": {}})
    return plan


def _models(models: list[CustomModel]) -> list[Any]:
    return [m.to_json() for m in models]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


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
        json: JsonOption = False,
    ) -> None:
        """Write a store (Redis, or the chain --backends names; with the file backend, the
        folder --configs) back to the AIClient-2-API file layout (backup, rollback)."""
        if to.exists() and not to.is_dir():
            fail(f"{to}: not a folder", 2)
        if to.is_dir() and any(to.iterdir()) and not force:
            fail(f"{to} is not empty: refusing to write into it (use --force)", 1)
        settings = chain_settings("export", redis_url, backends, configs, cwd)
        if holds_folder(settings, to / "configs", to):
            fail(f"{to}: the chain's file backend stores in this folder; export elsewhere", 2)
        root = to.absolute()

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
        with Progress("writing files", len(plan.files)) as progress:
            for folder in sorted({p.parent for p in plan.files}):
                make_private_dirs(folder)  # secrets inside: 0700, parents too
            for path, data in plan.files.items():
                atomic_write(path, data)
                progress.advance()
        found = run(lambda: read_back(root, snapshot))
        if json:
            emit_json(
                {
                    "written": [str(p) for p in plan.files],
                    "relocated": plan.relocated,
                    "differences": found,
                    "note": SESSIONS_NOTE,
                }
            )
        else:
            typer.echo(f"exported {len(plan.files)} files to {root}")
            for item in plan.relocated:
                typer.echo(f"  absolute path written under the folder: {item}")
            typer.echo(f"  note: {SESSIONS_NOTE}")
            if found:
                typer.echo(f"  {len(found)} difference(s) between the written files and the store:")
            for difference in found:
                typer.echo(f"    {difference}")
        if found:
            raise typer.Exit(1)


async def read_back(root: Path, snapshot: Snapshot) -> list[str]:
    """What differs between the exported folder, read as the Node service would read it,
    and the snapshot it was written from (``verify``'s comparison, both ways)."""
    include = frozenset({"usage-cache"}) if snapshot.usage_cache is not None else frozenset()
    files, _ = await read_folder(root / "configs", root, include, strict=False)
    return differences(files, snapshot, complete=True)
