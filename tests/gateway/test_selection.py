"""Provider selection and concurrency slots (cfgstore_gateway.selection) against
aiclient-formats §3.5 steps 4–8: small hand-made pools with exact expected picks, slot
queues driven by events (no timed sleeps), and a randomised check against a straight
port of the Node service's ``_doSelectProvider``."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfgstore.model.pools import ProviderNode, node_from_json, node_to_json
from cfgstore.model.records import Recovered, Selected, apply_record
from cfgstore.model.timefmt import iso_ms, parse_time_ms
from cfgstore_gateway.selection import (
    Choice,
    Selector,
    SlotsFull,
    SlotTable,
    SlotWaitTimeout,
    uses_managed_model_list,
)

NOW = 1773576000000  # 2026-03-15T12:00:00.000Z
SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
TYPE = "claude-kiro-oauth"  # no managed model list
MANAGED = "openai-custom"


def make(uuid: str, **fields: Any) -> ProviderNode:
    """A node as read from provider_pools.json (JSON key names)."""
    return node_from_json({"uuid": uuid, **fields}, "test")


def ago(ms: int) -> str:
    return iso_ms(NOW - ms)


def pick(
    nodes: Sequence[ProviderNode],
    model: str | None = None,
    *,
    provider_type: str = TYPE,
    exclude: Collection[str] = (),
    selector: Selector | None = None,
    now: int = NOW,
) -> str | None:
    choice = (selector or Selector()).select(
        provider_type, nodes, model, now_ms=now, exclude=exclude
    )
    return choice.node.uuid if choice is not None else None


async def settle() -> None:
    """Let every ready task run until it blocks (pure yields to the loop, no timed sleep)."""
    for _ in range(10):
        await asyncio.sleep(0)


# ----------------------------------------------------------------- step 5: candidates


def test_no_nodes_no_choice() -> None:
    assert pick([]) is None


def test_unhealthy_disabled_and_needs_refresh_nodes_are_not_candidates() -> None:
    nodes = [
        make("a", isHealthy=False, lastUsed=ago(3 * DAY)),
        make("b", isDisabled=True, lastUsed=ago(3 * DAY)),
        make("c", needsRefresh=True, lastUsed=ago(3 * DAY)),
        make("d", lastUsed=ago(SECOND)),
    ]
    assert pick(nodes) == "d"
    assert pick(nodes[:3]) is None


def test_excluded_uuids_are_skipped() -> None:
    nodes = [
        make("a", lastUsed=ago(3 * HOUR)),
        make("b", lastUsed=ago(2 * HOUR)),
        make("c", lastUsed=ago(HOUR)),
    ]
    assert pick(nodes) == "a"
    assert pick(nodes, exclude={"a"}) == "b"
    assert pick(nodes, exclude=["a", "b"]) == "c"
    assert pick(nodes, exclude=("a", "b", "c")) is None


@pytest.mark.parametrize(
    ("provider_type", "fields", "model", "served"),
    [
        # managed-list types: a non-empty supportedModels is the node's whole menu
        (MANAGED, {"supportedModels": ["gpt-4o"]}, "gpt-4o", True),
        (MANAGED, {"supportedModels": ["gpt-4o"]}, "gpt-4.1", False),
        ("openaiResponses-custom", {"supportedModels": ["gpt-4o"]}, "gpt-4.1", False),
        ("claude-custom", {"supportedModels": ["claude-sonnet-4-5"]}, "claude-opus-4", False),
        ("atlascloud", {"supportedModels": ["deepseek-v3"]}, "gpt-4o", False),
        ("openai-custom-deepseek", {"supportedModels": ["deepseek-chat"]}, "gpt-4o", False),
        # normalised as the UI does: strings only, trimmed, empties dropped
        (MANAGED, {"supportedModels": [" gpt-4o ", 7, ""]}, "gpt-4o", True),
        (MANAGED, {"supportedModels": ["", "  ", 3]}, "gpt-4o", True),
        (MANAGED, {"supportedModels": "gpt-4.1"}, "gpt-4o", True),
        # a listed model is served even when notSupportedModels names it
        (
            MANAGED,
            {"supportedModels": ["gpt-4o"], "notSupportedModels": ["gpt-4o"]},
            "gpt-4o",
            True,
        ),
        # an empty list falls back to notSupportedModels
        (MANAGED, {"supportedModels": [], "notSupportedModels": ["gpt-4o"]}, "gpt-4o", False),
        (MANAGED, {"notSupportedModels": ["gpt-4o"]}, "gpt-4o", False),
        # other types: supportedModels means nothing, notSupportedModels matches exactly
        (TYPE, {"supportedModels": ["claude-haiku-4-5"]}, "claude-sonnet-4-5", True),
        (TYPE, {"notSupportedModels": ["claude-sonnet-4-5"]}, "claude-sonnet-4-5", False),
        (TYPE, {"notSupportedModels": [" claude-sonnet-4-5"]}, "claude-sonnet-4-5", True),
        (TYPE, {"notSupportedModels": "claude-sonnet-4-5"}, "claude-sonnet-4-5", True),
        ("openai-customer", {"supportedModels": ["gpt-4.1"]}, "gpt-4o", True),
        # no model, no model filter
        (MANAGED, {"supportedModels": ["gpt-4.1"]}, None, True),
        (MANAGED, {"supportedModels": ["gpt-4.1"]}, "", True),
        (TYPE, {"notSupportedModels": ["claude-sonnet-4-5"]}, None, True),
    ],
)
def test_model_filter(
    provider_type: str, fields: dict[str, Any], model: str | None, served: bool
) -> None:
    node = make("a", **fields)
    assert pick([node], model, provider_type=provider_type) == ("a" if served else None)


def test_model_filter_keeps_the_best_node_that_serves_the_model() -> None:
    nodes = [
        make("a", lastUsed=ago(3 * HOUR), supportedModels=["gpt-4.1"]),
        make("b", lastUsed=ago(2 * HOUR), notSupportedModels=["gpt-4o"]),
        make("c", lastUsed=ago(HOUR), supportedModels=["gpt-4o", "gpt-4.1"]),
        make("d", lastUsed=ago(SECOND)),
    ]
    assert pick(nodes, "gpt-4o", provider_type=MANAGED) == "c"
    assert pick(nodes, "gpt-4.1", provider_type=MANAGED) == "a"
    assert pick(nodes, "o3", provider_type=MANAGED) == "b"


def test_a_replaced_model_list_is_seen_at_the_next_pick() -> None:
    node = make("a", supportedModels=["gpt-4.1"])
    selector = Selector()
    assert pick([node], "gpt-4o", provider_type=MANAGED, selector=selector) is None
    node.settings["supportedModels"] = ["gpt-4.1", "gpt-4o"]
    assert pick([node], "gpt-4o", provider_type=MANAGED, selector=selector) == "a"


def test_managed_list_types() -> None:
    assert uses_managed_model_list("openai-custom")
    assert uses_managed_model_list("openai-custom-deepseek")
    assert uses_managed_model_list("atlascloud-2")
    assert not uses_managed_model_list("openai-customer")
    assert not uses_managed_model_list("claude-kiro-oauth")
    assert not uses_managed_model_list("openai-qwen-oauth")


# ---------------------------------------------------------------------- step 6: score


def test_least_recently_used_wins() -> None:
    nodes = [
        make("a", lastUsed=ago(10 * SECOND)),
        make("b", lastUsed=ago(5 * MINUTE)),
        make("c", lastUsed=ago(MINUTE)),
    ]
    assert pick(nodes) == "b"


def test_missing_last_used_counts_as_a_day_ago() -> None:
    never = make("never")
    assert pick([make("a", lastUsed=ago(2 * HOUR)), never]) == "never"
    assert pick([make("b", lastUsed=ago(25 * HOUR)), never]) == "b"
    # a day ago exactly ties; the smaller uuid wins
    assert pick([make("z", lastUsed=ago(DAY)), never]) == "never"
    assert pick([make("a", lastUsed=ago(DAY)), never]) == "a"


def test_unreadable_last_used_counts_as_missing() -> None:
    assert pick([make("a", lastUsed="not a time"), make("b", lastUsed=ago(2 * HOUR))]) == "a"
    assert pick([make("a", lastUsed="not a time"), make("b", lastUsed=ago(25 * HOUR))]) == "b"
    assert pick([make("b", lastUsed="not a time"), make("c", lastUsed=ago(DAY))]) == "b"  # tie
    assert pick([make("d", lastUsed="not a time"), make("c", lastUsed=ago(DAY))]) == "c"


@pytest.mark.parametrize(
    ("b_used_ago", "winner"),
    [
        (35 * SECOND, "a"),  # b: now − 35 s + 10 s = now − 25 s  >  a: now − 30 s
        (40 * SECOND, "a"),  # b: now − 30 s: a tie, the smaller uuid wins
        (45 * SECOND, "b"),  # b: now − 35 s
    ],
)
def test_each_use_costs_ten_seconds(b_used_ago: int, winner: str) -> None:
    nodes = [
        make("a", lastUsed=ago(30 * SECOND), usageCount=0),
        make("b", lastUsed=ago(b_used_ago), usageCount=1),
    ]
    assert pick(nodes) == winner


def test_round_robin_term_counts_from_the_smallest_seq_of_all_nodes() -> None:
    used = ago(HOUR)
    nodes = [
        make("a", lastUsed=used, _lastSelectionSeq=150),
        make("b", lastUsed=ago(HOUR + 50 * SECOND), _lastSelectionSeq=250),
        make("sick", isHealthy=False, _lastSelectionSeq=0),
    ]
    # minSeq = 0 (the unhealthy node counts): a = used + 100 s (capped), b = used − 50 s + 100 s.
    # Counted over the candidates only (minSeq 150) a would win: a = used, b = used + 50 s.
    assert pick(nodes) == "b"


def test_round_robin_term_is_one_second_per_step() -> None:
    used = ago(HOUR)
    nodes = [
        make("a", lastUsed=used, _lastSelectionSeq=7),  # used + 2 s
        make("b", lastUsed=ago(HOUR + 1_500), _lastSelectionSeq=9),  # used − 1.5 s + 4 s
        make("c", lastUsed=ago(HOUR + 3_000), _lastSelectionSeq=5),  # used − 3 s
    ]
    assert pick(nodes) == "c"
    assert pick(nodes[:2]) == "a"  # minSeq 7: a = used, b = used − 1.5 s + 2 s
    one_step = [
        make("a", lastUsed=used, _lastSelectionSeq=1),  # used + 1 s
        make("b", lastUsed=ago(HOUR - 999)),  # used + 0.999 s
    ]
    assert pick(one_step) == "b"


def test_round_robin_term_is_capped_at_100_steps() -> None:
    used = ago(HOUR)
    nodes = [
        make("a", lastUsed=used, _lastSelectionSeq=100),
        make("b", lastUsed=ago(HOUR + SECOND), _lastSelectionSeq=500),
        make("c", lastUsed=ago(SECOND), _lastSelectionSeq=0),
    ]
    # both capped at 100 × 1 s: b's older lastUsed decides (uncapped, a would win)
    assert pick(nodes) == "b"


def test_a_fresh_health_check_is_strongly_preferred() -> None:
    stale = make("stale", lastUsed=ago(3 * DAY))
    fresh = make("fresh", lastUsed=ago(0), usageCount=50, lastHealthCheckTime=ago(59_999))
    expired = make("expired", lastUsed=ago(0), lastHealthCheckTime=ago(60_000))
    assert pick([stale, fresh]) == "fresh"
    assert pick([stale, expired]) == "stale"


def test_fresh_nodes_prefer_the_latest_check_and_still_pay_for_usage() -> None:
    nodes = [
        make("a", lastHealthCheckTime=ago(20 * SECOND)),  # −1e14 + 20 s
        make("b", lastHealthCheckTime=ago(5 * SECOND)),  # −1e14 + 5 s
    ]
    assert pick(nodes) == "b"
    nodes[1].state.usage_count = 2  # −1e14 + 25 s
    assert pick(nodes) == "a"


def test_unreadable_health_check_time_is_not_fresh() -> None:
    nodes = [
        make("a", lastUsed=ago(HOUR), lastHealthCheckTime="yesterday-ish"),
        make("b", lastUsed=ago(2 * HOUR)),
    ]
    assert pick(nodes) == "b"


def test_ties_go_to_the_smaller_uuid() -> None:
    used = ago(HOUR)
    nodes = [make(uuid, lastUsed=used, usageCount=3) for uuid in ("c2", "a9", "b1", "a10")]
    assert pick(nodes) == "a10"
    assert pick(list(reversed(nodes))) == "a10"


def test_active_requests_add_five_seconds_each() -> None:
    table = SlotTable()
    a = make("a", lastUsed=ago(12 * SECOND))
    b = make("b", lastUsed=ago(10 * SECOND))
    selector = Selector(table)
    assert pick([a, b], selector=selector) == "a"

    async def one_in_flight() -> str | None:
        async with table.acquire(TYPE, a):
            assert table.active(TYPE, "a") == 1
            return pick([a, b], selector=selector)  # a = now − 12 s + 5 s

    assert asyncio.run(one_in_flight()) == "b"
    assert table.active(TYPE, "a") == 0
    assert pick([a, b], selector=selector) == "a"


async def test_a_node_at_its_limit_is_pushed_back() -> None:
    table = SlotTable()
    selector = Selector(table)
    busy = make("busy", lastUsed=ago(3 * DAY), concurrencyLimit=1, queueLimit=2)
    worn = make("worn", lastUsed=ago(0), usageCount=10_000)
    async with table.acquire(TYPE, busy):
        assert pick([busy, worn], selector=selector) == "worn"
        assert pick([busy], selector=selector) == "busy"  # the only one: still chosen
    assert pick([busy, worn], selector=selector) == "busy"


async def test_a_full_queue_is_the_last_resort() -> None:
    table = SlotTable()
    selector = Selector(table)
    full = make("full", concurrencyLimit=1, queueLimit=1)  # 1e17
    long = make("long", concurrencyLimit=1, queueLimit=5)  # 1e15 + 1e10
    short = make("short", concurrencyLimit=1, queueLimit=5)  # 1e15
    for node in (full, long, short):
        await table.acquire(TYPE, node).__aenter__()
    waiters = [asyncio.create_task(table.acquire(TYPE, node).__aenter__()) for node in (full, long)]
    await settle()
    assert (table.waiting(TYPE, "full"), table.waiting(TYPE, "long")) == (1, 1)
    assert pick([full, long, short], selector=selector) == "short"
    assert pick([full, long], selector=selector) == "long"
    assert pick([full], selector=selector) == "full"
    with pytest.raises(SlotsFull) as raised:
        await table.acquire(TYPE, full, timeout_s=0.05).__aenter__()
    assert type(raised.value) is SlotsFull
    assert (raised.value.provider_type, raised.value.uuid) == (TYPE, "full")
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert table.waiting(TYPE, "full") == table.waiting(TYPE, "long") == 0


# ------------------------------------------------------------- step 4: auto-recovery


def test_due_nodes_are_recovered_for_this_pick_and_reported() -> None:
    nodes = [
        make("h", lastUsed=ago(HOUR)),
        make("r1", isHealthy=False, scheduledRecoveryTime=ago(SECOND), lastUsed=ago(2 * DAY)),
        make("r2", isHealthy=False, scheduledRecoveryTime=ago(-SECOND), lastUsed=ago(3 * DAY)),
        make("r3", isHealthy=False, isDisabled=True, scheduledRecoveryTime=ago(MINUTE)),
        make("r4", isHealthy=False, lastUsed=ago(3 * DAY)),
        make("r5", isHealthy=False, scheduledRecoveryTime="soon", lastUsed=ago(3 * DAY)),
        make("r6", isHealthy=False, scheduledRecoveryTime=ago(0), lastUsed=ago(DAY + HOUR)),
        make("ok", scheduledRecoveryTime=ago(HOUR), lastUsed=ago(2 * HOUR)),
    ]
    selector = Selector()
    choice = selector.select(TYPE, nodes, None, now_ms=NOW)
    assert choice is not None
    assert choice.node.uuid == "r1"
    assert choice.recovered == ("r1", "r3", "r6")
    assert selector.last_recovered == ("r1", "r3", "r6")
    # excluded or filtered out: still reported, not chosen
    choice = selector.select(TYPE, nodes, None, now_ms=NOW, exclude={"r1"})
    assert choice is not None
    assert (choice.node.uuid, choice.recovered) == ("r6", ("r1", "r3", "r6"))


def test_due_nodes_are_reported_when_nothing_is_chosen() -> None:
    nodes = [make("d", isHealthy=False, isDisabled=True, scheduledRecoveryTime=ago(SECOND))]
    selector = Selector()
    assert selector.select(TYPE, nodes, None, now_ms=NOW) is None
    assert selector.last_recovered == ("d",)
    assert selector.select(TYPE, [make("x")], None, now_ms=NOW) is not None
    assert selector.last_recovered == ()


def test_recording_recovered_makes_the_node_healthy() -> None:
    node = make("r", isHealthy=False, scheduledRecoveryTime=ago(SECOND), errorCount=10)
    choice = Selector().select(TYPE, [node], None, now_ms=NOW)
    assert choice is not None
    for uuid in choice.recovered:
        apply_record(node, Recovered(TYPE, uuid, NOW))
    assert (node.state.is_healthy, node.state.scheduled_recovery_time) == (True, None)
    assert Selector().select(TYPE, [node], None, now_ms=NOW) == Choice(node, 1, ())


# ------------------------------------------------------------ step 7: seq, no mutation


def test_seq_continues_from_the_largest_seq_seen_per_type() -> None:
    selector = Selector()
    kiro = [make("a", _lastSelectionSeq=3), make("b", _lastSelectionSeq=9), make("c")]
    first = selector.select(TYPE, kiro, None, now_ms=NOW)
    assert first is not None
    assert (first.node.uuid, first.seq) == ("c", 10)
    apply_record(first.node, Selected(TYPE, "c", NOW, first.seq))
    second = selector.select(TYPE, kiro, None, now_ms=NOW + 1)
    assert second is not None
    assert (second.node.uuid, second.seq) == ("a", 11)

    other = selector.select(MANAGED, [make("x")], None, now_ms=NOW)
    assert other is not None
    assert other.seq == 1  # counted per type

    kiro[1].state.last_selection_seq = 50  # another instance's Selected arrived
    third = selector.select(TYPE, kiro, None, now_ms=NOW + 2)
    assert third is not None
    assert third.seq == 51
    # a counter ahead of the nodes keeps counting (no record applied in between)
    fourth = selector.select(TYPE, kiro, None, now_ms=NOW + 3)
    assert fourth is not None
    assert fourth.seq == 52


def test_selection_mutates_nothing() -> None:
    nodes = [
        make("a", lastUsed=ago(HOUR), usageCount=3, _lastSelectionSeq=4),
        make("r", isHealthy=False, scheduledRecoveryTime=ago(SECOND), errorCount=10),
        make("m", supportedModels=[" gpt-4o "], lastHealthCheckTime=ago(SECOND)),
    ]
    before = [node_to_json(node) for node in nodes]
    selector = Selector()
    for model in (None, "gpt-4o", "o3"):
        selector.select(MANAGED, nodes, model, now_ms=NOW)
    assert [node_to_json(node) for node in nodes] == before


def test_recorded_selections_rotate_through_the_pool() -> None:
    nodes = [make("c"), make("a"), make("b")]
    selector = Selector()
    order = []
    now = NOW
    for _ in range(7):
        choice = selector.select(TYPE, nodes, None, now_ms=now)
        assert choice is not None
        order.append(choice.node.uuid)
        apply_record(choice.node, Selected(TYPE, choice.node.uuid, now, choice.seq))
        now += 1
    assert order == ["a", "b", "c", "a", "b", "c", "a"]


# ------------------------------------------------------------------ step 8: slots


async def test_unlimited_nodes_only_count_active_requests() -> None:
    table = SlotTable()
    node = make("a")
    leases = [table.acquire(TYPE, node) for _ in range(3)]
    for lease in leases:
        await lease.__aenter__()
    assert (table.active(TYPE, "a"), table.waiting(TYPE, "a")) == (3, 0)
    for lease in leases:
        await lease.__aexit__(None, None, None)
    assert table.active(TYPE, "a") == 0
    assert table._types[TYPE] == {}  # idle slots are dropped


async def test_at_the_limit_without_a_queue_the_request_is_refused() -> None:
    table = SlotTable()
    node = make("a", concurrencyLimit=2, queueLimit=0)
    async with table.acquire(TYPE, node), table.acquire(TYPE, node):
        with pytest.raises(SlotsFull) as raised:  # at once, not after a wait
            await table.acquire(TYPE, node, timeout_s=0.05).__aenter__()
        assert type(raised.value) is SlotsFull
        assert (table.active(TYPE, "a"), table.waiting(TYPE, "a")) == (2, 0)
    async with table.acquire(TYPE, node):
        assert table.active(TYPE, "a") == 1


async def test_waiters_get_the_slot_in_arrival_order() -> None:
    table = SlotTable()
    node = make("a", concurrencyLimit=1, queueLimit=3)
    order: list[int] = []
    done = [asyncio.Event() for _ in range(5)]

    async def request(index: int) -> None:
        async with table.acquire(TYPE, node):
            order.append(index)
            await done[index].wait()

    tasks = []
    for index in range(4):
        tasks.append(asyncio.create_task(request(index)))
        await settle()
    assert order == [0]
    assert (table.active(TYPE, "a"), table.waiting(TYPE, "a")) == (1, 3)
    with pytest.raises(SlotsFull) as raised:  # 3 waiting: the queue is full
        await table.acquire(TYPE, node, timeout_s=0.05).__aenter__()
    assert type(raised.value) is SlotsFull

    done[0].set()
    await settle()
    assert order == [0, 1]
    assert (table.active(TYPE, "a"), table.waiting(TYPE, "a")) == (1, 2)
    tasks.append(asyncio.create_task(request(4)))  # arrives after 2 and 3: waits behind them
    await settle()
    assert table.waiting(TYPE, "a") == 3
    for index in (1, 2, 3):
        done[index].set()
        await settle()
    assert order == [0, 1, 2, 3, 4]
    done[4].set()
    await asyncio.gather(*tasks)
    assert (table.active(TYPE, "a"), table.waiting(TYPE, "a")) == (0, 0)


async def test_a_waiter_times_out() -> None:
    table = SlotTable()
    node = make("a", concurrencyLimit=1, queueLimit=1)
    async with table.acquire(TYPE, node):
        with pytest.raises(SlotWaitTimeout) as raised:
            await table.acquire(TYPE, node, timeout_s=0.01).__aenter__()
        assert isinstance(raised.value, SlotsFull)
        assert isinstance(raised.value, TimeoutError)
        assert raised.value.uuid == "a"
        assert (table.active(TYPE, "a"), table.waiting(TYPE, "a")) == (1, 0)
    assert table.active(TYPE, "a") == 0


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    table = SlotTable()
    node = make("a", concurrencyLimit=1, queueLimit=2)
    holder = table.acquire(TYPE, node)
    await holder.__aenter__()
    waiter = asyncio.create_task(table.acquire(TYPE, node).__aenter__())
    await settle()
    assert table.waiting(TYPE, "a") == 1
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert (table.active(TYPE, "a"), table.waiting(TYPE, "a")) == (1, 0)
    await holder.__aexit__(None, None, None)
    assert table.active(TYPE, "a") == 0


async def test_a_slot_handed_to_a_cancelled_waiter_passes_on() -> None:
    table = SlotTable()
    node = make("a", concurrencyLimit=1, queueLimit=2)
    holder = table.acquire(TYPE, node)
    await holder.__aenter__()
    first = asyncio.create_task(table.acquire(TYPE, node).__aenter__())
    await settle()
    second_lease = table.acquire(TYPE, node)
    second = asyncio.create_task(second_lease.__aenter__())
    await settle()
    await holder.__aexit__(None, None, None)  # hands the slot to the first waiter …
    first.cancel()  # … which is cancelled before it runs again
    await asyncio.gather(first, return_exceptions=True)
    await settle()
    assert first.cancelled()
    assert second.done() and second.exception() is None
    assert (table.active(TYPE, "a"), table.waiting(TYPE, "a")) == (1, 0)
    await second_lease.__aexit__(None, None, None)
    assert table.active(TYPE, "a") == 0


async def test_a_lease_is_single_use() -> None:
    table = SlotTable()
    lease = table.acquire(TYPE, make("a"))
    async with lease:
        pass
    with pytest.raises(RuntimeError):
        await lease.__aenter__()
    assert table.active(TYPE, "a") == 0


# ------------------------------------------- randomised: the Node service's algorithm


def reference_pick(
    provider_type: str,
    nodes: Sequence[ProviderNode],
    model: str | None,
    now: int,
    exclude: Collection[str],
    table: SlotTable,
) -> tuple[str | None, list[str]]:
    """A line-by-line port of ``_doSelectProvider`` + ``_calculateNodeScore`` (sorting)."""
    recovered = []
    for n in nodes:
        if n.state.scheduled_recovery_time and not n.state.is_healthy:
            due = parse_time_ms(n.state.scheduled_recovery_time)
            if due is not None and now >= due:
                recovered.append(n.uuid)
    min_seq = min(n.state.last_selection_seq for n in nodes)

    def healthy(n: ProviderNode) -> bool:
        return n.state.is_healthy or n.uuid in recovered

    candidates = [
        n
        for n in nodes
        if healthy(n) and not n.state.is_disabled and not n.state.needs_refresh
        if n.uuid not in exclude
    ]
    if model:

        def serves(n: ProviderNode) -> bool:
            listed = n.setting("supportedModels")
            if uses_managed_model_list(provider_type) and isinstance(listed, list):
                normal = {m.strip() for m in listed if isinstance(m, str)} - {""}
                if normal:
                    return model in normal
            banned = n.setting("notSupportedModels")
            return not (isinstance(banned, list) and model in banned)

        candidates = [n for n in candidates if serves(n)]

    def score(n: ProviderNode) -> float:
        active = table.active(provider_type, n.uuid)
        waiting = table.waiting(provider_type, n.uuid)
        limit, queue_limit = n.concurrency_limit, n.queue_limit
        if limit > 0 and active >= limit:
            if queue_limit > 0 and waiting >= queue_limit:
                return 1e17
            return 1e15 + waiting * 1e10
        checked_text = n.state.last_health_check_time
        checked = (parse_time_ms(checked_text) if checked_text else 0) or 0  # NaN/0: falsy
        fresh = bool(checked) and now - checked < 60000
        used = parse_time_ms(n.state.last_used) if n.state.last_used else None
        base = -1e14 if fresh else (used if used is not None else now - 86400000)
        relative = min(max(0, n.state.last_selection_seq - min_seq), 100)
        bonus = now - checked if fresh else 0
        return base + n.state.usage_count * 10000 + relative * 1000 + active * 5000 + bonus

    ordered = sorted(candidates, key=lambda n: (score(n), n.uuid))
    return (ordered[0].uuid if ordered else None), recovered


OFFSETS = [0, SECOND, 5 * SECOND, 10 * SECOND, 59_999, 60_000, HOUR, DAY, DAY + 1, 2 * DAY]


@st.composite
def node_docs(draw: st.DrawFn, index: int) -> dict[str, Any]:
    def time_or_none() -> str | None:
        return draw(
            st.one_of(
                st.none(),
                st.sampled_from(OFFSETS).map(ago),
                st.sampled_from([iso_ms(NOW + MINUTE), "garbage"]),
            )
        )

    doc: dict[str, Any] = {
        "uuid": f"n{draw(st.integers(0, 99)):02d}-{index}",
        "isHealthy": draw(st.booleans()),
        "isDisabled": draw(st.integers(0, 5)) == 0,
        "needsRefresh": draw(st.integers(0, 5)) == 0,
        "lastUsed": time_or_none(),
        "usageCount": draw(st.integers(0, 3)),
        "_lastSelectionSeq": draw(st.sampled_from([0, 1, 2, 50, 101, 103, 250])),
        "lastHealthCheckTime": time_or_none(),
        "scheduledRecoveryTime": time_or_none(),
        "concurrencyLimit": draw(st.sampled_from([0, 0, 1, 2, "2"])),
        "queueLimit": draw(st.sampled_from([0, 1, 4])),
    }
    models = st.sampled_from(["m1", " m1 ", "m2", "", 3])
    if draw(st.booleans()):
        doc["supportedModels"] = draw(st.lists(models, max_size=3))
    if draw(st.booleans()):
        doc["notSupportedModels"] = draw(st.lists(models, max_size=2))
    return doc


@st.composite
def pools(draw: st.DrawFn) -> list[dict[str, Any]]:
    size = draw(st.integers(1, 8))
    return [draw(node_docs(i)) for i in range(size)]


@settings(max_examples=300, deadline=None)
@given(
    docs=pools(),
    provider_type=st.sampled_from([TYPE, MANAGED]),
    model=st.sampled_from([None, "", "m1", "m2"]),
    active=st.lists(st.integers(0, 3), min_size=8, max_size=8),
    exclude_first=st.booleans(),
)
def test_same_choice_as_a_straight_port_of_the_node_service(
    docs: list[dict[str, Any]],
    provider_type: str,
    model: str | None,
    active: list[int],
    exclude_first: bool,
) -> None:
    nodes = [node_from_json(doc, "test") for doc in docs]
    table = SlotTable()

    async def occupy() -> None:  # active requests only; queues are covered above
        for node, count in zip(nodes, active, strict=False):
            for _ in range(min(count, node.concurrency_limit or count)):
                await table.acquire(provider_type, node).__aenter__()

    asyncio.run(occupy())
    exclude = {nodes[0].uuid} if exclude_first else set()
    expected, recovered = reference_pick(provider_type, nodes, model, NOW, exclude, table)
    selector = Selector(table)
    for _ in range(2):  # the second pick runs on warm caches
        choice = selector.select(provider_type, nodes, model, now_ms=NOW, exclude=exclude)
        assert (choice.node.uuid if choice else None) == expected
        assert list(selector.last_recovered) == recovered
