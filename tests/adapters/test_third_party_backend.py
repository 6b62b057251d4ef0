"""A third-party backend installed through a real ``cfgstore`` entry point.

Each test writes tiny distributions (a package plus a ``*.dist-info`` with ``METADATA`` and
``entry_points.txt``) into a temporary site directory and puts it on ``sys.path``, so that
``importlib.metadata`` discovers them exactly as it discovers an installed wheel. Nothing
is installed into the environment and nothing is left on ``sys.path`` or in
``sys.modules`` afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cfgstore import hookimpl
from cfgstore.adapters import BackendContext, BackendDescriptor, Settings, Store
from cfgstore.adapters.chain import OPERATIONS, OPTIONAL_OPERATIONS, build_chain
from cfgstore.adapters.plugins import PluginFailure, PluginSet, make_plugin_manager
from cfgstore.cli.app import build_app
from cfgstore.errors import AlreadyExists, NotFound, PluginError, VersionConflict
from cfgstore.model.credentials import Credential
from cfgstore.model.custom_models import CustomModel
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.pools import ProviderNode, ProviderPools, node_from_json
from cfgstore.model.sessions import UiSession
from cfgstore.model.usage_cache import UsageCache
from cfgstore.model.versions import ABSENT_VERSION

SUBPROCESS_TIMEOUT_S = 60

DICTSTORE_SOURCE = '''
"""thirdparty_dict_backend: a minimal cfgstore backend over plain dicts.

Written by the cfgstore test suite into a temporary site directory next to a dist-info,
so that it is discovered through a real ``cfgstore`` entry point.
"""

from __future__ import annotations

import copy
import itertools

import attrs

from cfgstore import hookimpl
from cfgstore.adapters.backend import BackendDescriptor
from cfgstore.errors import AlreadyExists, NotFound, VersionConflict
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import CredentialRef
from cfgstore.model.events import ChangeEvent
from cfgstore.model.login_guard import LoginGuard, add_failure, reserve_attempt
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.pools import COUNTER_KEYS, ProviderPools, node_from_json, node_to_json
from cfgstore.model.records import apply_record
from cfgstore.model.sessions import token_digest
from cfgstore.model.status import BackendStatus, EntityCounts
from cfgstore.model.usage_cache import UsageCache
from cfgstore.model.versions import ANY_VERSION


class DictStore:
    def __init__(self, context):
        self.context = context
        self.lifecycle = []
        self._versions = itertools.count(1)
        self.pools = ProviderPools()
        self.credentials = {}
        self.config = MainConfig()
        self.system_prompt = None
        self.custom_models = []
        self.sessions = {}
        self.logins = {}
        self.password = None
        self.usage_cache = None
        self.plugin_config = PluginConfig()
        self.meta = {}
        self.locks = {}

    def _version(self):
        return str(next(self._versions))

    def _publish(self, entity, *ids):
        self.context.publish(ChangeEvent(entity, ids, origin=self.context.instance_id))

    def _index(self, provider_type, uuid):
        for index, node in enumerate(self.pools.types.get(provider_type, ())):
            if node.uuid == uuid:
                return index
        raise NotFound("provider node", f"{provider_type}/{uuid}")

    def _type(self, provider_type):
        if provider_type not in self.pools.types:
            raise NotFound("provider type", provider_type)
        return self.pools.types[provider_type]

    # -- lifecycle -------------------------------------------------------------------

    @hookimpl
    async def cfgstore_open(self):
        self.lifecycle.append("open")

    @hookimpl
    async def cfgstore_flush(self):
        self.lifecycle.append("flush")

    @hookimpl
    async def cfgstore_close(self):
        self.lifecycle.append("close")

    @hookimpl
    async def cfgstore_status(self):
        return BackendStatus(
            name="dictstore",
            location="process memory",
            mode="dict",
            counts=EntityCounts(
                provider_types=len(self.pools.types),
                nodes=self.pools.node_count(),
                healthy_nodes=sum(1 for _, n in self.pools if n.state.is_healthy),
                credentials=len(self.credentials),
                sessions=len(self.sessions),
                plugins=len(self.plugin_config.plugins),
                custom_models=len(self.custom_models),
            ),
        )

    # -- pools -----------------------------------------------------------------------

    @hookimpl
    async def cfgstore_pools_list(self):
        return self.pools.copy()

    @hookimpl
    async def cfgstore_pools_view(self):
        return self.pools.types

    @hookimpl
    async def cfgstore_pools_get_node(self, provider_type, uuid):
        node = self.pools.find(provider_type, uuid)
        return None if node is None else node.copy()

    @hookimpl
    async def cfgstore_pools_add_node(self, provider_type, node):
        if self.pools.find(provider_type, node.uuid) is not None:
            raise AlreadyExists("provider node", f"{provider_type}/{node.uuid}")
        self.pools.types.setdefault(provider_type, []).append(node.copy())
        self._publish("pools", f"{provider_type}/{node.uuid}")
        return node.copy()

    @hookimpl
    async def cfgstore_pools_update_node(self, provider_type, uuid, changes):
        index = self._index(provider_type, uuid)
        current = node_to_json(self.pools.types[provider_type][index])
        for key, value in changes.items():
            if key != "uuid" and key not in COUNTER_KEYS:
                current[key] = value
        updated = node_from_json(current, f"update of {provider_type}/{uuid}")
        self.pools.types[provider_type][index] = updated
        self._publish("pools", f"{provider_type}/{uuid}")
        return updated.copy()

    @hookimpl
    async def cfgstore_pools_delete_node(self, provider_type, uuid):
        nodes = self.pools.types.get(provider_type, [])
        del nodes[self._index(provider_type, uuid)]
        if not nodes:
            del self.pools.types[provider_type]
        self._publish("pools", f"{provider_type}/{uuid}")

    # Declared in another order than the spec: pluggy (and the Store) bind by name.
    @hookimpl
    async def cfgstore_pools_rename_node(self, new_uuid, old_uuid, provider_type):
        index = self._index(provider_type, old_uuid)
        if self.pools.find(provider_type, new_uuid) is not None:
            raise AlreadyExists("provider node", f"{provider_type}/{new_uuid}")
        self.pools.types[provider_type][index].uuid = new_uuid
        credential = self.credentials.pop((provider_type, old_uuid), None)
        if credential is not None:
            self.credentials[(provider_type, new_uuid)] = attrs.evolve(credential, uuid=new_uuid)
        self._publish("pools", f"{provider_type}/{old_uuid}", f"{provider_type}/{new_uuid}")

    @hookimpl
    async def cfgstore_pools_delete_type(self, provider_type):
        removed = len(self._type(provider_type))
        del self.pools.types[provider_type]
        self._publish("pools", provider_type)
        return removed

    @hookimpl
    async def cfgstore_pools_set_disabled(self, provider_type, uuid, disabled):
        node = self.pools.types.get(provider_type, [])[self._index(provider_type, uuid)]
        node.state.is_disabled = disabled
        node.ensure_keys("isDisabled")
        self._publish("pools", f"{provider_type}/{uuid}")

    @hookimpl
    async def cfgstore_pools_reset_health(self, provider_type):
        nodes = self._type(provider_type)
        for node in nodes:
            state = node.state
            state.is_healthy = True
            state.error_count = 0
            state.last_error_time = None
            state.last_error_message = None
            state.refresh_count = 0
            state.needs_refresh = False
        self._publish("pools", provider_type)
        return len(nodes)

    @hookimpl
    async def cfgstore_pools_delete_unhealthy(self, provider_type):
        nodes = self._type(provider_type)
        removed = [n.uuid for n in nodes if not n.state.is_healthy]
        kept = [n for n in nodes if n.state.is_healthy]
        if kept:
            self.pools.types[provider_type] = kept
        else:
            del self.pools.types[provider_type]
        self._publish("pools", provider_type)
        return removed

    @hookimpl
    async def cfgstore_pools_apply_records(self, records):
        applied = False
        for record in records:
            node = self.pools.find(record.provider_type, record.uuid)
            if node is not None:
                apply_record(node, record)
                applied = True
        if applied:
            self._publish("pools")

    # -- credentials -----------------------------------------------------------------

    @hookimpl
    async def cfgstore_credentials_get(self, provider_type, uuid):
        credential = self.credentials.get((provider_type, uuid))
        return None if credential is None else copy.deepcopy(credential)

    @hookimpl
    async def cfgstore_credentials_put(self, credential, expected_version):
        key = (credential.provider_type, credential.uuid)
        current = self.credentials.get(key)
        actual = None if current is None else current.version
        ok = (
            actual is None
            if expected_version is None
            else expected_version in (ANY_VERSION, actual)
        )
        if not ok:
            raise VersionConflict("credential", "/".join(key), expected_version, actual)
        version = self._version()
        self.credentials[key] = attrs.evolve(
            credential, document=copy.deepcopy(credential.document), version=version
        )
        self._publish("credentials", "/".join(key))
        return version

    @hookimpl
    async def cfgstore_credentials_delete(self, provider_type, uuid):
        existed = self.credentials.pop((provider_type, uuid), None) is not None
        if existed:
            self._publish("credentials", f"{provider_type}/{uuid}")
        return existed

    @hookimpl
    async def cfgstore_credentials_list(self):
        order = {key: i for i, key in enumerate((t, n.uuid) for t, n in self.pools)}
        keys = sorted(self.credentials, key=lambda k: order.get(k, len(order)))
        return [
            CredentialRef(t, u, self.credentials[t, u].source_path, self.credentials[t, u].version)
            for t, u in keys
        ]

    @hookimpl
    async def cfgstore_credentials_lock(self, provider_type, uuid, ttl_ms):
        if (provider_type, uuid) in self.locks:
            return None
        self.locks[provider_type, uuid] = token = self._version()
        return token

    @hookimpl
    async def cfgstore_credentials_unlock(self, provider_type, uuid, token):
        if self.locks.get((provider_type, uuid)) != token:
            return False
        del self.locks[provider_type, uuid]
        return True

    @hookimpl
    async def cfgstore_pools_import(self, pools, keep_live_state):
        incoming = pools.copy()
        if keep_live_state:
            for provider_type, node in incoming:
                stored = self.pools.find(provider_type, node.uuid)
                if stored is not None:
                    node.state = copy.deepcopy(stored.state)
        self.pools = incoming
        self._publish("pools")

    @hookimpl
    async def cfgstore_custom_models_put(self, models):
        self.custom_models = copy.deepcopy(list(models))
        self._publish("custom_models")

    @hookimpl
    async def cfgstore_meta_get(self):
        return dict(self.meta)

    @hookimpl
    async def cfgstore_meta_update(self, fields):
        self.meta.update(fields)

    # -- config ----------------------------------------------------------------------

    @hookimpl
    async def cfgstore_config_get(self):
        return MainConfig(copy.deepcopy(self.config.document), self.config.version)

    @hookimpl
    async def cfgstore_config_put(self, document, expected_version):
        if expected_version not in (ANY_VERSION, self.config.version):
            raise VersionConflict("config", "config", expected_version, self.config.version)
        self.config = MainConfig(copy.deepcopy(document), self._version())
        self._publish("config")
        return self.config.version

    # -- system prompt, custom models ------------------------------------------------

    @hookimpl
    async def cfgstore_system_prompt_get(self):
        return self.system_prompt

    @hookimpl
    async def cfgstore_system_prompt_put(self, text):
        self.system_prompt = text
        self._publish("system_prompt")

    @hookimpl
    async def cfgstore_custom_models_list(self):
        return copy.deepcopy(self.custom_models)

    @hookimpl
    async def cfgstore_custom_models_add(self, model):
        if any(m.id == model.id for m in self.custom_models):
            raise AlreadyExists("custom model", model.id)
        self.custom_models.append(copy.deepcopy(model))
        self._publish("custom_models")

    @hookimpl
    async def cfgstore_custom_models_update(self, model_id, changes):
        for index, model in enumerate(self.custom_models):
            if model.id == model_id:
                merged = {**model.document, **copy.deepcopy(dict(changes)), "id": model_id}
                self.custom_models[index] = type(model)(model_id, merged)
                self._publish("custom_models")
                return copy.deepcopy(self.custom_models[index])
        raise NotFound("custom model", model_id)

    @hookimpl
    async def cfgstore_custom_models_delete(self, model_id):
        kept = [m for m in self.custom_models if m.id != model_id]
        if len(kept) == len(self.custom_models):
            raise NotFound("custom model", model_id)
        self.custom_models = kept
        self._publish("custom_models")

    # -- sessions --------------------------------------------------------------------

    @hookimpl
    async def cfgstore_sessions_add(self, token, session):
        self.sessions[token] = copy.deepcopy(session)
        self._publish("sessions")

    @hookimpl
    async def cfgstore_sessions_get(self, token, now_ms):
        session = self.sessions.get(token)
        return None if session is None or session.expired(now_ms) else copy.deepcopy(session)

    @hookimpl
    async def cfgstore_sessions_delete(self, token):
        existed = self.sessions.pop(token, None) is not None
        self._publish("sessions")
        return existed

    @hookimpl
    async def cfgstore_sessions_delete_digest(self, digest):
        found = [t for t in self.sessions if token_digest(t) == digest]
        for token in found:
            del self.sessions[token]
        self._publish("sessions")
        return bool(found)

    @hookimpl
    async def cfgstore_sessions_delete_others(self, keep_token):
        others = [t for t in self.sessions if t != keep_token]
        for token in others:
            del self.sessions[token]
        self._publish("sessions")
        return len(others)

    @hookimpl
    async def cfgstore_sessions_purge_expired(self, now_ms):
        expired = [t for t, s in self.sessions.items() if s.expired(now_ms)]
        for token in expired:
            del self.sessions[token]
        self._publish("sessions")
        return len(expired)

    @hookimpl
    async def cfgstore_sessions_count(self, now_ms):
        return sum(1 for s in self.sessions.values() if not s.expired(now_ms))

    # -- login lockout counter -------------------------------------------------------

    @hookimpl
    async def cfgstore_login_guard_get(self, client, now_ms):
        kept = self.logins.get(client)
        return LoginGuard(0, None) if kept is None else kept.guard(now_ms)

    @hookimpl
    async def cfgstore_login_failure_add(self, client, now_ms, max_attempts, lockout_ms):
        kept = add_failure(self.logins.get(client), now_ms, max_attempts, lockout_ms)
        self.logins[client] = kept
        return kept.guard(now_ms)

    @hookimpl
    async def cfgstore_login_attempt_reserve(
        self, client, now_ms, max_attempts, lockout_ms, min_interval_ms
    ):
        kept, attempt = reserve_attempt(
            self.logins.get(client), now_ms, max_attempts, lockout_ms, min_interval_ms
        )
        if kept is not None:
            self.logins[client] = kept
        return attempt

    @hookimpl
    async def cfgstore_login_failures_clear(self, client):
        self.logins.pop(client, None)

    # -- password, usage cache, plugin config ----------------------------------------

    @hookimpl
    async def cfgstore_password_get(self):
        text = (self.password or "").strip()
        return text or None

    @hookimpl
    async def cfgstore_password_put(self, stored):
        self.password = stored.strip()
        self._publish("password")

    @hookimpl
    async def cfgstore_usage_cache_get(self):
        return copy.deepcopy(self.usage_cache)

    @hookimpl
    async def cfgstore_usage_cache_put(self, cache):
        self.usage_cache = copy.deepcopy(cache)
        self._publish("usage_cache")

    @hookimpl
    async def cfgstore_usage_cache_put_type(self, provider_type, entry, timestamp):
        cache = self.usage_cache if self.usage_cache is not None else UsageCache(None)
        cache.timestamp = timestamp
        cache.providers[provider_type] = copy.deepcopy(entry)
        self.usage_cache = cache
        self._publish("usage_cache")

    @hookimpl
    async def cfgstore_plugin_config_get(self):
        return copy.deepcopy(self.plugin_config)

    @hookimpl
    async def cfgstore_plugin_config_put(self, config):
        self.plugin_config = copy.deepcopy(config)
        self._publish("plugin_config")

    @hookimpl
    async def cfgstore_plugin_config_set_enabled(self, name, enabled):
        self.plugin_config.plugins.setdefault(name, {})["enabled"] = enabled
        self._publish("plugin_config")


@hookimpl
def cfgstore_register_backends(register):
    register(
        BackendDescriptor(
            name="dictstore",
            description="plain dicts in process memory (third-party test backend)",
            factory=DictStore,
        )
    )
'''

CLONE_SOURCE = '''
"""Announces a second backend named ``dictstore`` (a configuration error)."""

from cfgstore import hookimpl
from cfgstore.adapters.backend import BackendDescriptor


@hookimpl
def cfgstore_register_backends(register):
    register(BackendDescriptor(name="dictstore", description="an impostor", factory=object))
'''

BROKEN_SOURCE = """
raise RuntimeError("thirdparty_broken exploded on import")
"""


# -- installing distributions -----------------------------------------------------------


Installer = Callable[..., Path]


def write_distribution(
    site: Path, *, dist: str, version: str, package: str, source: str, entry_points: str
) -> None:
    """A package and the dist-info a wheel install would leave beside it."""
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{package}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    (info / "RECORD").write_text("", encoding="utf-8")


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Installer:
    """``install(package, source, entry_name, dist=..., version=...)``: a distribution in its
    own site directory, prepended to ``sys.path``; removed from ``sys.path`` and
    ``sys.modules`` after the test."""

    def _install(
        package: str,
        source: str,
        entry_name: str,
        *,
        dist: str | None = None,
        version: str = "0.1",
    ) -> Path:
        site = tmp_path / f"site-{package}"
        write_distribution(
            site,
            dist=dist or package.replace("_", "-"),
            version=version,
            package=package,
            source=source,
            entry_points=f"[cfgstore]\n{entry_name} = {package}\n",
        )
        monkeypatch.delitem(sys.modules, package, raising=False)
        monkeypatch.syspath_prepend(str(site))  # also invalidates the import caches
        return site

    return _install


@pytest.fixture
def dictstore(install: Installer) -> Path:
    return install("thirdparty_dict_backend", DICTSTORE_SOURCE, "dictstore")


@pytest.fixture
def broken(install: Installer) -> Path:
    return install("thirdparty_broken", BROKEN_SOURCE, "broken")


def only(*names: str) -> dict[str, str]:
    """An environment loading only the named entry-point plugins."""
    return {"CFGSTORE_LOAD_PLUGINS": ",".join(names)}


def announce(plugins: PluginSet, descriptor: BackendDescriptor) -> None:
    """Register a plugin object announcing ``descriptor`` (as an entry point would)."""

    class Announcer:
        @hookimpl
        def cfgstore_register_backends(self, register: Callable[[BackendDescriptor], None]) -> None:
            register(descriptor)

    plugins.manager.register(Announcer(), name=f"announce-{descriptor.name}")


def backend_instance(store: Store, name: str) -> Any:
    [layer] = [layer for layer in store._chain.layers if layer.name == name]
    return layer.instance


def node(uuid: str, **fields: Any) -> ProviderNode:
    return node_from_json({"uuid": uuid, **fields}, "test")


# -- the installed backend serves a Store -----------------------------------------------


async def test_entry_point_backend_is_discovered_with_its_distribution(dictstore: Path) -> None:
    plugins = make_plugin_manager(environ={})
    assert plugins.manager.has_plugin("dictstore")
    assert plugins.distributions["dictstore"] == ("thirdparty-dict-backend", "0.1")
    assert plugins.failures == []
    # The built-in distributions are still there beside it.
    assert {"file", "memory", "cfgctl-builtins"} <= {
        name for name, _ in plugins.manager.list_name_plugin()
    }


async def test_store_on_the_third_party_backend_alone(dictstore: Path) -> None:
    settings = Settings(backends=("dictstore",))
    async with Store.open(settings, environ={}) as store:
        assert store.backend_names == ["dictstore"]
        backend = backend_instance(store, "dictstore")
        assert type(backend).__module__ == "thirdparty_dict_backend"
        assert backend.lifecycle == ["open"]

        # pools
        assert await store.pools.list() == ProviderPools()
        await store.pools.add_node("openai-custom", node("a", customName="first"))
        await store.pools.add_node("openai-custom", node("b"))
        with pytest.raises(AlreadyExists):
            await store.pools.add_node("openai-custom", node("a"))
        for _ in range(3):
            await store.pools.record_success("openai-custom", "a")
        got = await store.pools.get_node("openai-custom", "a")
        assert got is not None
        assert got.state.usage_count == 3
        assert got.custom_name == "first"
        updated = await store.pools.update_node(
            "openai-custom", "a", {"customName": "renamed", "usageCount": 99}
        )
        assert updated.custom_name == "renamed"
        assert updated.state.usage_count == 3  # live counters are not admin-editable
        await store.pools.rename_node("openai-custom", "b", "c")  # reordered hookimpl args
        listed = await store.pools.list()
        assert [n.uuid for n in listed.types["openai-custom"]] == ["a", "c"]
        await store.pools.set_disabled("openai-custom", "c", True)
        c = await store.pools.get_node("openai-custom", "c")
        assert c is not None and c.state.is_disabled
        with pytest.raises(NotFound):
            await store.pools.delete_node("openai-custom", "b")

        # credentials
        cred = Credential("openai-custom", "a", {"access_token": "t1"})
        v1 = await store.credentials.put(cred, None)
        with pytest.raises(VersionConflict):
            await store.credentials.put(cred, None)
        fresh = Credential("openai-custom", "a", {"access_token": "t2"})
        v2 = await store.credentials.put(fresh, v1)
        stored = await store.credentials.get("openai-custom", "a")
        assert stored is not None
        assert stored.document == {"access_token": "t2"}
        assert stored.version == v2 != v1

        # config (compare-and-set)
        empty = await store.config.get()
        assert empty.version == ABSENT_VERSION
        version = await store.config.put({"SERVER_PORT": 4000}, empty.version)
        with pytest.raises(VersionConflict):
            await store.config.put({"SERVER_PORT": 5000}, empty.version)
        config = await store.config.get()
        assert config.document == {"SERVER_PORT": 4000}
        assert config.version == version

        # the other documents
        await store.system_prompt.put("be brief")
        assert await store.system_prompt.get() == "be brief"
        await store.custom_models.add(CustomModel("m1", {"id": "m1", "alias": "x"}))
        assert [m.id for m in await store.custom_models.list()] == ["m1"]
        await store.sessions.add("tok", UiSession("admin", 1, 10_000))
        assert await store.sessions.get("tok", now=5_000) == UiSession("admin", 1, 10_000)
        assert await store.sessions.get("tok", now=10_000) is None
        await store.password.put_stored("pbkdf2:salt:hash")
        assert await store.password.get_stored() == "pbkdf2:salt:hash"
        await store.usage_cache.put_type("openai-custom", {"used": 1}, "2026-01-01T00:00:00.000Z")
        assert await store.usage_cache.get() == UsageCache(
            "2026-01-01T00:00:00.000Z", {"openai-custom": {"used": 1}}
        )
        await store.plugin_config.set_enabled("p", False)
        assert await store.plugin_config.get() == PluginConfig({"p": {"enabled": False}})

        [status] = await store.status()
        assert status.name == "dictstore"
        assert status.counts.nodes == 2
        assert status.counts.credentials == 1

        # The store talks to the very object the factory built: the data is in its dicts.
        assert backend.config.document == {"SERVER_PORT": 4000}
    assert backend.lifecycle == ["open", "close"]


async def test_memory_layer_over_the_third_party_backend(dictstore: Path) -> None:
    from cfgstore_memory.read_cache import ReadCache

    settings = Settings(backends=("memory", "dictstore"))
    async with Store.open(settings, environ={}) as store:
        assert store.backend_names == ["memory", "dictstore"]
        cache = backend_instance(store, "memory")
        assert isinstance(cache, ReadCache)

        first = await store.config.get()
        await store.config.get()
        assert (cache.hits, cache.misses) == (1, 1)
        # The third-party backend publishes its writes, so the layer above never serves
        # the old document after a write.
        await store.config.put({"HOST": "127.0.0.1"}, first.version)
        assert (await store.config.get()).document == {"HOST": "127.0.0.1"}
        assert cache.misses == 2

        await store.system_prompt.put("one")
        assert await store.system_prompt.get() == "one"
        await store.system_prompt.put("two")
        assert await store.system_prompt.get() == "two"

        # Operations the layer does not implement go straight to the backend below.
        await store.pools.add_node("t", node("n1"))
        listed = await store.pools.list()
        assert [n.uuid for n in listed.types["t"]] == ["n1"]
        await store.flush()
        assert backend_instance(store, "dictstore").lifecycle == ["open", "flush"]


def test_cfgctl_plugins_lists_the_installed_backend(dictstore: Path) -> None:
    app = build_app(make_plugin_manager(environ={}))
    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    [row] = [row for row in report["plugins"] if row["name"] == "dictstore"]
    assert row["distribution"] == "thirdparty-dict-backend"
    assert row["version"] == "0.1"
    assert "cfgstore_register_backends" in row["hooks"]
    [backend] = [b for b in report["backends"] if b["name"] == "dictstore"]
    assert backend == {
        "name": "dictstore",
        "description": "plain dicts in process memory (third-party test backend)",
        "layer": False,
    }
    assert report["failures"] == []

    text = CliRunner().invoke(app, ["plugins"])
    assert text.exit_code == 0, text.output
    assert "dictstore thirdparty-dict-backend 0.1: cfgstore_register_backends" in text.stdout


# -- hookimpl binding ----------------------------------------------------------------


class PruningLayer:
    """A layer whose hookimpls declare only some of the spec's arguments."""

    def __init__(self, context: BackendContext) -> None:
        pass

    @hookimpl
    async def cfgstore_sessions_count(self) -> int:  # spec: (now_ms)
        return 42

    @hookimpl
    async def cfgstore_pools_rename_node(self, new_uuid: str, provider_type: str) -> None:
        pass  # spec: (provider_type, old_uuid, new_uuid)


async def test_hookimpl_dropping_spec_arguments_is_refused(dictstore: Path) -> None:
    """pluggy would call these with fewer arguments; an implementation that never sees
    ``old_uuid`` cannot rename the right node, so the chain refuses to open, naming each
    method and what it lacks."""
    plugins = make_plugin_manager(environ=only("dictstore"))
    announce(plugins, BackendDescriptor("pruning", "test layer", PruningLayer, layer=True))
    with pytest.raises(PluginError) as caught:
        async with Store.open(Settings(backends=("pruning", "dictstore")), plugins=plugins):
            pytest.fail("the chain must not open")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("backend 'pruning' of plugin announce-pruning is broken: ")
    assert (
        "cfgstore_pools_rename_node(new_uuid, provider_type) does not match the spec "
        "cfgstore_pools_rename_node(provider_type, old_uuid, new_uuid): missing old_uuid"
    ) in message
    assert "cfgstore_sessions_count() does not match the spec" in message
    assert "missing now_ms" in message
    # The backend below, named alone, is not affected.
    async with Store.open(Settings(backends=("dictstore",)), plugins=plugins) as store:
        assert await store.sessions.count(now=1) == 0


class SyncOperation:
    def __init__(self, context: BackendContext) -> None:
        pass

    @hookimpl
    def cfgstore_pools_list(self) -> ProviderPools:
        return ProviderPools()


class SyncLifecycle:
    def __init__(self, context: BackendContext) -> None:
        pass

    @hookimpl
    def cfgstore_open(self) -> None:
        pass


@pytest.mark.parametrize(
    ("factory", "hook"),
    [(SyncOperation, "cfgstore_pools_list"), (SyncLifecycle, "cfgstore_open")],
)
async def test_sync_hookimpl_is_rejected(
    factory: Callable[[BackendContext], object], hook: str
) -> None:
    plugins = make_plugin_manager(environ=only("memory"))
    announce(plugins, BackendDescriptor("syncy", "sync hookimpls", factory))
    before = set(plugins.manager.get_plugins())
    with pytest.raises(PluginError, match=rf"{hook} must be an async def"):
        async with Store.open(Settings(backends=("memory", "syncy")), plugins=plugins):
            pytest.fail("the chain must not open")
    # Nothing the failed build instantiated stays registered (it would keep receiving
    # change events and show up in `cfgctl plugins`).
    assert set(plugins.manager.get_plugins()) == before


class WrongArgument:
    def __init__(self, context: BackendContext) -> None:
        pass

    @hookimpl
    async def cfgstore_pools_get_node(self, provider: str, uuid: str) -> None:  # not in spec
        return None


async def test_hookimpl_with_an_argument_the_spec_lacks_is_a_plugin_error() -> None:
    plugins = make_plugin_manager(environ=only())
    announce(plugins, BackendDescriptor("typo", "misnamed argument", WrongArgument))
    with pytest.raises(PluginError, match="typo"):
        build_chain(plugins, Settings(backends=("typo",)))
    assert not [p for p in plugins.manager.get_plugins() if isinstance(p, WrongArgument)]


# -- chain validation ------------------------------------------------------------------


class Partial:
    """Implements only a few operations."""

    def __init__(self, context: BackendContext) -> None:
        pass

    @hookimpl
    async def cfgstore_pools_list(self) -> ProviderPools:
        return ProviderPools()

    @hookimpl
    async def cfgstore_config_put(self, document: dict[str, Any], expected_version: str) -> str:
        return "1"


async def test_incomplete_chain_names_the_missing_operations() -> None:
    plugins = make_plugin_manager(environ=only())
    announce(plugins, BackendDescriptor("partial", "a few operations", Partial))
    before = set(plugins.manager.get_plugins())
    with pytest.raises(PluginError) as caught:
        async with Store.open(Settings(backends=("partial",)), plugins=plugins):
            pytest.fail("the chain must not open")
    message = str(caught.value)
    expected_missing = [
        op for op in OPERATIONS if op not in ("cfgstore_pools_list", "cfgstore_config_put")
    ]
    assert len(expected_missing) == len(OPERATIONS) - 2
    for op in expected_missing:
        assert op in message
    assert "cfgstore_pools_list" not in message
    assert "cfgstore_config_put" not in message
    assert set(plugins.manager.get_plugins()) == before


async def test_layer_cannot_stand_in_for_reads_the_backend_below_lacks() -> None:
    # The memory layer "implements" cfgstore_config_get only by delegating to the backend
    # below; a chain where nothing below implements it is as incomplete as without the
    # layer, and must say so at start-up, not with a KeyError on the first read.
    plugins = make_plugin_manager(environ=only("memory"))
    announce(plugins, BackendDescriptor("partial", "a few operations", Partial))
    with pytest.raises(PluginError) as caught:
        build_chain(plugins, Settings(backends=("memory", "partial")))
    assert "cfgstore_config_get" in str(caught.value)
    assert "cfgstore_system_prompt_get" in str(caught.value)


def test_operations_cover_every_storage_spec() -> None:
    """OPERATIONS is what the completeness check compares against: it must hold every
    storage hookspec (and no lifecycle or observer hook)."""
    plugins = make_plugin_manager(environ=only())
    specs = {
        name
        for name in dir(plugins.manager.hook)
        if name.startswith("cfgstore_")
        and getattr(plugins.manager.hook, name).has_spec()
        and not name.startswith(("cfgstore_register", "cfgstore_open", "cfgstore_close"))
        and not name.startswith("cfgstore_gateway_")  # the gateway's (cfgstore.hookspecs)
    }
    specs -= set(OPTIONAL_OPERATIONS)  # offered by shared backends, never required
    specs -= {
        "cfgstore_flush",
        "cfgstore_status",
        "cfgstore_changed",
        "cfgstore_provider_health_changed",
        "cfgstore_storage_degraded",
    }
    assert set(OPERATIONS) == specs
    assert len(OPERATIONS) == len(set(OPERATIONS))


async def test_unknown_backend_lists_the_installed_ones(dictstore: Path) -> None:
    with pytest.raises(PluginError) as caught:
        async with Store.open(Settings(backends=("memory", "nosuch")), environ={}):
            pytest.fail("the chain must not open")
    message = str(caught.value)
    assert "unknown backend nosuch" in message
    assert "installed: dictstore, file, memory" in message


@pytest.mark.parametrize(
    ("chain", "problem"),
    [
        (("memory",), "backend 'memory' is a layer and needs a backend below it"),
        (("dictstore", "memory"), "backend 'memory' is a layer and needs a backend below it"),
        (("dictstore", "file"), "backend 'dictstore' must be at the bottom of the chain"),
        (("memory", "dictstore", "file"), "backend 'dictstore' must be at the bottom"),
        (("memory", "memory", "dictstore"), "backend memory named more than once"),
    ],
)
async def test_misplaced_backends_are_rejected(
    dictstore: Path, chain: tuple[str, ...], problem: str
) -> None:
    plugins = make_plugin_manager(environ={})
    before = set(plugins.manager.get_plugins())
    with pytest.raises(PluginError, match=problem):
        build_chain(plugins, Settings(backends=chain))
    assert set(plugins.manager.get_plugins()) == before


async def test_two_plugins_announcing_one_backend_name(dictstore: Path, install: Installer) -> None:
    install("thirdparty_dict_clone", CLONE_SOURCE, "dictclone")
    plugins = make_plugin_manager(environ={})
    assert plugins.failures == []
    with pytest.raises(PluginError, match="two plugins announce a backend named 'dictstore'"):
        async with Store.open(Settings(backends=("dictstore",)), plugins=plugins):
            pytest.fail("the chain must not open")
    # Loading only one of the two resolves the conflict.
    async with Store.open(Settings(backends=("dictstore",)), environ=only("dictstore")) as store:
        assert store.backend_names == ["dictstore"]


def test_cfgctl_plugins_reports_a_backend_name_conflict(
    dictstore: Path, install: Installer
) -> None:
    install("thirdparty_dict_clone", CLONE_SOURCE, "dictclone")
    result = CliRunner().invoke(build_app(make_plugin_manager(environ={})), ["plugins"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "two plugins announce a backend named 'dictstore'" in result.stderr
    # The diagnostic still lists what is installed.
    assert "dictclone thirdparty-dict-clone 0.1" in result.stdout
    assert "dictstore thirdparty-dict-backend 0.1" in result.stdout
    as_json = CliRunner().invoke(build_app(make_plugin_manager(environ={})), ["plugins", "--json"])
    assert as_json.exit_code == 2, as_json.output
    assert {"dictstore", "dictclone"} <= {
        row["name"] for row in json.loads(as_json.stdout)["plugins"]
    }
    assert "two plugins announce a backend named 'dictstore'" in as_json.stderr


# -- a plugin that fails to import -----------------------------------------------------


async def test_plugin_failing_to_import_is_recorded_and_others_load(
    dictstore: Path, broken: Path
) -> None:
    plugins = make_plugin_manager(environ={})
    assert plugins.failures == [
        PluginFailure(
            "broken", "RuntimeError: thirdparty_broken exploded on import", "thirdparty-broken 0.1"
        )
    ]
    [failure] = plugins.failures
    assert failure.traceback is not None and "exploded on import" in failure.traceback
    assert not plugins.manager.has_plugin("broken")
    for name in ("dictstore", "file", "memory", "cfgctl-builtins"):
        assert plugins.manager.has_plugin(name), name
    async with Store.open(Settings(backends=("memory", "dictstore")), plugins=plugins) as store:
        await store.system_prompt.put("still works")
        assert await store.system_prompt.get() == "still works"


def test_cfgctl_help_works_with_a_broken_plugin(
    dictstore: Path, broken: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = build_app()  # discovers plugins from the (cleaned) process environment
    assert (
        "cfgctl: plugin broken (thirdparty-broken 0.1) not loaded: "
        "RuntimeError: thirdparty_broken exploded on import"
    ) in capsys.readouterr().err
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "status" in result.stdout
    assert "plugins" in result.stdout
    listing = CliRunner().invoke(app, ["plugins", "--json"])
    assert listing.exit_code == 0, listing.output
    assert json.loads(listing.stdout)["failures"] == [
        {
            "name": "broken",
            "distribution": "thirdparty-broken 0.1",
            "error": "RuntimeError: thirdparty_broken exploded on import",
        }
    ]


def test_real_cfgctl_help_with_a_broken_plugin(dictstore: Path, broken: Path) -> None:
    """The installed console script, in a fresh interpreter: discovery happens through
    ``PYTHONPATH`` exactly as for a plugin installed into a site directory."""
    script = shutil.which("cfgctl", path=str(Path(sys.executable).parent))
    assert script is not None, "the cfgctl console script is not installed in this environment"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFGSTORE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(dictstore), str(broken)])
    result = subprocess.run(
        [script, "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "status" in result.stdout
    assert result.stderr == (
        "cfgctl: plugin broken (thirdparty-broken 0.1) not loaded: "
        "RuntimeError: thirdparty_broken exploded on import\n"
    )
    listing = subprocess.run(
        [script, "plugins", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert listing.returncode == 0, listing.stderr
    names = {row["name"]: row for row in json.loads(listing.stdout)["plugins"]}
    assert names["dictstore"]["distribution"] == "thirdparty-dict-backend"


# -- CFGSTORE_LOAD_PLUGINS / CFGSTORE_DISABLE_PLUGINS ----------------------------------


def test_load_plugins_loads_only_the_named_entry_points(dictstore: Path, broken: Path) -> None:
    plugins = make_plugin_manager(environ={"CFGSTORE_LOAD_PLUGINS": " dictstore , memory "})
    names = {name for name, _ in plugins.manager.list_name_plugin()}
    assert names == {"dictstore", "memory"}
    assert plugins.failures == []
    assert "thirdparty_broken" not in sys.modules  # never even imported


async def test_load_plugins_decides_which_backends_exist(dictstore: Path) -> None:
    env = only("dictstore")
    async with Store.open(Settings(backends=("dictstore",)), environ=env) as store:
        assert store.backend_names == ["dictstore"]
    with pytest.raises(PluginError, match=r"unknown backend memory \(installed: dictstore\)"):
        async with Store.open(Settings(backends=("memory", "dictstore")), environ=env):
            pytest.fail("the chain must not open")


async def test_disable_plugins_blocks_the_named_entry_points(dictstore: Path, broken: Path) -> None:
    env = {"CFGSTORE_DISABLE_PLUGINS": "dictstore,broken"}
    plugins = make_plugin_manager(environ=env)
    names = {name for name, _ in plugins.manager.list_name_plugin()}
    assert "dictstore" not in names and "broken" not in names
    assert {"file", "memory", "cfgctl-builtins"} <= names
    assert plugins.failures == []
    assert "thirdparty_broken" not in sys.modules
    with pytest.raises(PluginError, match="unknown backend dictstore"):
        async with Store.open(Settings(backends=("dictstore",)), environ=env):
            pytest.fail("the chain must not open")


def test_plugin_environment_is_read_from_environ_not_the_process(
    dictstore: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CFGSTORE_DISABLE_PLUGINS", "dictstore")
    assert make_plugin_manager(environ={}).manager.has_plugin("dictstore")
    assert not make_plugin_manager().manager.has_plugin("dictstore")


def test_trace_plugins_logs_hook_calls(dictstore: Path, caplog: pytest.LogCaptureFixture) -> None:
    plugins = make_plugin_manager(environ={"CFGSTORE_TRACE_PLUGINS": "1"})
    with caplog.at_level("INFO", logger="cfgstore.plugins"):
        plugins.manager.hook.cfgstore_register_backends(register=lambda descriptor: None)
    assert any("cfgstore_register_backends" in r.getMessage() for r in caplog.records)
