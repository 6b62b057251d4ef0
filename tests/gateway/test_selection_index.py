"""The indexed selector (cfgstore_gateway.selection_index) makes exactly the scan's picks.

Differential: the memory layer's real pools view (:class:`PoolsMirror`, the view the
gateway selects from in production) is driven through hypothesis-generated pools and
sequences of what it sees — this instance's records, other instances' node changes
(replaced nodes), structure changes (reset), slot acquisitions and releases, the clock
moving on (and sometimes back) — and at every pick the indexed selector and the reference
scan (:class:`~cfgstore_gateway.selection.Selector`) must answer the same: the same node
object, sequence number and recovered uuids. A seeded long run at a few hundred nodes covers
what small examples reach rarely (heap compaction, many model groups, long exclusions).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cfgstore.model import records as rec
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.node_changes import LiveView, NodeChanges, changes_of
from cfgstore.model.pools import ProviderNode, ProviderPools, node_from_json, node_to_json
from cfgstore.model.timefmt import iso_ms
from cfgstore_gateway.selection import Choice, Selector, SlotLease, SlotTable
from cfgstore_gateway.selection_index import IndexedSelector
from cfgstore_memory.pools_mirror import PoolsMirror

NOW = 1_773_576_000_000
MANAGED = "openai-custom"
PLAIN = "claude-kiro-oauth"
TYPES = (MANAGED, PLAIN)
MODELS = ("m1", "m2", "m3")
UUIDS = tuple(f"n{i}" for i in range(10))
MAX_ERRORS = 2

# -- generated pools -------------------------------------------------------------------

offsets = st.integers(-150_000, 150_000)
times: st.SearchStrategy[JSONValue] = st.one_of(
    st.none(),
    offsets.map(lambda d: iso_ms(NOW + d)),
    st.integers(-2 * 86_400_000, 0).map(lambda d: iso_ms(NOW + d)),
    st.just("soon"),  # unreadable
    st.just(iso_ms(0)),  # epoch 0: falsy once parsed
)
model_lists: st.SearchStrategy[JSONValue] = st.one_of(
    st.just([]),
    st.lists(st.sampled_from([*MODELS, " m1 ", "", 7]), max_size=3),
    st.just("m1"),  # not a list
)


@st.composite
def node_docs(draw: st.DrawFn, uuid: str, seq_base: int = 0) -> dict[str, JSONValue]:
    return {
        "uuid": uuid,
        "isHealthy": draw(st.booleans()),
        "isDisabled": draw(st.sampled_from([False, False, False, True])),
        "needsRefresh": draw(st.sampled_from([False, False, False, True])),
        "scheduledRecoveryTime": draw(times),
        "lastUsed": draw(times),
        "lastHealthCheckTime": draw(times),
        "usageCount": draw(st.integers(-2, 6)),
        "_lastSelectionSeq": seq_base
        + draw(st.sampled_from([0, 0, 1, 2, 50, 99, 100, 101, 150, 400])),
        "supportedModels": draw(model_lists),
        "notSupportedModels": draw(model_lists),
        "concurrencyLimit": draw(st.integers(0, 2)),
        "queueLimit": draw(st.integers(0, 2)),
    }


@st.composite
def pool_docs(draw: st.DrawFn) -> dict[str, list[dict[str, JSONValue]]]:
    out = {}
    for provider_type in TYPES:
        uuids = draw(st.lists(st.sampled_from(UUIDS), unique=True, max_size=8))
        base = draw(st.sampled_from([0, 7, 130]))  # minSeq > 0 shifts the seq terms
        out[provider_type] = [draw(node_docs(uuid, base)) for uuid in uuids]
    return out


def build(docs: dict[str, list[dict[str, JSONValue]]]) -> ProviderPools:
    return ProviderPools(
        {t: [node_from_json(doc, "test") for doc in nodes] for t, nodes in docs.items()}
    )


# -- what the view goes through -----------------------------------------------------------

steps = st.one_of(
    st.tuples(
        st.just("pick"),
        st.sampled_from(TYPES),
        st.sampled_from([None, "", *MODELS, "m9"]),
        st.lists(st.sampled_from(UUIDS), max_size=3),
        st.booleans(),  # record the pick as the proxy does
    ),
    st.tuples(
        st.just("clock"),
        st.one_of(st.integers(-5_000, 90_000), st.sampled_from([-60_000, -61_000, -150_000])),
    ),
    st.tuples(
        st.just("record"),
        st.sampled_from(TYPES),
        st.sampled_from(UUIDS),
        st.sampled_from(
            ["success", "failure", "cooldown", "refresh", "recovered", "check", "fail-check"]
        ),
        offsets,
    ),
    st.tuples(
        st.just("replace"),
        st.sampled_from(TYPES),
        st.sampled_from(UUIDS),
        st.sampled_from(
            [
                "isDisabled",
                "isHealthy",
                "supportedModels",
                "notSupportedModels",
                "concurrencyLimit",
                "lastUsed",
                "lastHealthCheckTime",
                "_lastSelectionSeq",
                "usageCount",
                "scheduledRecoveryTime",
            ]
        ),
        st.data(),
    ),
    st.tuples(st.just("reset"), pool_docs()),
    st.tuples(st.just("acquire"), st.sampled_from(TYPES), st.sampled_from(UUIDS)),
    st.tuples(st.just("release"), st.integers(0, 20)),
)

REPLACEMENTS: dict[str, st.SearchStrategy[Any]] = {
    "isDisabled": st.booleans(),
    "isHealthy": st.booleans(),
    "supportedModels": model_lists,
    "notSupportedModels": model_lists,
    "concurrencyLimit": st.integers(0, 2),
    "lastUsed": times,
    "lastHealthCheckTime": times,
    "_lastSelectionSeq": st.sampled_from([0, 3, 100, 500]),
    "usageCount": st.integers(0, 9),
    "scheduledRecoveryTime": times,
}


class Scenario:
    """A mirror, one slot table, the reference scan and the indexed selector."""

    def __init__(self, pools: ProviderPools) -> None:
        self.mirror = PoolsMirror()
        self.mirror.reset(pools, [])
        self.slots = SlotTable()
        self.reference = Selector(self.slots)
        self.indexed = IndexedSelector(self.slots)
        self.now = NOW
        self.leases: list[SlotLease] = []
        self.waiters: list[asyncio.Task[None]] = []
        self.picks = 0

    def pick(self, provider_type: str, model: str | None, exclude: set[str]) -> Choice | None:
        view = self.mirror.live_view()
        nodes = view.get(provider_type, ())
        expected = self.reference.select(
            provider_type, nodes, model, now_ms=self.now, exclude=exclude
        )
        got = self.indexed.select(
            provider_type, nodes, model, now_ms=self.now, exclude=exclude, changes=view.changes
        )
        context = (provider_type, model, sorted(exclude), self.now - NOW)
        assert describe(got) == describe(expected), context
        if got is not None and expected is not None:
            assert got.node is expected.node, context  # the view's own object
        assert self.indexed.last_recovered == self.reference.last_recovered, context
        self.picks += 1
        return got

    def record_pick(self, provider_type: str, choice: Choice | None) -> None:
        at = self.now
        records: list[rec.NodeRecord] = [
            rec.Recovered(provider_type, uuid, at) for uuid in self.reference.last_recovered
        ]
        if choice is not None:
            records.append(rec.Selected(provider_type, choice.node.uuid, at, choice.seq))
        self.mirror.apply_local(records)

    def node(self, provider_type: str, uuid: str) -> ProviderNode | None:
        return self.mirror.view.find(provider_type, uuid)

    async def acquire(self, provider_type: str, uuid: str) -> None:
        node = self.node(provider_type, uuid)
        if node is None:
            return
        limit, queue = node.concurrency_limit, node.queue_limit
        slots = self.slots
        if limit > 0 and slots.active(provider_type, uuid) >= limit:
            if queue > 0 and slots.waiting(provider_type, uuid) < queue:
                self.waiters.append(asyncio.create_task(hold(slots.acquire(provider_type, node))))
                await settle()
            return
        lease = slots.acquire(provider_type, node)
        await lease.__aenter__()
        self.leases.append(lease)

    async def release(self, which: int) -> None:
        if self.leases:
            lease = self.leases.pop(which % len(self.leases))
            await lease.__aexit__(None, None, None)
            await settle()

    async def close(self) -> None:
        for task in self.waiters:
            task.cancel()
        await asyncio.gather(*self.waiters, return_exceptions=True)
        for lease in self.leases:
            await lease.__aexit__(None, None, None)


async def hold(lease: SlotLease) -> None:
    """A queued request: waits for its slot, then keeps it until cancelled."""
    async with lease:
        await asyncio.Event().wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def describe(choice: Choice | None) -> tuple[str, int, tuple[str, ...]] | None:
    return None if choice is None else (choice.node.uuid, choice.seq, choice.recovered)


def record_for(kind: str, provider_type: str, uuid: str, at: int, delta: int) -> rec.NodeRecord:
    match kind:
        case "success":
            return rec.Success(provider_type, uuid, at)
        case "failure":
            return rec.Failure(provider_type, uuid, at, "boom", MAX_ERRORS)
        case "cooldown":
            return rec.Cooldown(provider_type, uuid, at, "429", MAX_ERRORS, at + abs(delta))
        case "refresh":
            return rec.NeedRefresh(provider_type, uuid, at)
        case "recovered":
            return rec.Recovered(provider_type, uuid, at)
        case _:
            ok = kind == "check"
            return rec.HealthCheckResult(
                provider_type, uuid, at, ok, "m1", None, MAX_ERRORS, reset_usage=delta > 0
            )


async def play(docs: dict[str, list[dict[str, JSONValue]]], script: list[Any]) -> int:
    scenario = Scenario(build(docs))
    try:
        for step in script:
            match step:
                case ("pick", provider_type, model, exclude, record):
                    choice = scenario.pick(provider_type, model, set(exclude))
                    if record:
                        scenario.record_pick(provider_type, choice)
                case ("clock", delta):
                    scenario.now += delta
                case ("record", provider_type, uuid, kind, delta):
                    record = record_for(kind, provider_type, uuid, scenario.now, delta)
                    scenario.mirror.apply_local([record])
                case ("replace", provider_type, uuid, key, data):
                    node = scenario.node(provider_type, uuid)
                    if node is not None:
                        doc = node_to_json(node)
                        doc[key] = data.draw(REPLACEMENTS[key])
                        fresh = node_from_json(doc, "another instance")
                        scenario.mirror.replace_nodes([((provider_type, uuid), fresh)], [])
                case ("reset", new_docs):
                    scenario.mirror.reset(build(new_docs), [])
                case ("acquire", provider_type, uuid):
                    await scenario.acquire(provider_type, uuid)
                case ("release", which):
                    await scenario.release(which)
            for provider_type in TYPES:  # every step ends with a pick of each type
                scenario.pick(provider_type, None, set())
    finally:
        await scenario.close()
    return scenario.picks


@settings(max_examples=250, deadline=None)
@given(pool_docs(), st.lists(steps, min_size=1, max_size=40))
def test_indexed_and_scan_selectors_make_the_same_picks(
    docs: dict[str, list[dict[str, JSONValue]]], script: list[Any]
) -> None:
    asyncio.run(play(docs, script))


# -- a long seeded run at a few hundred nodes ----------------------------------------------


def random_doc(rng: random.Random, uuid: str) -> dict[str, JSONValue]:
    now = NOW
    doc: dict[str, JSONValue] = {
        "uuid": uuid,
        "isHealthy": rng.random() > 0.15,
        "isDisabled": rng.random() < 0.05,
        "usageCount": rng.randint(0, 50),
        "_lastSelectionSeq": rng.randint(1_000, 1_400),
        "lastUsed": None if rng.random() < 0.15 else iso_ms(now - rng.randint(0, 3_600_000)),
    }
    if not doc["isHealthy"] and rng.random() < 0.7:
        doc["scheduledRecoveryTime"] = iso_ms(now + rng.randint(-10_000, 300_000))
    if rng.random() < 0.3:
        doc["lastHealthCheckTime"] = iso_ms(now - rng.randint(0, 120_000))
    if rng.random() < 0.4:
        doc["supportedModels"] = rng.sample(["a", "b", "c", "d", "e", "f"], rng.randint(1, 4))
    if rng.random() < 0.15:
        doc["notSupportedModels"] = rng.sample(["a", "b", "c"], rng.randint(1, 2))
    if rng.random() < 0.3:
        doc["concurrencyLimit"] = rng.randint(1, 3)
        doc["queueLimit"] = rng.randint(0, 2)
    return doc


async def long_run(
    seed: int, size: int, picks: int, *, back_in_time: float = 0.0
) -> IndexedSelector:
    rng = random.Random(seed)
    docs = {MANAGED: [random_doc(rng, f"u{i:04d}") for i in range(size)]}
    scenario = Scenario(build(docs))
    uuids = [doc["uuid"] for doc in docs[MANAGED]]
    try:
        for _ in range(picks):
            exclude = set(rng.sample(uuids, rng.choice([0, 0, 0, 1, 3])))
            model = rng.choice([None, "a", "b", "f", "zzz"])
            choice = scenario.pick(MANAGED, model, exclude)
            scenario.record_pick(MANAGED, choice)
            if choice is not None:
                uuid = choice.node.uuid
                roll = rng.random()
                kind = "success" if roll < 0.3 else "failure" if roll < 0.95 else "cooldown"
                delta = rng.randint(1_000, 60_000)
                scenario.mirror.apply_local([record_for(kind, MANAGED, uuid, scenario.now, delta)])
                if rng.random() < 0.2:
                    await scenario.acquire(MANAGED, uuid)
            if rng.random() < 0.2:
                await scenario.release(rng.randrange(100))
            if rng.random() < 0.05:
                other = str(rng.choice(uuids))
                kind = rng.choice(["check", "fail-check", "refresh", "success"])
                scenario.mirror.apply_local([record_for(kind, MANAGED, other, scenario.now, 1)])
            scenario.now += rng.choice([1, 5, 20, 500, 3_000])
            if rng.random() < back_in_time:
                scenario.now -= rng.randint(1, 90_000)
    finally:
        await scenario.close()
    return scenario.indexed


def test_a_long_run_over_hundreds_of_nodes_makes_the_same_picks() -> None:
    indexed = asyncio.run(long_run(seed=16, size=300, picks=3_000))
    assert indexed.rebuilds == 1  # one index, kept up to date: never rebuilt


def test_a_clock_going_back_rebuilds_where_a_rule_changed_in_between() -> None:
    indexed = asyncio.run(long_run(seed=17, size=200, picks=2_000, back_in_time=0.02))
    assert indexed.rebuilds > 1


# -- the feed and the fallbacks -------------------------------------------------------------


def test_a_view_without_a_change_feed_is_scanned() -> None:
    nodes = [node_from_json({"uuid": u}, "test") for u in ("b", "a")]
    indexed = IndexedSelector()
    choice = indexed.select(PLAIN, nodes, None, now_ms=NOW)
    assert choice is not None and choice.node.uuid == "a"
    assert indexed.rebuilds == 0
    assert changes_of({PLAIN: nodes}) is None


def test_changes_made_outside_the_feed_to_the_list_rebuild_the_index() -> None:
    nodes = [node_from_json({"uuid": u}, "test") for u in ("b", "a")]
    feed = NodeChanges()
    view = LiveView({PLAIN: nodes}, feed)
    indexed = IndexedSelector()
    first = indexed.select(PLAIN, nodes, None, now_ms=NOW, changes=changes_of(view))
    assert first is not None and first.node.uuid == "a"
    nodes.append(node_from_json({"uuid": "0"}, "test"))  # added without telling the feed
    second = indexed.select(PLAIN, nodes, None, now_ms=NOW, changes=feed)
    assert second is not None and second.node.uuid == "0"
    assert indexed.rebuilds == 2


def test_duplicate_uuids_are_scanned() -> None:
    nodes = [node_from_json({"uuid": "a", "usageCount": u}, "test") for u in (3, 1)]
    indexed = IndexedSelector()
    choice = indexed.select(PLAIN, nodes, None, now_ms=NOW, changes=NodeChanges())
    assert choice is not None and choice.node is nodes[1]


def test_a_reader_far_behind_the_feed_reads_everything_again() -> None:
    feed = NodeChanges(capacity=4)
    node = node_from_json({"uuid": "a"}, "test")
    cursor = feed.cursor
    for _ in range(3):
        feed.node(PLAIN, node)
    assert feed.since(cursor) == [(PLAIN, node)] * 3
    for _ in range(3):
        feed.node(PLAIN, node)
    assert feed.since(cursor) is None  # half the log was dropped
    cursor = feed.cursor
    feed.everything()
    assert feed.since(cursor) is None
    assert feed.since(feed.cursor) == []
