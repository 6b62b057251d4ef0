"""The pools mirror: confirmed state plus this instance's unconfirmed records."""

from __future__ import annotations

from cfgstore.model import records as rec
from cfgstore.model.pools import ProviderPools, node_from_json
from cfgstore_memory.pools_mirror import PoolsMirror

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
