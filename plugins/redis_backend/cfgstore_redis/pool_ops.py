"""Provider-pool operations of the Redis backend."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from cfgstore import hookimpl
from cfgstore.errors import AlreadyExists, InvalidData, NotFound, VersionConflict
from cfgstore.model.credentials import credential_path_of
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import (
    COUNTER_KEYS,
    HOT_KEYS,
    ProviderNode,
    ProviderPools,
    node_from_json,
    node_to_json,
)
from cfgstore.model.records import NodeRecord
from cfgstore_redis.base import READ_CHUNK, RedisParts
from cfgstore_redis.codec import (
    CRED,
    DOC,
    DOC_VERSION,
    LAYOUT,
    READ_FIELDS,
    encode_scalar,
    node_from_fields,
    node_to_fields,
)
from cfgstore_redis.keys import check_type_name, check_uuid
from cfgstore_redis.translate import translated

ASSEMBLE_CHUNK = 5_000
"""Nodes placed into their types between two yields of a full read."""

FORWARD_TTL_MS = 24 * 3600 * 1000
"""How long records queued under a renamed uuid (in any instance) still find the node."""

UPDATE_ATTEMPTS = 50


class PoolOps(RedisParts):
    # -- reads -------------------------------------------------------------------------

    async def _read_nodes(self, pairs: list[tuple[str, str]]) -> list[ProviderNode | None]:
        """The nodes of ``pairs`` (``None``: absent), one pipelined round trip per
        :data:`~cfgstore_redis.base.READ_CHUNK` nodes, each chunk decoded before the next is
        sent: a full read of 50,000 nodes lets the event loop run every few milliseconds."""
        nodes: list[ProviderNode | None] = []
        for start in range(0, len(pairs), READ_CHUNK):
            nodes += await self._read_node_chunk(pairs[start : start + READ_CHUNK])
        return nodes

    async def _read_node_chunk(self, pairs: list[tuple[str, str]]) -> list[ProviderNode | None]:
        with translated(self.connection):
            async with self.redis.pipeline(transaction=False) as pipe:
                for provider_type, uuid in pairs:
                    pipe.hmget(self.keys.node(provider_type, uuid), *READ_FIELDS)
                rows = await pipe.execute()
        nodes: list[ProviderNode | None] = []
        for (provider_type, uuid), row in zip(pairs, rows, strict=True):
            fields = dict(zip(READ_FIELDS, row, strict=True))
            if fields[LAYOUT] is None:
                nodes.append(None)
                continue
            source = f"redis {self.keys.node(provider_type, uuid)}"
            nodes.append(node_from_fields(uuid, fields, source))
        return nodes

    @hookimpl
    async def cfgstore_pools_list(self) -> ProviderPools:
        await self.writer.durable()  # read your own writes
        with translated(self.connection):
            types = await self.redis.lrange(self.keys.types, 0, -1)
            # One round trip per type, not one pipeline for all: parsing 50,000 uuids in
            # one reply held the event loop ~40 ms (each type's list is still read whole).
            uuid_lists = [await self.redis.lrange(self.keys.nodes(t), 0, -1) for t in types]
        pairs = [(t, u) for t, uuids in zip(types, uuid_lists, strict=True) for u in uuids]
        nodes = await self._read_nodes(pairs)
        pools = ProviderPools({t: [] for t in types})
        for start in range(0, len(pairs), ASSEMBLE_CHUNK):  # 50,000 at once: ~10 ms
            if start:
                await asyncio.sleep(0)
            end = start + ASSEMBLE_CHUNK
            for (provider_type, _), node in zip(pairs[start:end], nodes[start:end], strict=True):
                if node is not None:  # deleted between the two reads
                    pools.types[provider_type].append(node)
        return pools

    @hookimpl
    async def cfgstore_pools_view(self) -> Mapping[str, Sequence[ProviderNode]]:
        return (await self.cfgstore_pools_list()).types  # no live state: the memory layer has

    @hookimpl
    async def cfgstore_pools_get_node(self, provider_type: str, uuid: str) -> ProviderNode | None:
        await self.writer.durable()
        return (await self._read_nodes([(provider_type, uuid)]))[0]

    # -- hot path ----------------------------------------------------------------------

    @hookimpl
    async def cfgstore_pools_apply_records(self, records: Sequence[NodeRecord]) -> None:
        self.writer.submit(records)

    # -- admin edits -------------------------------------------------------------------

    @hookimpl
    async def cfgstore_pools_add_node(self, provider_type: str, node: ProviderNode) -> ProviderNode:
        check_type_name(provider_type)
        check_uuid(node.uuid)
        try:
            fields = node_to_fields(provider_type, node)
        except ValueError as exc:
            raise InvalidData("provider node", node.uuid, str(exc)) from None
        await self.writer.durable()
        pairs = [x for item in fields.items() for x in item]
        result = await self._run(
            "ADD_NODE",
            [
                self.keys.types,
                self.keys.nodes(provider_type),
                self.keys.node(provider_type, node.uuid),
                self.keys.revision,
            ],
            [
                self.keys.channel,
                self._head("pools", f"{provider_type}/{node.uuid}"),
                provider_type,
                node.uuid,
                self.keys.credential_base,
                *pairs,
            ],
        )
        if result[0] == "exists":
            raise AlreadyExists("provider node", f"{provider_type}/{node.uuid}")
        self._changed("pools", f"{provider_type}/{node.uuid}")
        return node.copy()

    @hookimpl
    async def cfgstore_pools_update_node(
        self, provider_type: str, uuid: str, changes: Mapping[str, JSONValue]
    ) -> ProviderNode:
        source = f"update of {provider_type}/{uuid}"
        hot = {k: v for k, v in changes.items() if k in HOT_KEYS and k not in COUNTER_KEYS}
        node_from_json({"uuid": "check", **hot}, source)  # bad types: nothing written
        await self.writer.durable()
        key = self.keys.node(provider_type, uuid)
        for _ in range(UPDATE_ATTEMPTS):
            with translated(self.connection):
                row = await self.redis.hmget(key, *READ_FIELDS)
            fields = dict(zip(READ_FIELDS, row, strict=True))
            if fields[LAYOUT] is None:
                raise NotFound("provider node", f"{provider_type}/{uuid}")
            current = node_to_json(node_from_fields(uuid, fields, source))
            for name, value in changes.items():
                if name != "uuid" and name not in COUNTER_KEYS:
                    current[name] = value
            updated = node_from_json(current, source)
            new_fields = node_to_fields(provider_type, updated)
            writes = {DOC: new_fields[DOC], LAYOUT: new_fields[LAYOUT], CRED: new_fields[CRED]}
            carrier = credential_path_of(provider_type, updated)
            writes.update({name: encode_scalar(value) for name, value in hot.items()})
            pairs = [x for item in writes.items() for x in item]
            result = await self._run(
                "UPDATE_NODE",
                [key, self.keys.revision],
                [
                    self.keys.channel,
                    self._head("pools", f"{provider_type}/{uuid}"),
                    row[READ_FIELDS.index(DOC_VERSION)] or "1",
                    self.keys.credential_base,
                    f"{provider_type}:{uuid}",
                    carrier[1] if carrier else "",
                    *pairs,
                ],
            )
            if result[0] == "notfound":
                raise NotFound("provider node", f"{provider_type}/{uuid}")
            if result[0] == "ok":
                self._changed("pools", f"{provider_type}/{uuid}")
                return updated
        raise VersionConflict("provider node", f"{provider_type}/{uuid}", None, None)

    @hookimpl
    async def cfgstore_pools_delete_node(self, provider_type: str, uuid: str) -> None:
        await self.writer.durable()
        result = await self._run(
            "DELETE_NODE",
            [
                self.keys.types,
                self.keys.nodes(provider_type),
                self.keys.node(provider_type, uuid),
                self.keys.revision,
            ],
            [
                self.keys.channel,
                self._head("pools", f"{provider_type}/{uuid}"),
                provider_type,
                uuid,
                self.keys.credential_base,
            ],
        )
        if result[0] == "notfound":
            raise NotFound("provider node", f"{provider_type}/{uuid}")
        self._changed("pools", f"{provider_type}/{uuid}")
        self._changed("credentials", f"{provider_type}/{uuid}")

    @hookimpl
    async def cfgstore_pools_rename_node(
        self, provider_type: str, old_uuid: str, new_uuid: str
    ) -> None:
        if not new_uuid:
            raise InvalidData("rename", "new_uuid", "must be a non-empty string")
        check_uuid(new_uuid)
        await self.writer.durable()
        k = self.keys
        result = await self._run(
            "RENAME_NODE",
            [
                k.nodes(provider_type),
                k.node(provider_type, old_uuid),
                k.node(provider_type, new_uuid),
                k.forward(provider_type, old_uuid),
                k.revision,
            ],
            [
                k.channel,
                self._head("pools", f"{provider_type}/{old_uuid}", f"{provider_type}/{new_uuid}"),
                old_uuid,
                new_uuid,
                FORWARD_TTL_MS,
                provider_type,
                k.credential_base,
            ],
        )
        if result[0] == "notfound":
            raise NotFound("provider node", f"{provider_type}/{old_uuid}")
        if result[0] == "exists":
            raise AlreadyExists("provider node", f"{provider_type}/{new_uuid}")
        self._changed("pools", f"{provider_type}/{old_uuid}", f"{provider_type}/{new_uuid}")
        self._changed("credentials", f"{provider_type}/{old_uuid}", f"{provider_type}/{new_uuid}")

    @hookimpl
    async def cfgstore_pools_import(self, pools: ProviderPools, keep_live_state: bool) -> None:
        args: list[Any] = [len(pools.types)]
        for provider_type, nodes in pools.types.items():
            check_type_name(provider_type)
            args += [provider_type, len(nodes)]
            for node in nodes:
                check_uuid(node.uuid)
                try:
                    fields = node_to_fields(provider_type, node)
                except ValueError as exc:
                    raise InvalidData("provider node", node.uuid, str(exc)) from None
                args += [node.uuid, len(fields), *(x for item in fields.items() for x in item)]
        await self.writer.durable()
        await self._run(
            "IMPORT_POOLS",
            [self.keys.types, self.keys.revision],
            [
                self.keys.channel,
                self._head("pools"),
                "1" if keep_live_state else "0",
                self.keys.nodes(""),
                self.keys.node("", "")[:-1],
                self.keys.credential_base,
                *args,
            ],
        )
        self._changed("pools")
        self._changed("credentials")

    @hookimpl
    async def cfgstore_pools_delete_type(self, provider_type: str) -> int:
        await self.writer.durable()
        result = await self._run(
            "DELETE_TYPE",
            [self.keys.types, self.keys.nodes(provider_type), self.keys.revision],
            [
                self.keys.channel,
                self._head("pools", provider_type),
                provider_type,
                self.keys.node(provider_type, ""),
                self.keys.credential_base,
            ],
        )
        if result[0] == "notfound":
            raise NotFound("provider type", provider_type)
        self._changed("pools", provider_type)
        return int(result[2])

    @hookimpl
    async def cfgstore_pools_set_disabled(
        self, provider_type: str, uuid: str, disabled: bool
    ) -> None:
        await self.writer.durable()
        result = await self._run(
            "SET_DISABLED",
            [self.keys.node(provider_type, uuid), self.keys.revision],
            [
                self.keys.channel,
                self._head("pools", f"{provider_type}/{uuid}"),
                "true" if disabled else "false",
            ],
        )
        if result[0] == "notfound":
            raise NotFound("provider node", f"{provider_type}/{uuid}")
        self._changed("pools", f"{provider_type}/{uuid}")

    async def _type_health(self, provider_type: str, mode: str) -> list[str]:
        await self.writer.durable()
        result = await self._run(
            "TYPE_HEALTH",
            [self.keys.types, self.keys.nodes(provider_type), self.keys.revision],
            [
                self.keys.channel,
                self._head("pools", provider_type),
                provider_type,
                self.keys.node(provider_type, ""),
                mode,
                self.keys.credential_base,
            ],
        )
        if result[0] == "notfound":
            raise NotFound("provider type", provider_type)
        self._changed("pools", provider_type)
        return [str(uuid) for uuid in result[2:]]

    @hookimpl
    async def cfgstore_pools_reset_health(self, provider_type: str) -> int:
        return len(await self._type_health(provider_type, "reset"))

    @hookimpl
    async def cfgstore_pools_delete_unhealthy(self, provider_type: str) -> list[str]:
        return await self._type_health(provider_type, "drop")
