"""Typed per-entity facades over the resolved operation table.

pluggy cannot type hook calls; these classes are where type checkers see real signatures
(tox's approach). Each method is one await of a resolved callable.
"""

from __future__ import annotations

import asyncio
import builtins
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from cfgstore.adapters.backend import Operations
from cfgstore.errors import PluginError
from cfgstore.model import potluck as pl
from cfgstore.model import records as rec
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import Credential, CredentialRef
from cfgstore.model.custom_models import CustomModel
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.login_guard import LoginAttempt, LoginGuard, check_failure_limits
from cfgstore.model.password import hash_password, verify_password
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.pools import ProviderNode, ProviderPools
from cfgstore.model.replica import InstanceInfo, ReplicaHead
from cfgstore.model.sessions import UiSession
from cfgstore.model.snapshot import StoreSnapshot
from cfgstore.model.timefmt import now_ms
from cfgstore.model.usage_cache import UsageCache


class _Facade:
    def __init__(self, ops: Operations) -> None:
        self._ops = ops

    async def _call(self, operation: str, /, **kwargs: Any) -> Any:
        return await self._ops[operation](**kwargs)


class Pools(_Facade):
    """Provider pools (``cfgstore.hookspecs.pools``)."""

    def __init__(self, ops: Operations) -> None:
        super().__init__(ops)
        self._apply = ops["cfgstore_pools_apply_records"]  # the hot path: resolved once

    async def list(self) -> ProviderPools:
        result: ProviderPools = await self._call("cfgstore_pools_list")
        return result

    async def view(self) -> Mapping[str, Sequence[ProviderNode]]:
        """The live read-only pools for provider selection (``cfgstore_pools_view``):
        never mutate it; read it again for every decision."""
        view: Mapping[str, Sequence[ProviderNode]] = await self._call("cfgstore_pools_view")
        return view

    async def get_node(self, provider_type: str, uuid: str) -> ProviderNode | None:
        node: ProviderNode | None = await self._call(
            "cfgstore_pools_get_node", provider_type=provider_type, uuid=uuid
        )
        return node

    async def add_node(self, provider_type: str, node: ProviderNode) -> ProviderNode:
        added: ProviderNode = await self._call(
            "cfgstore_pools_add_node", provider_type=provider_type, node=node
        )
        return added

    async def update_node(
        self, provider_type: str, uuid: str, changes: Mapping[str, JSONValue]
    ) -> ProviderNode:
        node: ProviderNode = await self._call(
            "cfgstore_pools_update_node", provider_type=provider_type, uuid=uuid, changes=changes
        )
        return node

    async def delete_node(self, provider_type: str, uuid: str) -> None:
        await self._call("cfgstore_pools_delete_node", provider_type=provider_type, uuid=uuid)

    async def rename_node(self, provider_type: str, old_uuid: str, new_uuid: str) -> None:
        await self._call(
            "cfgstore_pools_rename_node",
            provider_type=provider_type,
            old_uuid=old_uuid,
            new_uuid=new_uuid,
        )

    async def delete_type(self, provider_type: str) -> int:
        count: int = await self._call("cfgstore_pools_delete_type", provider_type=provider_type)
        return count

    async def set_disabled(self, provider_type: str, uuid: str, disabled: bool) -> None:
        await self._call(
            "cfgstore_pools_set_disabled",
            provider_type=provider_type,
            uuid=uuid,
            disabled=disabled,
        )

    async def reset_health(self, provider_type: str) -> int:
        count: int = await self._call("cfgstore_pools_reset_health", provider_type=provider_type)
        return count

    async def delete_unhealthy(self, provider_type: str) -> builtins.list[str]:
        removed: builtins.list[str] = await self._call(
            "cfgstore_pools_delete_unhealthy", provider_type=provider_type
        )
        return removed

    async def import_all(self, pools: ProviderPools, *, keep_live_state: bool) -> None:
        """Replace all pools (migration); see ``cfgstore_pools_import``."""
        await self._call("cfgstore_pools_import", pools=pools, keep_live_state=keep_live_state)

    async def apply_records(self, records: Sequence[rec.NodeRecord]) -> None:
        await self._apply(records=records)

    # Hot-path conveniences: one record each, stamped now unless ``at_ms`` is given.

    async def record_selected(
        self, provider_type: str, uuid: str, seq: int, at_ms: int | None = None
    ) -> None:
        await self._apply(records=[rec.Selected(provider_type, uuid, at_ms or now_ms(), seq)])

    async def record_success(self, provider_type: str, uuid: str, at_ms: int | None = None) -> None:
        await self._apply(records=[rec.Success(provider_type, uuid, at_ms or now_ms())])

    async def record_failure(
        self,
        provider_type: str,
        uuid: str,
        message: str,
        *,
        max_error_count: int,
        immediate: bool = False,
        at_ms: int | None = None,
    ) -> None:
        await self.apply_records(
            [
                rec.Failure(
                    provider_type, uuid, at_ms or now_ms(), message, max_error_count, immediate
                )
            ]
        )

    async def record_cooldown(
        self,
        provider_type: str,
        uuid: str,
        message: str,
        *,
        max_error_count: int,
        recovery_at_ms: int,
        at_ms: int | None = None,
    ) -> None:
        await self.apply_records(
            [
                rec.Cooldown(
                    provider_type, uuid, at_ms or now_ms(), message, max_error_count, recovery_at_ms
                )
            ]
        )

    async def record_need_refresh(
        self, provider_type: str, uuid: str, at_ms: int | None = None
    ) -> None:
        await self._apply(records=[rec.NeedRefresh(provider_type, uuid, at_ms or now_ms())])

    async def record_recovered(
        self, provider_type: str, uuid: str, at_ms: int | None = None
    ) -> None:
        await self._apply(records=[rec.Recovered(provider_type, uuid, at_ms or now_ms())])

    async def record_health_check(
        self,
        provider_type: str,
        uuid: str,
        *,
        ok: bool,
        model: str | None,
        message: str | None = None,
        max_error_count: int,
        immediate: bool = False,
        reset_usage: bool = False,
        at_ms: int | None = None,
    ) -> None:
        await self.apply_records(
            [
                rec.HealthCheckResult(
                    provider_type,
                    uuid,
                    at_ms or now_ms(),
                    ok,
                    model,
                    message,
                    max_error_count,
                    immediate,
                    reset_usage,
                )
            ]
        )


class Credentials(_Facade):
    """OAuth credentials (``cfgstore.hookspecs.credentials``)."""

    async def get(self, provider_type: str, uuid: str) -> Credential | None:
        cred: Credential | None = await self._call(
            "cfgstore_credentials_get", provider_type=provider_type, uuid=uuid
        )
        return cred

    async def put(self, credential: Credential, expected_version: str | None) -> str:
        version: str = await self._call(
            "cfgstore_credentials_put", credential=credential, expected_version=expected_version
        )
        return version

    async def delete(self, provider_type: str, uuid: str) -> bool:
        existed: bool = await self._call(
            "cfgstore_credentials_delete", provider_type=provider_type, uuid=uuid
        )
        return existed

    async def list(self) -> list[CredentialRef]:
        refs: list[CredentialRef] = await self._call("cfgstore_credentials_list")
        return refs

    async def lock(self, provider_type: str, uuid: str, ttl_ms: int) -> str | None:
        token: str | None = await self._call(
            "cfgstore_credentials_lock", provider_type=provider_type, uuid=uuid, ttl_ms=ttl_ms
        )
        return token

    async def unlock(self, provider_type: str, uuid: str, token: str) -> bool:
        released: bool = await self._call(
            "cfgstore_credentials_unlock", provider_type=provider_type, uuid=uuid, token=token
        )
        return released


class Meta(_Facade):
    """Store metadata (``cfgstore.hookspecs.meta``)."""

    async def get(self) -> dict[str, str]:
        fields: dict[str, str] = await self._call("cfgstore_meta_get")
        return fields

    async def update(self, fields: Mapping[str, str]) -> None:
        await self._call("cfgstore_meta_update", fields=fields)


class Config(_Facade):
    """The main configuration (``cfgstore.hookspecs.config``)."""

    async def get(self) -> MainConfig:
        cfg: MainConfig = await self._call("cfgstore_config_get")
        return cfg

    async def put(self, document: dict[str, JSONValue], expected_version: str) -> str:
        version: str = await self._call(
            "cfgstore_config_put", document=document, expected_version=expected_version
        )
        return version


class SystemPrompt(_Facade):
    async def get(self) -> str | None:
        text: str | None = await self._call("cfgstore_system_prompt_get")
        return text

    async def put(self, text: str) -> None:
        await self._call("cfgstore_system_prompt_put", text=text)


class CustomModels(_Facade):
    async def list(self) -> list[CustomModel]:
        models: list[CustomModel] = await self._call("cfgstore_custom_models_list")
        return models

    async def put_all(self, models: builtins.list[CustomModel]) -> None:
        await self._call("cfgstore_custom_models_put", models=models)

    async def add(self, model: CustomModel) -> None:
        await self._call("cfgstore_custom_models_add", model=model)

    async def update(self, model_id: str, changes: Mapping[str, JSONValue]) -> CustomModel:
        model: CustomModel = await self._call(
            "cfgstore_custom_models_update", model_id=model_id, changes=changes
        )
        return model

    async def delete(self, model_id: str) -> None:
        await self._call("cfgstore_custom_models_delete", model_id=model_id)


class Sessions(_Facade):
    """Web-UI sessions. ``now_ms`` defaults to the current time."""

    async def add(self, token: str, session: UiSession) -> None:
        await self._call("cfgstore_sessions_add", token=token, session=session)

    async def get(self, token: str, now: int | None = None) -> UiSession | None:
        session: UiSession | None = await self._call(
            "cfgstore_sessions_get", token=token, now_ms=now or now_ms()
        )
        return session

    async def delete(self, token: str) -> bool:
        existed: bool = await self._call("cfgstore_sessions_delete", token=token)
        return existed

    async def delete_digest(self, digest: str) -> bool:
        existed: bool = await self._call("cfgstore_sessions_delete_digest", digest=digest)
        return existed

    async def delete_others(self, keep_token: str | None) -> int:
        """End every session but ``keep_token``'s (``None``: all of them)."""
        removed: int = await self._call("cfgstore_sessions_delete_others", keep_token=keep_token)
        return removed

    async def purge_expired(self, now: int | None = None) -> int:
        count: int = await self._call("cfgstore_sessions_purge_expired", now_ms=now or now_ms())
        return count

    async def count(self, now: int | None = None) -> int:
        count: int = await self._call("cfgstore_sessions_count", now_ms=now or now_ms())
        return count


class Logins(_Facade):
    """The admin-login lockout counter, per opaque client key (the gateway passes the
    client IP). ``now`` (epoch ms) defaults to the current time. :meth:`reserve` an
    attempt before verifying a password (check and count in one atomic step);
    :meth:`clear` after a successful login. :meth:`guard` reads the state and
    :meth:`failure` counts a failure without reserving."""

    async def reserve(
        self,
        client: str,
        *,
        max_attempts: int,
        lockout_ms: int,
        min_interval_ms: int,
        now: int | None = None,
    ) -> LoginAttempt:
        """Reserve one attempt (:func:`cfgstore.model.login_guard.reserve_attempt`):
        refused while locked or within ``min_interval_ms`` of the last one, else counted
        as a failure; the ``max_attempts``-th sets the lock."""
        check_failure_limits(max_attempts, lockout_ms, min_interval_ms)
        attempt: LoginAttempt = await self._call(
            "cfgstore_login_attempt_reserve",
            client=client,
            now_ms=now if now is not None else now_ms(),
            max_attempts=max_attempts,
            lockout_ms=lockout_ms,
            min_interval_ms=min_interval_ms,
        )
        return attempt

    async def guard(self, client: str, now: int | None = None) -> LoginGuard:
        guard: LoginGuard = await self._call(
            "cfgstore_login_guard_get", client=client, now_ms=now if now is not None else now_ms()
        )
        return guard

    async def failure(
        self, client: str, *, max_attempts: int, lockout_ms: int, now: int | None = None
    ) -> LoginGuard:
        """Count one failed login; locked once ``max_attempts`` failures (within
        ``lockout_ms`` of each other) are counted; ``max_attempts`` 0 counts without
        locking."""
        check_failure_limits(max_attempts, lockout_ms)
        guard: LoginGuard = await self._call(
            "cfgstore_login_failure_add",
            client=client,
            now_ms=now if now is not None else now_ms(),
            max_attempts=max_attempts,
            lockout_ms=lockout_ms,
        )
        return guard

    async def clear(self, client: str) -> None:
        await self._call("cfgstore_login_failures_clear", client=client)


class Password(_Facade):
    """The admin password. Hashing runs in a worker thread (PBKDF2 takes ~0.1 s)."""

    async def get_stored(self) -> str | None:
        stored: str | None = await self._call("cfgstore_password_get")
        return stored

    async def verify(self, password: str) -> bool:
        stored = await self.get_stored()
        return await asyncio.to_thread(verify_password, password, stored)

    async def set(self, password: str) -> None:
        stored = await asyncio.to_thread(hash_password, password)
        await self.put_stored(stored)

    async def put_stored(self, stored: str) -> None:
        await self._call("cfgstore_password_put", stored=stored)


class UsageCaches(_Facade):
    async def get(self) -> UsageCache | None:
        cache: UsageCache | None = await self._call("cfgstore_usage_cache_get")
        return cache

    async def put(self, cache: UsageCache) -> None:
        await self._call("cfgstore_usage_cache_put", cache=cache)

    async def put_type(self, provider_type: str, entry: JSONValue, timestamp: str) -> None:
        await self._call(
            "cfgstore_usage_cache_put_type",
            provider_type=provider_type,
            entry=entry,
            timestamp=timestamp,
        )


class PluginConfigs(_Facade):
    async def get(self) -> PluginConfig:
        config: PluginConfig = await self._call("cfgstore_plugin_config_get")
        return config

    async def put(self, config: PluginConfig) -> None:
        await self._call("cfgstore_plugin_config_put", config=config)

    async def set_enabled(self, name: str, enabled: bool) -> None:
        await self._call("cfgstore_plugin_config_set_enabled", name=name, enabled=enabled)


class KeptFiles(_Facade):
    """Deployment files kept as opaque bytes (``cfgstore.hookspecs.kept_files``). A chain
    whose backend does not keep them reads none, and refuses to keep any with
    :class:`~cfgstore.errors.PluginError`."""

    async def get(self) -> dict[str, bytes]:
        if "cfgstore_kept_files_get" not in self._ops:
            return {}
        files: dict[str, bytes] = await self._call("cfgstore_kept_files_get")
        return files

    async def put(self, files: dict[str, bytes]) -> None:
        if "cfgstore_kept_files_put" not in self._ops:
            raise PluginError("this backend keeps no files besides its own")
        await self._call("cfgstore_kept_files_put", files=files)


class Replicas(_Facade):
    """The optional replica operations of a shared backend (``cfgstore.hookspecs.replica``):
    for operator tools (live instances, journal replay, restore). Raises
    :class:`~cfgstore.errors.PluginError` when the chain's backend does not offer them."""

    def _require(self, operation: str) -> None:
        if operation not in self._ops:
            raise PluginError("this backend keeps no shared state (no replica operations)")

    async def head(self) -> ReplicaHead:
        self._require("cfgstore_replica_head")
        head: ReplicaHead = await self._call("cfgstore_replica_head")
        return head

    async def instances(self) -> list[InstanceInfo]:
        self._require("cfgstore_replica_instances")
        found: list[InstanceInfo] = await self._call("cfgstore_replica_instances")
        return found

    async def snapshot(self) -> StoreSnapshot:
        self._require("cfgstore_replica_snapshot")
        snapshot: StoreSnapshot = await self._call("cfgstore_replica_snapshot")
        return snapshot

    @property
    def operations(self) -> Operations:
        """The resolved table, for :func:`cfgstore_memory.replay.replay_journal`."""
        self._require("cfgstore_replica_apply")
        return self._ops


class Potluck(_Facade):
    """api-potluck keys (``cfgstore.hookspecs.potluck``). ``now`` (epoch ms) defaults to the
    current time; the day is its Beijing date. Reads roll the day over (today's counters
    read as 0 on a new date) without writing. A chain whose backend keeps no keys raises
    :class:`~cfgstore.errors.PluginError`."""

    def __init__(self, ops: Operations) -> None:
        super().__init__(ops)
        # A layer may pass admissions through; the keys need a backend that creates them.
        self.available = "cfgstore_potluck_create" in ops

    async def _op(self, operation: str, /, **kwargs: Any) -> Any:
        if not self.available:
            raise PluginError("this backend keeps no api-potluck keys")
        return await self._call(operation, **kwargs)

    async def list(self, now: int | None = None) -> builtins.list[pl.KeyDocument]:
        today = pl.beijing_date(now if now is not None else now_ms())
        keys: builtins.list[pl.KeyDocument] = await self._op("cfgstore_potluck_list")
        for key in keys:
            pl.roll_day(key, today)
        return keys

    async def get(self, key_id: str, now: int | None = None) -> pl.KeyDocument | None:
        key: pl.KeyDocument | None = await self._op("cfgstore_potluck_get", key_id=key_id)
        if key is not None:
            pl.roll_day(key, pl.beijing_date(now if now is not None else now_ms()))
        return key

    async def create(
        self, name: str = "", daily_limit: int | None = None, now: int | None = None
    ) -> pl.KeyDocument:
        """A new key (name default ``Key-<n>``, limit default 500)."""
        now = now if now is not None else now_ms()
        if not name:
            name = f"Key-{len(await self._op('cfgstore_potluck_list')) + 1}"
        limit = pl.DEFAULT_DAILY_LIMIT if daily_limit is None else daily_limit
        key = pl.new_key(pl.new_key_id(), name, limit, now)
        await self._op("cfgstore_potluck_create", key=key)
        return key

    async def add(self, key: pl.KeyDocument) -> None:
        await self._op("cfgstore_potluck_create", key=key)

    async def rename(self, key_id: str, name: str) -> pl.KeyDocument:
        return await self._update(key_id, {"name": name})

    async def set_limit(self, key_id: str, daily_limit: int) -> pl.KeyDocument:
        return await self._update(key_id, {"dailyLimit": pl.check_limit(daily_limit)})

    async def _update(self, key_id: str, changes: Mapping[str, JSONValue]) -> pl.KeyDocument:
        key: pl.KeyDocument = await self._op(
            "cfgstore_potluck_update", key_id=key_id, changes=changes
        )
        return key

    async def toggle(self, key_id: str) -> pl.KeyDocument:
        key: pl.KeyDocument = await self._op("cfgstore_potluck_toggle", key_id=key_id)
        return key

    async def apply_limit(self, daily_limit: int) -> tuple[int, int]:
        result: tuple[int, int] = await self._op(
            "cfgstore_potluck_apply_limit", daily_limit=pl.check_limit(daily_limit, 1)
        )
        return result

    async def reset_today(self, key_id: str, now: int | None = None) -> bool:
        today = pl.beijing_date(now if now is not None else now_ms())
        count: int = await self._op(
            "cfgstore_potluck_reset", key_id=key_id, what="today", today=today
        )
        return count > 0

    async def reset_tokens(self, key_id: str | None = None) -> int:
        """Zero token counters and peaks of one key (``None``: every key)."""
        count: int = await self._op(
            "cfgstore_potluck_reset", key_id=key_id, what="tokens", today=""
        )
        return count

    async def regenerate(self, key_id: str, now: int | None = None) -> pl.KeyDocument:
        key: pl.KeyDocument = await self._op(
            "cfgstore_potluck_regenerate",
            old_id=key_id,
            new_id=pl.new_key_id(),
            now_ms=now if now is not None else now_ms(),
        )
        return key

    async def delete(self, key_id: str) -> bool:
        deleted: bool = await self._op("cfgstore_potluck_delete", key_id=key_id)
        return deleted

    async def admit(self, key_id: str, now: int | None = None) -> pl.Admission:
        """Check and count one request in one atomic step (``cfgstore_potluck_admit``)."""
        now = now if now is not None else now_ms()
        admission: pl.Admission = await self._op(
            "cfgstore_potluck_admit", key_id=key_id, today=pl.beijing_date(now), now_ms=now
        )
        return admission

    async def add_tokens(self, uses: Sequence[pl.TokenUse]) -> None:
        if uses:
            await self._op("cfgstore_potluck_add_tokens", uses=uses)

    async def stored(self) -> pl.PotluckKeys | None:
        """Every key exactly as stored (no day rolled over), for migrate and export;
        ``None`` when the chain keeps no keys or holds none."""
        if not self.available:
            return None
        keys: builtins.list[pl.KeyDocument] = await self._call("cfgstore_potluck_list")
        return pl.PotluckKeys({str(k.get("id", "")): k for k in keys}) if keys else None

    async def import_keys(self, keys: pl.PotluckKeys) -> None:
        await self._op("cfgstore_potluck_import", keys=keys)


class Leases(_Facade):
    """Named leases (``cfgstore.hookspecs.leases``). A chain whose backends offer none gets
    leases of this process only (:attr:`stored` is then false): the same contract within
    one process, nothing across instances."""

    def __init__(self, ops: Operations) -> None:
        super().__init__(ops)
        self._local: dict[str, tuple[str, float]] = {}

    @property
    def stored(self) -> bool:
        """Whether the leases are the storage's (shared by every instance on it)."""
        return "cfgstore_lease_take" in self._ops and "cfgstore_lease_release" in self._ops

    async def take(self, name: str, ttl_ms: int) -> str | None:
        """A token when the lease ``name`` was free (held for ``ttl_ms``), else ``None``."""
        if not name:
            raise ValueError("a lease needs a name")
        if self.stored:
            token: str | None = await self._call(
                "cfgstore_lease_take", name=name, ttl_ms=max(1, ttl_ms)
            )
            return token
        now = asyncio.get_running_loop().time()
        held = self._local.get(name)
        if held is not None and held[1] > now:
            return None
        token = "local-" + secrets.token_hex(16)
        self._local[name] = (token, now + max(1, ttl_ms) / 1000)
        return token

    async def release(self, name: str, token: str) -> bool:
        """Release the lease if ``token`` still holds it; whether it did."""
        if self.stored:
            released: bool = await self._call("cfgstore_lease_release", name=name, token=token)
            return released
        held = self._local.get(name)
        if held is None or held[0] != token:
            return False
        del self._local[name]
        return held[1] > asyncio.get_running_loop().time()
