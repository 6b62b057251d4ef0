"""The ``dict`` backend: every storage operation on plain in-memory objects.

The whole store lives in this object and is saved to one JSON file (``CFGSTORE_DICT_PATH``,
default ``<configs>/dict-store.json``) when the Store flushes or closes; opening loads it
again. One process owns the file: the backend declares no ``shared`` capability.

How it keeps the contract (``cfgstore.hookspecs``):

* Atomic: no operation awaits between reading and writing its state, so on one event loop
  nothing interleaves with it.
* Copies: values go in and come out through :func:`copy.deepcopy` (or ``.copy()``), so a
  caller's mutation never reaches the store; only ``cfgstore_pools_view`` hands out the
  live pools, as its spec allows.
* Change events: every write calls :meth:`DictBackend._changed` before returning, so the
  memory layer above drops what it cached.
* Errors: the typed ones of :mod:`cfgstore.errors`, raised before anything changes.
* Credentials belong to token files: nodes naming one file (any spelling,
  :func:`~cfgstore.model.credentials.credential_file_key`) share one, and it lives while
  some node names its file.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cfgstore import hookimpl
from cfgstore.adapters import BackendContext
from cfgstore.errors import AlreadyExists, InvalidData, NotFound, VersionConflict
from cfgstore.fileio import atomic_write, read_bytes
from cfgstore.model import timefmt
from cfgstore.model.config import MainConfig, config_from_json
from cfgstore.model.credentials import (
    Credential,
    CredentialRef,
    credential_file_key,
    credential_path_of,
    new_credential_path,
    path_keys_for,
    token_format_for,
)
from cfgstore.model.custom_models import (
    CustomModel,
    custom_models_from_json,
    models_to_json,
    with_model,
    with_model_updated,
    without_model,
)
from cfgstore.model.events import ChangeEvent
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.login_guard import (
    CLEAR,
    LoginAttempt,
    LoginFailures,
    LoginGuard,
    add_failure,
    client_digest,
    reserve_attempt,
)
from cfgstore.model.plugin_config import PluginConfig, plugin_config_from_json
from cfgstore.model.pools import (
    COUNTER_KEYS,
    ProviderNode,
    ProviderPools,
    keep_live_fields,
    node_from_json,
    node_to_json,
    pools_from_json,
    pools_to_json,
)
from cfgstore.model.records import NodeRecord, apply_record
from cfgstore.model.sessions import UiSession, sessions_from_json, sessions_to_json, token_digest
from cfgstore.model.status import BackendStatus, EntityCounts
from cfgstore.model.usage_cache import UsageCache, usage_cache_from_json
from cfgstore.model.versions import ABSENT_VERSION, ANY_VERSION

StoredCredential = tuple[dict[str, JSONValue], str, dict[str, dict[str, JSONValue]]]
"""A token file's credential: its document, version and (Kiro) sibling files."""


class DictBackend:
    def __init__(self, context: BackendContext) -> None:
        self.context = context
        settings = context.settings
        # A third-party setting: CFGSTORE_DICT_PATH lands in Settings.extra["dict_path"].
        self.path = Path(
            settings.extra.get("dict_path") or settings.configs_dir / "dict-store.json"
        )
        self.meta: dict[str, str] = {}
        self.pools = ProviderPools()
        # By token file (credential_file_key): document, version, Kiro sibling files.
        self.credentials: dict[str, StoredCredential] = {}
        self.config: tuple[dict[str, JSONValue], str] | None = None
        self.system_prompt: str | None = None
        self.custom_models: list[CustomModel] = []
        self.sessions: dict[str, UiSession] = {}
        self.password: str | None = None
        self.usage_cache: UsageCache | None = None
        self.plugin_config = PluginConfig()
        self.kept_files: dict[str, bytes] = {}  # deployment files kept as opaque bytes
        self.last_version = 0
        # Not saved: refresh locks and login counts live as long as this store.
        self.locks: dict[str, tuple[str, int]] = {}  # by lock key: token, expiry (epoch ms)
        self.logins: dict[str, LoginFailures] = {}  # by client digest

    def _changed(self, entity: str) -> None:
        """Tell the layers above and the observers (the change-event rule)."""
        self.context.publish(ChangeEvent(entity, origin=self.context.instance_id))

    def _new_version(self) -> str:
        self.last_version += 1
        return str(self.last_version)

    # -- lifecycle: load on open, save on flush and close ----------------------------------

    @hookimpl
    async def cfgstore_open(self) -> None:
        raw = await asyncio.to_thread(read_bytes, self.path)  # no blocking I/O on the loop
        if raw is None:
            return
        source = str(self.path)
        try:
            self._load(json.loads(raw), source)
        except ValueError as exc:
            raise InvalidData(source, "$", f"not JSON: {exc}") from None
        except (KeyError, TypeError) as exc:
            raise InvalidData(source, "$", f"not a dict-store document ({exc!r})") from None

    def _load(self, doc: dict[str, Any], source: str) -> None:
        self.meta = doc["meta"]
        self.pools = pools_from_json(doc["pools"], source)
        self.credentials = {f: (d, v, s) for f, d, v, s in doc["credentials"]}
        config = doc["config"]
        self.config = (config["document"], config["version"]) if config else None
        self.system_prompt = doc["system_prompt"]
        self.custom_models = custom_models_from_json(doc["custom_models"], source)
        self.sessions = sessions_from_json(doc["sessions"], source)
        self.password = doc["password"]
        cache = doc["usage_cache"]
        self.usage_cache = usage_cache_from_json(cache, source) if cache is not None else None
        self.plugin_config = plugin_config_from_json(doc["plugins"], source)
        self.kept_files = {k: base64.b64decode(v) for k, v in doc["kept_files"].items()}
        self.last_version = doc["last_version"]

    @hookimpl
    async def cfgstore_flush(self) -> None:
        config = self.config
        doc: dict[str, Any] = {
            "meta": self.meta,
            "pools": pools_to_json(self.pools),
            "credentials": [[f, d, v, s] for f, (d, v, s) in self.credentials.items()],
            "config": {"document": config[0], "version": config[1]} if config else None,
            "system_prompt": self.system_prompt,
            "custom_models": models_to_json(self.custom_models),
            "sessions": sessions_to_json(self.sessions),
            "password": self.password,
            "usage_cache": self.usage_cache.to_json() if self.usage_cache else None,
            "plugins": self.plugin_config.to_json(),
            "kept_files": {k: base64.b64encode(v).decode() for k, v in self.kept_files.items()},
            "last_version": self.last_version,
        }
        data = json.dumps(doc, ensure_ascii=False).encode()  # on the loop: a consistent state
        await asyncio.to_thread(atomic_write, self.path, data)

    @hookimpl
    async def cfgstore_close(self) -> None:
        await self.cfgstore_flush()

    @hookimpl
    async def cfgstore_status(self) -> BackendStatus:
        counts = EntityCounts(
            provider_types=len(self.pools.types),
            nodes=self.pools.node_count(),
            healthy_nodes=sum(1 for _, node in self.pools if node.state.is_healthy),
            credentials=len(self.credentials),
            sessions=await self.cfgstore_sessions_count(timefmt.now_ms()),
            plugins=len(self.plugin_config.plugins),
            custom_models=len(self.custom_models),
        )
        return BackendStatus("dict", str(self.path), "dict", counts)

    # -- meta ------------------------------------------------------------------------------

    @hookimpl
    async def cfgstore_meta_get(self) -> dict[str, str]:
        return dict(self.meta)

    @hookimpl
    async def cfgstore_meta_update(self, fields: Mapping[str, str]) -> None:
        self.meta.update(fields)

    # -- pools -----------------------------------------------------------------------------

    def _node(self, provider_type: str, uuid: str) -> ProviderNode:
        node = self.pools.find(provider_type, uuid)
        if node is None:
            raise NotFound("provider node", f"{provider_type}/{uuid}")
        return node

    def _nodes(self, provider_type: str) -> list[ProviderNode]:
        if provider_type not in self.pools.types:
            raise NotFound("provider type", provider_type)
        return self.pools.types[provider_type]

    @hookimpl
    async def cfgstore_pools_list(self) -> ProviderPools:
        return self.pools.copy()

    @hookimpl
    async def cfgstore_pools_view(self) -> Mapping[str, Sequence[ProviderNode]]:
        return self.pools.types  # the live objects: callers only read them

    @hookimpl
    async def cfgstore_pools_get_node(self, provider_type: str, uuid: str) -> ProviderNode | None:
        node = self.pools.find(provider_type, uuid)
        return node.copy() if node is not None else None

    @hookimpl
    async def cfgstore_pools_add_node(self, provider_type: str, node: ProviderNode) -> ProviderNode:
        if self.pools.find(provider_type, node.uuid) is not None:
            raise AlreadyExists("provider node", f"{provider_type}/{node.uuid}")
        self.pools.types.setdefault(provider_type, []).append(node.copy())
        self._changed("pools")
        return node.copy()

    @hookimpl
    async def cfgstore_pools_update_node(
        self, provider_type: str, uuid: str, changes: Mapping[str, JSONValue]
    ) -> ProviderNode:
        nodes = self._nodes(provider_type)
        index = nodes.index(self._node(provider_type, uuid))  # uuids are unique in a type
        merged = node_to_json(nodes[index])
        merged.update((k, v) for k, v in changes.items() if k != "uuid" and k not in COUNTER_KEYS)
        updated = node_from_json(copy.deepcopy(merged), "update")  # InvalidData: nothing changed
        old_file = credential_file_key(provider_type, nodes[index])
        new_file = credential_file_key(provider_type, updated)
        nodes[index] = updated
        if new_file != old_file:
            # A node pointed at a file holding no credential yet takes its own along.
            moving = self.credentials.get(old_file) if old_file is not None else None
            if new_file is not None and new_file not in self.credentials and moving:
                self.credentials[new_file] = copy.deepcopy(moving)
            self._forget_unnamed_files()
            self._changed("credentials")
        self._changed("pools")
        return updated.copy()

    @hookimpl
    async def cfgstore_pools_delete_node(self, provider_type: str, uuid: str) -> None:
        nodes = self._nodes(provider_type)
        nodes.remove(self._node(provider_type, uuid))
        if not nodes:
            del self.pools.types[provider_type]
        self._forget_unnamed_files()
        self._changed("pools")
        self._changed("credentials")

    @hookimpl
    async def cfgstore_pools_rename_node(
        self, provider_type: str, old_uuid: str, new_uuid: str
    ) -> None:
        node = self._node(provider_type, old_uuid)
        if self.pools.find(provider_type, new_uuid) is not None:
            raise AlreadyExists("provider node", f"{provider_type}/{new_uuid}")
        node.uuid = new_uuid  # credentials and locks are the file's: nothing else moves
        self._changed("pools")
        self._changed("credentials")

    @hookimpl
    async def cfgstore_pools_delete_type(self, provider_type: str) -> int:
        removed = self._nodes(provider_type)
        del self.pools.types[provider_type]
        self._forget_unnamed_files()
        self._changed("pools")
        return len(removed)

    @hookimpl
    async def cfgstore_pools_set_disabled(
        self, provider_type: str, uuid: str, disabled: bool
    ) -> None:
        node = self._node(provider_type, uuid)
        node.state.is_disabled = disabled
        node.ensure_keys("isDisabled")
        self._changed("pools")

    @hookimpl
    async def cfgstore_pools_reset_health(self, provider_type: str) -> int:
        nodes = self._nodes(provider_type)
        for node in nodes:
            state = node.state
            state.is_healthy, state.error_count, state.refresh_count = True, 0, 0
            state.last_error_time = state.last_error_message = None
            state.needs_refresh = False
        self._changed("pools")
        return len(nodes)

    @hookimpl
    async def cfgstore_pools_delete_unhealthy(self, provider_type: str) -> list[str]:
        nodes = self._nodes(provider_type)
        removed = [n.uuid for n in nodes if not n.state.is_healthy]
        nodes[:] = [n for n in nodes if n.state.is_healthy]
        if not nodes:
            del self.pools.types[provider_type]
        self._forget_unnamed_files()
        self._changed("pools")
        return removed

    @hookimpl
    async def cfgstore_pools_apply_records(self, records: Sequence[NodeRecord]) -> None:
        for record in records:
            node = self.pools.find(record.provider_type, record.uuid)
            if node is not None:  # records for deleted nodes are dropped
                apply_record(node, record)
        self._changed("pools")

    @hookimpl
    async def cfgstore_pools_import(self, pools: ProviderPools, keep_live_state: bool) -> None:
        incoming = pools.copy()
        if keep_live_state:
            for provider_type, node in incoming:
                stored = self.pools.find(provider_type, node.uuid)
                if stored is not None:
                    keep_live_fields(node, stored)
        self.pools = incoming
        self._forget_unnamed_files()
        self._changed("pools")
        self._changed("credentials")

    # -- kept files (optional: what cfgctl migrate keeps of a deployment as bytes) ----------

    @hookimpl
    async def cfgstore_kept_files_get(self) -> dict[str, bytes]:
        return dict(self.kept_files)

    @hookimpl
    async def cfgstore_kept_files_put(self, files: dict[str, bytes]) -> None:
        self.kept_files = dict(files)
        self._changed("kept_files")

    # -- credentials -----------------------------------------------------------------------

    def _file_of(self, provider_type: str, uuid: str) -> str | None:
        node = self.pools.find(provider_type, uuid)
        return credential_file_key(provider_type, node) if node is not None else None

    def _forget_unnamed_files(self) -> None:
        """A credential lives while some node names its file."""
        named = {credential_file_key(t, n) for t, n in self.pools}
        self.credentials = {f: c for f, c in self.credentials.items() if f in named}

    @hookimpl
    async def cfgstore_credentials_get(self, provider_type: str, uuid: str) -> Credential | None:
        file_key = self._file_of(provider_type, uuid)
        stored = self.credentials.get(file_key) if file_key is not None else None
        if stored is None:
            return None
        carrier = credential_path_of(provider_type, self._node(provider_type, uuid))
        return Credential(
            provider_type,
            uuid,
            copy.deepcopy(stored[0]),
            source_path=carrier[1] if carrier else None,
            siblings=copy.deepcopy(stored[2]),
            token_format=token_format_for(provider_type),
            version=stored[1],
        )

    @hookimpl
    async def cfgstore_credentials_put(
        self, credential: Credential, expected_version: str | None
    ) -> str:
        key = (credential.provider_type, credential.uuid)
        node = self._node(*key)
        if not path_keys_for(key[0]):
            raise InvalidData("credential", key[0], "this provider type keeps no credential files")
        file_key = self._file_of(*key)
        current = self.credentials.get(file_key) if file_key is not None else None
        actual = current[1] if current else None
        if expected_version != ANY_VERSION and expected_version != actual:
            raise VersionConflict("credential", "/".join(key), expected_version, actual)
        if file_key is None:  # give it the path export writes to
            path = new_credential_path(key[0], self.pools, timefmt.now_ms())
            node.settings[path_keys_for(key[0])[0]] = path
            node.ensure_keys(path_keys_for(key[0])[0])
            file_key = self._file_of(*key)
            assert file_key is not None
            self._changed("pools")
        version = self._new_version()
        self.credentials[file_key] = (
            copy.deepcopy(credential.document),
            version,
            copy.deepcopy(credential.siblings),
        )
        self._changed("credentials")
        return version

    @hookimpl
    async def cfgstore_credentials_delete(self, provider_type: str, uuid: str) -> bool:
        file_key = self._file_of(provider_type, uuid)
        existed = file_key is not None and self.credentials.pop(file_key, None) is not None
        self._changed("credentials")
        return existed

    @hookimpl
    async def cfgstore_credentials_list(self) -> list[CredentialRef]:
        refs, seen = [], set()
        for provider_type, node in self.pools:  # in pool order, a shared file once
            file_key = credential_file_key(provider_type, node)
            stored = self.credentials.get(file_key) if file_key is not None else None
            if stored is not None and file_key not in seen:
                seen.add(file_key)
                carrier = credential_path_of(provider_type, node)
                path = carrier[1] if carrier else None
                refs.append(CredentialRef(provider_type, node.uuid, path, stored[1]))
        return refs

    @hookimpl
    async def cfgstore_credentials_lock(
        self, provider_type: str, uuid: str, ttl_ms: int
    ) -> str | None:
        # The file's lock, whichever node it is taken through; a pathless node has its own.
        lock = self._file_of(provider_type, uuid) or f"{provider_type}\0{uuid}"
        now = timefmt.now_ms()
        held = self.locks.get(lock)
        if held is not None and held[1] > now:
            return None
        secret = secrets.token_hex(16)
        self.locks[lock] = (secret, now + ttl_ms)  # expires by itself
        return f"{secret}@{lock}"  # unlocking needs neither the node nor its path

    @hookimpl
    async def cfgstore_credentials_unlock(self, provider_type: str, uuid: str, token: str) -> bool:
        secret, _, lock = token.partition("@")
        held = self.locks.get(lock)
        if held is None or held[0] != secret or held[1] <= timefmt.now_ms():
            return False
        del self.locks[lock]
        return True

    # -- config and the other documents ----------------------------------------------------

    @hookimpl
    async def cfgstore_config_get(self) -> MainConfig:
        document, version = self.config or ({}, ABSENT_VERSION)
        return config_from_json(copy.deepcopy(document), "dict config", version)

    @hookimpl
    async def cfgstore_config_put(
        self, document: dict[str, JSONValue], expected_version: str
    ) -> str:
        if not isinstance(document, dict):
            raise InvalidData("config", "$", "config must be a JSON object")
        actual = self.config[1] if self.config else ABSENT_VERSION
        if expected_version != ANY_VERSION and expected_version != actual:
            raise VersionConflict("config", "config", expected_version, actual)
        version = self._new_version()
        self.config = (copy.deepcopy(document), version)
        self._changed("config")
        return version

    @hookimpl
    async def cfgstore_system_prompt_get(self) -> str | None:
        return self.system_prompt

    @hookimpl
    async def cfgstore_system_prompt_put(self, text: str) -> None:
        self.system_prompt = text
        self._changed("system_prompt")

    @hookimpl
    async def cfgstore_custom_models_list(self) -> list[CustomModel]:
        return copy.deepcopy(self.custom_models)

    def _set_models(self, doc: list[JSONValue]) -> None:
        self.custom_models = custom_models_from_json(copy.deepcopy(doc), "custom models")
        self._changed("custom_models")

    @hookimpl
    async def cfgstore_custom_models_add(self, model: CustomModel) -> None:
        self._set_models(with_model(self.custom_models, model))

    @hookimpl
    async def cfgstore_custom_models_update(
        self, model_id: str, changes: Mapping[str, JSONValue]
    ) -> CustomModel:
        doc, updated = with_model_updated(self.custom_models, model_id, changes)
        self._set_models(doc)
        return copy.deepcopy(updated)

    @hookimpl
    async def cfgstore_custom_models_delete(self, model_id: str) -> None:
        self._set_models(without_model(self.custom_models, model_id))

    @hookimpl
    async def cfgstore_custom_models_put(self, models: list[CustomModel]) -> None:
        self._set_models(models_to_json(models))  # duplicate ids: InvalidData, nothing set

    @hookimpl
    async def cfgstore_password_get(self) -> str | None:
        return (self.password or "").strip() or None

    @hookimpl
    async def cfgstore_password_put(self, stored: str) -> None:
        if not stored.strip():
            raise InvalidData("password", "stored", "must not be empty")
        self.password = stored
        self._changed("password")

    @hookimpl
    async def cfgstore_usage_cache_get(self) -> UsageCache | None:
        return copy.deepcopy(self.usage_cache)

    @hookimpl
    async def cfgstore_usage_cache_put(self, cache: UsageCache) -> None:
        self.usage_cache = copy.deepcopy(cache)
        self._changed("usage_cache")

    @hookimpl
    async def cfgstore_usage_cache_put_type(
        self, provider_type: str, entry: JSONValue, timestamp: str
    ) -> None:
        cache = self.usage_cache or UsageCache(timestamp)
        cache.providers[provider_type] = copy.deepcopy(entry)
        cache.timestamp = timestamp
        self.usage_cache = cache
        self._changed("usage_cache")

    @hookimpl
    async def cfgstore_plugin_config_get(self) -> PluginConfig:
        return copy.deepcopy(self.plugin_config)

    @hookimpl
    async def cfgstore_plugin_config_put(self, config: PluginConfig) -> None:
        self.plugin_config = copy.deepcopy(config)
        self._changed("plugin_config")

    @hookimpl
    async def cfgstore_plugin_config_set_enabled(self, name: str, enabled: bool) -> None:
        self.plugin_config.set_enabled(name, enabled)
        self._changed("plugin_config")

    # -- web-UI sessions (no change event needed: nobody caches them) ----------------------

    @hookimpl
    async def cfgstore_sessions_add(self, token: str, session: UiSession) -> None:
        self.sessions[token] = session

    @hookimpl
    async def cfgstore_sessions_get(self, token: str, now_ms: int) -> UiSession | None:
        session = self.sessions.get(token)
        return None if session is None or session.expired(now_ms) else copy.copy(session)

    @hookimpl
    async def cfgstore_sessions_delete(self, token: str) -> bool:
        return self.sessions.pop(token, None) is not None

    @hookimpl
    async def cfgstore_sessions_delete_digest(self, digest: str) -> bool:
        token = next((t for t in self.sessions if token_digest(t) == digest), None)
        return token is not None and self.sessions.pop(token, None) is not None

    @hookimpl
    async def cfgstore_sessions_delete_others(self, keep_token: str | None) -> int:
        removed = [t for t in self.sessions if t != keep_token]
        for token in removed:
            del self.sessions[token]
        return len(removed)

    @hookimpl
    async def cfgstore_sessions_purge_expired(self, now_ms: int) -> int:
        expired = [t for t, s in self.sessions.items() if s.expired(now_ms)]
        for token in expired:
            del self.sessions[token]
        return len(expired)

    @hookimpl
    async def cfgstore_sessions_count(self, now_ms: int) -> int:
        return sum(1 for s in self.sessions.values() if not s.expired(now_ms))

    # -- the admin-login counter (per store, as the Node service keeps it) ------------------

    @hookimpl
    async def cfgstore_login_guard_get(self, client: str, now_ms: int) -> LoginGuard:
        kept = self.logins.get(client_digest(client))
        return CLEAR if kept is None else kept.guard(now_ms)

    @hookimpl
    async def cfgstore_login_failure_add(
        self, client: str, now_ms: int, max_attempts: int, lockout_ms: int
    ) -> LoginGuard:
        digest = client_digest(client)
        kept = add_failure(self.logins.get(digest), now_ms, max_attempts, lockout_ms)
        self.logins[digest] = kept
        return kept.guard(now_ms)

    @hookimpl
    async def cfgstore_login_attempt_reserve(
        self, client: str, now_ms: int, max_attempts: int, lockout_ms: int, min_interval_ms: int
    ) -> LoginAttempt:
        digest = client_digest(client)
        kept, attempt = reserve_attempt(
            self.logins.get(digest), now_ms, max_attempts, lockout_ms, min_interval_ms
        )
        if kept is not None:  # None: refused, nothing changes
            self.logins[digest] = kept
        return attempt

    @hookimpl
    async def cfgstore_login_failures_clear(self, client: str) -> None:
        self.logins.pop(client_digest(client), None)
