"""Credential operations of the Redis backend: one hash per token file (``{p}:cred:<file
key>``: ``doc`` (the token document as JSON), ``ver``, ``source`` (a path string naming
the file), ``format``, ``folder`` (Kiro: where its sibling files are, stored once per
folder, :mod:`cfgstore_redis.sibling_folders`), ``users`` (the nodes naming it)), reached
from a node through its ``@cred`` field. See ``redis-keys.md``."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping

from cfgstore import hookimpl
from cfgstore.errors import InvalidData, NotFound, VersionConflict
from cfgstore.model import jsjson
from cfgstore.model.credentials import (
    Credential,
    CredentialRef,
    TokenFormat,
    credential_file_key,
    credential_path_of,
    new_credential_path,
    path_keys_for,
    same_file_key,
    token_format_for,
)
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import ProviderNode, ProviderPools
from cfgstore.model.timefmt import now_ms
from cfgstore.model.versions import ABSENT_VERSION
from cfgstore_redis.base import READ_CHUNK, RedisParts
from cfgstore_redis.codec import CRED
from cfgstore_redis.keys import SEPARATOR
from cfgstore_redis.sibling_folders import (
    Docs,
    Folder,
    check_names,
    folder_reference,
    legacy_siblings,
    split_reference,
)
from cfgstore_redis.translate import translated

ATTEMPTS = 8
"""Rounds of a credential write whose node is re-pointed, or whose file gains or loses
sharing nodes, while it is under way (each round re-reads what changed)."""


def _member(provider_type: str, uuid: str) -> str:
    """A node as the ``users`` field names it (types contain no ``:``)."""
    return f"{provider_type}:{uuid}"


def _ids(users: str) -> list[str]:
    """Change-message ids (``type/uuid``) of a ``users`` field."""
    return ["/".join(m.split(":", 1)) for m in users.split(SEPARATOR) if m]


class CredentialOps(RedisParts):
    async def cfgstore_pools_list(self) -> ProviderPools:
        raise NotImplementedError

    async def cfgstore_pools_get_node(self, provider_type: str, uuid: str) -> ProviderNode | None:
        raise NotImplementedError

    async def cfgstore_pools_update_node(
        self, provider_type: str, uuid: str, changes: Mapping[str, JSONValue]
    ) -> ProviderNode:
        raise NotImplementedError

    async def _file_identity(self, provider_type: str, uuid: str) -> str:
        """The path string the node names for its token file; a node that names none is
        given one first, in the Node service's upload convention, so that every stored
        credential has a file an export writes it to."""
        node = await self.cfgstore_pools_get_node(provider_type, uuid)
        if node is None:
            raise NotFound("provider node", f"{provider_type}/{uuid}")
        carrier = credential_path_of(provider_type, node)
        if carrier is not None:
            return carrier[1]
        pools = await self.cfgstore_pools_list()
        path = new_credential_path(provider_type, pools, now_ms())
        if path is None:
            raise InvalidData(
                "credential", provider_type, "this provider type keeps no credential files"
            )
        await self.cfgstore_pools_update_node(
            provider_type, uuid, {path_keys_for(provider_type)[0]: path}
        )
        return path

    @hookimpl
    async def cfgstore_credentials_get(self, provider_type: str, uuid: str) -> Credential | None:
        return (await self._read_credentials([(provider_type, uuid)]))[0]

    async def _read_credentials(self, pairs: list[tuple[str, str]]) -> list[Credential | None]:
        """Credentials by ``(provider_type, uuid)``; ``None`` when absent. Read
        :data:`~cfgstore_redis.base.READ_CHUNK` nodes at a time, so that a full read of a
        large pool never holds the event loop for long."""
        found: list[Credential | None] = []
        for start in range(0, len(pairs), READ_CHUNK):
            found += await self._read_credential_chunk(pairs[start : start + READ_CHUNK])
        return found

    async def _read_credential_chunk(self, pairs: list[tuple[str, str]]) -> list[Credential | None]:
        """The nodes' file keys, then the files' credentials (two round trips), then the
        versions of the sibling folders they reference (one more, and one to read those
        this process has not cached at that version)."""
        with translated(self.connection):
            async with self.redis.pipeline(transaction=False) as pipe:
                for provider_type, uuid in pairs:
                    pipe.hget(self.keys.node(provider_type, uuid), CRED)
                file_keys = await pipe.execute()
            async with self.redis.pipeline(transaction=False) as pipe:
                for file_key in file_keys:
                    if file_key:
                        pipe.hmget(
                            self.keys.credential(file_key),
                            "doc",
                            "ver",
                            "source",
                            "format",
                            "siblings",
                            "folder",
                        )
                rows = await pipe.execute()
        folders = await self._folders(
            {split_reference(row[5])[0] for row in rows if row[0] is not None and row[5]}
        )
        found = iter(rows)
        return [
            self._credential(provider_type, uuid, file_key, next(found), folders)
            if file_key
            else None
            for (provider_type, uuid), file_key in zip(pairs, file_keys, strict=True)
        ]

    async def _folders(self, names: set[str]) -> dict[str, Folder]:
        """The sibling folders ``names`` at their current version: checked by ``@ver``
        (one round trip), read again only when this process holds another version."""
        if not names:
            return {}
        ordered = sorted(names)
        cache = self.sibling_folders
        with translated(self.connection):
            async with self.redis.pipeline(transaction=False) as pipe:
                for name in ordered:
                    pipe.hget(self.keys.folder(name), "@ver")
                versions = await pipe.execute()
            stale = [
                name
                for name, version in zip(ordered, versions, strict=True)
                if name not in cache or cache[name].version != (version or "0")
            ]
            if stale:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for name in stale:
                        pipe.hgetall(self.keys.folder(name))
                    for name, fields in zip(stale, await pipe.execute(), strict=True):
                        cache[name] = Folder.from_hash(fields, self.keys.folder(name))
        return {name: cache[name] for name in ordered}

    def _credential(
        self,
        provider_type: str,
        uuid: str,
        file_key: str,
        row: list[str | None],
        folders: dict[str, Folder],
    ) -> Credential | None:
        doc, version, source, token_format, legacy, reference = row
        if doc is None:
            return None
        key = self.keys.credential(file_key)
        document = jsjson.loads(doc, f"redis {key}")
        if not isinstance(document, dict):
            raise InvalidData(f"redis {key}", "$", "a credential must be a JSON object")
        siblings: Docs = {}
        if reference:
            folder, excluded = split_reference(reference)
            siblings = folders[folder].siblings(excluded)
        elif legacy:
            siblings = legacy_siblings(legacy, key)
        return Credential(
            provider_type,
            uuid,
            document,
            source,
            _format(token_format, provider_type),
            version,
            siblings,
        )

    @hookimpl
    async def cfgstore_credentials_put(
        self, credential: Credential, expected_version: str | None
    ) -> str:
        provider_type, uuid = credential.provider_type, credential.uuid
        ident = f"{provider_type}/{uuid}"
        if not path_keys_for(provider_type):
            raise InvalidData(
                "credential", provider_type, "this provider type keeps no credential files"
            )
        if not isinstance(credential.document, dict):
            raise InvalidData("credential", ident, "must be a JSON object")
        token_format = credential.token_format
        if token_format is TokenFormat.UNKNOWN:
            token_format = token_format_for(provider_type)
        document = json.dumps(credential.document, ensure_ascii=False)
        siblings = credential.siblings
        expected = ABSENT_VERSION if expected_version is None else expected_version
        source_path = await self._file_identity(provider_type, uuid)
        users = _member(provider_type, uuid)  # the common case: the file is this node's alone
        stale: str | None = None  # a sibling folder found changed by another writer
        for _ in range(ATTEMPTS):
            file_key = same_file_key(source_path)
            keys = [
                self.keys.node(provider_type, uuid),
                self.keys.credential(file_key),
                self.keys.revision,
            ]
            args: list[str | int] = [
                self.keys.channel,
                self._head("credentials", *_ids(users)),
                expected,
                document,
                source_path,
                token_format.value,
                "",
                file_key,
                users,
            ]
            folder: Folder | None = None
            reference = ""
            sets: dict[str, str] = {}
            removed: list[str] = []
            if siblings:
                # One folder's files, stored once: send only what differs from them.
                reference = folder_reference(file_key)
                name, excluded = split_reference(reference)
                # The version held here is checked by the script ('folder': read again).
                folder = self.sibling_folders.get(name) if stale is None else None
                if folder is None:
                    folder = (await self._folders({name}))[name]
                sets, removed = folder.diff(siblings, excluded)
                check_names(sets, ident)  # the names stored already were checked
                keys.append(self.keys.folder(name))
                args += [reference, folder.version, self._head("credentials"), len(sets)]
                for pair in sets.items():
                    args += pair
                args += removed
            else:
                # The stored reference is kept: the script still updates the folder's copy
                # of this file (the other tokens' sibling) and then names no ids.
                args += ["", "", self._head("credentials"), 0]
            result = await self._run("CAS_CREDENTIAL", keys, args)
            match result[0]:
                case "ok":
                    if folder is not None:
                        folder.apply(sets, removed, siblings, str(result[2]))
                        if int(result[4]):
                            folder.set_own(excluded, document, jsjson.loads(document, ident))
                    if int(result[3]) if len(result) > 3 else 0:
                        self._changed("credentials")  # the folder's other credentials too
                    else:
                        self._changed("credentials", *_ids(users))
                    return str(result[1])
                case "folder":
                    stale = name  # another writer changed the folder: read it again
                case "notfound":
                    raise NotFound("provider node", ident)
                case "conflict":
                    actual = None if result[1] == ABSENT_VERSION else str(result[1])
                    raise VersionConflict("credential", ident, expected_version, actual)
                case "members":
                    users = str(result[1])
                case _:  # "moved": the node names another file now
                    source_path = await self._file_identity(provider_type, uuid)
        raise VersionConflict("credential", ident, expected_version, None)

    @hookimpl
    async def cfgstore_credentials_delete(self, provider_type: str, uuid: str) -> bool:
        node = await self.cfgstore_pools_get_node(provider_type, uuid)
        file_key = credential_file_key(provider_type, node) if node is not None else None
        users = _member(provider_type, uuid)
        for _ in range(ATTEMPTS):
            if file_key is None:
                return False
            result = await self._run(
                "DELETE_CREDENTIAL",
                [
                    self.keys.node(provider_type, uuid),
                    self.keys.credential(file_key),
                    self.keys.revision,
                ],
                [
                    self.keys.channel,
                    self._head("credentials", *_ids(users)),
                    file_key,
                    users,
                    self._head("credentials"),
                ],
            )
            match result[0]:
                case "ok":
                    if int(result[2]):  # the file left its folder: the others' sibling
                        self._changed("credentials")
                    elif int(result[1]):
                        self._changed("credentials", *_ids(users))
                    return bool(int(result[1]))
                case "members":
                    users = str(result[1])
                case _:  # "moved"
                    file_key = str(result[1]) or None
        raise VersionConflict("credential", f"{provider_type}/{uuid}", None, None)

    @hookimpl
    async def cfgstore_credentials_list(self) -> list[CredentialRef]:
        pools = await self.cfgstore_pools_list()
        first: dict[str, tuple[str, str]] = {}  # file key → the first node naming it
        for provider_type, node in pools:
            file_key = credential_file_key(provider_type, node)
            if file_key is not None:
                first.setdefault(file_key, (provider_type, node.uuid))
        with translated(self.connection):
            async with self.redis.pipeline(transaction=False) as pipe:
                for file_key in first:
                    pipe.hmget(self.keys.credential(file_key), "ver", "source", "doc")
                rows = await pipe.execute()
        return [
            CredentialRef(provider_type, uuid, source, version)
            for (provider_type, uuid), (version, source, doc) in zip(
                first.values(), rows, strict=True
            )
            if doc is not None and version is not None
        ]

    @hookimpl
    async def cfgstore_credentials_lock(
        self, provider_type: str, uuid: str, ttl_ms: int
    ) -> str | None:
        token = secrets.token_hex(16)
        lock_key = await self._run(
            "LOCK_CREDENTIAL",
            [self.keys.node(provider_type, uuid)],
            [self.keys.lock_base, _member(provider_type, uuid), token, max(1, ttl_ms)],
        )
        # The token carries the lock's key: unlocking needs neither the node nor its path.
        return f"{token}@{lock_key}" if lock_key else None

    @hookimpl
    async def cfgstore_credentials_unlock(self, provider_type: str, uuid: str, token: str) -> bool:
        secret, _, lock_key = token.partition("@")
        if not lock_key.startswith(self.keys.lock_base):
            return False
        released = await self._run("RELEASE_LOCK", [lock_key], [secret])
        return bool(released)


def _format(stored: str | None, provider_type: str) -> TokenFormat:
    try:
        return TokenFormat(stored) if stored else token_format_for(provider_type)
    except ValueError:
        return token_format_for(provider_type)
