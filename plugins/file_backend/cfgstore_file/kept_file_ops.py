"""Files kept as opaque bytes (:mod:`cfgstore.hookspecs.kept_files`) in the file backend.

The file backend *is* a deployment's files, so it keeps a file by writing it where an
export would write it, and lists the kept set in ``.cfgstore-kept.json`` of the configs
folder: reading them back returns exactly that set (with the files' current bytes; one
deleted since is left out). This is what lets ``cfgctl migrate`` copy a deployment into
another folder through the Store API, plugin data and ``usage-cache.json`` included.

Keys are posix paths relative to the working directory; ``configs/…`` names a file of
this configs folder, whatever its name (as for the paths ``config.json`` names). A key
naming a file the backend models (``config.json``, the pools file, a node's token file…)
replaces that file's bytes and publishes the entity's change: ``migrate`` keeps only
originals that say what the entity holds, so the folder ends up with the source's exact
bytes. Putting a set removes the files of the previous set it no longer names (never a
modelled file).

Refused with :class:`~cfgstore.errors.InvalidData`, before anything is written: a key
that is not a plain relative path, or names the password, the sessions or the backend's
own hidden files; a key whose file (after symlinks) lies outside the working directory,
the configs folder and the credential roots raises
:class:`~cfgstore.errors.CredentialPathOutside`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from cfgstore import hookimpl
from cfgstore.credential_paths import confine_for
from cfgstore.errors import CfgStoreError, InvalidData
from cfgstore.model import jsjson
from cfgstore.model.credentials import credential_path_of
from cfgstore_file.atomic import atomic_write, read_bytes

if TYPE_CHECKING:
    from cfgstore.adapters.settings import Settings
    from cfgstore_file.atomic import LockDir
    from cfgstore_file.coalescer import CoalescingWriter
    from cfgstore_file.layout import Layout
    from cfgstore_file.pools_file import PoolsFile

log = logging.getLogger("cfgstore.file")

Modelled = dict[Path, tuple[str, tuple[str, ...]]]
"""Real path of a file the backend models → (entity, ids) of its change event."""


class KeptFileOps:
    settings: Settings
    layout: Layout
    locks: LockDir
    pools_file: PoolsFile
    writer: CoalescingWriter

    def _publish(self, entity: str, *ids: str, remote: bool = False) -> None:
        raise NotImplementedError

    @hookimpl
    async def cfgstore_kept_files_get(self) -> dict[str, bytes]:
        return await asyncio.to_thread(self._read_kept)

    @hookimpl
    async def cfgstore_kept_files_put(self, files: dict[str, bytes]) -> None:
        # Pending pool records go to the pools file before a kept original replaces it.
        await self.writer.durable()
        carriers = [
            (f"{provider_type}/{node.uuid}", carrier[1])
            for provider_type, node in self.pools_file.view
            if (carrier := credential_path_of(provider_type, node)) is not None
        ]
        modelled = await asyncio.to_thread(self._modelled, carriers)
        replaced = await asyncio.to_thread(self._write_kept, files, modelled)
        if any(entity == "pools" for entity, _ in replaced):
            await self.pools_file.reload_if_changed()
        for entity, ids in replaced:
            self._publish(entity, *ids)

    # -- blocking parts (worker threads) ---------------------------------------------

    def _read_kept(self) -> dict[str, bytes]:
        kept: dict[str, bytes] = {}
        for key in self._manifest():
            try:
                path = self._kept_path(key)
            except CfgStoreError as exc:  # a manifest edited by hand; the rest still counts
                log.error("kept file %s not read: %s", key, exc)
                continue
            raw = read_bytes(path)
            if raw is not None:
                kept[key] = raw
        return kept

    def _write_kept(
        self, files: Mapping[str, bytes], modelled: Modelled
    ) -> list[tuple[str, tuple[str, ...]]]:
        """Write every file (all paths checked first), then the manifest, then remove the
        previous set's files no longer named. Returns the change events to publish."""
        targets = {key: self._kept_path(key) for key in files}
        for key, path in targets.items():
            if path in self._private_files() or path.is_relative_to(self.layout.locks.resolve()):
                raise InvalidData("kept files", key, "names a file the file backend keeps private")
        replaced = []
        for key, path in targets.items():
            with self.locks.lock_for(path):
                if read_bytes(path) != files[key]:
                    atomic_write(path, files[key])
                    if path in modelled:
                        replaced.append(modelled[path])
        previous = self._manifest()
        manifest = self.layout.kept
        with self.locks.lock_for(manifest):
            atomic_write(manifest, jsjson.dump_bytes(sorted(files)))
        for key in previous:
            if key in files:
                continue
            try:
                path = self._kept_path(key)
            except CfgStoreError:
                continue
            if path not in modelled and path not in targets.values():
                with self.locks.lock_for(path), contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        return replaced

    def _manifest(self) -> list[str]:
        raw = read_bytes(self.layout.kept)
        if raw is None:
            return []
        listed = jsjson.loads(raw, str(self.layout.kept))
        if not isinstance(listed, list):
            raise InvalidData(str(self.layout.kept), "$", "must be a JSON list of paths")
        return [key for key in listed if isinstance(key, str)]

    def _kept_path(self, key: str) -> Path:
        """The real path of a kept file (``configs/…``: in this configs folder)."""
        parts = PurePosixPath(key).parts
        if not parts or PurePosixPath(key).is_absolute() or ".." in parts or "\\" in key:
            raise InvalidData("kept files", key, "not a relative path inside the deployment")
        if parts[0] == "configs" and len(parts) > 1:
            path = self.layout.configs_dir.joinpath(*parts[1:])
        else:
            path = self.layout.cwd.joinpath(*parts)
        return confine_for(self.settings, str(path))

    def _private_files(self) -> set[Path]:
        layout = self.layout
        own = (layout.password, layout.sessions, layout.meta, layout.kept, layout.traffic)
        return {p.resolve() for p in own}

    def _modelled(self, carriers: list[tuple[str, str]]) -> Modelled:
        """The files the backend models; ``carriers``: (``type/uuid``, token path) of the
        nodes that name a token file."""
        layout = self.layout
        modelled: Modelled = {
            layout.config.resolve(): ("config", ()),
            layout.pools.resolve(): ("pools", ()),
            layout.custom_models.resolve(): ("custom_models", ()),
            layout.system_prompt.resolve(): ("system_prompt", ()),
            layout.usage_cache.resolve(): ("usage_cache", ()),
            layout.plugins.resolve(): ("plugin_config", ()),
        }
        for ident, source_path in carriers:
            with contextlib.suppress(CfgStoreError):  # a path outside is nobody's file here
                modelled[confine_for(self.settings, source_path)] = ("credentials", (ident,))
        return modelled
