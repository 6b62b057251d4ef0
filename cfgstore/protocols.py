"""Typed :class:`~typing.Protocol` classes of a backend, one per hookspec module.

A backend's hook methods are found by pluggy at run time; these protocols let a type
checker verify them beforehand. Declare the groups your backend implements and let mypy
compare::

    from cfgstore.protocols import StorageBackend

    def make_backend(context: BackendContext) -> StorageBackend:
        return MyBackend(context)  # mypy: a missing, misspelt or mistyped operation

:class:`StorageBackend` is every storage operation a complete chain needs (a bottom
backend alone must implement it); a layer implements some groups and delegates the rest.
:class:`ReplicaBackend`, :class:`KeptFilesBackend`, :class:`TrafficBackend`,
:class:`LeasesBackend`, :class:`UsageStatsBackend`, :class:`PluginLogsBackend` and
:class:`PotluckBackend` are optional
operations; :class:`LifecycleBackend` is optional per method (a backend without ``cfgstore_open``
simply is not opened).

The members mirror :mod:`cfgstore.hookspecs` exactly: names, argument names and order,
annotations, ``async``; ``tests/adapters/test_protocols.py`` fails when the two drift. The
docstrings of the specs are the contracts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from cfgstore.model.config import MainConfig
    from cfgstore.model.credentials import Credential, CredentialRef
    from cfgstore.model.custom_models import CustomModel
    from cfgstore.model.jsjson import JSONValue
    from cfgstore.model.login_guard import LoginAttempt, LoginGuard
    from cfgstore.model.plugin_config import PluginConfig
    from cfgstore.model.pools import ProviderNode, ProviderPools
    from cfgstore.model.potluck import Admission, KeyDocument, PotluckKeys, TokenUse
    from cfgstore.model.records import NodeRecord
    from cfgstore.model.replica import AppliedBatch, InstanceInfo, ReplicaHead
    from cfgstore.model.sessions import UiSession
    from cfgstore.model.snapshot import StoreSnapshot
    from cfgstore.model.status import BackendStatus
    from cfgstore.model.traffic import TrafficCount
    from cfgstore.model.usage_cache import UsageCache
    from cfgstore.model.usage_stats import UsageCount


class MetaBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.meta`."""

    async def cfgstore_meta_get(self) -> dict[str, str]: ...

    async def cfgstore_meta_update(self, fields: Mapping[str, str]) -> None: ...


class PoolsBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.pools`."""

    async def cfgstore_pools_list(self) -> ProviderPools: ...

    async def cfgstore_pools_view(self) -> Mapping[str, Sequence[ProviderNode]]: ...

    async def cfgstore_pools_get_node(
        self, provider_type: str, uuid: str
    ) -> ProviderNode | None: ...

    async def cfgstore_pools_add_node(
        self, provider_type: str, node: ProviderNode
    ) -> ProviderNode: ...

    async def cfgstore_pools_update_node(
        self, provider_type: str, uuid: str, changes: Mapping[str, JSONValue]
    ) -> ProviderNode: ...

    async def cfgstore_pools_delete_node(self, provider_type: str, uuid: str) -> None: ...

    async def cfgstore_pools_rename_node(
        self, provider_type: str, old_uuid: str, new_uuid: str
    ) -> None: ...

    async def cfgstore_pools_delete_type(self, provider_type: str) -> int: ...

    async def cfgstore_pools_set_disabled(
        self, provider_type: str, uuid: str, disabled: bool
    ) -> None: ...

    async def cfgstore_pools_reset_health(self, provider_type: str) -> int: ...

    async def cfgstore_pools_delete_unhealthy(self, provider_type: str) -> list[str]: ...

    async def cfgstore_pools_apply_records(self, records: Sequence[NodeRecord]) -> None: ...

    async def cfgstore_pools_import(self, pools: ProviderPools, keep_live_state: bool) -> None: ...


class CredentialsBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.credentials`."""

    async def cfgstore_credentials_get(
        self, provider_type: str, uuid: str
    ) -> Credential | None: ...

    async def cfgstore_credentials_put(
        self, credential: Credential, expected_version: str | None
    ) -> str: ...

    async def cfgstore_credentials_delete(self, provider_type: str, uuid: str) -> bool: ...

    async def cfgstore_credentials_list(self) -> list[CredentialRef]: ...

    async def cfgstore_credentials_lock(
        self, provider_type: str, uuid: str, ttl_ms: int
    ) -> str | None: ...

    async def cfgstore_credentials_unlock(
        self, provider_type: str, uuid: str, token: str
    ) -> bool: ...


class ConfigBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.config`."""

    async def cfgstore_config_get(self) -> MainConfig: ...

    async def cfgstore_config_put(
        self, document: dict[str, JSONValue], expected_version: str
    ) -> str: ...


class SystemPromptBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.system_prompt`."""

    async def cfgstore_system_prompt_get(self) -> str | None: ...

    async def cfgstore_system_prompt_put(self, text: str) -> None: ...


class CustomModelsBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.custom_models`."""

    async def cfgstore_custom_models_list(self) -> list[CustomModel]: ...

    async def cfgstore_custom_models_add(self, model: CustomModel) -> None: ...

    async def cfgstore_custom_models_update(
        self, model_id: str, changes: Mapping[str, JSONValue]
    ) -> CustomModel: ...

    async def cfgstore_custom_models_delete(self, model_id: str) -> None: ...

    async def cfgstore_custom_models_put(self, models: list[CustomModel]) -> None: ...


class SessionsBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.sessions`."""

    async def cfgstore_sessions_add(self, token: str, session: UiSession) -> None: ...

    async def cfgstore_sessions_get(self, token: str, now_ms: int) -> UiSession | None: ...

    async def cfgstore_sessions_delete(self, token: str) -> bool: ...

    async def cfgstore_sessions_delete_digest(self, digest: str) -> bool: ...

    async def cfgstore_sessions_delete_others(self, keep_token: str | None) -> int: ...

    async def cfgstore_sessions_purge_expired(self, now_ms: int) -> int: ...

    async def cfgstore_sessions_count(self, now_ms: int) -> int: ...


class LoginGuardBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.login_guard`."""

    async def cfgstore_login_guard_get(self, client: str, now_ms: int) -> LoginGuard: ...

    async def cfgstore_login_failure_add(
        self, client: str, now_ms: int, max_attempts: int, lockout_ms: int
    ) -> LoginGuard: ...

    async def cfgstore_login_attempt_reserve(
        self, client: str, now_ms: int, max_attempts: int, lockout_ms: int, min_interval_ms: int
    ) -> LoginAttempt: ...

    async def cfgstore_login_failures_clear(self, client: str) -> None: ...


class PasswordBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.password`."""

    async def cfgstore_password_get(self) -> str | None: ...

    async def cfgstore_password_put(self, stored: str) -> None: ...


class UsageCacheBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.usage_cache`."""

    async def cfgstore_usage_cache_get(self) -> UsageCache | None: ...

    async def cfgstore_usage_cache_put(self, cache: UsageCache) -> None: ...

    async def cfgstore_usage_cache_put_type(
        self, provider_type: str, entry: JSONValue, timestamp: str
    ) -> None: ...


class PluginConfigBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.plugin_config`."""

    async def cfgstore_plugin_config_get(self) -> PluginConfig: ...

    async def cfgstore_plugin_config_put(self, config: PluginConfig) -> None: ...

    async def cfgstore_plugin_config_set_enabled(self, name: str, enabled: bool) -> None: ...


class ReplicaBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.replica`."""

    async def cfgstore_replica_head(self) -> ReplicaHead: ...

    async def cfgstore_replica_snapshot(self) -> StoreSnapshot: ...

    async def cfgstore_replica_read_nodes(
        self, pairs: Sequence[tuple[str, str]]
    ) -> list[ProviderNode | None]: ...

    async def cfgstore_replica_apply(
        self, records: Sequence[NodeRecord], op_id: str, namespace_id: str
    ) -> AppliedBatch: ...

    async def cfgstore_replica_apply_many(
        self, batches: Sequence[tuple[Sequence[NodeRecord], str]], namespace_id: str
    ) -> list[AppliedBatch]: ...

    async def cfgstore_replica_add_traffic(
        self, counts: Sequence[TrafficCount], op_id: str
    ) -> bool: ...

    async def cfgstore_replica_add_usage_stats(
        self, counts: Sequence[UsageCount], op_id: str
    ) -> bool: ...

    async def cfgstore_replica_forget_epochs(self, instance_id: str, epoch: int) -> int: ...

    async def cfgstore_replica_heartbeat(self, info: InstanceInfo, ttl_ms: int) -> None: ...

    async def cfgstore_replica_instances(self) -> list[InstanceInfo]: ...


class KeptFilesBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.kept_files`."""

    async def cfgstore_kept_files_get(self) -> dict[str, bytes]: ...

    async def cfgstore_kept_files_put(self, files: dict[str, bytes]) -> None: ...


class TrafficBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.traffic`."""

    async def cfgstore_traffic_add(self, counts: Sequence[TrafficCount]) -> None: ...

    async def cfgstore_traffic_read(self, since_ms: int) -> list[TrafficCount]: ...


class LeasesBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.leases`."""

    async def cfgstore_lease_take(self, name: str, ttl_ms: int) -> str | None: ...

    async def cfgstore_lease_release(self, name: str, token: str) -> bool: ...


class UsageStatsBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.usage_stats`."""

    async def cfgstore_usage_stats_add(self, counts: Sequence[UsageCount]) -> None: ...

    async def cfgstore_usage_stats_read(self) -> dict[str, Any]: ...

    async def cfgstore_usage_stats_reset(self, tokens_only: bool) -> None: ...

    async def cfgstore_usage_stats_import(self, document: dict[str, Any]) -> None: ...


class PluginLogsBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.plugin_logs`."""

    async def cfgstore_plugin_log_append(
        self, plugin: str, entry: dict[str, JSONValue], keep: int
    ) -> None: ...

    async def cfgstore_plugin_log_recent(
        self, plugin: str, limit: int
    ) -> list[dict[str, JSONValue]]: ...

    async def cfgstore_plugin_log_clear(self, plugin: str) -> None: ...


class PotluckBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.potluck`."""

    async def cfgstore_potluck_list(self) -> list[KeyDocument]: ...

    async def cfgstore_potluck_get(self, key_id: str) -> KeyDocument | None: ...

    async def cfgstore_potluck_create(self, key: KeyDocument) -> None: ...

    async def cfgstore_potluck_update(
        self, key_id: str, changes: Mapping[str, JSONValue]
    ) -> KeyDocument: ...

    async def cfgstore_potluck_toggle(self, key_id: str) -> KeyDocument: ...

    async def cfgstore_potluck_apply_limit(self, daily_limit: int) -> tuple[int, int]: ...

    async def cfgstore_potluck_reset(
        self, key_id: str | None, what: Literal["today", "tokens"], today: str
    ) -> int: ...

    async def cfgstore_potluck_regenerate(
        self, old_id: str, new_id: str, now_ms: int
    ) -> KeyDocument: ...

    async def cfgstore_potluck_delete(self, key_id: str) -> bool: ...

    async def cfgstore_potluck_admit(self, key_id: str, today: str, now_ms: int) -> Admission: ...

    async def cfgstore_potluck_add_tokens(self, uses: Sequence[TokenUse]) -> None: ...

    async def cfgstore_replica_add_potluck_tokens(
        self, uses: Sequence[TokenUse], op_id: str
    ) -> bool: ...

    async def cfgstore_potluck_import(self, keys: PotluckKeys) -> None: ...


class LifecycleBackend(Protocol):
    """The operations of :mod:`cfgstore.hookspecs.lifecycle`."""

    async def cfgstore_open(self) -> None: ...

    async def cfgstore_flush(self) -> None: ...

    async def cfgstore_close(self) -> None: ...

    async def cfgstore_status(self) -> BackendStatus: ...


class StorageBackend(
    MetaBackend,
    PoolsBackend,
    CredentialsBackend,
    ConfigBackend,
    SystemPromptBackend,
    CustomModelsBackend,
    SessionsBackend,
    LoginGuardBackend,
    PasswordBackend,
    UsageCacheBackend,
    PluginConfigBackend,
    Protocol,
):
    """Every storage operation (:data:`cfgstore.adapters.chain.OPERATIONS`)."""


GROUPS: dict[str, type] = {
    "cfgstore.hookspecs.meta": MetaBackend,
    "cfgstore.hookspecs.pools": PoolsBackend,
    "cfgstore.hookspecs.credentials": CredentialsBackend,
    "cfgstore.hookspecs.config": ConfigBackend,
    "cfgstore.hookspecs.system_prompt": SystemPromptBackend,
    "cfgstore.hookspecs.custom_models": CustomModelsBackend,
    "cfgstore.hookspecs.sessions": SessionsBackend,
    "cfgstore.hookspecs.login_guard": LoginGuardBackend,
    "cfgstore.hookspecs.password": PasswordBackend,
    "cfgstore.hookspecs.usage_cache": UsageCacheBackend,
    "cfgstore.hookspecs.plugin_config": PluginConfigBackend,
    "cfgstore.hookspecs.replica": ReplicaBackend,
    "cfgstore.hookspecs.kept_files": KeptFilesBackend,
    "cfgstore.hookspecs.traffic": TrafficBackend,
    "cfgstore.hookspecs.leases": LeasesBackend,
    "cfgstore.hookspecs.usage_stats": UsageStatsBackend,
    "cfgstore.hookspecs.plugin_logs": PluginLogsBackend,
    "cfgstore.hookspecs.potluck": PotluckBackend,
    "cfgstore.hookspecs.lifecycle": LifecycleBackend,
}
"""The protocol of each hookspec module (``cfgstore_register_backends`` of the lifecycle
module is the entry point's, not the backend's, so :class:`LifecycleBackend` lacks it)."""
