"""Provider-pool CRUD: order, merge semantics, typed errors."""

from __future__ import annotations

import pytest

from cfgstore.adapters import Store
from cfgstore.errors import AlreadyExists, InvalidData, NotFound
from cfgstore.model.pools import node_to_json
from tests.contract.conftest import Deployment
from tests.contract.helpers import make_node


async def test_empty_store_lists_nothing(store: Store) -> None:
    pools = await store.pools.list()
    assert pools.types == {}
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
    assert list(pools.types) == ["openai-custom", "claude-kiro-oauth", "gemini-cli-oauth"]
    assert [n.uuid for n in pools.types["openai-custom"]] == ["a", "c"]
    assert [n.uuid for n in pools.types["claude-kiro-oauth"]] == ["b", "e"]


async def test_order_survives_reopen(deployment: Deployment) -> None:
    async with deployment.open() as store:
        for uuid in ["z", "y", "x"]:
            await store.pools.add_node("forward-api", make_node(uuid))
    async with deployment.open() as store:
        assert [n.uuid for n in (await store.pools.list()).types["forward-api"]] == ["z", "y", "x"]


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
    async with deployment.open() as store:
        await store.pools.add_node("openai-custom", node)
        got = await store.pools.get_node("openai-custom", "u1")
        assert got is not None and node_to_json(got) == expected
        assert list(node_to_json(got)) == list(expected)
    async with deployment.open() as store:
        got = await store.pools.get_node("openai-custom", "u1")
        assert got is not None and node_to_json(got) == expected


async def test_add_duplicate_uuid_is_refused(store: Store) -> None:
    await store.pools.add_node("openai-custom", make_node("dup"))
    with pytest.raises(AlreadyExists):
        await store.pools.add_node("openai-custom", make_node("dup"))
    # The same uuid under another type is another node.
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
    assert doc["OPENAI_API_KEY"] == "new" and doc["extra"] is True
    assert doc["uuid"] == "n" and doc["usageCount"] == 1
    assert doc["isHealthy"] is False
    keys = list(doc)
    assert keys.index("OPENAI_API_KEY") < keys.index("OPENAI_BASE_URL") < keys.index("extra")
    stored = await store.pools.get_node("openai-custom", "n")
    assert stored is not None and node_to_json(stored) == doc


async def test_update_with_badly_typed_field_changes_nothing(store: Store) -> None:
    await store.pools.add_node("openai-custom", make_node("n", OPENAI_API_KEY="k"))
    before = node_to_json(await _get(store, "openai-custom", "n"))
    with pytest.raises(InvalidData) as info:
        await store.pools.update_node(
            "openai-custom", "n", {"isHealthy": "yes", "OPENAI_API_KEY": "changed"}
        )
    assert "isHealthy" in str(info.value)
    assert node_to_json(await _get(store, "openai-custom", "n")) == before


async def test_missing_nodes_and_types_raise_not_found(store: Store) -> None:
    await store.pools.add_node("openai-custom", make_node("n"))
    with pytest.raises(NotFound):
        await store.pools.update_node("openai-custom", "missing", {"a": 1})
    with pytest.raises(NotFound):
        await store.pools.delete_node("openai-custom", "missing")
    with pytest.raises(NotFound):
        await store.pools.delete_type("no-such-type")
    with pytest.raises(NotFound):
        await store.pools.set_disabled("no-such-type", "n", True)
    with pytest.raises(NotFound):
        await store.pools.reset_health("no-such-type")
    with pytest.raises(NotFound):
        await store.pools.rename_node("openai-custom", "missing", "new")


async def test_deleting_last_node_removes_the_type(store: Store) -> None:
    await store.pools.add_node("claude-custom", make_node("only"))
    await store.pools.add_node("openai-custom", make_node("keep"))
    await store.pools.delete_node("claude-custom", "only")
    assert list((await store.pools.list()).types) == ["openai-custom"]


async def test_delete_type_returns_count(store: Store) -> None:
    for uuid in "abc":
        await store.pools.add_node("grok-web", make_node(uuid))
    assert await store.pools.delete_type("grok-web") == 3
    assert "grok-web" not in (await store.pools.list()).types


async def test_rename_keeps_position_and_refuses_taken_uuid(store: Store) -> None:
    for uuid in "abc":
        await store.pools.add_node("openai-custom", make_node(uuid))
    await store.pools.rename_node("openai-custom", "b", "b2")
    nodes = (await store.pools.list()).types["openai-custom"]
    assert [n.uuid for n in nodes] == ["a", "b2", "c"]
    with pytest.raises(AlreadyExists):
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
    assert nodes["a"].state.is_disabled and nodes["a"].state.is_healthy
    assert not nodes["b"].state.is_healthy and not nodes["d"].state.is_healthy

    assert await store.pools.reset_health("openai-custom") == 4
    nodes = {n.uuid: n for n in (await store.pools.list()).types["openai-custom"]}
    assert all(n.state.is_healthy and n.state.error_count == 0 for n in nodes.values())
    assert nodes["d"].state.scheduled_recovery_time is not None  # reset keeps the schedule
    assert nodes["a"].state.is_disabled

    await store.pools.record_failure("openai-custom", "c", "boom", max_error_count=1)
    assert await store.pools.delete_unhealthy("openai-custom") == ["c"]
    assert [n.uuid for n in (await store.pools.list()).types["openai-custom"]] == ["a", "b", "d"]


async def test_returned_values_are_copies(store: Store) -> None:
    await store.pools.add_node("openai-custom", make_node("n"))
    node = await _get(store, "openai-custom", "n")
    node.state.usage_count = 1000
    node.settings["poison"] = True
    pools = await store.pools.list()
    pools.types["openai-custom"].clear()
    again = await _get(store, "openai-custom", "n")
    assert again.state.usage_count == 0 and "poison" not in again.settings


async def _get(store: Store, provider_type: str, uuid: str):  # type: ignore[no-untyped-def]
    node = await store.pools.get_node(provider_type, uuid)
    assert node is not None
    return node


async def test_import_replaces_everything_in_order_including_empty_types(store: Store) -> None:
    from cfgstore.model.credentials import Credential
    from cfgstore.model.pools import ProviderPools

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
    assert list(pools.types) == ["openai-custom", "claude-custom-backup", "grok-web"]
    assert [n.uuid for n in pools.types["openai-custom"]] == ["first-new", "keep"]
    kept = pools.types["openai-custom"][1]
    assert kept.settings["OPENAI_API_KEY"] == "new"  # configuration from the files
    assert kept.state.usage_count == 4  # live counters kept
    assert pools.types["grok-web"][0].state.usage_count == 7  # new node: file values
    assert await store.credentials.get("claude-kiro-oauth", "old-kiro") is None

    await store.pools.import_all(incoming, keep_live_state=False)
    reset = await store.pools.get_node("openai-custom", "keep")
    assert reset is not None and reset.state.usage_count == 100
    again = await store.pools.list()
    assert [node_to_json(n) for _, n in again] == [node_to_json(n) for _, n in incoming]
