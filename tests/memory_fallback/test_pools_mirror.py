"""The pools mirror: confirmed state plus this instance's unconfirmed records."""

from __future__ import annotations

import asyncio

from cfgstore.model import records as rec
from cfgstore.model.pools import ProviderPools, node_from_json
from cfgstore_memory.pools_mirror import CHUNK, PoolsMirror

T = "openai-custom"


def pools(*uuids: str, usage: int = 0) -> ProviderPools:
    return ProviderPools(
        {T: [node_from_json({"uuid": u, "usageCount": usage}, "test") for u in uuids]}
    )


def success(uuid: str, at: int = 1_773_576_000_000) -> rec.Success:
    return rec.Success(T, uuid, at)


def usage(mirror: PoolsMirror, uuid: str, *, confirmed: bool = False) -> int:
    source = mirror.confirmed if confirmed else mirror.view
    node = source.find(T, uuid)
    assert node is not None
    return node.state.usage_count


def test_local_records_show_at_once_and_count_as_confirmed_only_when_acknowledged() -> None:
    mirror = PoolsMirror()
    mirror.reset(pools("a", "b"), [])
    batch = [success("a"), success("a"), success("b")]
    mirror.apply_local(batch)
    assert (usage(mirror, "a"), usage(mirror, "b")) == (2, 1)
    assert usage(mirror, "a", confirmed=True) == 0
    mirror.confirm(batch)
    assert (usage(mirror, "a", confirmed=True), usage(mirror, "b", confirmed=True)) == (2, 1)


def test_a_resync_reapplies_what_the_storage_has_not_acknowledged() -> None:
    mirror = PoolsMirror()
    mirror.reset(pools("a"), [])
    mirror.apply_local([success("a")] * 3)
    # The storage (other instances' work included) says 10; our 3 are still unsent.
    mirror.reset(pools("a", usage=10), [success("a")] * 3)
    assert usage(mirror, "a") == 13 and usage(mirror, "a", confirmed=True) == 10


def test_replaced_nodes_keep_order_and_get_our_unconfirmed_records_on_top() -> None:
    mirror = PoolsMirror()
    mirror.reset(pools("a", "b", "c"), [])
    mine = [success("b"), success("c")]
    mirror.apply_local(mine)
    fresh = node_from_json({"uuid": "b", "usageCount": 7}, "test")
    mirror.replace_nodes([((T, "b"), fresh)], mine)
    assert [n.uuid for n in mirror.view.types[T]] == ["a", "b", "c"]
    assert usage(mirror, "b") == 8 and usage(mirror, "b", confirmed=True) == 7
    assert usage(mirror, "c") == 1  # untouched by the refresh of b


def test_reads_are_copies_and_unknown_nodes_are_ignored() -> None:
    mirror = PoolsMirror()
    mirror.reset(pools("a"), [])
    mirror.apply_local([success("gone")])  # a deleted node: the storage decides
    node = mirror.get(T, "a")
    assert node is not None
    node.state.usage_count = 99
    assert usage(mirror, "a") == 0 and mirror.get(T, "gone") is None
    assert mirror.knows((T, "a")) and not mirror.knows((T, "gone"))


def test_records_made_under_a_renamed_uuid_count_on_the_renamed_node() -> None:
    """As the storage's forwarding pointer does: records queued under the old uuid before
    the rename land on the node after it, in the view and once acknowledged."""
    mirror = PoolsMirror()
    mirror.reset(pools("old"), [])
    queued = [success("old"), success("old")]
    mirror.apply_local(queued)
    mirror.renamed(T, "old", "new")
    mirror.reset(pools("new"), queued)  # the resync after the rename, records still unsent
    assert usage(mirror, "new") == 2 and mirror.get(T, "old") is None
    mirror.confirm(queued)
    assert usage(mirror, "new", confirmed=True) == 2


async def test_a_rebuild_yields_to_the_loop_and_switches_with_the_records_made_meanwhile() -> None:
    """A full read of a large pool is taken in chunks (the event loop runs between them);
    reads see the old state until the new one is complete, and a record made meanwhile
    is on top of the new state."""
    uuids = [f"n{i:05d}" for i in range(3 * CHUNK + 7)]
    mirror = PoolsMirror()
    mirror.reset(pools(*uuids), [])
    unconfirmed: list[rec.NodeRecord] = []
    turns: list[tuple[int, int]] = []  # view usage of n00000, and of the last node, per turn

    async def watch() -> None:
        while True:
            turns.append((usage(mirror, uuids[0]), usage(mirror, uuids[-1])))
            if usage(mirror, uuids[0]) >= 10:
                return
            if len(turns) == 1:  # a request served while the rebuild runs
                mirror.apply_local([success(uuids[0])])
                unconfirmed.append(success(uuids[0]))
            await asyncio.sleep(0)

    watcher = asyncio.ensure_future(watch())
    await mirror.rebuild(pools(*uuids, usage=9), lambda: list(unconfirmed))
    await asyncio.wait_for(watcher, 5)
    assert len(turns) >= 3  # the loop ran during the rebuild
    assert turns[1] == (1, 0)  # old state (with the new record) until the switch
    assert (usage(mirror, uuids[0]), usage(mirror, uuids[-1])) == (10, 9)
    assert usage(mirror, uuids[0], confirmed=True) == 9


def test_view_and_confirmed_share_settings_but_not_state() -> None:
    mirror = PoolsMirror()
    mirror.reset(pools("a"), [])
    mirror.apply_local([success("a")])
    view, confirmed = mirror.view.find(T, "a"), mirror.confirmed.find(T, "a")
    assert view is not None and confirmed is not None
    assert view.settings is confirmed.settings
    assert (view.state.usage_count, confirmed.state.usage_count) == (1, 0)
    copied = mirror.get(T, "a")
    assert copied is not None and copied.settings is not view.settings  # reads get copies


def test_replacing_nodes_keeps_their_places_and_this_instances_records() -> None:
    mirror = PoolsMirror()
    mirror.reset(pools("a", "b", "c"), [])
    mine = [success("b"), success("b"), success("c")]
    mirror.apply_local(mine)
    fresh = node_from_json({"uuid": "b", "usageCount": 40, "customName": "renamed"}, "test")
    mirror.replace_nodes([((T, "b"), fresh)], mine)
    assert [n.uuid for n in mirror.view.types[T]] == ["a", "b", "c"]
    assert [n.uuid for n in mirror.confirmed.types[T]] == ["a", "b", "c"]
    assert (usage(mirror, "b"), usage(mirror, "b", confirmed=True)) == (42, 40)
    node = mirror.view.find(T, "b")
    assert node is not None and node.custom_name == "renamed"
    assert usage(mirror, "c") == 1


def test_the_views_state_copy_is_whole_and_separate() -> None:
    """Every field of a node's state reaches the view (a field added to ``NodeState``
    must be copied too), and changing the view leaves the confirmed state alone."""
    document = {
        "uuid": "a",
        "usageCount": 7,
        "errorCount": 2,
        "isHealthy": False,
        "isDisabled": True,
        "lastUsed": "2026-03-15T12:00:00.000Z",
        "lastErrorTime": "2026-03-15T12:01:00.000Z",
        "lastErrorMessage": "boom",
        "needsRefresh": True,
        "_lastSelectionSeq": 12,
    }
    mirror = PoolsMirror()
    mirror.reset(ProviderPools({T: [node_from_json(document, "test")]}), [])
    view, confirmed = mirror.view.find(T, "a"), mirror.confirmed.find(T, "a")
    assert view is not None and confirmed is not None
    assert view.state == confirmed.state and view.state is not confirmed.state
    assert view.layout == confirmed.layout and view.layout is not confirmed.layout
    mirror.apply_local([success("a")])
    assert confirmed.state.usage_count == 7 and confirmed.state.is_healthy is False
