"""``cfgctl verify``: do a configs folder and a store (Redis, or the chain ``--backends``
names) hold the same configuration?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cfgstore.adapters import Store
from cfgstore.cli.common import (
    BackendsOption,
    CwdOption,
    JsonOption,
    RedisUrlOption,
    emit_json,
    plugin_set,
    run,
)
from cfgstore.cli.differences import differences
from cfgstore.cli.migrate_cmd import (
    TargetConfigsOption,
    TargetCwdOption,
    default_cwd,
    target_settings,
)
from cfgstore.cli.snapshot import for_store, read_folder, read_store


def register(app: typer.Typer) -> None:
    @app.command()
    def verify(
        configs: Annotated[Path, typer.Option("--configs", help="The configs folder.")],
        cwd: CwdOption = None,
        redis_url: RedisUrlOption = None,
        backends: BackendsOption = None,
        target_configs: TargetConfigsOption = None,
        target_cwd: TargetCwdOption = None,
        legacy_root: Annotated[
            bool, typer.Option("--legacy-root", help="Files in the repo root (pre-2025-12).")
        ] = False,
        json: JsonOption = False,
    ) -> None:
        """Compare a configs folder with a store (Redis, or the chain --backends names);
        exit 1 when they differ. Live counters and health are not compared (they change
        while the service runs)."""
        work_dir = cwd or default_cwd(configs, legacy_root)
        settings = target_settings(
            "verify", configs, work_dir, redis_url, backends, target_configs, target_cwd
        )

        async def go() -> list[str]:
            files, _ = await read_folder(configs, work_dir, frozenset(), strict=False)
            async with Store.open(settings, plugins=plugin_set()) as store:
                stored = await read_store(store, "reading the store")
                return differences(for_store(files, store), stored)

        found = run(go)
        if json:
            emit_json({"same": not found, "differences": found})
        elif found:
            typer.echo(f"{len(found)} difference(s):")
            for difference in found:
                typer.echo(f"  {difference}")
        else:
            typer.echo("the files and the store hold the same configuration")
        if found:
            raise typer.Exit(1)
