"""Operations the memory fallback passes to the shared storage, refused while degraded.

Admin edits (pools, config, prompt, models, plugins, password, usage cache), sessions, the
login lockout counter and meta need the storage's answer: while the store runs degraded
they raise :class:`~cfgstore.errors.StorageDegraded` at once, without touching the storage, and an
outage met on the way switches the store to degraded and raises the same error. Pool
edits first make this instance's pending records durable (so they land before the edit,
as without the layer) and then re-read the pools so the view shows the edit.

The exception is a logout: refusing it would leave the session valid everywhere once the
storage is back, so while degraded it is journaled (the token's digest only) and replayed
on recovery (:mod:`cfgstore_memory.replay`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from cfgstore import hookimpl
from cfgstore.adapters.backend import Operations
from cfgstore.errors import PluginError, StorageDegraded, StorageUnavailable
from cfgstore.model.config import config_from_json
from cfgstore.model.custom_models import CustomModel
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.login_guard import LoginAttempt, LoginGuard
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.pools import ProviderNode, ProviderPools
from cfgstore.model.potluck import Admission, KeyDocument
from cfgstore.model.sessions import UiSession, token_digest
from cfgstore.model.timefmt import iso_ms
from cfgstore.model.usage_cache import UsageCache
from cfgstore_memory.admin_tail import ConfigEdit, PoolEdit
from cfgstore_memory.pools_mirror import PoolsMirror
from cfgstore_memory.replay import LOGOUT, logout_data
from cfgstore_memory.replicator import Replicator

log = logging.getLogger("cfgstore.memory")


class GuardedOps:
    _below: Operations
    _replicator: Replicator
    mirror: PoolsMirror

    def _refusal(self, what: str) -> StorageDegraded:
        r = self._replicator
        since = f" since {iso_ms(r.degraded_since_ms)}" if r.degraded_since_ms else ""
        return StorageDegraded(
            f"storage degraded{since} ({r.reason}): {what} refused until the storage is back; "
            "requests are still served and their records journaled"
        )

    def _credentials_moved(self) -> None:
        """A pool edit may delete or rename nodes, and their credentials with them."""
        raise NotImplementedError

    def _written(self, entity: str, value: Any) -> None:
        """``value`` of ``entity`` was just confirmed by the storage: the last good copy."""
        raise NotImplementedError

    async def _edit(self, operation: str, what: str, **kwargs: Any) -> Any:
        if self._replicator.serving_degraded:
            raise self._refusal(what)
        try:
            return await self._below[operation](**kwargs)
        except StorageUnavailable as exc:
            self._replicator.note_outage(exc)
            raise self._refusal(what) from exc

    async def _pools_edit(
        self, operation: str, *, then: Callable[[], None] | None = None, **kwargs: Any
    ) -> Any:
        """A pool edit; ``then`` runs after it landed, before the view is rebuilt."""
        if self._replicator.serving_degraded:
            raise self._refusal("provider pool edits are")
        try:
            await self._replicator.durable()
            result = await self._edit(operation, "provider pool edits are", **kwargs)
            self._replicator.admin.add(PoolEdit(_describe(operation, kwargs)))
            if then is not None:
                then()
            self._credentials_moved()
            await self._replicator.resync(pools_only=True)
        except StorageUnavailable as exc:
            if not isinstance(exc, StorageDegraded):
                self._replicator.note_outage(exc)
                raise self._refusal("provider pool edits are") from exc
            raise
        return result

    # -- pools --------------------------------------------------------------------------

    @hookimpl
    async def cfgstore_pools_add_node(self, provider_type: str, node: ProviderNode) -> ProviderNode:
        added: ProviderNode = await self._pools_edit(
            "cfgstore_pools_add_node", provider_type=provider_type, node=node
        )
        return added

    @hookimpl
    async def cfgstore_pools_update_node(
        self, provider_type: str, uuid: str, changes: Mapping[str, JSONValue]
    ) -> ProviderNode:
        node: ProviderNode = await self._pools_edit(
            "cfgstore_pools_update_node", provider_type=provider_type, uuid=uuid, changes=changes
        )
        return node

    @hookimpl
    async def cfgstore_pools_delete_node(self, provider_type: str, uuid: str) -> None:
        await self._pools_edit("cfgstore_pools_delete_node", provider_type=provider_type, uuid=uuid)

    @hookimpl
    async def cfgstore_pools_rename_node(
        self, provider_type: str, old_uuid: str, new_uuid: str
    ) -> None:
        await self._pools_edit(
            "cfgstore_pools_rename_node",
            then=lambda: self.mirror.renamed(provider_type, old_uuid, new_uuid),
            provider_type=provider_type,
            old_uuid=old_uuid,
            new_uuid=new_uuid,
        )

    @hookimpl
    async def cfgstore_pools_delete_type(self, provider_type: str) -> int:
        count: int = await self._pools_edit(
            "cfgstore_pools_delete_type", provider_type=provider_type
        )
        return count

    @hookimpl
    async def cfgstore_pools_set_disabled(
        self, provider_type: str, uuid: str, disabled: bool
    ) -> None:
        await self._pools_edit(
            "cfgstore_pools_set_disabled", provider_type=provider_type, uuid=uuid, disabled=disabled
        )

    @hookimpl
    async def cfgstore_pools_reset_health(self, provider_type: str) -> int:
        count: int = await self._pools_edit(
            "cfgstore_pools_reset_health", provider_type=provider_type
        )
        return count

    @hookimpl
    async def cfgstore_pools_delete_unhealthy(self, provider_type: str) -> list[str]:
        removed: list[str] = await self._pools_edit(
            "cfgstore_pools_delete_unhealthy", provider_type=provider_type
        )
        return removed

    @hookimpl
    async def cfgstore_pools_import(self, pools: ProviderPools, keep_live_state: bool) -> None:
        await self._pools_edit(
            "cfgstore_pools_import", pools=pools, keep_live_state=keep_live_state
        )

    # -- documents ------------------------------------------------------------------------

    @hookimpl
    async def cfgstore_meta_get(self) -> dict[str, str]:
        meta: dict[str, str] = await self._edit("cfgstore_meta_get", "metadata reads are")
        return meta

    @hookimpl
    async def cfgstore_meta_update(self, fields: Mapping[str, str]) -> None:
        await self._edit("cfgstore_meta_update", "metadata updates are", fields=fields)

    @hookimpl
    async def cfgstore_config_put(
        self, document: dict[str, JSONValue], expected_version: str
    ) -> str:
        version: str = await self._edit(
            "cfgstore_config_put",
            "config changes are",
            document=document,
            expected_version=expected_version,
        )
        self._replicator.admin.add(ConfigEdit(document, expected_version, version))
        self._written("config", config_from_json(document, "config.json (written)", version))
        return version

    @hookimpl
    async def cfgstore_system_prompt_put(self, text: str) -> None:
        await self._edit("cfgstore_system_prompt_put", "system prompt changes are", text=text)

    @hookimpl
    async def cfgstore_custom_models_put(self, models: list[CustomModel]) -> None:
        await self._edit("cfgstore_custom_models_put", "custom model edits are", models=models)

    @hookimpl
    async def cfgstore_custom_models_add(self, model: CustomModel) -> None:
        await self._edit("cfgstore_custom_models_add", "custom model edits are", model=model)

    @hookimpl
    async def cfgstore_custom_models_update(
        self, model_id: str, changes: Mapping[str, JSONValue]
    ) -> CustomModel:
        model: CustomModel = await self._edit(
            "cfgstore_custom_models_update",
            "custom model edits are",
            model_id=model_id,
            changes=changes,
        )
        return model

    @hookimpl
    async def cfgstore_custom_models_delete(self, model_id: str) -> None:
        await self._edit(
            "cfgstore_custom_models_delete", "custom model edits are", model_id=model_id
        )

    @hookimpl
    async def cfgstore_plugin_config_put(self, config: PluginConfig) -> None:
        await self._edit("cfgstore_plugin_config_put", "plugin changes are", config=config)

    @hookimpl
    async def cfgstore_plugin_config_set_enabled(self, name: str, enabled: bool) -> None:
        await self._edit(
            "cfgstore_plugin_config_set_enabled", "plugin changes are", name=name, enabled=enabled
        )

    @hookimpl
    async def cfgstore_password_put(self, stored: str) -> None:
        await self._edit("cfgstore_password_put", "password changes are", stored=stored)

    @hookimpl
    async def cfgstore_usage_cache_put(self, cache: UsageCache) -> None:
        await self._edit("cfgstore_usage_cache_put", "usage cache updates are", cache=cache)

    @hookimpl
    async def cfgstore_usage_cache_put_type(
        self, provider_type: str, entry: JSONValue, timestamp: str
    ) -> None:
        await self._edit(
            "cfgstore_usage_cache_put_type",
            "usage cache updates are",
            provider_type=provider_type,
            entry=entry,
            timestamp=timestamp,
        )

    # -- sessions -------------------------------------------------------------------------

    @hookimpl
    async def cfgstore_sessions_add(self, token: str, session: UiSession) -> None:
        await self._edit("cfgstore_sessions_add", "logins are", token=token, session=session)

    @hookimpl
    async def cfgstore_sessions_get(self, token: str, now_ms: int) -> UiSession | None:
        session: UiSession | None = await self._edit(
            "cfgstore_sessions_get", "session checks are", token=token, now_ms=now_ms
        )
        return session

    @hookimpl
    async def cfgstore_sessions_delete(self, token: str) -> bool:
        """While degraded: journaled and ``True`` (whether it existed is unknown)."""
        if not self._replicator.serving_degraded:
            try:
                existed: bool = await self._below["cfgstore_sessions_delete"](token=token)
                return existed
            except StorageUnavailable as exc:
                self._replicator.note_outage(exc)
        digest = token_digest(token)
        if await self._replicator.journal_while_degraded(LOGOUT, logout_data(digest)):
            log.info("logout while the storage is degraded: journaled, replayed when it is back")
            return True
        existed = await self._edit("cfgstore_sessions_delete", "logouts are", token=token)
        return existed

    @hookimpl
    async def cfgstore_sessions_delete_digest(self, digest: str) -> bool:
        existed: bool = await self._edit(
            "cfgstore_sessions_delete_digest", "logouts are", digest=digest
        )
        return existed

    @hookimpl
    async def cfgstore_sessions_delete_others(self, keep_token: str | None) -> int:
        removed: int = await self._edit(
            "cfgstore_sessions_delete_others", "ending sessions is", keep_token=keep_token
        )
        return removed

    @hookimpl
    async def cfgstore_sessions_purge_expired(self, now_ms: int) -> int:
        count: int = await self._edit(
            "cfgstore_sessions_purge_expired", "session purges are", now_ms=now_ms
        )
        return count

    @hookimpl
    async def cfgstore_sessions_count(self, now_ms: int) -> int:
        count: int = await self._edit(
            "cfgstore_sessions_count", "session counts are", now_ms=now_ms
        )
        return count

    # -- login lockout counter: counted in the storage (across instances), so refused
    # while degraded like logins themselves -------------------------------------------------

    @hookimpl
    async def cfgstore_login_guard_get(self, client: str, now_ms: int) -> LoginGuard:
        guard: LoginGuard = await self._edit(
            "cfgstore_login_guard_get", "login checks are", client=client, now_ms=now_ms
        )
        return guard

    @hookimpl
    async def cfgstore_login_failure_add(
        self, client: str, now_ms: int, max_attempts: int, lockout_ms: int
    ) -> LoginGuard:
        guard: LoginGuard = await self._edit(
            "cfgstore_login_failure_add",
            "logins are",
            client=client,
            now_ms=now_ms,
            max_attempts=max_attempts,
            lockout_ms=lockout_ms,
        )
        return guard

    @hookimpl
    async def cfgstore_login_attempt_reserve(
        self, client: str, now_ms: int, max_attempts: int, lockout_ms: int, min_interval_ms: int
    ) -> LoginAttempt:
        attempt: LoginAttempt = await self._edit(
            "cfgstore_login_attempt_reserve",
            "logins are",
            client=client,
            now_ms=now_ms,
            max_attempts=max_attempts,
            lockout_ms=lockout_ms,
            min_interval_ms=min_interval_ms,
        )
        return attempt

    @hookimpl
    async def cfgstore_login_failures_clear(self, client: str) -> None:
        await self._edit("cfgstore_login_failures_clear", "logins are", client=client)

    # -- api-potluck keys: admissions are checked and counted in the storage (the limit
    # holds across instances), so while degraded they are refused, never admitted on a
    # local guess: an outage cannot over-admit. Token counts go through the potluck relay
    # (journaled through outages, :mod:`cfgstore_memory.potluck_relay`). ------------------

    async def _potluck(self, operation: str, what: str, **kwargs: Any) -> Any:
        if operation not in self._below:
            raise PluginError("this backend keeps no api-potluck keys")
        return await self._edit(operation, what, **kwargs)

    @hookimpl
    async def cfgstore_potluck_admit(self, key_id: str, today: str, now_ms: int) -> Admission:
        admission: Admission = await self._potluck(
            "cfgstore_potluck_admit",
            "api-potluck admissions are",
            key_id=key_id,
            today=today,
            now_ms=now_ms,
        )
        return admission

    @hookimpl
    async def cfgstore_potluck_list(self) -> list[KeyDocument]:
        keys: list[KeyDocument] = await self._potluck(
            "cfgstore_potluck_list", "api-potluck reads are"
        )
        return keys

    @hookimpl
    async def cfgstore_potluck_get(self, key_id: str) -> KeyDocument | None:
        key: KeyDocument | None = await self._potluck(
            "cfgstore_potluck_get", "api-potluck reads are", key_id=key_id
        )
        return key

    @hookimpl
    async def cfgstore_potluck_toggle(self, key_id: str) -> KeyDocument:
        key: KeyDocument = await self._potluck(
            "cfgstore_potluck_toggle", "api-potluck edits are", key_id=key_id
        )
        return key


def _describe(operation: str, kwargs: Mapping[str, Any]) -> str:
    """A pool edit as the operator reads it: ``update_node openai-custom/n1``."""
    words = [operation.removeprefix("cfgstore_pools_")]
    provider_type = kwargs.get("provider_type")
    node = kwargs.get("node")
    for key in ("uuid", "old_uuid", "new_uuid"):
        if key in kwargs:
            words.append(f"{provider_type}/{kwargs[key]}")
    if isinstance(node, ProviderNode):
        words.append(f"{provider_type}/{node.uuid}")
    elif provider_type is not None and len(words) == 1:
        words.append(str(provider_type))
    return " ".join(words)
