"""Provider-pool CRUD: order, merge semantics, typed errors (``cfgstore.hookspecs.pools``)."""

from __future__ import annotations

import pytest

from cfgstore.adapters import Store
from cfgstore.errors import AlreadyExists, InvalidData, NotFound
from cfgstore.model.credentials import Credential
from cfgstore.model.pools import ProviderNode, ProviderPools, node_to_json
from cfgstore.testing.builders import make_node
from cfgstore.testing.deployment import Deployment
from cfgstore.testing.fixtures import deployment_fixture, store_fixture  # noqa: F401
from cfgstore.testing.rules import rule, rule_raises

pytestmark = pytest.mark.asyncio  # every test here is a coroutine


async def test_empty_store_lists_nothing(store: Store) -> None:
    with rule("cfgstore_pools_list", "an empty store lists no provider type"):
        assert (await store.pools.list()).types == {}
    with rule("cfgstore_pools_get_node", "an absent node is None"):
        assert await store.pools.get_node("openai-custom", "nope") is None


async def test_types_and_nodes_keep_insertion_order(store: Store) -> None:
    order = [
        ("openai-custom", "a"),
        ("claude-kiro-oauth", "b"),
        ("openai-custom", "c"),
        ("gemini-cli-oauth", "d"),
        ("claude-kiro-oauth", "e"),
    ]
    for provider_type, uuid in order:
        await store.pools.add_node(provider_type, make_node(uuid))
    pools = await store.pools.list()
    with rule("cfgstore_pools_list", "types and nodes are listed in the order they were added"):
        assert list(pools.types) == ["openai-custom", "claude-kiro-oauth", "gemini-cli-oauth"]
        assert [n.uuid for n in pools.types["openai-custom"]] == ["a", "c"]
        assert [n.uuid for n in pools.types["claude-kiro-oauth"]] == ["b", "e"]


async def test_order_survives_reopen(deployment: Deployment) -> None:
    async with deployment.open() as store:
        for uuid in ["z", "y", "x"]:
            await store.pools.add_node("forward-api", make_node(uuid))
    async with deployment.open() as store:
        with rule("cfgstore_pools_list", "order is stored data: it survives close and reopen"):
            nodes = (await store.pools.list()).types["forward-api"]
            assert [n.uuid for n in nodes] == ["z", "y", "x"]


async def test_unknown_fields_round_trip(deployment: Deployment) -> None:
    node = make_node(
        "u1",
        OPENAI_API_KEY="sk-FAKE",
        nested={"list": [1, 2.5, None, {"deep": "值"}], "empty": {}},
        PROJECT_ID="",
        checkModelName=None,
        supportedModels=["gpt-4o", "gpt-4o-mini"],
        _private=7,
    )
    expected = node_to_json(node)
    text = "a node's document comes back whole: unknown keys, values and key order"
    async with deployment.open() as store:
        await store.pools.add_node("openai-custom", node)
        with rule("cfgstore_pools_get_node", text):
            got = await store.pools.get_node("openai-custom", "u1")
            assert got is not None and node_to_json(got) == expected
            assert list(node_to_json(got)) == list(expected)
    async with deployment.open() as store:
        with rule("cfgstore_pools_get_node", f"{text}, after a reopen too"):
            got = await store.pools.get_node("openai-custom", "u1")
            assert got is not None and node_to_json(got) == expected


async def test_add_duplicate_uuid_is_refused(store: Store) -> None:
    await store.pools.add_node("openai-custom", make_node("dup"))
    with (
        rule("cfgstore_pools_add_node", "a uuid already used in the type raises AlreadyExists"),
        pytest.raises(AlreadyExists),
    ):
        await store.pools.add_node("openai-custom", make_node("dup"))
    with rule("cfgstore_pools_add_node", "the same uuid under another type is another node"):
        await store.pools.add_node("claude-custom", make_node("dup"))


async def test_update_merges_keeps_positions_and_counters(store: Store) -> None:
    await store.pools.add_node(
        "openai-custom", make_node("n", OPENAI_API_KEY="old", OPENAI_BASE_URL="https://x.invalid")
    )
    await store.pools.record_success("openai-custom", "n", at_ms=1_780_000_000_000)
    updated = await store.pools.update_node(
        "openai-custom",
        "n",
        {
            "OPENAI_API_KEY": "new",
            "extra": True,
            "uuid": "hijack",
            "usageCount": 99,
            "isHealthy": False,
        },
    )
    doc = node_to_json(updated)
    with rule("cfgstore_pools_update_node", "changes are shallow-merged, isHealthy included"):
        assert doc["OPENAI_API_KEY"] == "new" and doc["extra"] is True
        assert doc["isHealthy"] is False
    with rule("cfgstore_pools_update_node", "uuid and the live counters in changes are ignored"):
        assert doc["uuid"] == "n" and doc["usageCount"] == 1
    with rule("cfgstore_pools_update_node", "keys keep their position; new keys are appended"):
        keys = list(doc)
        assert keys.index("OPENAI_API_KEY") < keys.index("OPENAI_BASE_URL") < keys.index("extra")
    with rule("cfgstore_pools_update_node", "the node returned is the node stored"):
        stored = await store.pools.get_node("openai-custom", "n")
        assert stored is not None and node_to_json(stored) == doc


async def test_update_with_badly_typed_field_changes_nothing(store: Store) -> None:
    await store.pools.add_node("openai-custom", make_node("n", OPENAI_API_KEY="k"))
    before = node_to_json(await _get(store, "openai-custom", "n"))
    text = "a badly typed hot-path field raises InvalidData naming it, and nothing is written"
    with rule("cfgstore_pools_update_node", text):
        with pytest.raises(InvalidData) as info:
            await store.pools.update_node(
                "openai-custom", "n", {"isHealthy": "yes", "OPENAI_API_KEY": "changed"}
            )
        assert "isHealthy" in str(info.value)
        assert node_to_json(await _get(store, "openai-custom", "n")) == before


async def test_missing_nodes_and_types_raise_not_found(store: Store) -> None:
    await store.pools.add_node("openai-custom", make_node("n"))
    with rule_raises("cfgstore_pools_update_node", "an absent node raises NotFound", NotFound):
        await store.pools.update_node("openai-custom", "missing", {"a": 1})
    with rule_raises("cfgstore_pools_delete_node", "an absent node raises NotFound", NotFound):
        await store.pools.delete_node("openai-custom", "missing")
    with rule_raises("cfgstore_pools_delete_type", "an absent type raises NotFound", NotFound):
        await store.pools.delete_type("no-such-type")
    with rule_raises(
        "cfgstore_pools_set_disabled", "an absent type or node raises NotFound", NotFound
    ):
        await store.pools.set_disabled("no-such-type", "n", True)
    with rule_raises("cfgstore_pools_reset_health", "an absent type raises NotFound", NotFound):
        await store.pools.reset_health("no-such-type")
    with rule_raises("cfgstore_pools_rename_node", "an absent node raises NotFound", NotFound):
        await store.pools.rename_node("openai-custom", "missing", "new")


async def test_deleting_last_node_removes_the_type(store: Store) -> None:
    await store.pools.add_node("claude-custom", make_node("only"))
    await store.pools.add_node("openai-custom", make_node("keep"))
    await store.pools.delete_node("claude-custom", "only")
    with rule("cfgstore_pools_delete_node", "deleting a type's last node removes the type"):
        assert list((await store.pools.list()).types) == ["openai-custom"]


async def test_delete_type_returns_count(store: Store) -> None:
    for uuid in "abc":
        await store.pools.add_node("grok-web", make_node(uuid))
    with rule("cfgstore_pools_delete_type", "returns how many nodes were removed"):
        assert await store.pools.delete_type("grok-web") == 3
        assert "grok-web" not in (await store.pools.list()).types


async def test_rename_keeps_position_and_refuses_taken_uuid(store: Store) -> None:
    for uuid in "abc":
        await store.pools.add_node("openai-custom", make_node(uuid))
    await store.pools.rename_node("openai-custom", "b", "b2")
    with rule("cfgstore_pools_rename_node", "the renamed node keeps its position"):
        nodes = (await store.pools.list()).types["openai-custom"]
        assert [n.uuid for n in nodes] == ["a", "b2", "c"]
    with rule_raises(
        "cfgstore_pools_rename_node", "a uuid taken in the type raises AlreadyExists", AlreadyExists
    ):
        await store.pools.rename_node("openai-custom", "a", "c")


async def test_disable_reset_health_and_delete_unhealthy(store: Store) -> None:
    for uuid in "abcd":
        await store.pools.add_node("openai-custom", make_node(uuid))
    await store.pools.set_disabled("openai-custom", "a", True)
    for uuid in "bc":
        await store.pools.record_failure("openai-custom", uuid, "boom", max_error_count=1)
    await store.pools.record_cooldown(
        "openai-custom", "d", "429", max_error_count=1, recovery_at_ms=4_102_444_800_000
    )
    nodes = {n.uuid: n for n in (await store.pools.list()).types["openai-custom"]}
    with rule("cfgstore_pools_set_disabled", "sets isDisabled of that node only"):
        assert nodes["a"].state.is_disabled and nodes["a"].state.is_healthy
    with rule("cfgstore_pools_apply_records", "failure and cooldown records mark a node unhealthy"):
        assert not nodes["b"].state.is_healthy and not nodes["d"].state.is_healthy

    with rule(
        "cfgstore_pools_reset_health",
        "every node of the type is reset, counted, keeping scheduledRecoveryTime and isDisabled",
    ):
        assert await store.pools.reset_health("openai-custom") == 4
        nodes = {n.uuid: n for n in (await store.pools.list()).types["openai-custom"]}
        assert all(n.state.is_healthy and n.state.error_count == 0 for n in nodes.values())
        assert nodes["d"].state.scheduled_recovery_time is not None
        assert nodes["a"].state.is_disabled

    await store.pools.record_failure("openai-custom", "c", "boom", max_error_count=1)
    with rule(
        "cfgstore_pools_delete_unhealthy",
        "removes the unhealthy nodes, returns their uuids in order, keeps the others in order",
    ):
        assert await store.pools.delete_unhealthy("openai-custom") == ["c"]
        nodes_left = (await store.pools.list()).types["openai-custom"]
        assert [n.uuid for n in nodes_left] == ["a", "b", "d"]


async def test_returned_values_are_copies(store: Store) -> None:
    await store.pools.add_node("openai-custom", make_node("n"))
    node = await _get(store, "openai-custom", "n")
    node.state.usage_count = 1000
    node.settings["poison"] = True
    pools = await store.pools.list()
    pools.types["openai-custom"].clear()
    with rule(
        "cfgstore_pools_get_node",
        "values returned are copies: mutating a node or the "
        "listed pools changes nothing in the store",
    ):
        again = await _get(store, "openai-custom", "n")
        assert again.state.usage_count == 0 and "poison" not in again.settings


async def _get(store: Store, provider_type: str, uuid: str) -> ProviderNode:
    node = await store.pools.get_node(provider_type, uuid)
    assert node is not None, f"node {provider_type}/{uuid} is missing"
    return node


async def test_import_replaces_everything_in_order_including_empty_types(store: Store) -> None:
    await store.pools.add_node("claude-kiro-oauth", make_node("old-kiro"))
    await store.credentials.put(
        Credential("claude-kiro-oauth", "old-kiro", {"accessToken": "x"}), None
    )
    await store.pools.add_node("openai-custom", make_node("keep", OPENAI_API_KEY="old"))
    for _ in range(4):
        await store.pools.record_success("openai-custom", "keep")
    incoming = ProviderPools(
        {
            "openai-custom": [
                make_node("first-new"),
                make_node("keep", OPENAI_API_KEY="new", usageCount=100),
            ],
            "claude-custom-backup": [],
            "grok-web": [make_node("g", usageCount=7)],
        }
    )
    await store.pools.import_all(incoming, keep_live_state=True)
    pools = await store.pools.list()
    with rule(
        "cfgstore_pools_import",
        "replaces every type and node, in the given order, empty types included",
    ):
        assert list(pools.types) == ["openai-custom", "claude-custom-backup", "grok-web"]
        assert [n.uuid for n in pools.types["openai-custom"]] == ["first-new", "keep"]
    with rule(
        "cfgstore_pools_import",
        "keep_live_state keeps a stored node's hot-path fields; "
        "everything else comes from the import",
    ):
        kept = pools.types["openai-custom"][1]
        assert kept.settings["OPENAI_API_KEY"] == "new"
        assert kept.state.usage_count == 4
        assert pools.types["grok-web"][0].state.usage_count == 7
    with rule("cfgstore_pools_import", "the credential of a node not imported is unreachable"):
        assert await store.credentials.get("claude-kiro-oauth", "old-kiro") is None

    await store.pools.import_all(incoming, keep_live_state=False)
    with rule("cfgstore_pools_import", "without keep_live_state every field comes from the import"):
        reset = await store.pools.get_node("openai-custom", "keep")
        assert reset is not None and reset.state.usage_count == 100
        again = await store.pools.list()
        assert [node_to_json(n) for _, n in again] == [node_to_json(n) for _, n in incoming]
