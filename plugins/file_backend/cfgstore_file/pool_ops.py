"""Provider-pool operations of the file backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cfgstore import hookimpl
from cfgstore.errors import AlreadyExists, InvalidData, NotFound
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import (
    COUNTER_KEYS,
    HOT_KEYS,
    ProviderNode,
    ProviderPools,
    keep_live_fields,
    node_from_json,
    node_to_json,
)
from cfgstore.model.records import NodeRecord

if TYPE_CHECKING:
    from cfgstore.adapters.backend import BackendContext
    from cfgstore_file.coalescer import CoalescingWriter
    from cfgstore_file.pools_file import PoolsFile


class PoolOps:
    pools_file: PoolsFile
    writer: CoalescingWriter
    context: BackendContext

    def _publish(self, entity: str, *ids: str, remote: bool = False) -> None:
        raise NotImplementedError

    async def _flush_pools(self) -> None:
        """The coalesced writer's flush: one change notification per flush, not per record."""
        if self.pools_file.pending:
            await self.pools_file.flush()
            self._publish("pools")

    @hookimpl
    async def cfgstore_pools_list(self) -> ProviderPools:
        return self.pools_file.view.copy()

    @hookimpl
    async def cfgstore_pools_view(self) -> Mapping[str, Sequence[ProviderNode]]:
        return self.pools_file.live_view()

    @hookimpl
    async def cfgstore_pools_get_node(self, provider_type: str, uuid: str) -> ProviderNode | None:
        node = self.pools_file.view.find(provider_type, uuid)
        return node.copy() if node is not None else None

    @hookimpl
    async def cfgstore_pools_apply_records(self, records: Sequence[NodeRecord]) -> None:
        accepted, transitions = self.pools_file.apply(records)
        if accepted:
            self.writer.note_change()
        for t in transitions:  # this process's records caused them: it alone announces them
            self.context.notify(
                "cfgstore_provider_health_changed",
                provider_type=t.provider_type,
                uuid=t.uuid,
                healthy=t.healthy,
            )

    @hookimpl
    async def cfgstore_pools_add_node(self, provider_type: str, node: ProviderNode) -> ProviderNode:
        def edit(pools: ProviderPools) -> ProviderNode:
            if pools.find(provider_type, node.uuid) is not None:
                raise AlreadyExists("provider node", f"{provider_type}/{node.uuid}")
            pools.types.setdefault(provider_type, []).append(node.copy())
            return node.copy()

        added = await self.pools_file.flush(edit)
        self._publish("pools", f"{provider_type}/{node.uuid}")
        assert added is not None
        return added

    @hookimpl
    async def cfgstore_pools_update_node(
        self, provider_type: str, uuid: str, changes: Mapping[str, JSONValue]
    ) -> ProviderNode:
        source = f"update of {provider_type}/{uuid}"

        def edit(pools: ProviderPools) -> ProviderNode:
            index = _index(pools, provider_type, uuid)
            current = node_to_json(pools.types[provider_type][index])
            for key, value in changes.items():
                if key != "uuid" and key not in COUNTER_KEYS:
                    current[key] = value
            updated = node_from_json(current, source)
            pools.types[provider_type][index] = updated
            return updated.copy()

        _check_changes(changes, source)
        node = await self.pools_file.flush(edit)
        self._publish("pools", f"{provider_type}/{uuid}")
        assert node is not None
        return node

    @hookimpl
    async def cfgstore_pools_delete_node(self, provider_type: str, uuid: str) -> None:
        def edit(pools: ProviderPools) -> None:
            index = _index(pools, provider_type, uuid)
            del pools.types[provider_type][index]
            if not pools.types[provider_type]:
                del pools.types[provider_type]

        await self.pools_file.flush(edit)
        self._publish("pools", f"{provider_type}/{uuid}")

    @hookimpl
    async def cfgstore_pools_rename_node(
        self, provider_type: str, old_uuid: str, new_uuid: str
    ) -> None:
        # The credential is the file the node's path key names; it follows the node.
        def edit(pools: ProviderPools) -> None:
            index = _index(pools, provider_type, old_uuid)
            if pools.find(provider_type, new_uuid) is not None:
                raise AlreadyExists("provider node", f"{provider_type}/{new_uuid}")
            pools.types[provider_type][index].uuid = new_uuid

        if not new_uuid:
            raise InvalidData("rename", "new_uuid", "must be a non-empty string")
        await self.pools_file.flush(edit)
        self._publish("pools", f"{provider_type}/{old_uuid}", f"{provider_type}/{new_uuid}")
        self._publish("credentials", f"{provider_type}/{old_uuid}", f"{provider_type}/{new_uuid}")

    @hookimpl
    async def cfgstore_pools_import(self, pools: ProviderPools, keep_live_state: bool) -> None:
        incoming = pools.copy()

        def edit(current: ProviderPools) -> None:
            if keep_live_state:
                for provider_type, node in incoming:
                    stored = current.find(provider_type, node.uuid)
                    if stored is not None:
                        keep_live_fields(node, stored)
            current.types = incoming.types

        await self.pools_file.flush(edit)
        self._publish("pools")

    @hookimpl
    async def cfgstore_pools_delete_type(self, provider_type: str) -> int:
        def edit(pools: ProviderPools) -> int:
            if provider_type not in pools.types:
                raise NotFound("provider type", provider_type)
            return len(pools.types.pop(provider_type))

        removed = await self.pools_file.flush(edit)
        self._publish("pools", provider_type)
        assert removed is not None
        return removed

    @hookimpl
    async def cfgstore_pools_set_disabled(
        self, provider_type: str, uuid: str, disabled: bool
    ) -> None:
        def edit(pools: ProviderPools) -> None:
            index = _index(pools, provider_type, uuid)
            node = pools.types[provider_type][index]
            node.state.is_disabled = disabled
            node.ensure_keys("isDisabled")

        await self.pools_file.flush(edit)
        self._publish("pools", f"{provider_type}/{uuid}")

    @hookimpl
    async def cfgstore_pools_reset_health(self, provider_type: str) -> int:
        def edit(pools: ProviderPools) -> int:
            if provider_type not in pools.types:
                raise NotFound("provider type", provider_type)
            for node in pools.types[provider_type]:
                state = node.state
                state.is_healthy = True
                state.error_count = 0
                state.last_error_time = None
                state.last_error_message = None
                state.refresh_count = 0
                state.needs_refresh = False
            return len(pools.types[provider_type])

        count = await self.pools_file.flush(edit)
        self._publish("pools", provider_type)
        assert count is not None
        return count

    @hookimpl
    async def cfgstore_pools_delete_unhealthy(self, provider_type: str) -> list[str]:
        def edit(pools: ProviderPools) -> list[str]:
            if provider_type not in pools.types:
                raise NotFound("provider type", provider_type)
            nodes = pools.types[provider_type]
            removed = [n.uuid for n in nodes if not n.state.is_healthy]
            kept = [n for n in nodes if n.state.is_healthy]
            if kept:
                pools.types[provider_type] = kept
            else:
                del pools.types[provider_type]
            return removed

        removed = await self.pools_file.flush(edit)
        self._publish("pools", provider_type)
        assert removed is not None
        return removed


def _index(pools: ProviderPools, provider_type: str, uuid: str) -> int:
    index = pools.index_of(provider_type, uuid)
    if index is None:
        raise NotFound("provider node", f"{provider_type}/{uuid}")
    return index


def _check_changes(changes: Mapping[str, JSONValue], source: str) -> None:
    """Reject badly typed hot fields before touching any file."""
    hot = {k: v for k, v in changes.items() if k in HOT_KEYS and k not in COUNTER_KEYS}
    node_from_json({"uuid": "check", **hot}, source)
