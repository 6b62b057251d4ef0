"""Hot-path records: exact counts under concurrency, in one process and across processes."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap

import pytest

from cfgstore.adapters import Store
from cfgstore.testing.builders import make_node
from cfgstore.testing.deployment import Deployment
from cfgstore.testing.fixtures import deployment_fixture, store_fixture  # noqa: F401
from cfgstore.testing.rules import rule

pytestmark = pytest.mark.asyncio  # every test here is a coroutine

SCALE = float(os.environ.get("CFGSTORE_TEST_SCALE", "1"))
TASKS = 200
PER_TASK = max(1, int(500 * SCALE))


async def test_concurrent_increments_are_exact(deployment: Deployment) -> None:
    async with deployment.open() as store:
        await store.pools.add_node("openai-custom", make_node("hot"))
        await store.pools.add_node("openai-custom", make_node("cold"))

        async def caller() -> None:
            for _ in range(PER_TASK):
                await store.pools.record_success("openai-custom", "hot")
                await asyncio.sleep(0)  # interleave callers as real requests would

        await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(TASKS))), timeout=120)
        with rule(
            "cfgstore_pools_apply_records",
            "concurrent callers lose no increment: "
            "after N success records usageCount is exactly N higher",
        ):
            node = await store.pools.get_node("openai-custom", "hot")
            assert node is not None and node.state.usage_count == TASKS * PER_TASK
    async with deployment.open() as store:
        with rule(
            "cfgstore_pools_apply_records",
            "applied records are durable once the store is closed, and land on their own node only",
        ):
            hot = await store.pools.get_node("openai-custom", "hot")
            cold = await store.pools.get_node("openai-custom", "cold")
            assert hot is not None and hot.state.usage_count == TASKS * PER_TASK
            assert cold is not None and cold.state.usage_count == 0


async def test_health_update_and_usage_on_other_node_both_kept(store: Store) -> None:
    """US1-3: a node marked unhealthy while another's usage grows: both changes survive."""
    await store.pools.add_node("claude-kiro-oauth", make_node("a"))
    await store.pools.add_node("claude-kiro-oauth", make_node("b"))
    await asyncio.gather(
        store.pools.record_failure("claude-kiro-oauth", "a", "x", max_error_count=1),
        *(store.pools.record_success("claude-kiro-oauth", "b") for _ in range(50)),
    )
    await store.flush()
    with rule("cfgstore_pools_apply_records", "records on different nodes are all kept"):
        a = await store.pools.get_node("claude-kiro-oauth", "a")
        b = await store.pools.get_node("claude-kiro-oauth", "b")
        assert a is not None and not a.state.is_healthy
        assert b is not None and b.state.usage_count == 50


async def test_admin_edit_during_hot_path_loses_nothing(store: Store) -> None:
    """US1-4: adding a node while health/usage records flow: both operations succeed."""
    await store.pools.add_node("openai-custom", make_node("busy"))

    async def traffic() -> None:
        for _ in range(200):
            await store.pools.record_success("openai-custom", "busy")
            await asyncio.sleep(0)

    async def admin() -> None:
        for index in range(5):
            await store.pools.add_node("openai-custom", make_node(f"new-{index}"))

    await asyncio.wait_for(asyncio.gather(traffic(), admin()), timeout=60)
    await store.flush()
    with rule(
        "cfgstore_pools_add_node",
        "atomic with respect to concurrent hot-path records: "
        "the nodes added and every count are kept",
    ):
        pools = await store.pools.list()
        assert [n.uuid for n in pools.types["openai-custom"]] == ["busy"] + [
            f"new-{i}" for i in range(5)
        ]
        assert pools.types["openai-custom"][0].state.usage_count == 200


async def test_records_for_deleted_nodes_are_dropped(store: Store) -> None:
    await store.pools.add_node("openai-custom", make_node("gone"))
    await store.pools.delete_node("openai-custom", "gone")
    with rule(
        "cfgstore_pools_apply_records",
        "records for nodes that no longer exist are dropped (no error, no node created)",
    ):
        await store.pools.record_success("openai-custom", "gone")
        await store.flush()
        assert await store.pools.get_node("openai-custom", "gone") is None


WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from cfgstore.adapters import Store
    from cfgstore.testing.deployment import load_subprocess_settings

    async def main() -> None:
        settings = load_subprocess_settings(sys.argv[1])
        count = int(sys.argv[2])
        async with Store.open(settings) as store:
            print("ready", flush=True)
            sys.stdin.readline()  # start together
            for index in range(count):
                await store.pools.record_success("openai-custom", "shared")
                if index % 50 == 0:
                    await asyncio.sleep(0.001)
        print("done", flush=True)

    asyncio.run(main())
    """
)


async def test_two_processes_incrementing_one_account_are_exact(deployment: Deployment) -> None:
    if not deployment.shared:
        pytest.skip("several instances on one storage: the backend does not declare 'shared'")
    async with deployment.open() as store:
        await store.pools.add_node("openai-custom", make_node("shared"))
    count = max(100, int(2000 * SCALE))
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            await deployment.subprocess_settings(),  # each worker is an instance
            str(count),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"ready\n"
        for proc in procs:  # both are ready: start them together
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        for proc in procs:
            assert await asyncio.wait_for(proc.wait(), 120) == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    async with deployment.open() as store:
        with rule(
            "cfgstore_pools_apply_records",
            "a shared backend loses no increment of concurrent instances in several processes",
        ):
            node = await store.pools.get_node("openai-custom", "shared")
            assert node is not None and node.state.usage_count == 2 * count


async def test_the_live_view_shows_records_and_edits(store: Store) -> None:
    """``pools.view()`` (provider selection's read) reflects records and edits as they
    happen — read again per decision, never mutated by the caller."""
    await store.pools.add_node("openai-custom", make_node("a"))
    await store.pools.add_node("openai-custom", make_node("b"))
    await store.pools.record_success("openai-custom", "b")
    await store.flush()
    with rule("cfgstore_pools_view", "the pools in order, as records and edits leave them"):
        view = await store.pools.view()
        assert [n.uuid for n in view["openai-custom"]] == ["a", "b"]
        assert [n.state.usage_count for n in view["openai-custom"]] == [0, 1]
        await store.pools.set_disabled("openai-custom", "a", True)
        again = await store.pools.view()
        assert [n.state.is_disabled for n in again["openai-custom"]] == [True, False]
