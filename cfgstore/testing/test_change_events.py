"""Every write publishes a change event (``BackendContext.publish``) before it returns.

The memory layer above a backend caches documents and drops them only when it hears a
:class:`~cfgstore.model.events.ChangeEvent`; observers (the gateway's webhooks, live
views) hear the same events. A write that publishes nothing leaves the layer serving the
old value. The checks run on the chain's bottom backend alone, so the backend under test
is the one that must publish (a layer above could otherwise hide the omission).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import pytest

from cfgstore import hookimpl
from cfgstore.adapters import Store
from cfgstore.model.credentials import Credential
from cfgstore.model.custom_models import CustomModel
from cfgstore.model.events import ChangeEvent
from cfgstore.model.plugin_config import PluginConfig
from cfgstore.model.pools import ProviderPools
from cfgstore.model.usage_cache import UsageCache
from cfgstore.model.versions import ABSENT_VERSION
from cfgstore.testing.builders import make_node
from cfgstore.testing.deployment import Deployment
from cfgstore.testing.fixtures import deployment_fixture  # noqa: F401
from cfgstore.testing.rules import rule

pytestmark = pytest.mark.asyncio  # every test here is a coroutine

KIRO = "claude-kiro-oauth"
PUBLISHES = (
    "every write publishes ChangeEvent({entity!r}) through BackendContext.publish before it "
    "returns; without it the memory layer above keeps serving the old value"
)


class Recorder:
    """An observer plugin: the entities of the events published since :meth:`clear`."""

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []

    @hookimpl
    def cfgstore_changed(self, event: ChangeEvent) -> None:
        self.events.append(event)

    def clear(self) -> None:
        self.events.clear()

    async def expect(self, hook: str, entity: str, write: Awaitable[object]) -> None:
        """Run ``write`` and check that it published an event of ``entity``."""
        self.clear()
        await write
        with rule(hook, PUBLISHES.format(entity=entity)):
            published = [event.entity for event in self.events]
            assert entity in published, f"events published by the write: {published}"


@asynccontextmanager
async def bottom_alone(deployment: Deployment) -> AsyncIterator[tuple[Store, Recorder]]:
    """The chain's bottom backend opened on its own, with a recorder listening."""
    async with deployment.open(backends=deployment.settings.chain[-1:]) as store:
        recorder = Recorder()
        store.plugins.manager.register(recorder)
        try:
            yield store, recorder
        finally:
            store.plugins.manager.unregister(recorder)


async def test_pool_writes_publish(deployment: Deployment) -> None:
    async with bottom_alone(deployment) as (store, events):
        pools = store.pools
        await events.expect(
            "cfgstore_pools_add_node", "pools", pools.add_node(KIRO, make_node("a"))
        )
        await pools.add_node(KIRO, make_node("b"))
        await events.expect(
            "cfgstore_pools_update_node", "pools", pools.update_node(KIRO, "a", {"x": 1})
        )
        await events.expect(
            "cfgstore_pools_set_disabled", "pools", pools.set_disabled(KIRO, "a", True)
        )

        async def record_then_flush() -> None:  # records publish when applied or flushed
            await pools.record_failure(KIRO, "b", "boom", max_error_count=1)
            await store.flush()

        await events.expect("cfgstore_pools_apply_records", "pools", record_then_flush())
        await events.expect("cfgstore_pools_reset_health", "pools", pools.reset_health(KIRO))
        await events.expect(
            "cfgstore_pools_rename_node", "pools", pools.rename_node(KIRO, "a", "a2")
        )
        await pools.record_failure(KIRO, "b", "boom", max_error_count=1)
        await store.flush()
        await events.expect(
            "cfgstore_pools_delete_unhealthy", "pools", pools.delete_unhealthy(KIRO)
        )
        await events.expect("cfgstore_pools_delete_node", "pools", pools.delete_node(KIRO, "a2"))
        await pools.add_node(KIRO, make_node("c"))
        await events.expect("cfgstore_pools_delete_type", "pools", pools.delete_type(KIRO))
        incoming = ProviderPools({KIRO: [make_node("d")]})
        await events.expect(
            "cfgstore_pools_import", "pools", pools.import_all(incoming, keep_live_state=True)
        )


async def test_credential_writes_publish(deployment: Deployment) -> None:
    async with bottom_alone(deployment) as (store, events):
        await store.pools.add_node(KIRO, make_node("k1"))
        credential = Credential(KIRO, "k1", {"accessToken": "FAKE"})
        await events.expect(
            "cfgstore_credentials_put", "credentials", store.credentials.put(credential, None)
        )
        await events.expect(
            "cfgstore_pools_rename_node",
            "credentials",
            store.pools.rename_node(KIRO, "k1", "k2"),
        )
        await events.expect(
            "cfgstore_credentials_delete", "credentials", store.credentials.delete(KIRO, "k2")
        )


async def test_document_writes_publish(deployment: Deployment) -> None:
    async with bottom_alone(deployment) as (store, events):
        await events.expect(
            "cfgstore_config_put", "config", store.config.put({"A": 1}, ABSENT_VERSION)
        )
        await events.expect(
            "cfgstore_system_prompt_put", "system_prompt", store.system_prompt.put("p")
        )
        models = store.custom_models
        await events.expect(
            "cfgstore_custom_models_add",
            "custom_models",
            models.add(CustomModel("m", {"id": "m"})),
        )
        await events.expect(
            "cfgstore_custom_models_update", "custom_models", models.update("m", {"a": 1})
        )
        await events.expect("cfgstore_custom_models_delete", "custom_models", models.delete("m"))
        await events.expect(
            "cfgstore_custom_models_put",
            "custom_models",
            models.put_all([CustomModel("n", {"id": "n"})]),
        )
        await events.expect(
            "cfgstore_password_put", "password", store.password.put_stored("pbkdf2:FAKE:FAKE")
        )
        usage = store.usage_cache
        await events.expect(
            "cfgstore_usage_cache_put", "usage_cache", usage.put(UsageCache("t0", {}))
        )
        await events.expect(
            "cfgstore_usage_cache_put_type", "usage_cache", usage.put_type("grok-web", {}, "t1")
        )
        plugins = store.plugin_config
        await events.expect(
            "cfgstore_plugin_config_put", "plugin_config", plugins.put(PluginConfig({}))
        )
        await events.expect(
            "cfgstore_plugin_config_set_enabled",
            "plugin_config",
            plugins.set_enabled("x", True),
        )
