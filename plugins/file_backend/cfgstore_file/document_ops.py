"""Operations on the whole-file documents: config, system prompt, custom models, sessions,
password, usage cache, plugin config."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

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
from cfgstore.model.password import js_trim
from cfgstore.model.plugin_config import PluginConfig, plugin_config_from_json
from cfgstore.model.sessions import (
    UiSession,
    sessions_from_json,
    sessions_to_json,
    token_digest,
)
from cfgstore.model.usage_cache import UsageCache, usage_cache_from_json
from cfgstore.model.versions import ABSENT_VERSION, ANY_VERSION, content_version

if TYPE_CHECKING:
    from cfgstore_file.documents import DocumentFile

T = TypeVar("T")


class DocumentOps:
    docs: dict[str, DocumentFile]

    def _publish(self, entity: str, *ids: str, remote: bool = False) -> None:
        raise NotImplementedError

    async def _read_json(self, name: str) -> JSONValue | None:
        doc = self.docs[name]
        raw = await doc.read()
        return None if raw is None else jsjson.loads(raw, str(doc.path))

    async def _update_json(
        self,
        name: str,
        entity: str,
        change: Callable[[JSONValue | None], tuple[JSONValue, T]],
    ) -> T:
        """Locked read-modify-write of a JSON document; ``change`` gets the parsed current
        document (``None`` when absent) and returns (new document, result)."""
        doc = self.docs[name]

        def apply(raw: bytes | None) -> tuple[bytes | None, T]:
            current = None if raw is None else jsjson.loads(raw, str(doc.path))
            new, result = change(current)
            return jsjson.dump_bytes(new), result

        result = await doc.update(apply)
        self._publish(entity)
        return result

    # -- meta --------------------------------------------------------------------------

    @hookimpl
    async def cfgstore_meta_get(self) -> dict[str, str]:
        doc = await self._read_json("meta")
        return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}

    @hookimpl
    async def cfgstore_meta_update(self, fields: Mapping[str, str]) -> None:
        def change(doc: JSONValue | None) -> tuple[JSONValue, None]:
            current = dict(doc) if isinstance(doc, dict) else {}
            current.update(fields)
            return current, None

        await self._update_json("meta", "meta", change)

    # -- config ------------------------------------------------------------------------

    @hookimpl
    async def cfgstore_config_get(self) -> MainConfig:
        doc = self.docs["config"]
        raw = await doc.read()
        if raw is None:
            return MainConfig()
        return config_from_text(raw, str(doc.path), content_version(raw))

    @hookimpl
    async def cfgstore_config_put(
        self, document: dict[str, JSONValue], expected_version: str
    ) -> str:
        if not isinstance(document, dict):
            raise InvalidData("config", "$", "config must be a JSON object")
        data = jsjson.dump_bytes(document)
        doc = self.docs["config"]

        def apply(raw: bytes | None) -> tuple[bytes, str]:
            actual = content_version(raw) if raw is not None else ABSENT_VERSION
            if expected_version not in (ANY_VERSION, actual):
                raise VersionConflict("config", "config.json", expected_version, actual)
            return data, content_version(data)

        version = await doc.update(apply)
        self._publish("config")
        return version

    # -- system prompt -----------------------------------------------------------------

    @hookimpl
    async def cfgstore_system_prompt_get(self) -> str | None:
        raw = await self.docs["system_prompt"].read()
        if raw is None:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidData(
                str(self.docs["system_prompt"].path), f"byte {exc.start}", "not UTF-8 text"
            ) from None

    @hookimpl
    async def cfgstore_system_prompt_put(self, text: str) -> None:
        data = text.encode("utf-8")
        await self.docs["system_prompt"].update(lambda _raw: (data, None))
        self._publish("system_prompt")

    # -- custom models -----------------------------------------------------------------

    def _models(self, doc: JSONValue | None) -> list[CustomModel]:
        return (
            []
            if doc is None
            else custom_models_from_json(doc, str(self.docs["custom_models"].path))
        )

    @hookimpl
    async def cfgstore_custom_models_list(self) -> list[CustomModel]:
        return self._models(await self._read_json("custom_models"))

    @hookimpl
    async def cfgstore_custom_models_put(self, models: list[CustomModel]) -> None:
        document = [m.to_json() for m in models]
        custom_models_from_json(document, "custom models")  # duplicate ids: nothing written
        await self._update_json("custom_models", "custom_models", lambda _doc: (document, None))

    @hookimpl
    async def cfgstore_custom_models_add(self, model: CustomModel) -> None:
        await self._update_json(
            "custom_models",
            "custom_models",
            lambda doc: (with_model(self._models(doc), model), None),
        )

    @hookimpl
    async def cfgstore_custom_models_update(
        self, model_id: str, changes: Mapping[str, JSONValue]
    ) -> CustomModel:
        return await self._update_json(
            "custom_models",
            "custom_models",
            lambda doc: with_model_updated(self._models(doc), model_id, changes),
        )

    @hookimpl
    async def cfgstore_custom_models_delete(self, model_id: str) -> None:
        await self._update_json(
            "custom_models",
            "custom_models",
            lambda doc: (without_model(self._models(doc), model_id), None),
        )

    # -- sessions ----------------------------------------------------------------------

    def _sessions(self, doc: JSONValue | None) -> dict[str, UiSession]:
        return {} if doc is None else sessions_from_json(doc, str(self.docs["sessions"].path))

    @hookimpl
    async def cfgstore_sessions_add(self, token: str, session: UiSession) -> None:
        def change(doc: JSONValue | None) -> tuple[JSONValue, None]:
            sessions = self._sessions(doc)
            sessions[token] = session
            return sessions_to_json(sessions), None

        await self._update_json("sessions", "sessions", change)

    @hookimpl
    async def cfgstore_sessions_get(self, token: str, now_ms: int) -> UiSession | None:
        session = self._sessions(await self._read_json("sessions")).get(token)
        return None if session is None or session.expired(now_ms) else session

    async def _remove_sessions(self, doomed: Callable[[str, UiSession], bool]) -> int:
        """Remove the sessions ``doomed(token, session)`` picks, in one locked
        read-modify-write of the token store; return how many."""

        def change(doc: JSONValue | None) -> tuple[JSONValue, int]:
            sessions = self._sessions(doc)
            kept = {t: s for t, s in sessions.items() if not doomed(t, s)}
            return sessions_to_json(kept), len(sessions) - len(kept)

        return await self._update_json("sessions", "sessions", change)

    @hookimpl
    async def cfgstore_sessions_delete(self, token: str) -> bool:
        return bool(await self._remove_sessions(lambda t, _: t == token))

    @hookimpl
    async def cfgstore_sessions_delete_digest(self, digest: str) -> bool:
        return bool(await self._remove_sessions(lambda t, _: token_digest(t) == digest))

    @hookimpl
    async def cfgstore_sessions_delete_others(self, keep_token: str | None) -> int:
        return await self._remove_sessions(lambda t, _: t != keep_token)

    @hookimpl
    async def cfgstore_sessions_purge_expired(self, now_ms: int) -> int:
        return await self._remove_sessions(lambda _, s: s.expired(now_ms))

    @hookimpl
    async def cfgstore_sessions_count(self, now_ms: int) -> int:
        sessions = self._sessions(await self._read_json("sessions"))
        return sum(1 for s in sessions.values() if not s.expired(now_ms))

    # -- password ----------------------------------------------------------------------

    @hookimpl
    async def cfgstore_password_get(self) -> str | None:
        raw = await self.docs["password"].read()
        text = js_trim(raw.decode("utf-8", "replace")) if raw is not None else ""
        return text or None

    @hookimpl
    async def cfgstore_password_put(self, stored: str) -> None:
        if not stored.strip():
            raise InvalidData("password", "stored", "must not be empty")
        data = stored.strip().encode("utf-8")
        await self.docs["password"].update(lambda _raw: (data, None))
        self._publish("password")

    # -- usage cache -------------------------------------------------------------------

    @hookimpl
    async def cfgstore_usage_cache_get(self) -> UsageCache | None:
        doc = await self._read_json("usage_cache")
        return (
            None if doc is None else usage_cache_from_json(doc, str(self.docs["usage_cache"].path))
        )

    @hookimpl
    async def cfgstore_usage_cache_put(self, cache: UsageCache) -> None:
        await self._update_json("usage_cache", "usage_cache", lambda _doc: (cache.to_json(), None))

    @hookimpl
    async def cfgstore_usage_cache_put_type(
        self, provider_type: str, entry: JSONValue, timestamp: str
    ) -> None:
        source = str(self.docs["usage_cache"].path)

        def change(doc: JSONValue | None) -> tuple[JSONValue, None]:
            cache = UsageCache(None) if doc is None else usage_cache_from_json(doc, source)
            cache.timestamp = timestamp
            cache.providers[provider_type] = entry
            return cache.to_json(), None

        await self._update_json("usage_cache", "usage_cache", change)

    # -- plugin config -----------------------------------------------------------------

    def _plugins(self, doc: JSONValue | None) -> PluginConfig:
        return (
            PluginConfig()
            if doc is None
            else plugin_config_from_json(doc, str(self.docs["plugins"].path))
        )

    @hookimpl
    async def cfgstore_plugin_config_get(self) -> PluginConfig:
        return self._plugins(await self._read_json("plugins"))

    @hookimpl
    async def cfgstore_plugin_config_put(self, config: PluginConfig) -> None:
        await self._update_json("plugins", "plugin_config", lambda _doc: (config.to_json(), None))

    @hookimpl
    async def cfgstore_plugin_config_set_enabled(self, name: str, enabled: bool) -> None:
        def change(doc: JSONValue | None) -> tuple[JSONValue, None]:
            config = self._plugins(doc)
            config.set_enabled(name, enabled)
            return config.to_json(), None

        await self._update_json("plugins", "plugin_config", change)
