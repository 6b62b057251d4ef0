"""Config (compare-and-set), system prompt, custom models, plugins, usage cache, password."""

from __future__ import annotations

import pytest

from cfgstore.adapters import Store
from cfgstore.errors import AlreadyExists, InvalidData, NotFound, VersionConflict
from cfgstore.model.custom_models import CustomModel
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.usage_cache import UsageCache
from cfgstore.model.versions import ABSENT_VERSION, ANY_VERSION, SCHEMA_VERSION
from tests.contract.conftest import Deployment


async def test_config_absent_then_compare_and_set(store: Store) -> None:
    empty = await store.config.get()
    assert empty.document == {} and empty.version == ABSENT_VERSION
    assert empty.max_error_count == 10  # the Node default applies

    doc = {"REQUIRED_API_KEY": "k", "MAX_ERROR_COUNT": 3, "UNKNOWN_KEY": {"kept": [1]}}
    v1 = await store.config.put(doc, ABSENT_VERSION)
    got = await store.config.get()
    assert got.document == doc and got.version == v1 and got.max_error_count == 3
    assert list(got.document) == list(doc)

    with pytest.raises(VersionConflict):
        await store.config.put({"stale": True}, ABSENT_VERSION)
    v2 = await store.config.put({**doc, "SERVER_PORT": 3001}, v1)
    with pytest.raises(VersionConflict):
        await store.config.put({"stale": True}, v1)
    assert (await store.config.get()).version == v2
    await store.config.put({"forced": True}, ANY_VERSION)
    assert (await store.config.get()).document == {"forced": True}


async def test_config_must_be_an_object(store: Store) -> None:
    with pytest.raises(InvalidData):
        await store.config.put(["not", "an", "object"], ABSENT_VERSION)  # type: ignore[arg-type]
    assert (await store.config.get()).version == ABSENT_VERSION


async def test_system_prompt_is_kept_verbatim(store: Store) -> None:
    assert await store.system_prompt.get() is None
    text = "You are helpful.\n  Keep whitespace, 中文 and a trailing newline.\n"
    await store.system_prompt.put(text)
    assert await store.system_prompt.get() == text


async def test_custom_models_crud(store: Store) -> None:
    assert await store.custom_models.list() == []
    await store.custom_models.add(CustomModel("m1", {"id": "m1", "alias": "a", "topP": 0.9}))
    await store.custom_models.add(CustomModel("m2", {"id": "m2"}))
    with pytest.raises(AlreadyExists):
        await store.custom_models.add(CustomModel("m1", {"id": "m1"}))
    updated = await store.custom_models.update("m1", {"alias": "b", "id": "ignored"})
    assert updated.document == {"id": "m1", "alias": "b", "topP": 0.9}
    await store.custom_models.delete("m2")
    with pytest.raises(NotFound):
        await store.custom_models.delete("m2")
    with pytest.raises(NotFound):
        await store.custom_models.update("m2", {})
    assert [m.document for m in await store.custom_models.list()] == [
        {"id": "m1", "alias": "b", "topP": 0.9}
    ]


async def test_custom_models_replace_all(store: Store) -> None:
    await store.custom_models.add(CustomModel("old", {"id": "old"}))
    models = [CustomModel("b", {"id": "b", "x": 1}), CustomModel("a", {"id": "a"})]
    await store.custom_models.put_all(models)
    assert [m.document for m in await store.custom_models.list()] == [
        {"id": "b", "x": 1},
        {"id": "a"},
    ]
    with pytest.raises(InvalidData):
        await store.custom_models.put_all([CustomModel("d", {"id": "d"})] * 2)
    assert [m.id for m in await store.custom_models.list()] == ["b", "a"]


async def test_plugin_config(store: Store) -> None:
    assert (await store.plugin_config.get()).plugins == {}
    await store.plugin_config.put(
        PluginConfig({"api-potluck": {"enabled": False, "description": "d", "x": 1}})
    )
    await store.plugin_config.set_enabled("api-potluck", True)
    await store.plugin_config.set_enabled("new-plugin", False)
    config = await store.plugin_config.get()
    assert config.plugins == {
        "api-potluck": {"enabled": True, "description": "d", "x": 1},
        "new-plugin": {"enabled": False},
    }
    assert config.is_enabled("api-potluck") and not config.is_enabled("new-plugin")


async def test_usage_cache(store: Store) -> None:
    assert await store.usage_cache.get() is None
    await store.usage_cache.put_type(
        "claude-kiro-oauth", {"instances": []}, "2026-05-30T08:00:00.000Z"
    )
    await store.usage_cache.put_type("grok-web", {"instances": [1]}, "2026-05-30T09:00:00.000Z")
    cache = await store.usage_cache.get()
    assert cache is not None and cache.timestamp == "2026-05-30T09:00:00.000Z"
    assert list(cache.providers) == ["claude-kiro-oauth", "grok-web"]
    await store.usage_cache.put(UsageCache("2026-05-30T10:00:00.000Z", {"codex": {"n": 1}}))
    cache = await store.usage_cache.get()
    assert cache is not None and cache.providers == {"codex": {"n": 1}}


async def test_password(store: Store) -> None:
    assert await store.password.get_stored() is None
    assert not await store.password.verify("admin123")  # never a default (unlike Node)
    await store.password.set("s3cret-admin")
    stored = await store.password.get_stored()
    assert stored is not None and stored.startswith("pbkdf2:")
    assert await store.password.verify("s3cret-admin")
    assert not await store.password.verify("admin123")
    with pytest.raises(InvalidData):
        await store.password.put_stored("   ")


async def test_documents_survive_reopen(deployment: Deployment) -> None:
    async with deployment.open() as store:
        await store.config.put({"A": 1}, ABSENT_VERSION)
        await store.system_prompt.put("p")
        await store.plugin_config.set_enabled("x", True)
    async with deployment.open() as store:
        assert (await store.config.get()).document == {"A": 1}
        assert await store.system_prompt.get() == "p"
        assert (await store.plugin_config.get()).is_enabled("x")


async def test_meta_fields(deployment: Deployment) -> None:
    async with deployment.open() as store:
        before = await store.meta.get()  # a Redis namespace is seeded with schema and id
        assert set(before) <= {"schema", "namespace"}
        await store.meta.update({"schema": str(SCHEMA_VERSION), "namespace": "abc"})
        await store.meta.update({"migrated_at": "2026-05-30T08:00:00.000Z"})
    async with deployment.open() as store:
        assert await store.meta.get() == {
            "schema": str(SCHEMA_VERSION),
            "namespace": "abc",
            "migrated_at": "2026-05-30T08:00:00.000Z",
        }
