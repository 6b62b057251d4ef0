"""Credential operations of the Redis backend: one hash per (type, uuid) — ``doc`` (the
token document as JSON), ``ver``, ``source`` (the path its node named), ``format``."""

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
    credential_path_of,
    new_credential_path,
    path_keys_for,
    token_format_for,
)
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import ProviderNode, ProviderPools
from cfgstore.model.timefmt import now_ms
from cfgstore.model.versions import ABSENT_VERSION
from cfgstore_redis.base import RedisParts
from cfgstore_redis.translate import translated


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
        """Credentials by ``(provider_type, uuid)`` in one round trip; ``None`` when absent."""
        with translated(self.connection):
            async with self.redis.pipeline(transaction=False) as pipe:
                for provider_type, uuid in pairs:
                    pipe.hmget(
                        self.keys.credential(provider_type, uuid),
                        "doc",
                        "ver",
                        "source",
                        "format",
                        "siblings",
                    )
                rows = await pipe.execute()
        return [
            self._credential(provider_type, uuid, row)
            for (provider_type, uuid), row in zip(pairs, rows, strict=True)
        ]

    def _credential(
        self, provider_type: str, uuid: str, row: list[str | None]
    ) -> Credential | None:
        doc, version, source, token_format, siblings = row
        if doc is None:
            return None
        key = self.keys.credential(provider_type, uuid)
        document = jsjson.loads(doc, f"redis {key}")
        if not isinstance(document, dict):
            raise InvalidData(f"redis {key}", "$", "a credential must be a JSON object")
        return Credential(
            provider_type,
            uuid,
            document,
            source,
            _format(token_format, provider_type),
            version,
            jsjson.loads(siblings, f"redis {key}") if siblings else {},
        )

    @hookimpl
    async def cfgstore_credentials_put(
        self, credential: Credential, expected_version: str | None
    ) -> str:
        provider_type, uuid = credential.provider_type, credential.uuid
        if not path_keys_for(provider_type):
            raise InvalidData(
                "credential", provider_type, "this provider type keeps no credential files"
            )
        if not isinstance(credential.document, dict):
            raise InvalidData("credential", f"{provider_type}/{uuid}", "must be a JSON object")
        source_path = await self._file_identity(provider_type, uuid)
        token_format = credential.token_format
        if token_format is TokenFormat.UNKNOWN:
            token_format = token_format_for(provider_type)
        result = await self._run(
            "CAS_CREDENTIAL",
            [
                self.keys.credential(provider_type, uuid),
                self.keys.node(provider_type, uuid),
                self.keys.revision,
            ],
            [
                self.keys.channel,
                self._head("credentials", f"{provider_type}/{uuid}"),
                ABSENT_VERSION if expected_version is None else expected_version,
                json.dumps(credential.document, ensure_ascii=False),
                source_path,
                token_format.value,
                json.dumps(credential.siblings, ensure_ascii=False) if credential.siblings else "",
            ],
        )
        if result[0] == "notfound":
            raise NotFound("provider node", f"{provider_type}/{uuid}")
        if result[0] == "conflict":
            actual = None if result[1] == ABSENT_VERSION else str(result[1])
            raise VersionConflict("credential", f"{provider_type}/{uuid}", expected_version, actual)
        self._changed("credentials", f"{provider_type}/{uuid}")
        return str(result[1])

    @hookimpl
    async def cfgstore_credentials_delete(self, provider_type: str, uuid: str) -> bool:
        removed = await self._run(
            "DELETE_KEYS",
            [self.keys.revision, self.keys.credential(provider_type, uuid)],
            [self.keys.channel, self._head("credentials", f"{provider_type}/{uuid}")],
        )
        if removed:
            self._changed("credentials", f"{provider_type}/{uuid}")
        return bool(removed)

    @hookimpl
    async def cfgstore_credentials_list(self) -> list[CredentialRef]:
        pools = await self.cfgstore_pools_list()
        pairs = [(t, n.uuid, n) for t, n in pools]
        with translated(self.connection):
            async with self.redis.pipeline(transaction=False) as pipe:
                for provider_type, uuid, _ in pairs:
                    pipe.hmget(self.keys.credential(provider_type, uuid), "ver", "source")
                rows = await pipe.execute()
        refs = []
        for (provider_type, uuid, node), (version, source) in zip(pairs, rows, strict=True):
            if version is not None:
                if source is None:
                    carrier = credential_path_of(provider_type, node)
                    source = carrier[1] if carrier else None
                refs.append(CredentialRef(provider_type, uuid, source, version))
        return refs

    @hookimpl
    async def cfgstore_credentials_lock(
        self, provider_type: str, uuid: str, ttl_ms: int
    ) -> str | None:
        token = secrets.token_hex(16)
        with translated(self.connection):
            taken = await self.redis.set(
                self.keys.refresh_lock(provider_type, uuid), token, nx=True, px=max(1, ttl_ms)
            )
        return token if taken else None

    @hookimpl
    async def cfgstore_credentials_unlock(self, provider_type: str, uuid: str, token: str) -> bool:
        released = await self._run(
            "RELEASE_LOCK", [self.keys.refresh_lock(provider_type, uuid)], [token]
        )
        return bool(released)


def _format(stored: str | None, provider_type: str) -> TokenFormat:
    try:
        return TokenFormat(stored) if stored else token_format_for(provider_type)
    except ValueError:
        return token_format_for(provider_type)
