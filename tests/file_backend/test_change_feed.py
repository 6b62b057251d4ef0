"""The file backend's live view reports what a write or a re-read of ``provider_pools.json``
changed node by node, so provider selection's index re-files those nodes, not the pool."""

from __future__ import annotations

import json
from pathlib import Path

from cfgstore.adapters import Store
from cfgstore.model.node_changes import NodeChanges, changes_of
from cfgstore.model.pools import ProviderNode, node_from_json
from cfgstore_file.pools_file import changed_nodes
from cfgstore_gateway.selection_index import IndexedSelector
from tests.file_backend.conftest import OpenStore, file_settings
from tests.file_backend.observer import watch

KIRO = "claude-kiro-oauth"
NOW = 1_780_000_000_000


def _uuids(cwd: Path, provider_type: str) -> list[str]:
    doc = json.loads((cwd / "configs" / "provider_pools.json").read_text("utf-8"))
    return [node["uuid"] for node in doc[provider_type]]


async def _feed(store: Store) -> NodeChanges:
    feed = changes_of(await store.pools.view())
    assert feed is not None, "the file backend hands out a live view with a change feed"
    return feed


async def test_an_own_edit_of_one_node_reports_that_node_alone(
    deployment_copy: Path, open_store: OpenStore
) -> None:
    uuids = _uuids(deployment_copy, KIRO)
    async with open_store() as store:
        feed = await _feed(store)
        view = await store.pools.view()
        lists_before = {t: view[t] for t in view}
        cursor = feed.cursor
        await store.pools.update_node(KIRO, uuids[1], {"customName": "renamed by an edit"})

        news = feed.since(cursor)
        assert news is not None, "a one-node edit must not make readers re-read everything"
        assert [(t, n.uuid) for t, n in news] == [(KIRO, uuids[1])]
        view = await store.pools.view()
        assert news[-1][1] is view[KIRO][1], "the feed names the object the view now holds"
        assert view[KIRO][1].settings["customName"] == "renamed by an edit"
        assert all(view[t] is nodes for t, nodes in lists_before.items()), (
            "the view's lists are kept (an index over them stays valid)"
        )


async def test_the_index_follows_a_one_node_edit_without_a_rebuild(
    deployment_copy: Path, open_store: OpenStore
) -> None:
    async with open_store() as store:
        feed = await _feed(store)
        selector = IndexedSelector()

        async def pick() -> str:
            view = await store.pools.view()
            choice = selector.select(KIRO, view[KIRO], None, now_ms=NOW, changes=feed)
            assert choice is not None
            return choice.node.uuid

        first = await pick()
        built = selector.rebuilds
        await store.pools.set_disabled(KIRO, first, True)
        second = await pick()
        assert second != first, "the disabled node is no longer picked"
        assert selector.rebuilds == built, "one node changed: its entry re-filed, no rebuild"
        await store.pools.set_disabled(KIRO, first, False)
        assert await pick() == first
        assert selector.rebuilds == built


async def test_another_process_write_of_one_node_reports_that_node_alone(
    deployment_copy: Path, open_store: OpenStore
) -> None:
    uuids = _uuids(deployment_copy, KIRO)
    async with (
        open_store(watch_interval_ms=20) as store,
        Store.open(file_settings(deployment_copy)) as other,
    ):
        feed = await _feed(store)
        waiter = watch(store)
        cursor = feed.cursor
        await other.pools.update_node(KIRO, uuids[2], {"customName": "edited elsewhere"})
        await waiter.wait_for("pools", remote=True)

        news = feed.since(cursor)
        assert news is not None
        assert [(t, n.uuid) for t, n in news] == [(KIRO, uuids[2])]
        node = await store.pools.get_node(KIRO, uuids[2])
        assert node is not None and node.settings["customName"] == "edited elsewhere"


async def test_a_node_added_elsewhere_makes_readers_re_read_everything(
    deployment_copy: Path, open_store: OpenStore
) -> None:
    async with (
        open_store(watch_interval_ms=20) as store,
        Store.open(file_settings(deployment_copy)) as other,
    ):
        feed = await _feed(store)
        waiter = watch(store)
        cursor = feed.cursor
        added = node_from_json({"uuid": "added-elsewhere", "customName": "new"}, "test")
        await other.pools.add_node(KIRO, added)
        await waiter.wait_for("pools", remote=True)

        assert feed.since(cursor) is None, "a structure change is 'everything'"
        view = await store.pools.view()
        assert [n.uuid for n in view[KIRO]][-1] == "added-elsewhere"


def _node(settings: dict[str, object], **state: object) -> ProviderNode:
    return node_from_json({"uuid": "u1", **settings, **state}, "test")  # type: ignore[arg-type]


def test_a_value_of_another_json_type_or_key_order_is_a_change() -> None:
    base = {"checkHealth": True, "extra": {"a": 1, "b": 2}}
    same = changed_nodes({"t": [_node(base)]}, {"t": [_node(dict(base))]})
    assert same == []
    for different in (
        {"checkHealth": 1, "extra": {"a": 1, "b": 2}},  # 1 == True in Python, not in JSON
        {"checkHealth": True, "extra": {"b": 2, "a": 1}},  # the same dict, written otherwise
        {"checkHealth": True, "extra": {"a": 1.0, "b": 2}},
    ):
        assert changed_nodes({"t": [_node(base)]}, {"t": [_node(different)]}) == [("t", 0)]
    assert changed_nodes({"t": [_node(base)]}, {"t": [_node(base, usageCount=3)]}) == [("t", 0)]
    assert changed_nodes({"t": [_node(base)]}, {"u": [_node(base)]}) is None
    assert changed_nodes({"t": [_node(base)]}, {"t": []}) is None
