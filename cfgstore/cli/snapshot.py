"""Everything a store holds, read in one go: what migrate, verify and export compare and
copy. Reading goes through the ordinary Store API, so a snapshot of a configs folder is
exactly what the file backend serves (SC-005)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import attrs

from cfgstore.adapters import Settings, Store
from cfgstore.cli import kept_files
from cfgstore.cli.common import Progress
from cfgstore.errors import InvalidData
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import (
    Credential,
    credential_file_key,
    credential_path_of,
    resolve_path,
)
from cfgstore.model.custom_models import CustomModel
from cfgstore.model.names import check_pools, check_type_names
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.pools import ProviderPools
from cfgstore.model.potluck import PotluckKeys, keys_from_bytes, keys_to_bytes
from cfgstore.model.sessions import UiSession, sessions_from_json
from cfgstore.model.timefmt import now_ms
from cfgstore.model.usage_cache import UsageCache
from cfgstore.model.usage_stats import USAGE_STATS_FILE, empty_document, read_node_file
from cfgstore.model.versions import ABSENT_VERSION

INCLUDABLE = ("sessions", "usage-cache")

SESSIONS_REASON = "live Web-UI sessions: stored as digests only, and only with --include sessions"


@attrs.define
class Snapshot:
    config: MainConfig
    pools: ProviderPools
    credentials: dict[tuple[str, str], Credential]
    system_prompt: str | None
    custom_models: list[CustomModel]
    plugins: PluginConfig
    password: str | None
    usage_cache: UsageCache | None = None
    sessions: dict[str, UiSession] = attrs.Factory(dict)
    kept: dict[str, bytes] = attrs.Factory(dict)
    """Files kept as bytes (:mod:`cfgstore.cli.kept_files`): relative path → bytes."""
    potluck: PotluckKeys | None = None
    """The api-potluck keys (``configs/api-potluck-keys.json``), ``None`` when there are
    none or the file holds what the entity cannot (then it is a kept file)."""
    usage_stats: dict[str, Any] | None = None
    """The model usage statistics (Node's ``configs/model-usage-stats.json``), ``None`` when
    there are none (or the file is not in Node's shape: then it is a kept file)."""

    def credential_files(self) -> list[Credential]:
        """The credentials once per token file (nodes naming one file share one
        credential), each under the first node naming it, in pool order."""
        seen: set[str] = set()
        unique = []
        for (provider_type, uuid), credential in self.credentials.items():
            node = self.pools.find(provider_type, uuid)
            file_key = credential_file_key(provider_type, node) if node is not None else None
            if file_key is None or file_key not in seen:
                unique.append(credential)
            if file_key is not None:
                seen.add(file_key)
        return unique

    def is_empty(self) -> bool:
        return (
            not self.kept
            and self.config.version == ABSENT_VERSION
            and not self.pools.types
            and not self.credentials
            and self.system_prompt is None
            and not self.custom_models
            and not self.plugins.plugins
            and self.password is None
            and self.usage_stats is None
            and self.potluck is None
        )


@attrs.define
class SourceReport:
    """What reading a configs folder found besides the data."""

    missing_credentials: list[str] = attrs.Factory(list)
    not_migrated: list[str] = attrs.Factory(list)


async def read_store(store: Store, label: str = "reading") -> Snapshot:
    """Read every entity (sessions cannot be read back: stores keep digests only)."""
    pools = await store.pools.list()
    credentials: dict[tuple[str, str], Credential] = {}
    with Progress(f"{label} credentials", pools.node_count()) as progress:
        for provider_type, node in pools:
            credential = await store.credentials.get(provider_type, node.uuid)
            if credential is not None:
                credentials[provider_type, node.uuid] = credential
            progress.advance()
    return Snapshot(
        config=await store.config.get(),
        pools=pools,
        credentials=credentials,
        system_prompt=await store.system_prompt.get(),
        custom_models=await store.custom_models.list(),
        plugins=await store.plugin_config.get(),
        password=await store.password.get_stored(),
        usage_cache=await store.usage_cache.get(),
        kept=await store.kept_files.get(),
        potluck=await store.potluck.stored(),
        usage_stats=await _stored_usage_stats(store),
    )


async def _stored_usage_stats(store: Store) -> dict[str, Any] | None:
    """The store's statistics, ``None`` when it keeps none (or nothing was ever counted)."""
    if not store.usage_stats.available:
        return None
    doc = await store.usage_stats.read(live=False)
    return None if doc == empty_document() else doc


def file_settings(configs: Path, cwd: Path | None) -> Settings:
    """A read-only view of a configs folder through the file backend (with the operator's
    ``CFGSTORE_CREDENTIAL_ROOTS``: credential files elsewhere are refused)."""
    return Settings(
        configs_dir=configs,
        cwd=cwd,
        credential_roots=Settings.load().credential_roots,
        backends=("file",),
        reset_counters_on_start=False,
        watch_interval_ms=0,
    )


async def read_folder(
    configs: Path, cwd: Path | None, include: frozenset[str], strict: bool
) -> tuple[Snapshot, SourceReport]:
    """Read a configs folder. A malformed file (token files included) raises
    :class:`InvalidData` naming the file and position; a missing credential file is
    reported, or raised with ``strict``."""
    report = SourceReport()
    async with Store.open(file_settings(configs, cwd)) as store:
        pools = await store.pools.list()
        credentials: dict[tuple[str, str], Credential] = {}
        with Progress("reading credentials", pools.node_count()) as progress:
            for provider_type, node in pools:
                progress.advance()
                carrier = credential_path_of(provider_type, node)
                if carrier is None:
                    continue
                where = f"{provider_type}/{node.uuid}: {carrier[1]}"
                # A malformed token file is an input error like any malformed file: it
                # stops the run; a missing one is reported (fatal with --strict).
                credential = await store.credentials.get(provider_type, node.uuid)
                if credential is None:
                    if strict:
                        raise InvalidData(carrier[1], carrier[0], f"{where}: file not found")
                    report.missing_credentials.append(where)
                    continue
                credentials[provider_type, node.uuid] = credential
        snapshot = Snapshot(
            config=await store.config.get(),
            pools=pools,
            credentials=credentials,
            system_prompt=await store.system_prompt.get(),
            custom_models=await store.custom_models.list(),
            plugins=await store.plugin_config.get(),
            password=await store.password.get_stored(),
            usage_cache=await store.usage_cache.get() if "usage-cache" in include else None,
        )
    _check_storable(snapshot, configs, cwd)
    root = cwd or configs.parent
    snapshot.potluck = await asyncio.to_thread(_potluck_keys, root / "configs" / POTLUCK_FILE)
    snapshot.usage_stats = await asyncio.to_thread(
        read_node_file, root / "configs" / USAGE_STATS_FILE
    )
    if "sessions" in include:
        snapshot.sessions = _live_sessions(configs / "token-store.json")
    snapshot.kept = await asyncio.to_thread(kept_files.collect, snapshot, configs, root)
    if "sessions" not in include and (configs / "token-store.json").exists():
        report.not_migrated = [f"token-store.json ({SESSIONS_REASON})"]
    return snapshot, report


POTLUCK_FILE = "api-potluck-keys.json"


def _potluck_keys(path: Path) -> PotluckKeys | None:
    """The keys of an api-potluck file the entity holds as they are (a ``keys`` object
    first and alone); ``None`` when absent, empty or holding more (it is kept as bytes).
    Blocking."""
    from cfgstore.fileio import read_bytes

    raw = read_bytes(path)
    if raw is None:
        return None
    keys = keys_from_bytes(raw, str(path))
    if not keys.keys or keys.extra or not keys.keys_first:
        return None
    if any(k.get("id") != key_id for key_id, k in keys.keys.items()):
        return None
    return keys


def for_store(files: Snapshot, store: Store) -> Snapshot:
    """``files`` as ``store`` can hold it: a chain keeping no api-potluck keys keeps their
    file as bytes instead (the original ones when they were kept)."""
    if store.potluck.available:
        return files
    return potluck_as_kept(files)


def potluck_as_kept(files: Snapshot) -> Snapshot:
    """``files`` with its api-potluck keys as a kept file (the bytes the folder holds)."""
    if files.potluck is None:
        return files
    key = f"configs/{POTLUCK_FILE}"
    kept = {**files.kept, key: files.kept.get(key, keys_to_bytes(files.potluck))}
    return attrs.evolve(files, potluck=None, kept=kept)


def _check_storable(snapshot: Snapshot, configs: Path, cwd: Path | None) -> None:
    """Refuse, before anything is written, a name no store can hold (naming the file)."""
    root = (cwd or configs.absolute().parent).absolute()
    default = configs / "provider_pools.json"
    pools_source = _configured(snapshot.config, "PROVIDER_POOLS_FILE_PATH", default, root)
    check_pools(snapshot.pools, str(pools_source))
    if snapshot.usage_cache is not None:
        usage_source = str(configs / "usage-cache.json")
        check_type_names(list(snapshot.usage_cache.providers), usage_source, "providers")


def _configured(config: MainConfig, key: str, default: Path, root: Path) -> Path:
    """Where a file that ``config.json`` may relocate lives (as the file backend reads it)."""
    value = config.document.get(key)
    return resolve_path(value, root) if isinstance(value, str) and value.strip() else default


def _live_sessions(path: Path) -> dict[str, UiSession]:
    from cfgstore.model import jsjson

    if not path.exists():
        return {}
    sessions = sessions_from_json(jsjson.loads(path.read_bytes(), str(path)), str(path))
    now = now_ms()
    return {token: s for token, s in sessions.items() if not s.expired(now)}
