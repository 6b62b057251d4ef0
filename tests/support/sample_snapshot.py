"""The sample deployment (``examples/deployment``) as a
:class:`~cfgstore.model.snapshot.StoreSnapshot`: everything a file store over a copy of it
serves, read through the public Store API (credentials with their siblings included)."""

from __future__ import annotations

import shutil
from pathlib import Path

from cfgstore.adapters import Settings, Store
from cfgstore.adapters.plugins import PluginSet
from cfgstore.model.snapshot import StoreSnapshot

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "deployment"


async def read_sample_snapshot(
    tmp_path: Path,
    *,
    namespace_id: str,
    prefix: str,
    revision: int,
    saved_at_ms: int,
    plugins: PluginSet | None = None,
    source: Path = EXAMPLE,
) -> StoreSnapshot:
    """Copy the sample deployment to ``tmp_path / "app"`` (its configs folder is
    ``tmp_path / "app" / "configs"``; nothing is written to ``examples/``) and return what
    a file store over the copy serves, with the given snapshot header. ``plugins`` as for
    :meth:`Store.open` (default: discovered from the environment); ``source``: another
    deployment folder to copy instead."""
    app = tmp_path / "app"
    shutil.copytree(source, app)
    settings = Settings(
        configs_dir=app / "configs",
        backends=("file",),
        reset_counters_on_start=False,
        watch_interval_ms=0,
    )
    async with Store.open(settings, plugins=plugins) as store:
        credentials = []
        for ref in await store.credentials.list():
            credential = await store.credentials.get(ref.provider_type, ref.uuid)
            assert credential is not None
            credentials.append(credential)
        return StoreSnapshot(
            namespace_id=namespace_id,
            prefix=prefix,
            revision=revision,
            saved_at_ms=saved_at_ms,
            pools=await store.pools.list(),
            config=await store.config.get(),
            system_prompt=await store.system_prompt.get(),
            custom_models=await store.custom_models.list(),
            plugins=await store.plugin_config.get(),
            password=await store.password.get_stored(),
            usage_cache=await store.usage_cache.get(),
            credentials=credentials,
        )
