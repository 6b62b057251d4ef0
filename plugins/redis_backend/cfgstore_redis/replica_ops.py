"""The optional replica operations (``cfgstore.hookspecs.replica``): what the memory
fallback above this backend needs to mirror it, journal through outages and replay."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cfgstore import hookimpl
from cfgstore.errors import InvalidData, NamespaceMismatch, StorageServerError
from cfgstore.model.pools import ProviderNode
from cfgstore.model.records import NodeRecord
from cfgstore.model.replica import AppliedBatch, HealthTransition, InstanceInfo, ReplicaHead
from cfgstore.model.snapshot import StoreSnapshot
from cfgstore.model.timefmt import now_ms
from cfgstore_redis.batch import encode, pipeline_predecessors, touched_nodes
from cfgstore_redis.document_ops import DocumentOps
from cfgstore_redis.schema_ops import SchemaOps
from cfgstore_redis.translate import translated


class ReplicaOps(SchemaOps, DocumentOps):
    """Built on the other operation mixins: a snapshot reads what they serve."""

    @hookimpl
    async def cfgstore_replica_head(self) -> ReplicaHead:
        await self._check_schema()
        with translated(self.connection):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hget(self.keys.meta, "namespace")
                pipe.get(self.keys.revision)
                pipe.exists(self.keys.types, self.keys.config)
                namespace, revision, existing = await pipe.execute()
        return ReplicaHead(namespace or None, int(revision or 0), bool(existing))

    @hookimpl
    async def cfgstore_replica_snapshot(self) -> StoreSnapshot:
        head = await self.cfgstore_replica_head()
        pools = await self.cfgstore_pools_list()
        pairs = [(t, n.uuid) for t, n in pools]
        credentials = [c for c in await self._read_credentials(pairs) if c is not None]
        return StoreSnapshot(
            namespace_id=head.namespace_id or "",
            prefix=self.settings.redis_prefix,
            revision=head.revision,
            saved_at_ms=now_ms(),
            pools=pools,
            config=await self.cfgstore_config_get(),
            system_prompt=await self.cfgstore_system_prompt_get(),
            custom_models=await self.cfgstore_custom_models_list(),
            plugins=await self.cfgstore_plugin_config_get(),
            password=await self.cfgstore_password_get(),
            usage_cache=await self.cfgstore_usage_cache_get(),
            credentials=credentials,
        )

    @hookimpl
    async def cfgstore_replica_read_nodes(
        self, pairs: Sequence[tuple[str, str]]
    ) -> list[ProviderNode | None]:
        return await self._read_nodes(list(pairs))

    @hookimpl
    async def cfgstore_replica_apply(
        self, records: Sequence[NodeRecord], op_id: str, namespace_id: str
    ) -> AppliedBatch:
        ids, script_keys, args = self._encode_batch(records, op_id, namespace_id)
        result = await self._run("APPLY_RECORDS", script_keys, args)
        return self._applied(result, ids, namespace_id, op_id)

    @hookimpl
    async def cfgstore_replica_apply_many(
        self, batches: Sequence[tuple[Sequence[NodeRecord], str]], namespace_id: str
    ) -> list[AppliedBatch]:
        afters = pipeline_predecessors([op_id for _, op_id in batches])
        encoded = [
            self._encode_batch(records, op_id, namespace_id, after)
            for (records, op_id), after in zip(batches, afters, strict=True)
        ]
        results = await self._run_many("APPLY_RECORDS", [(k, a) for _, k, a in encoded])
        return [
            self._applied(result, ids, namespace_id, op_id)
            for (ids, _, _), result, (_, op_id) in zip(encoded, results, batches, strict=True)
        ]

    @hookimpl
    async def cfgstore_replica_forget_epochs(self, instance_id: str, epoch: int) -> int:
        result = await self._run("FORGET_EPOCHS", [self.keys.batches], [instance_id, epoch])
        return int(result)

    def _encode_batch(
        self, records: Sequence[NodeRecord], op_id: str, namespace_id: str, after: int = 0
    ) -> tuple[list[str], list[str], list[Any]]:
        ids = touched_nodes(records)
        script_keys, args = encode(
            records, self.keys, op_id, self._head("pools", *ids), namespace_id, after
        )
        return ids, script_keys, args

    def _applied(self, result: Any, ids: list[str], namespace_id: str, op_id: str) -> AppliedBatch:
        """The outcome of one ``APPLY_RECORDS`` run (see :mod:`cfgstore_redis.lua`)."""
        if result[0] == "namespace":
            raise NamespaceMismatch(namespace_id, result[1] or None)
        if result[0] == "dup":
            return AppliedBatch(None)
        if result[0] == "behind":
            raise StorageServerError(
                f"record batch {op_id} not applied: the batch before it in the same pipeline "
                f"was refused (its run's mark is at {result[1]}); both are sent again"
            )
        self._changed("pools", *ids)
        prefix = self.keys.node("", "")  # "{p}:node:" + type + ":" + uuid
        transitions = []
        for key, healthy in zip(result[2::2], result[3::2], strict=True):
            provider_type, uuid = str(key)[len(prefix) - 1 :].split(":", 1)
            transitions.append(HealthTransition(provider_type, uuid, healthy == "true"))
        return AppliedBatch(int(result[1]), tuple(transitions))

    @hookimpl
    async def cfgstore_replica_heartbeat(self, info: InstanceInfo, ttl_ms: int) -> None:
        now = now_ms()
        with translated(self.connection):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(
                    self.keys.instance(info.instance_id), json.dumps(info.to_json()), px=ttl_ms
                )
                pipe.zadd(self.keys.instances, {info.instance_id: now + ttl_ms})
                pipe.zremrangebyscore(self.keys.instances, "-inf", now)
                await pipe.execute()

    @hookimpl
    async def cfgstore_replica_instances(self) -> list[InstanceInfo]:
        with translated(self.connection):
            ids = await self.redis.zrangebyscore(self.keys.instances, now_ms(), "+inf")
            values = await self.redis.mget([self.keys.instance(i) for i in ids]) if ids else []
        found: list[InstanceInfo] = []
        for instance_id, value in zip(ids, values, strict=True):
            if value is None:
                continue  # expired between the two reads
            try:
                found.append(
                    InstanceInfo.from_json(json.loads(value), f"redis instance {instance_id}")
                )
            except (ValueError, InvalidData):
                continue  # a heartbeat written by something else: not an instance we know
        return sorted(found, key=lambda i: i.instance_id)
