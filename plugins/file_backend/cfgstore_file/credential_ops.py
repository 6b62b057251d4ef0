"""Credential operations of the file backend: token files at the paths nodes name. Nodes
naming one file share it by nature; the refresh lock and change events are the file's."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from cfgstore import hookimpl
from cfgstore.credential_paths import confine_for
from cfgstore.errors import CredentialPathOutside, InvalidData, NotFound, VersionConflict
from cfgstore.model import jsjson
from cfgstore.model.credentials import (
    Credential,
    CredentialRef,
    TokenFormat,
    credential_path_of,
    new_credential_path,
    path_keys_for,
    resolve_path,
    token_format_for,
)
from cfgstore.model.pools import ProviderPools
from cfgstore.model.timefmt import now_ms
from cfgstore.model.versions import ABSENT_VERSION, ANY_VERSION, content_version
from cfgstore_file.atomic import atomic_write, read_bytes
from cfgstore_file.layout import configs_prefix
from cfgstore_file.sibling_cache import SiblingCache

if TYPE_CHECKING:
    from cfgstore.adapters.settings import Settings
    from cfgstore_file.atomic import LockDir
    from cfgstore_file.layout import Layout
    from cfgstore_file.pools_file import PoolsFile

log = logging.getLogger("cfgstore.file")


class CredentialOps:
    """Every path a node names is confined (:mod:`cfgstore.credential_paths`) before its
    file is read, written or removed: a path outside the allowed folders raises
    :class:`~cfgstore.errors.CredentialPathOutside` and nothing there is touched."""

    settings: Settings
    layout: Layout
    locks: LockDir
    pools_file: PoolsFile

    def _publish(self, entity: str, *ids: str, remote: bool = False) -> None:
        raise NotImplementedError

    def _source_path(self, provider_type: str, uuid: str) -> str | None:
        """The path string the node names for its token file (``None``: no node or none)."""
        node = self.pools_file.view.find(provider_type, uuid)
        if node is None:
            return None
        carrier = credential_path_of(provider_type, node)
        return carrier[1] if carrier is not None else None

    def _sharers(self, source_path: str) -> list[str]:
        """``type/uuid`` of every node whose token path resolves to ``source_path``'s file."""
        path = resolve_path(source_path, self.layout.cwd)
        ids = []
        for provider_type, node in self.pools_file.view:
            carrier = credential_path_of(provider_type, node)
            if carrier is not None and resolve_path(carrier[1], self.layout.cwd) == path:
                ids.append(f"{provider_type}/{node.uuid}")
        return ids

    def _confined(self, source_path: str) -> Path:
        """The real path of a node's token file, or :class:`CredentialPathOutside`.
        Blocking: call it in a worker thread."""
        return confine_for(self.settings, source_path)

    @hookimpl
    async def cfgstore_credentials_get(self, provider_type: str, uuid: str) -> Credential | None:
        source_path = self._source_path(provider_type, uuid)
        if source_path is None:
            return None
        token_format = token_format_for(provider_type)
        return await asyncio.to_thread(
            self._read_credential, provider_type, uuid, source_path, token_format
        )

    def _read_credential(
        self, provider_type: str, uuid: str, source_path: str, fmt: TokenFormat
    ) -> Credential | None:
        path = self._confined(source_path)
        raw = read_bytes(path)
        if raw is None:
            return None
        document = jsjson.loads(raw, str(path))
        if not isinstance(document, dict):
            raise InvalidData(str(path), "$", "a credential file must hold a JSON object")
        siblings = self._kiro_siblings(path) if fmt is TokenFormat.KIRO else {}
        return Credential(
            provider_type, uuid, document, source_path, fmt, content_version(raw), siblings
        )

    @property
    def _sibling_cache(self) -> SiblingCache:
        cache: SiblingCache | None = getattr(self, "_siblings_read", None)
        if cache is None:
            cache = self._siblings_read = SiblingCache(self._scan_folder)
        return cache

    def _kiro_siblings(self, path: Path) -> dict[str, dict[str, jsjson.JSONValue]]:
        """The other ``*.json`` files of a Kiro token's folder (the IDE keeps its client
        registration there), by file name; each folder is read once for all its tokens
        (:mod:`cfgstore_file.sibling_cache`). Never the configs folder itself."""
        if path.parent == self.layout.configs_dir.resolve():
            return {}
        return self._sibling_cache.siblings(path)

    def _scan_folder(self, folder: Path) -> dict[str, dict[str, jsjson.JSONValue]]:
        """Every ``*.json`` file of ``folder`` holding a JSON object, by name, in
        directory order; never one that is a symlink to a file outside the allowed
        folders."""
        found: dict[str, dict[str, jsjson.JSONValue]] = {}
        for sibling in sorted(folder.glob("*.json")):
            try:
                real = self._confined(str(sibling))
            except CredentialPathOutside as exc:
                log.error("ignoring the Kiro sibling file %s: %s", sibling, exc.problem)
                continue
            raw = read_bytes(real)
            try:
                doc = jsjson.loads(raw, str(sibling)) if raw is not None else None
            except InvalidData:
                continue  # the Node adapter tolerates a corrupt sibling too
            if isinstance(doc, dict):
                found[sibling.name] = doc
        return found

    @hookimpl
    async def cfgstore_credentials_put(
        self, credential: Credential, expected_version: str | None
    ) -> str:
        provider_type, uuid = credential.provider_type, credential.uuid
        source_path = self._source_path(provider_type, uuid)
        if source_path is None:
            source_path = await self._assign_credential_path(provider_type, uuid)
        data = jsjson.dump_bytes(credential.document)
        siblings = _sibling_files(credential)
        version = await asyncio.to_thread(
            self._cas_write,
            source_path,
            data,
            expected_version,
            f"{provider_type}/{uuid}",
            siblings,
        )
        self._publish("credentials", f"{provider_type}/{uuid}")
        return version

    async def _assign_credential_path(self, provider_type: str, uuid: str) -> str:
        """Give a node without a token path the path the Node service's OAuth flow would."""
        if self.pools_file.view.find(provider_type, uuid) is None:
            raise NotFound("provider node", f"{provider_type}/{uuid}")
        relative = new_credential_path(
            provider_type, self.pools_file.view, now_ms(), configs_prefix(self.layout)
        )
        if relative is None:
            raise InvalidData(
                "credential", provider_type, "this provider type keeps no credential files"
            )
        key = path_keys_for(provider_type)[0]

        def edit(pools: ProviderPools) -> None:
            node = pools.find(provider_type, uuid)
            if node is None:
                raise NotFound("provider node", f"{provider_type}/{uuid}")
            node.settings[key] = relative
            node.ensure_keys(key)

        await self.pools_file.flush(edit)
        self._publish("pools", f"{provider_type}/{uuid}")
        return relative

    def _cas_write(
        self,
        source_path: str,
        data: bytes,
        expected: str | None,
        ident: str,
        siblings: dict[str, bytes] | None = None,
    ) -> str:
        """Compare-and-set write of a token file. A new token file (none was there) brings
        its ``siblings`` along: each written beside it unless a file of that name exists
        (the IDE that owns them may have changed them since)."""
        path = self._confined(source_path)
        with self.locks.lock_for(path):
            current = read_bytes(path)
            actual = content_version(current) if current is not None else None
            wanted = ABSENT_VERSION if expected is None else expected
            if wanted != ANY_VERSION and wanted != (actual or ABSENT_VERSION):
                raise VersionConflict("credential", ident, expected, actual)
            atomic_write(path, data)
        self._sibling_cache.forget(path.parent)
        if current is None:
            for name, sibling in (siblings or {}).items():
                self._create_sibling(path.parent / name, sibling)
        return content_version(data)

    def _create_sibling(self, path: Path, data: bytes) -> None:
        real = self._confined(str(path))
        with self.locks.lock_for(real):
            if read_bytes(real) is None:
                atomic_write(real, data)
        self._sibling_cache.forget(path.parent)

    @hookimpl
    async def cfgstore_credentials_delete(self, provider_type: str, uuid: str) -> bool:
        source_path = self._source_path(provider_type, uuid)
        if source_path is None:
            return False

        def remove() -> bool:
            path = self._confined(source_path)
            with self.locks.lock_for(path):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    return False
            self._sibling_cache.forget(path.parent)
            return True

        existed = await asyncio.to_thread(remove)
        if existed:
            self._publish("credentials", *self._sharers(source_path))
        return existed

    @hookimpl
    async def cfgstore_credentials_lock(
        self, provider_type: str, uuid: str, ttl_ms: int
    ) -> str | None:
        source_path = self._source_path(provider_type, uuid)
        # The file's lock, whichever node names it; a node naming none has its own.
        identity = (
            str(resolve_path(source_path, self.layout.cwd))
            if source_path is not None
            else f"{provider_type}\0{uuid}"
        )
        name = _lock_name(identity)
        path = self.layout.locks / name
        token = secrets.token_hex(16)

        def take() -> str | None:
            with self.locks.lock_for(path):
                held = _read_lock(path)
                if held is not None and held[1] > now_ms():
                    return None
                atomic_write(path, f"{token} {now_ms() + ttl_ms}".encode())
                return f"{token}@{name}"  # unlocking needs neither the node nor its path

        return await asyncio.to_thread(take)

    @hookimpl
    async def cfgstore_credentials_unlock(self, provider_type: str, uuid: str, token: str) -> bool:
        secret, _, name = token.partition("@")
        if not _LOCK_NAME.fullmatch(name):
            return False
        path = self.layout.locks / name

        def release() -> bool:
            with self.locks.lock_for(path):
                held = _read_lock(path)
                if held is None or held[0] != secret:
                    return False
                path.unlink()
                return True

        return await asyncio.to_thread(release)

    @hookimpl
    async def cfgstore_credentials_list(self) -> list[CredentialRef]:
        candidates = []
        seen: set[Path] = set()
        for provider_type, node in self.pools_file.view:
            carrier = credential_path_of(provider_type, node)
            if carrier is not None:
                path = resolve_path(carrier[1], self.layout.cwd)
                if path not in seen:  # a shared file once, under its first node
                    seen.add(path)
                    candidates.append((provider_type, node.uuid, carrier[1]))

        def scan() -> list[CredentialRef]:
            refs = []
            for provider_type, uuid, source in candidates:
                try:
                    path = self._confined(source)
                except CredentialPathOutside as exc:
                    log.error("credential of %s/%s not used: %s", provider_type, uuid, exc)
                    continue
                raw = read_bytes(path)
                if raw is not None:
                    refs.append(CredentialRef(provider_type, uuid, source, content_version(raw)))
            return refs

        return await asyncio.to_thread(scan)


def _sibling_files(credential: Credential) -> dict[str, bytes]:
    """A Kiro credential's sibling files (name → Node-format bytes); a name that is not a
    plain ``*.json`` file name is refused before anything is written."""
    files: dict[str, bytes] = {}
    for name, document in credential.siblings.items():
        if Path(name).name != name or not name.endswith(".json") or name.startswith("."):
            raise InvalidData("credential", f"siblings.{name}", "not a plain *.json file name")
        files[name] = jsjson.dump_bytes(document)
    return files


def _read_lock(path: Path) -> tuple[str, int] | None:
    """(token, expiry ms) of a refresh lock file, or ``None`` when absent or unreadable."""
    raw = read_bytes(path)
    if raw is None:
        return None
    token, _, expiry = raw.decode("ascii", "replace").partition(" ")
    return (token, int(expiry)) if expiry.isdigit() else None


_LOCK_NAME = re.compile(r"refresh-[0-9a-f]{20}\.lock")


def _lock_name(identity: str) -> str:
    """The lock file of a token file's resolved path (or of a node without one)."""
    digest = hashlib.sha1(identity.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return f"refresh-{digest}.lock"
