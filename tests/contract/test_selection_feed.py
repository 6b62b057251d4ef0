"""Every chain's pools view keeps the gateway's indexed selector exact.

Run for each chain of the contract suite (file, memory+file, redis, memory+redis): the
view a real store hands out goes through records, admin edits (disable, model lists, a
limit, a new node, a deletion) and a health-check reset, and after each the indexed
selector — following the view's change feed, or scanning where the view has none — picks
what the reference scan picks on the same view.
"""

from __future__ import annotations

import pytest

from cfgstore.adapters import Store
from cfgstore.model.node_changes import changes_of
from cfgstore.model.timefmt import now_ms
from cfgstore.testing.builders import make_node
from cfgstore.testing.fixtures import deployment_fixture, store_fixture  # noqa: F401
from cfgstore_gateway.selection import Choice, Selector
from cfgstore_gateway.selection_index import IndexedSelector

pytestmark = pytest.mark.asyncio

TYPE = "openai-custom"


def described(choice: Choice | None) -> tuple[str, int, tuple[str, ...]] | None:
    return None if choice is None else (choice.node.uuid, choice.seq, choice.recovered)


class Pair:
    """The reference scan and the indexed selector, picking side by side."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reference = Selector()
        self.indexed = IndexedSelector()
        self.now = now_ms()

    async def pick(
        self,
        model: str | None = None,
        *,
        record: bool = True,
        exclude: frozenset[str] = frozenset(),
    ) -> str | None:
        view = await self.store.pools.view()
        nodes = view.get(TYPE, ())
        self.now += 1
        expected = self.reference.select(TYPE, nodes, model, now_ms=self.now, exclude=exclude)
        got = self.indexed.select(
            TYPE, nodes, model, now_ms=self.now, exclude=exclude, changes=changes_of(view)
        )
        assert described(got) == described(expected)
        if record and got is not None:
            await self.store.pools.record_selected(TYPE, got.node.uuid, got.seq)
        return None if got is None else got.node.uuid


async def test_the_indexed_selector_follows_every_change_of_the_view(store: Store) -> None:
    pair = Pair(store)
    for uuid in ("a", "b", "c"):
        await store.pools.add_node(TYPE, make_node(uuid))
    seen = {await pair.pick() for _ in range(3)}
    assert seen == {"a", "b", "c"}  # round robin through recorded selections

    await store.pools.record_success(TYPE, "b")
    await pair.pick(record=False)
    await store.pools.set_disabled(TYPE, "a", True)
    assert {await pair.pick() for _ in range(4)} <= {"b", "c"}
    await store.pools.update_node(TYPE, "c", {"supportedModels": ["m1"]})
    assert await pair.pick("m1") == "c"
    assert await pair.pick("m2") == "b"
    await store.pools.update_node(TYPE, "b", {"notSupportedModels": ["m2"]})
    assert await pair.pick("m2") is None
    await store.pools.record_failure(TYPE, "c", "boom", max_error_count=1)
    assert await pair.pick("m1") == "b"
    assert await pair.pick("m2") is None
    await store.pools.reset_health(TYPE)
    assert await pair.pick("m1", exclude=frozenset({"b"})) == "c"
    await store.pools.add_node(TYPE, make_node("d"))
    await pair.pick()
    await store.pools.delete_node(TYPE, "b")
    for _ in range(3):
        await pair.pick()
    await store.flush()
    await pair.pick()
    view = await store.pools.view()
    has_feed = changes_of(view) is not None
    assert has_feed == (store.settings.backends != ("redis",))  # Redis alone: fresh copies
