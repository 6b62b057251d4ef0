"""A no-op storage backend: the "storage costs nothing" baseline of ``bench_gateway``.

:class:`NoopBackend` implements every storage hook of :mod:`cfgstore.hookspecs` (the
lifecycle hooks and every operation of :data:`cfgstore.adapters.chain.OPERATIONS`) as the
cheapest thing that keeps a gateway working:

* reads give **fixed answers** handed over at construction: ``config.json`` (a
  :class:`~cfgstore.model.config.MainConfig`) and the pools (a
  :class:`~cfgstore.model.pools.ProviderPools`); ``cfgstore_pools_view`` returns the live
  mapping itself (no copy, like the memory layer), everything else is empty or ``None``;
* writes are accepted and **forgotten**: ``cfgstore_pools_apply_records`` (the hot path:
  every pick and every success) returns at once, counters never move, nothing is durable,
  no change event is published.

It is not a storage (a Store on it loses every write by design) and it is not an entry
point: :func:`noop_plugins` registers it on a plugin set by hand, next to the normally
discovered plugins (the gateway's adapters among them), and the store is opened with
``Settings(backends=(NOOP,))``. Written from the in-memory backend of
``tests/adapters/test_third_party_backend.py``, with the data handling stripped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from cfgstore import hookimpl
from cfgstore.adapters.backend import BackendContext, BackendDescriptor
from cfgstore.adapters.plugins import PluginSet, make_plugin_manager
from cfgstore.errors import NotFound
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import Credential, CredentialRef
from cfgstore.model.custom_models import CustomModel
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.login_guard import LoginAttempt, LoginGuard
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.pools import ProviderNode, ProviderPools
from cfgstore.model.records import NodeRecord
from cfgstore.model.sessions import UiSession
from cfgstore.model.status import BackendStatus, EntityCounts
from cfgstore.model.usage_cache import UsageCache

NOOP = "noop"
"""The backend's name in ``Settings.backends``."""
FIXED_VERSION = "noop-1"
"""The version every write "stores" and the fixed config carries unless it has one."""
LOCK_TOKEN = "noop-lock"


class NoopBackend:
    """See the module docstring. ``pools`` and ``config`` are served as they are (the
    caller must not change them while the store is open)."""

    def __init__(self, context: BackendContext, pools: ProviderPools, config: MainConfig) -> None:
        self.context = context
        self._pools = pools
        self._view: Mapping[str, Sequence[ProviderNode]] = pools.types
        self._config = config
        self._status = BackendStatus(
            name=NOOP,
            location="nowhere (writes are discarded)",
            mode=NOOP,
            counts=EntityCounts(
                provider_types=len(pools.types),
                nodes=pools.node_count(),
                healthy_nodes=sum(1 for _, node in pools if node.state.is_healthy),
            ),
        )
        self.records_dropped = 0
        """How many hot-path records ``cfgstore_pools_apply_records`` was handed."""

    # -- lifecycle ---------------------------------------------------------------------

    @hookimpl
    async def cfgstore_open(self) -> None:
        return None

    @hookimpl
    async def cfgstore_flush(self) -> None:
        return None

    @hookimpl
    async def cfgstore_close(self) -> None:
        return None

    @hookimpl
    async def cfgstore_status(self) -> BackendStatus:
        return self._status

    # -- meta --------------------------------------------------------------------------

    @hookimpl
    async def cfgstore_meta_get(self) -> dict[str, str]:
        return {}

    @hookimpl
    async def cfgstore_meta_update(self, fields: Mapping[str, str]) -> None:
        return None

    # -- pools -------------------------------------------------------------------------

    @hookimpl
    async def cfgstore_pools_list(self) -> ProviderPools:
        return self._pools.copy()

    @hookimpl
    async def cfgstore_pools_view(self) -> Mapping[str, Sequence[ProviderNode]]:
        return self._view

    @hookimpl
    async def cfgstore_pools_get_node(self, provider_type: str, uuid: str) -> ProviderNode | None:
        node = self._pools.find(provider_type, uuid)
        return None if node is None else node.copy()

    @hookimpl
    async def cfgstore_pools_add_node(self, provider_type: str, node: ProviderNode) -> ProviderNode:
        return node.copy()

    @hookimpl
    async def cfgstore_pools_update_node(
        self, provider_type: str, uuid: str, changes: Mapping[str, JSONValue]
    ) -> ProviderNode:
        node = self._pools.find(provider_type, uuid)
        if node is None:
            raise NotFound("provider node", f"{provider_type}/{uuid}")
        return node.copy()

    @hookimpl
    async def cfgstore_pools_delete_node(self, provider_type: str, uuid: str) -> None:
        return None

    @hookimpl
    async def cfgstore_pools_rename_node(
        self, provider_type: str, old_uuid: str, new_uuid: str
    ) -> None:
        return None

    @hookimpl
    async def cfgstore_pools_delete_type(self, provider_type: str) -> int:
        return 0

    @hookimpl
    async def cfgstore_pools_set_disabled(
        self, provider_type: str, uuid: str, disabled: bool
    ) -> None:
        return None

    @hookimpl
    async def cfgstore_pools_reset_health(self, provider_type: str) -> int:
        return 0

    @hookimpl
    async def cfgstore_pools_delete_unhealthy(self, provider_type: str) -> list[str]:
        return []

    @hookimpl
    async def cfgstore_pools_apply_records(self, records: Sequence[NodeRecord]) -> None:
        self.records_dropped += len(records)

    @hookimpl
    async def cfgstore_pools_import(self, pools: ProviderPools, keep_live_state: bool) -> None:
        return None

    # -- credentials -------------------------------------------------------------------

    @hookimpl
    async def cfgstore_credentials_get(self, provider_type: str, uuid: str) -> Credential | None:
        return None

    @hookimpl
    async def cfgstore_credentials_put(
        self, credential: Credential, expected_version: str | None
    ) -> str:
        return FIXED_VERSION

    @hookimpl
    async def cfgstore_credentials_delete(self, provider_type: str, uuid: str) -> bool:
        return False

    @hookimpl
    async def cfgstore_credentials_list(self) -> list[CredentialRef]:
        return []

    @hookimpl
    async def cfgstore_credentials_lock(
        self, provider_type: str, uuid: str, ttl_ms: int
    ) -> str | None:
        return LOCK_TOKEN

    @hookimpl
    async def cfgstore_credentials_unlock(self, provider_type: str, uuid: str, token: str) -> bool:
        return token == LOCK_TOKEN

    # -- config, system prompt, custom models ------------------------------------------

    @hookimpl
    async def cfgstore_config_get(self) -> MainConfig:
        return self._config

    @hookimpl
    async def cfgstore_config_put(
        self, document: dict[str, JSONValue], expected_version: str
    ) -> str:
        return FIXED_VERSION

    @hookimpl
    async def cfgstore_system_prompt_get(self) -> str | None:
        return None

    @hookimpl
    async def cfgstore_system_prompt_put(self, text: str) -> None:
        return None

    @hookimpl
    async def cfgstore_custom_models_list(self) -> list[CustomModel]:
        return []

    @hookimpl
    async def cfgstore_custom_models_add(self, model: CustomModel) -> None:
        return None

    @hookimpl
    async def cfgstore_custom_models_update(
        self, model_id: str, changes: Mapping[str, JSONValue]
    ) -> CustomModel:
        raise NotFound("custom model", model_id)

    @hookimpl
    async def cfgstore_custom_models_delete(self, model_id: str) -> None:
        return None

    @hookimpl
    async def cfgstore_custom_models_put(self, models: list[CustomModel]) -> None:
        return None

    # -- sessions, password, usage cache, plugin config --------------------------------

    @hookimpl
    async def cfgstore_sessions_add(self, token: str, session: UiSession) -> None:
        return None

    @hookimpl
    async def cfgstore_sessions_get(self, token: str, now_ms: int) -> UiSession | None:
        return None

    @hookimpl
    async def cfgstore_sessions_delete(self, token: str) -> bool:
        return False

    @hookimpl
    async def cfgstore_sessions_delete_digest(self, digest: str) -> bool:
        return False

    @hookimpl
    async def cfgstore_sessions_delete_others(self, keep_token: str | None) -> int:
        return 0

    @hookimpl
    async def cfgstore_sessions_purge_expired(self, now_ms: int) -> int:
        return 0

    @hookimpl
    async def cfgstore_sessions_count(self, now_ms: int) -> int:
        return 0

    @hookimpl
    async def cfgstore_login_guard_get(self, client: str, now_ms: int) -> LoginGuard:
        return LoginGuard(0, None)

    @hookimpl
    async def cfgstore_login_failure_add(
        self, client: str, now_ms: int, max_attempts: int, lockout_ms: int
    ) -> LoginGuard:
        return LoginGuard(0, None)

    @hookimpl
    async def cfgstore_login_attempt_reserve(
        self, client: str, now_ms: int, max_attempts: int, lockout_ms: int, min_interval_ms: int
    ) -> LoginAttempt:
        return LoginAttempt(None, 1)

    @hookimpl
    async def cfgstore_login_failures_clear(self, client: str) -> None:
        return None

    @hookimpl
    async def cfgstore_password_get(self) -> str | None:
        return None

    @hookimpl
    async def cfgstore_password_put(self, stored: str) -> None:
        return None

    @hookimpl
    async def cfgstore_usage_cache_get(self) -> UsageCache | None:
        return None

    @hookimpl
    async def cfgstore_usage_cache_put(self, cache: UsageCache) -> None:
        return None

    @hookimpl
    async def cfgstore_usage_cache_put_type(
        self, provider_type: str, entry: JSONValue, timestamp: str
    ) -> None:
        return None

    @hookimpl
    async def cfgstore_plugin_config_get(self) -> PluginConfig:
        return PluginConfig()

    @hookimpl
    async def cfgstore_plugin_config_put(self, config: PluginConfig) -> None:
        return None

    @hookimpl
    async def cfgstore_plugin_config_set_enabled(self, name: str, enabled: bool) -> None:
        return None


def noop_descriptor(pools: ProviderPools, config: MainConfig) -> BackendDescriptor:
    """The descriptor of a :class:`NoopBackend` serving ``pools`` and ``config``."""

    def factory(context: BackendContext) -> NoopBackend:
        return NoopBackend(context, pools, config)

    return BackendDescriptor(
        name=NOOP,
        description="accepts every write and forgets it; fixed reads (benchmark baseline)",
        factory=factory,
    )


class _Announcer:
    """Announces one backend, as an entry-point module's ``cfgstore_register_backends``."""

    def __init__(self, descriptor: BackendDescriptor) -> None:
        self._descriptor = descriptor

    @hookimpl
    def cfgstore_register_backends(self, register: Callable[[BackendDescriptor], None]) -> None:
        register(self._descriptor)


def noop_plugins(
    pools: ProviderPools, config: MainConfig, environ: Mapping[str, str] | None = None
) -> PluginSet:
    """The usual plugin set (entry points per ``environ``, default the process
    environment) plus the no-op backend, registered by hand; open the store with
    ``Store.open(Settings(backends=(NOOP,)), plugins=...)``."""
    plugins = make_plugin_manager(environ)
    plugins.manager.register(_Announcer(noop_descriptor(pools, config)), name=f"bench-{NOOP}")
    return plugins
