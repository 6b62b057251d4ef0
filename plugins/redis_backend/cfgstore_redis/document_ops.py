"""Config, system prompt, custom models, plugin config, sessions, password, usage cache
and metadata on Redis."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import TypeVar

from cfgstore import hookimpl
from cfgstore.errors import InvalidData, VersionConflict
from cfgstore.model import jsjson
from cfgstore.model.config import MainConfig, config_from_text
from cfgstore.model.custom_models import (
    CustomModel,
    custom_models_from_json,
    with_model,
    with_model_updated,
    without_model,
)
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.plugin_config import PluginConfig, plugin_config_from_json
from cfgstore.model.sessions import UiSession, session_to_json, token_digest
from cfgstore.model.usage_cache import UsageCache, usage_cache_from_json
from cfgstore.model.versions import ABSENT_VERSION
from cfgstore_redis.base import RedisParts
from cfgstore_redis.keys import SEPARATOR
from cfgstore_redis.translate import translated

T = TypeVar("T")

KEPT_FILES_CHUNK = 500
"""Kept files per HSET command."""

EDIT_ATTEMPTS = 50
"""Optimistic edits of one document retry this often against concurrent admin edits."""


def _dumps(value: JSONValue) -> str:
    return json.dumps(value, ensure_ascii=False)


class DocumentOps(RedisParts):
    # -- versioned documents -------------------------------------------------------------

    async def _read_document(self, key: str) -> tuple[JSONValue | None, str]:
        text, version = await self._read_text(key)
        return (None if text is None else jsjson.loads(text, f"redis {key}")), version

    async def _read_text(self, key: str) -> tuple[str | None, str]:
        """A versioned document's JSON text (``None`` when absent) and version."""
        with translated(self.connection):
            text, version = await self.redis.hmget(key, "doc", "ver")
        if text is None:
            return None, ABSENT_VERSION
        return text, str(version)

    async def _cas(self, key: str, entity: str, document: JSONValue, expected: str) -> str | None:
        """Write if the version is still ``expected``; the new version, or ``None``."""
        result = await self._run(
            "CAS_DOCUMENT",
            [key, self.keys.revision],
            [self.keys.channel, self._head(entity), expected, _dumps(document)],
        )
        if result[0] == "conflict":
            return None
        self._changed(entity)
        return str(result[1])

    async def _edit(
        self, key: str, entity: str, change: Callable[[JSONValue | None], tuple[JSONValue, T]]
    ) -> T:
        """Read-modify-compare-and-set, repeated while other admin edits interfere."""
        for _ in range(EDIT_ATTEMPTS):
            current, version = await self._read_document(key)
            new, result = change(current)
            if await self._cas(key, entity, new, version) is not None:
                return result
        raise VersionConflict(entity, key, None, None)

    # -- meta ------------------------------------------------------------------------------

    @hookimpl
    async def cfgstore_meta_get(self) -> dict[str, str]:
        with translated(self.connection):
            fields: dict[str, str] = await self.redis.hgetall(self.keys.meta)
        return dict(fields)

    @hookimpl
    async def cfgstore_meta_update(self, fields: Mapping[str, str]) -> None:
        if fields:
            with translated(self.connection):
                await self.redis.hset(self.keys.meta, mapping=dict(fields))

    # -- config ------------------------------------------------------------------------

    @hookimpl
    async def cfgstore_config_get(self) -> MainConfig:
        text, version = await self._read_text(self.keys.config)
        if text is None:
            return MainConfig()
        return config_from_text(text, f"redis {self.keys.config}", version)

    @hookimpl
    async def cfgstore_config_put(
        self, document: dict[str, JSONValue], expected_version: str
    ) -> str:
        if not isinstance(document, dict):
            raise InvalidData("config", "$", "config must be a JSON object")
        version = await self._cas(self.keys.config, "config", document, expected_version)
        if version is None:
            _, actual = await self._read_text(self.keys.config)
            raise VersionConflict("config", "config", expected_version, actual)
        return version

    # -- system prompt -----------------------------------------------------------------

    @hookimpl
    async def cfgstore_system_prompt_get(self) -> str | None:
        with translated(self.connection):
            text: str | None = await self.redis.get(self.keys.system_prompt)
        return text

    @hookimpl
    async def cfgstore_system_prompt_put(self, text: str) -> None:
        await self._run(
            "SET_VALUE",
            [self.keys.system_prompt, self.keys.revision],
            [self.keys.channel, self._head("system_prompt"), text],
        )
        self._changed("system_prompt")

    # -- custom models -----------------------------------------------------------------

    def _models(self, doc: JSONValue | None) -> list[CustomModel]:
        return (
            [] if doc is None else custom_models_from_json(doc, f"redis {self.keys.custom_models}")
        )

    @hookimpl
    async def cfgstore_custom_models_list(self) -> list[CustomModel]:
        doc, _ = await self._read_document(self.keys.custom_models)
        return self._models(doc)

    @hookimpl
    async def cfgstore_custom_models_put(self, models: list[CustomModel]) -> None:
        document = [m.to_json() for m in models]
        custom_models_from_json(document, "custom models")  # duplicate ids: nothing written
        await self._edit(self.keys.custom_models, "custom_models", lambda _doc: (document, None))

    @hookimpl
    async def cfgstore_custom_models_add(self, model: CustomModel) -> None:
        await self._edit(
            self.keys.custom_models,
            "custom_models",
            lambda doc: (with_model(self._models(doc), model), None),
        )

    @hookimpl
    async def cfgstore_custom_models_update(
        self, model_id: str, changes: Mapping[str, JSONValue]
    ) -> CustomModel:
        return await self._edit(
            self.keys.custom_models,
            "custom_models",
            lambda doc: with_model_updated(self._models(doc), model_id, changes),
        )

    @hookimpl
    async def cfgstore_custom_models_delete(self, model_id: str) -> None:
        await self._edit(
            self.keys.custom_models,
            "custom_models",
            lambda doc: (without_model(self._models(doc), model_id), None),
        )

    # -- plugin config -----------------------------------------------------------------

    def _plugins(self, doc: JSONValue | None) -> PluginConfig:
        return (
            PluginConfig()
            if doc is None
            else plugin_config_from_json(doc, f"redis {self.keys.plugins}")
        )

    @hookimpl
    async def cfgstore_plugin_config_get(self) -> PluginConfig:
        doc, _ = await self._read_document(self.keys.plugins)
        return self._plugins(doc)

    @hookimpl
    async def cfgstore_plugin_config_put(self, config: PluginConfig) -> None:
        await self._edit(self.keys.plugins, "plugin_config", lambda _doc: (config.to_json(), None))

    @hookimpl
    async def cfgstore_plugin_config_set_enabled(self, name: str, enabled: bool) -> None:
        def change(doc: JSONValue | None) -> tuple[JSONValue, None]:
            config = self._plugins(doc)
            config.set_enabled(name, enabled)
            return config.to_json(), None

        await self._edit(self.keys.plugins, "plugin_config", change)

    # -- sessions: only a digest of the token is stored, with a Redis TTL -----------------

    @hookimpl
    async def cfgstore_sessions_add(self, token: str, session: UiSession) -> None:
        digest = token_digest(token)
        with translated(self.connection):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(
                    self.keys.session(digest),
                    _dumps(session_to_json(session)),
                    pxat=max(1, session.expiry_time),
                )
                pipe.zadd(self.keys.sessions, {digest: session.expiry_time})
                await pipe.execute()

    @hookimpl
    async def cfgstore_sessions_get(self, token: str, now_ms: int) -> UiSession | None:
        key = self.keys.session(token_digest(token))
        with translated(self.connection):
            raw = await self.redis.get(key)
        if raw is None:
            return None
        doc = jsjson.loads(raw, f"redis {key}")
        session = UiSession(str(doc["username"]), int(doc["loginTime"]), int(doc["expiryTime"]))
        return None if session.expired(now_ms) else session

    @hookimpl
    async def cfgstore_sessions_delete(self, token: str) -> bool:
        return await self.cfgstore_sessions_delete_digest(token_digest(token))

    @hookimpl
    async def cfgstore_sessions_delete_digest(self, digest: str) -> bool:
        with translated(self.connection):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(self.keys.session(digest))
                pipe.zrem(self.keys.sessions, digest)
                removed, _ = await pipe.execute()
        return bool(removed)

    @hookimpl
    async def cfgstore_sessions_delete_others(self, keep_token: str | None) -> int:
        keep = token_digest(keep_token) if keep_token is not None else ""
        removed = await self._run(
            "DELETE_SESSIONS_EXCEPT", [self.keys.sessions], [self.keys.session(""), keep]
        )
        return int(removed)

    @hookimpl
    async def cfgstore_sessions_purge_expired(self, now_ms: int) -> int:
        with translated(self.connection):
            expired = await self.redis.zrangebyscore(self.keys.sessions, "-inf", now_ms)
            if not expired:
                return 0
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(*[self.keys.session(d) for d in expired])
                pipe.zrem(self.keys.sessions, *expired)
                await pipe.execute()
        return len(expired)

    @hookimpl
    async def cfgstore_sessions_count(self, now_ms: int) -> int:
        with translated(self.connection):
            count: int = await self.redis.zcount(self.keys.sessions, f"({now_ms}", "+inf")
        return count

    # -- password ----------------------------------------------------------------------

    @hookimpl
    async def cfgstore_password_get(self) -> str | None:
        with translated(self.connection):
            stored: str | None = await self.redis.get(self.keys.password)
        return stored.strip() or None if stored is not None else None

    @hookimpl
    async def cfgstore_password_put(self, stored: str) -> None:
        if not stored.strip():
            raise InvalidData("password", "stored", "must not be empty")
        await self._run(
            "SET_VALUE",
            [self.keys.password, self.keys.revision],
            [self.keys.channel, self._head("password"), stored.strip()],
        )
        self._changed("password")

    # -- usage cache: one field per provider type ----------------------------------------

    @hookimpl
    async def cfgstore_usage_cache_get(self) -> UsageCache | None:
        with translated(self.connection):
            fields: dict[str, str] = await self.redis.hgetall(self.keys.usage)
        if not fields:
            return None
        source = f"redis {self.keys.usage}"
        order = [t for t in fields.get("@order", "").split(SEPARATOR) if t]
        doc: dict[str, JSONValue] = {
            "timestamp": jsjson.loads(fields.get("@timestamp", "null"), source),
            "providers": {
                t: jsjson.loads(fields[f"t:{t}"], source) for t in order if f"t:{t}" in fields
            },
        }
        doc.update(jsjson.loads(fields.get("@extra", "{}"), source))
        return usage_cache_from_json(doc, source)

    @hookimpl
    async def cfgstore_usage_cache_put(self, cache: UsageCache) -> None:
        if any(SEPARATOR in t for t in cache.providers):
            raise InvalidData("usage cache", "providers", "type names must not contain \\x1f")
        fields: dict[str, str] = {
            "@timestamp": _dumps(cache.timestamp),
            "@extra": _dumps(cache.extra),
            "@order": SEPARATOR.join(cache.providers),
        }
        fields.update({f"t:{t}": _dumps(entry) for t, entry in cache.providers.items()})
        pairs = [x for item in fields.items() for x in item]
        await self._run(
            "REPLACE_HASH",
            [self.keys.usage, self.keys.revision],
            [self.keys.channel, self._head("usage_cache"), *pairs],
        )
        self._changed("usage_cache")

    @hookimpl
    async def cfgstore_usage_cache_put_type(
        self, provider_type: str, entry: JSONValue, timestamp: str
    ) -> None:
        if SEPARATOR in provider_type:
            raise InvalidData("usage cache", provider_type, "must not contain \\x1f")
        await self._run(
            "USAGE_PUT_TYPE",
            [self.keys.usage, self.keys.revision],
            [
                self.keys.channel,
                self._head("usage_cache", provider_type),
                provider_type,
                _dumps(entry),
                _dumps(timestamp),
            ],
        )
        self._changed("usage_cache", provider_type)

    # -- kept files: relative path → base64 of the bytes (any bytes, not only UTF-8) -----

    @hookimpl
    async def cfgstore_kept_files_get(self) -> dict[str, bytes]:
        with translated(self.connection):
            fields: dict[str, str] = await self.redis.hgetall(self.keys.kept_files)
        return {path: base64.b64decode(data) for path, data in sorted(fields.items())}

    @hookimpl
    async def cfgstore_kept_files_put(self, files: dict[str, bytes]) -> None:
        # One transaction, in chunks (a script's unpack() is bounded to a few thousand
        # arguments; a deployment may keep thousands of files). Nobody caches kept files,
        # so the change message can follow the transaction.
        pairs = [(path, base64.b64encode(data).decode("ascii")) for path, data in files.items()]
        with translated(self.connection):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(self.keys.kept_files)
                for start in range(0, len(pairs), KEPT_FILES_CHUNK):
                    pipe.hset(
                        self.keys.kept_files, mapping=dict(pairs[start : start + KEPT_FILES_CHUNK])
                    )
                # INCR itself: redis-py's incr() sends INCRBY, which the documented ACL omits.
                pipe.execute_command("INCR", self.keys.revision)
                revision = (await pipe.execute())[-1]
            await self.redis.publish(self.keys.channel, f"{self._head('kept_files')}{revision}}}")
        self._changed("kept_files")
