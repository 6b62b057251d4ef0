"""Config (compare-and-set), system prompt, custom models, plugins, usage cache, password,
meta."""

from __future__ import annotations

import pytest

from cfgstore.adapters import Store
from cfgstore.errors import AlreadyExists, InvalidData, NotFound, VersionConflict
from cfgstore.model.custom_models import CustomModel
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.usage_cache import UsageCache
from cfgstore.model.versions import ABSENT_VERSION, ANY_VERSION, SCHEMA_VERSION
from cfgstore.testing.deployment import Deployment
from cfgstore.testing.fixtures import deployment_fixture, store_fixture  # noqa: F401
from cfgstore.testing.rules import rule, rule_raises

pytestmark = pytest.mark.asyncio  # every test here is a coroutine


async def test_config_absent_then_compare_and_set(store: Store) -> None:
    with rule(
        "cfgstore_config_get",
        "nothing stored: an empty document at ABSENT_VERSION, read with the defaults",
    ):
        empty = await store.config.get()
        assert empty.document == {} and empty.version == ABSENT_VERSION
        assert empty.max_error_count == 10  # the Node default applies

    doc = {"REQUIRED_API_KEY": "k", "MAX_ERROR_COUNT": 3, "UNKNOWN_KEY": {"kept": [1]}}
    v1 = await store.config.put(doc, ABSENT_VERSION)
    with rule(
        "cfgstore_config_get",
        "the document as put (unknown keys, key order) at the version put returned",
    ):
        got = await store.config.get()
        assert got.document == doc and got.version == v1 and got.max_error_count == 3
        assert list(got.document) == list(doc)

    with rule(
        "cfgstore_config_put", "a stale expected_version raises VersionConflict and writes nothing"
    ):
        with pytest.raises(VersionConflict):
            await store.config.put({"stale": True}, ABSENT_VERSION)
        v2 = await store.config.put({**doc, "SERVER_PORT": 3001}, v1)
        with pytest.raises(VersionConflict):
            await store.config.put({"stale": True}, v1)
        assert (await store.config.get()).version == v2
    with rule("cfgstore_config_put", "ANY_VERSION skips the check"):
        await store.config.put({"forced": True}, ANY_VERSION)
        assert (await store.config.get()).document == {"forced": True}


async def test_config_must_be_an_object(store: Store) -> None:
    with rule(
        "cfgstore_config_put",
        "a document that is not a JSON object raises InvalidData and writes nothing",
    ):
        with pytest.raises(InvalidData):
            not_an_object = ["not", "an", "object"]
            await store.config.put(not_an_object, ABSENT_VERSION)  # type: ignore[arg-type]
        assert (await store.config.get()).version == ABSENT_VERSION


async def test_system_prompt_is_kept_verbatim(store: Store) -> None:
    with rule("cfgstore_system_prompt_get", "None when absent"):
        assert await store.system_prompt.get() is None
    text = "You are helpful.\n  Keep whitespace, 中文 and a trailing newline.\n"
    await store.system_prompt.put(text)
    with rule("cfgstore_system_prompt_get", "the text exactly as put (no trimming)"):
        assert await store.system_prompt.get() == text


async def test_custom_models_crud(store: Store) -> None:
    with rule("cfgstore_custom_models_list", "an empty list when none"):
        assert await store.custom_models.list() == []
    await store.custom_models.add(CustomModel("m1", {"id": "m1", "alias": "a", "topP": 0.9}))
    await store.custom_models.add(CustomModel("m2", {"id": "m2"}))
    with rule_raises(
        "cfgstore_custom_models_add", "a taken id raises AlreadyExists", AlreadyExists
    ):
        await store.custom_models.add(CustomModel("m1", {"id": "m1"}))
    with rule(
        "cfgstore_custom_models_update",
        "shallow merge, keys keep their position, an id in changes is ignored",
    ):
        updated = await store.custom_models.update("m1", {"alias": "b", "id": "ignored"})
        assert updated.document == {"id": "m1", "alias": "b", "topP": 0.9}
        assert list(updated.document) == ["id", "alias", "topP"]
    await store.custom_models.delete("m2")
    with rule_raises("cfgstore_custom_models_delete", "an absent id raises NotFound", NotFound):
        await store.custom_models.delete("m2")
    with rule_raises("cfgstore_custom_models_update", "an absent id raises NotFound", NotFound):
        await store.custom_models.update("m2", {})
    with rule("cfgstore_custom_models_list", "every model as stored, in order"):
        assert [m.document for m in await store.custom_models.list()] == [
            {"id": "m1", "alias": "b", "topP": 0.9}
        ]


async def test_custom_models_replace_all(store: Store) -> None:
    await store.custom_models.add(CustomModel("old", {"id": "old"}))
    models = [CustomModel("b", {"id": "b", "x": 1}), CustomModel("a", {"id": "a"})]
    await store.custom_models.put_all(models)
    with rule("cfgstore_custom_models_put", "replaces the whole list, in its order"):
        assert [m.document for m in await store.custom_models.list()] == [
            {"id": "b", "x": 1},
            {"id": "a"},
        ]
    with rule("cfgstore_custom_models_put", "duplicate ids raise InvalidData, nothing written"):
        with pytest.raises(InvalidData):
            await store.custom_models.put_all([CustomModel("d", {"id": "d"})] * 2)
        assert [m.id for m in await store.custom_models.list()] == ["b", "a"]


async def test_plugin_config(store: Store) -> None:
    with rule("cfgstore_plugin_config_get", "empty when nothing is stored"):
        assert (await store.plugin_config.get()).plugins == {}
    await store.plugin_config.put(
        PluginConfig({"api-potluck": {"enabled": False, "description": "d", "x": 1}})
    )
    await store.plugin_config.set_enabled("api-potluck", True)
    await store.plugin_config.set_enabled("new-plugin", False)
    with rule(
        "cfgstore_plugin_config_set_enabled",
        "sets enabled keeping the other fields; an unknown name is added with only enabled",
    ):
        config = await store.plugin_config.get()
        assert config.plugins == {
            "api-potluck": {"enabled": True, "description": "d", "x": 1},
            "new-plugin": {"enabled": False},
        }
        assert config.is_enabled("api-potluck") and not config.is_enabled("new-plugin")


async def test_usage_cache(store: Store) -> None:
    with rule("cfgstore_usage_cache_get", "None when nothing was cached yet"):
        assert await store.usage_cache.get() is None
    await store.usage_cache.put_type(
        "claude-kiro-oauth", {"instances": []}, "2026-05-30T08:00:00.000Z"
    )
    await store.usage_cache.put_type("grok-web", {"instances": [1]}, "2026-05-30T09:00:00.000Z")
    with rule(
        "cfgstore_usage_cache_put_type",
        "creates the cache, keeps other types in order, sets the timestamp",
    ):
        cache = await store.usage_cache.get()
        assert cache is not None and cache.timestamp == "2026-05-30T09:00:00.000Z"
        assert list(cache.providers) == ["claude-kiro-oauth", "grok-web"]
    await store.usage_cache.put(UsageCache("2026-05-30T10:00:00.000Z", {"codex": {"n": 1}}))
    with rule("cfgstore_usage_cache_put", "replaces the whole cache"):
        cache = await store.usage_cache.get()
        assert cache is not None and cache.providers == {"codex": {"n": 1}}


async def test_password(store: Store) -> None:
    with rule("cfgstore_password_get", "None when absent (and no default password ever verifies)"):
        assert await store.password.get_stored() is None
        assert not await store.password.verify("admin123")
    await store.password.set("s3cret-admin")
    with rule("cfgstore_password_get", "the stored form as put"):
        stored = await store.password.get_stored()
        assert stored is not None and stored.startswith("pbkdf2:")
        assert await store.password.verify("s3cret-admin")
        assert not await store.password.verify("admin123")
    with rule("cfgstore_password_put", "a blank stored form raises InvalidData"):
        with pytest.raises(InvalidData):
            await store.password.put_stored("   ")
        assert await store.password.verify("s3cret-admin")


async def test_documents_survive_reopen(deployment: Deployment) -> None:
    async with deployment.open() as store:
        await store.config.put({"A": 1}, ABSENT_VERSION)
        await store.system_prompt.put("p")
        await store.plugin_config.set_enabled("x", True)
    async with deployment.open() as store:
        with rule("cfgstore_close", "every write accepted before close survives a reopen"):
            assert (await store.config.get()).document == {"A": 1}
            assert await store.system_prompt.get() == "p"
            assert (await store.plugin_config.get()).is_enabled("x")


async def test_meta_fields(deployment: Deployment) -> None:
    async with deployment.open() as store:
        with rule(
            "cfgstore_meta_get",
            "only what was recorded (the suite records schema and namespace before each test)",
        ):
            before = await store.meta.get()
            assert set(before) <= {"schema", "namespace"}
        await store.meta.update({"schema": str(SCHEMA_VERSION), "namespace": "abc"})
        await store.meta.update({"migrated_at": "2026-05-30T08:00:00.000Z"})
    async with deployment.open() as store:
        with rule("cfgstore_meta_update", "sets the given fields, keeps the others, durably"):
            assert await store.meta.get() == {
                "schema": str(SCHEMA_VERSION),
                "namespace": "abc",
                "migrated_at": "2026-05-30T08:00:00.000Z",
            }


async def test_documents_returned_are_copies(store: Store) -> None:
    await store.config.put({"A": {"deep": [1]}}, ABSENT_VERSION)
    await store.custom_models.add(CustomModel("m", {"id": "m", "x": [1]}))
    await store.plugin_config.put(PluginConfig({"p": {"enabled": True}}))
    await store.usage_cache.put(UsageCache("t0", {"grok-web": {"n": [1]}}))
    config = await store.config.get()
    config.document["A"]["deep"].append("poison")
    config.document["B"] = 1
    models = await store.custom_models.list()
    models[0].document["x"].append("poison")
    models.clear()
    plugins = await store.plugin_config.get()
    plugins.plugins["p"]["enabled"] = False
    cache = await store.usage_cache.get()
    assert cache is not None
    cache.providers["grok-web"]["n"].append("poison")
    text = "values returned are copies: mutating them changes nothing in the store"
    with rule("cfgstore_config_get", text):
        assert (await store.config.get()).document == {"A": {"deep": [1]}}
    with rule("cfgstore_custom_models_list", text):
        assert [m.document for m in await store.custom_models.list()] == [{"id": "m", "x": [1]}]
    with rule("cfgstore_plugin_config_get", text):
        assert (await store.plugin_config.get()).is_enabled("p")
    with rule("cfgstore_usage_cache_get", text):
        again = await store.usage_cache.get()
        assert again is not None and again.providers == {"grok-web": {"n": [1]}}
