"""Record batch ids that cost nothing: ``<instance>:<epoch>:<seq>`` checked against one
high-water mark per instance and run in ``{p}:batches`` (``cfgstore.model.batch_ids``),
on a real Redis.

The script's rules through the replica operations (a batch sent again counts once, an
earlier one after a later one is refused, runs and instances have marks of their own, a
legacy id is still recognised, a damaged mark is a clear refusal); then instances: N
flushes leave one mark, not N keys; a restarted instance goes on exactly and drops its
earlier run's mark; a journal left by an earlier run replays exactly after a restart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from cfgstore.adapters import Store
from cfgstore.errors import InvalidData, StorageServerError
from cfgstore.model.records import Success
from cfgstore_memory.state_dir import IDENTITY_FILE, StateDir
from cfgstore_redis import lua
from cfgstore_redis.batch import encode, pipeline_predecessors
from cfgstore_redis.keys import Keys
from tests.memory_fallback.conftest import (
    DEGRADE_WAIT_S,
    RECOVER_WAIT_S,
    TYPE,
    fallback_settings,
    fallback_status,
    journal_depth,
    new_prefix,
    open_observed,
    record,
    redis_settings,
    redis_usage,
    replayed,
    seed_with_nodes,
)
from tests.support.redis_server import RedisServerProcess
from tests.support.waiting import until

FLUSHES = 120
"""Flushes (one batch each) in the key-count test: each left a key for 24 h before."""


def successes(uuid: str, count: int) -> list[Success]:
    return [Success(TYPE, uuid, 1773576000000 + i) for i in range(count)]


async def prefix_keys(client: Redis, prefix: str) -> list[str]:
    """Every key of namespace ``{prefix}`` (SCAN: tests only, the service never lists keys)."""
    return sorted([key async for key in client.scan_iter(match=f"{{{prefix}}}:*", count=1000)])


async def marks(client: Redis, prefix: str) -> dict[str, str]:
    found: dict[str, str] = await client.hgetall(f"{{{prefix}}}:batches")
    return found


@pytest.fixture
async def client(redis_url: str) -> Any:
    redis = Redis.from_url(redis_url, decode_responses=True, socket_timeout=10)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_the_script_applies_each_batch_of_a_run_once_in_order(
    redis_url: str, client: Redis
) -> None:
    """A batch sent again counts once; a batch below its run's mark (sent after a later
    one) is refused and changes nothing; another run (epoch) of the same instance and
    another instance have marks of their own; dropping a run's marks keeps the others."""
    prefix = new_prefix()
    namespace_id = await seed_with_nodes(redis_url, prefix, "n1")
    async with Store.open(redis_settings(redis_url, prefix)) as store:
        ops = store.replicas.operations

        async def apply(op_id: str, count: int = 1) -> bool:
            """Whether the batch was applied (``False``: a duplicate)."""
            applied = await ops["cfgstore_replica_apply"](
                records=successes("n1", count), op_id=op_id, namespace_id=namespace_id
            )
            return not applied.duplicate

        assert await apply("inst-a:100:1")
        assert not await apply("inst-a:100:1")  # the same batch again
        assert await apply("inst-a:100:3", 2)
        assert not await apply("inst-a:100:2", 4)  # below the mark: out of order
        assert not await apply("inst-a:100:3", 2)
        assert await marks(client, prefix) == {"inst-a": "100:3"}

        assert await apply("inst-a:200:1", 8)  # a new run starts from 1
        assert await apply("inst-b:100:1", 16)  # another instance
        assert not await apply("inst-a:100:3", 2)  # the earlier run keeps its mark
        assert await apply("inst-a:100:4", 32)  # ... and goes on (its journal replayed)
        assert await marks(client, prefix) == {"inst-a": "200:1 100:4", "inst-b": "100:1"}
        outcomes = await ops["cfgstore_replica_apply_many"](
            batches=[(successes("n1", 64), "inst-a:200:2"), (successes("n1", 1), "inst-a:200:2")],
            namespace_id=namespace_id,
        )
        assert [o.duplicate for o in outcomes] == [False, True]

        dropped = await ops["cfgstore_replica_forget_epochs"](instance_id="inst-a", epoch=200)
        assert dropped == 1
        assert await marks(client, prefix) == {"inst-a": "200:2", "inst-b": "100:1"}
        assert await ops["cfgstore_replica_forget_epochs"](instance_id="inst-a", epoch=200) == 0
        assert await ops["cfgstore_replica_forget_epochs"](instance_id="inst-b", epoch=7) == 1
        assert await marks(client, prefix) == {"inst-a": "200:2"}
    assert await redis_usage(redis_url, prefix, "n1") == {"n1": 1 + 2 + 8 + 16 + 32 + 64}
    assert not [key for key in await prefix_keys(client, prefix) if ":op:" in key]


async def test_a_batch_whose_predecessor_in_a_pipeline_was_refused_is_not_applied(
    redis_url: str, client: Redis
) -> None:
    """In a pipeline (a replay, the confirmed tail) each batch names the ``seq`` of the
    batch of its run sent just before it: when that one was refused (out of memory), this
    one is refused too, or the mark would pass the refused batch and its re-send would be
    taken for a duplicate."""
    assert pipeline_predecessors(
        ["a:1:5", "0f" * 16, "a:1:6", "a:2:1", "b:1:1", "a:1:7", "a:2:2"]
    ) == [0, 0, 5, 0, 0, 6, 1]
    prefix = new_prefix()
    namespace_id = await seed_with_nodes(redis_url, prefix, "n1")
    keys = Keys(prefix)
    head = json.dumps({"entity": "pools", "ids": ["openai-custom/n1"], "origin": "t"})[:-1]
    script = client.register_script(lua.APPLY_RECORDS)

    async def send(op_id: str, after: int) -> list[Any]:
        script_keys, args = encode(
            successes("n1", 1), keys, op_id, head + ', "rev": ', namespace_id, after
        )
        reply: list[Any] = await script(keys=script_keys, args=args)
        return reply

    assert (await send("inst-a:100:1", 0))[0] == "ok"
    assert await send("inst-a:100:3", 2) == ["behind", 1]  # batch 2 did not land
    assert await marks(client, prefix) == {"inst-a": "100:1"}
    assert await redis_usage(redis_url, prefix, "n1") == {"n1": 1}
    assert (await send("inst-a:100:2", 1))[0] == "ok"
    assert (await send("inst-a:100:3", 2))[0] == "ok"
    assert await send("inst-a:100:3", 2) == ["dup"]
    assert await redis_usage(redis_url, prefix, "n1") == {"n1": 3}


async def test_a_legacy_id_is_still_recognised(redis_url: str, client: Redis) -> None:
    """A journal written before batch ids were sequenced holds random ids: a batch under
    one is applied once (recorded under its own key for a day), as before."""
    prefix = new_prefix()
    namespace_id = await seed_with_nodes(redis_url, prefix, "n1")
    legacy = "0f" * 16
    async with Store.open(redis_settings(redis_url, prefix)) as store:
        apply = store.replicas.operations["cfgstore_replica_apply"]
        first = await apply(records=successes("n1", 3), op_id=legacy, namespace_id=namespace_id)
        again = await apply(records=successes("n1", 3), op_id=legacy, namespace_id=namespace_id)
    assert (first.duplicate, again.duplicate) == (False, True)
    assert await redis_usage(redis_url, prefix, "n1") == {"n1": 3}
    ttl_ms = await client.pttl(f"{{{prefix}}}:op:{legacy}")
    assert 23 * 3600 * 1000 < ttl_ms <= 24 * 3600 * 1000
    assert await marks(client, prefix) == {}


async def test_a_damaged_mark_is_refused_clearly_and_nothing_applied(
    redis_url: str, client: Redis
) -> None:
    prefix = new_prefix()
    namespace_id = await seed_with_nodes(redis_url, prefix, "n1")
    await client.hset(f"{{{prefix}}}:batches", "inst-a", "100:1 oops")
    async with Store.open(redis_settings(redis_url, prefix)) as store:
        ops = store.replicas.operations
        with pytest.raises(StorageServerError, match=r"batch marks of inst-a .*: 100:1 oops"):
            await ops["cfgstore_replica_apply"](
                records=successes("n1", 1), op_id="inst-a:100:2", namespace_id=namespace_id
            )
        with pytest.raises(StorageServerError, match="not <epoch>:<seq>"):
            await ops["cfgstore_replica_forget_epochs"](instance_id="inst-a", epoch=100)
    assert await redis_usage(redis_url, prefix, "n1") == {"n1": 0}
    assert await marks(client, prefix) == {"inst-a": "100:1 oops"}


async def test_flushes_leave_one_mark_per_instance_not_a_key_per_batch(
    redis_url: str, client: Redis, tmp_path: Path
) -> None:
    """Every flush is one batch. An instance (memory over Redis) leaves one mark for all
    of them; a plain Redis store (the CLI's) leaves none once closed. Before, each batch
    left a ``{p}:op:<id>`` key for 24 h."""
    prefix = new_prefix()
    await seed_with_nodes(redis_url, prefix, "n1")
    before = set(await prefix_keys(client, prefix))
    batches_key = f"{{{prefix}}}:batches"
    async with Store.open(fallback_settings(redis_url, prefix, tmp_path / "state")) as store:
        for _ in range(FLUSHES):
            await store.pools.record_success(TYPE, "n1")
            await store.flush()
        instance_id = (await fallback_status(store)).details["instance id"]
    async with Store.open(redis_settings(redis_url, prefix)) as plain:
        for _ in range(FLUSHES):
            await plain.pools.record_success(TYPE, "n1")
            await plain.flush()
        assert len(await marks(client, prefix)) == 2  # the instance's and this writer's
    # Heartbeat keys come and go with the instance; nothing else is new but the marks.
    new_keys = {k for k in set(await prefix_keys(client, prefix)) - before if ":instance" not in k}
    assert new_keys == {batches_key}
    epoch = json.loads((tmp_path / "state" / IDENTITY_FILE).read_text())["epoch"]
    assert await marks(client, prefix) == {instance_id: f"{epoch}:{FLUSHES}"}
    assert await redis_usage(redis_url, prefix, "n1") == {"n1": 2 * FLUSHES}


async def test_a_restarted_instance_goes_on_exactly_and_drops_its_earlier_mark(
    redis_url: str, client: Redis, tmp_path: Path
) -> None:
    """Each start is a new run (epoch, kept in ``instance.json``): the later runs'
    batches count, though their ``seq`` starts from 1 again, and an earlier run's mark
    is dropped as the next run starts with nothing of it left to send (no confirmed tail
    here: a run's tail, kept on disk, holds its mark until it ages out, as the last test
    shows)."""
    prefix = new_prefix()
    await seed_with_nodes(redis_url, prefix, "n1")
    settings = fallback_settings(redis_url, prefix, tmp_path / "state", confirmed_tail_ms=0)
    epochs: list[int] = []
    for run in range(1, 4):
        async with Store.open(settings) as store:
            instance_id = (await fallback_status(store)).details["instance id"]
            epochs.append(json.loads((tmp_path / "state" / IDENTITY_FILE).read_text())["epoch"])
            assert await marks(client, prefix) == {}
            await record(store, "n1", 7, concurrency=7)
            for _ in range(3):
                await store.pools.record_success(TYPE, "n1")
                await store.flush()
            assert (await marks(client, prefix)).keys() == {instance_id}
            assert (await marks(client, prefix))[instance_id].startswith(f"{epochs[-1]}:")
        assert await redis_usage(redis_url, prefix, "n1") == {"n1": 10 * run}
    assert epochs == sorted(set(epochs)), epochs


async def test_a_journal_of_an_earlier_run_replays_exactly_after_a_restart(
    aof_server: RedisServerProcess, client_for_aof: Redis, tmp_path: Path
) -> None:
    """Run 1 journals records while Redis is down and stops so (the journal stays). Run 2
    starts with Redis still down and journals its own batches (``seq`` from 1 again)
    behind run 1's. Redis back, the journal replays both runs' batches under their ids:
    counts are exact, and with nothing of run 1 left to send only run 2's mark stays."""
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    settings = fallback_settings(url, prefix, tmp_path / "state", confirmed_tail_ms=0)
    async with open_observed(settings) as (store, observer):
        await record(store, "n1", 5)
        await store.flush()
        await aof_server.astop()
        await store.pools.record_success(TYPE, "n1")
        await observer.wait(True, within=DEGRADE_WAIT_S)
        await record(store, "n1", 40, concurrency=10)
        await store.flush()  # in the journal
        assert await journal_depth(store) >= 1
    async with open_observed(settings) as (store, observer):
        assert (await fallback_status(store)).mode == "degraded"
        await record(store, "n1", 20, concurrency=4)
        await store.flush()  # journaled behind run 1's entries
        await aof_server.arestart()
        await observer.wait(False, within=RECOVER_WAIT_S)
        details = (await fallback_status(store)).details
        _, records, duplicates = replayed(details)
        assert (records, duplicates) == (61, 0), details
        await record(store, "n1", 30, concurrency=3)
        await store.flush()
        instance_id = details["instance id"]
    epoch = json.loads((tmp_path / "state" / IDENTITY_FILE).read_text())["epoch"]
    assert await redis_usage(url, prefix, "n1") == {"n1": 5 + 41 + 20 + 30}
    mark = (await client_for_aof.hgetall(f"{{{prefix}}}:batches"))[instance_id]
    assert mark.startswith(f"{epoch}:") and " " not in mark, mark


@pytest.fixture
async def client_for_aof(aof_server: RedisServerProcess) -> Any:
    redis = Redis.from_url(aof_server.url, decode_responses=True, socket_timeout=10)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_state_dir_epochs(tmp_path: Path) -> None:
    """Every open starts a new epoch above the last, also for an identity file written
    before epochs (none: taken as 0); a damaged epoch, or an instance id that cannot name
    batches, is refused with a clear error."""
    path = tmp_path / "state"
    path.mkdir()
    (path / IDENTITY_FILE).write_text(json.dumps({"instance_id": "abc123", "namespaces": {}}))
    first = await StateDir.open(path)
    assert first.instance_id == "abc123" and first.epoch > 0
    second = await StateDir.open(path)
    assert second.epoch > first.epoch
    ahead = second.epoch + 10**6  # a clock behind the last run: one above it
    (path / IDENTITY_FILE).write_text(
        json.dumps({"instance_id": "abc123", "namespaces": {}, "epoch": ahead})
    )
    assert (await StateDir.open(path)).epoch == ahead + 1
    for doc, where in (
        ({"instance_id": "abc123", "namespaces": {}, "epoch": "1"}, "$.epoch"),
        ({"instance_id": "abc123", "namespaces": {}, "epoch": -1}, "$.epoch"),
        ({"instance_id": "a:b", "namespaces": {}}, "$.instance_id"),
    ):
        (path / IDENTITY_FILE).write_text(json.dumps(doc))
        with pytest.raises(InvalidData, match=rf"\{where}"):
            await StateDir.open(path)


async def test_an_earlier_runs_mark_stays_while_its_batches_are_in_the_confirmed_tail(
    aof_server: RedisServerProcess, client_for_aof: Redis, tmp_path: Path
) -> None:
    """Run 2 replays run 1's journal at start: those batches join the confirmed tail,
    which is re-sent after a reconnect, so run 1's mark must stay until they leave it (a
    re-send against a dropped mark would count them twice). Once they have, run 2's next
    batch drops it."""
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    settings = fallback_settings(url, prefix, tmp_path / "state", confirmed_tail_ms=300)
    async with open_observed(settings) as (store, observer):
        await aof_server.astop()
        await store.pools.record_success(TYPE, "n1")
        await observer.wait(True, within=DEGRADE_WAIT_S)
        await store.flush()
        epoch_1 = json.loads((tmp_path / "state" / IDENTITY_FILE).read_text())["epoch"]
    await aof_server.arestart()
    async with Store.open(settings) as store:
        instance_id = (await fallback_status(store)).details["instance id"]
        epoch_2 = json.loads((tmp_path / "state" / IDENTITY_FILE).read_text())["epoch"]
        await store.pools.record_success(TYPE, "n1")
        await store.flush()
        assert await client_for_aof.hget(f"{{{prefix}}}:batches", instance_id) == (
            f"{epoch_1}:1 {epoch_2}:1"
        )

        async def only_run_2() -> bool:
            await store.pools.record_success(TYPE, "n1")
            await store.flush()
            mark = await client_for_aof.hget(f"{{{prefix}}}:batches", instance_id)
            return bool(mark and mark.startswith(f"{epoch_2}:") and " " not in mark)

        await until(only_run_2, "run 1's mark dropped", step_s=0.05)
        made = await usage_of(store)
    assert await redis_usage(url, prefix, "n1") == {"n1": made}


async def usage_of(store: Store) -> int:
    node = await store.pools.get_node(TYPE, "n1")
    assert node is not None
    return node.state.usage_count
