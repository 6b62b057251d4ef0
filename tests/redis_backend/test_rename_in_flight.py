"""Renaming a node's uuid while hot-path increments for it are in flight, on the real Redis.

Records already queued (in this process or another one) name the old uuid; the backend
leaves a forwarding pointer so they land on the renamed node. Counts must stay exact:
nothing lost, nothing left under the old uuid. A rename onto a uuid that is taken is
refused and changes nothing.

The second process runs this module: ``python -m tests.redis_backend.test_rename_in_flight
SPEC`` (see :func:`_worker`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from redis.asyncio import Redis

from cfgstore.adapters import Store
from cfgstore.errors import AlreadyExists
from cfgstore.model.credentials import Credential
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import node_from_json, node_to_json
from cfgstore_redis.keys import Keys
from tests.redis_backend.namespaces import Spec, settings_of

SCALE = float(os.environ.get("CFGSTORE_TEST_SCALE", "1"))
CALLERS = max(2, int(20 * SCALE))
"""Concurrent record_success callers in this process."""
PHASE_RECORDS = max(100, int(1000 * SCALE))
"""Records each side (this process, the worker) submits before the rename, and after it."""

KIRO = "claude-kiro-oauth"
PATH_KEY = "KIRO_OAUTH_CREDS_FILE_PATH"
STEP_TIMEOUT_S = 60.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def kiro_doc(name: str) -> dict[str, JSONValue]:
    return {
        "accessToken": f"access-{name}",
        "refreshToken": f"refresh-{name}",
        "profileArn": "arn:aws:codewhisperer:us-east-1:000000000000:profile/FAKE",
        "expiresAt": "2030-01-01T00:00:00.000Z",
        "authMethod": "social",
        "region": "us-east-1",
    }


async def seed(store: Store, uuid: str) -> str:
    """A Kiro node with its credential; returns the credential's version."""
    path = f"./configs/kiro/{uuid}/token.json"
    node = node_from_json({"customName": uuid, "uuid": uuid, PATH_KEY: path}, "test")
    await store.pools.add_node(KIRO, node)
    return await store.credentials.put(Credential(KIRO, uuid, kiro_doc(uuid), path), None)


@asynccontextmanager
async def raw_redis(spec: Spec) -> AsyncIterator[Redis]:
    """A plain client to look at keys directly (never flushes anything)."""
    client = Redis.from_url(
        spec["redis_url"], socket_timeout=5, socket_connect_timeout=5, decode_responses=True
    )
    try:
        yield client
    finally:
        await client.aclose()


class Tally:
    """Counts records submitted in this process; lets the test await a count (an event per
    target, set by the caller that reaches it — no polling)."""

    def __init__(self) -> None:
        self.count = 0
        self._targets: list[tuple[int, asyncio.Event]] = []

    def add(self) -> None:
        self.count += 1
        for target, reached in self._targets:
            if self.count >= target:
                reached.set()

    async def reach(self, target: int) -> None:
        reached = asyncio.Event()
        if self.count >= target:
            return
        self._targets.append((target, reached))
        await asyncio.wait_for(reached.wait(), STEP_TIMEOUT_S)


async def run_callers(
    store: Store, tally: Tally, stop: asyncio.Event, uuid_of: list[str], count: int
) -> None:
    """``count`` callers recording successes on ``uuid_of[0]`` (read per record, so the test
    can switch some callers to the new uuid) until ``stop`` is set."""

    async def caller(index: int) -> None:
        while not stop.is_set():
            uuid = uuid_of[index % len(uuid_of)]
            await store.pools.record_success(KIRO, uuid)
            tally.add()
            await asyncio.sleep(0)  # interleave callers as concurrent requests would

    await asyncio.gather(*(caller(i) for i in range(count)))


# -- the second process --------------------------------------------------------------------


async def _worker(spec: Spec) -> None:
    """Record successes on ``spec["uuid"]``: ``before`` of them, then ``half``; go on until
    the test says ``renamed``; then ``after`` more (all still naming the old uuid, as a
    request that selected the node before the rename would). Prints ``done <count>`` once
    its store is closed (every record applied)."""
    async with Store.open(settings_of(spec)) as store:
        print("ready", flush=True)
        await asyncio.wait_for(asyncio.to_thread(sys.stdin.readline), STEP_TIMEOUT_S)
        renamed = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
        deadline = asyncio.get_running_loop().time() + STEP_TIMEOUT_S
        count = after = 0
        while not renamed.done() or after < spec["after"]:
            await store.pools.record_success(KIRO, spec["uuid"])
            count += 1
            if count == spec["before"]:
                print("half", flush=True)
            if renamed.done():
                after += 1
            await asyncio.sleep(0)
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the test never said 'renamed'")
        assert renamed.result().strip() == "renamed"
    print(f"done {count}", flush=True)


async def start_worker(spec: Spec) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.redis_backend.test_rename_in_flight",
        json.dumps(spec),
        cwd=REPO_ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def read_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), STEP_TIMEOUT_S)
    if not line:
        code = await asyncio.wait_for(proc.wait(), STEP_TIMEOUT_S)
        raise AssertionError(f"worker ended early (exit code {code})")
    return line.decode().rstrip("\n")


async def say(proc: asyncio.subprocess.Process, text: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(text.encode() + b"\n")
    await proc.stdin.drain()


# -- tests ---------------------------------------------------------------------------------


async def test_rename_while_increments_are_in_flight_loses_nothing(spec: Spec) -> None:
    old, new = "acct-old", "acct-new"
    async with Store.open(settings_of(spec)) as store:
        cred_version = await seed(store, old)
        await seed(store, "bystander")
        proc = await start_worker(
            {**spec, "uuid": old, "before": PHASE_RECORDS, "after": PHASE_RECORDS}
        )
        try:
            assert await read_line(proc) == "ready"
            await say(proc, "go")
            tally, stop = Tally(), asyncio.Event()
            uuid_of = [old]
            callers = asyncio.create_task(run_callers(store, tally, stop, uuid_of, CALLERS))
            try:
                await tally.reach(PHASE_RECORDS)
                assert await read_line(proc) == "half"
                # Both processes are submitting records for `old` right now.
                await asyncio.wait_for(store.pools.rename_node(KIRO, old, new), STEP_TIMEOUT_S)
                renamed_at = tally.count
                await say(proc, "renamed")
                # Half the callers learn the new uuid; the rest still name the old one.
                uuid_of.append(new)
                await tally.reach(renamed_at + PHASE_RECORDS)
            finally:
                stop.set()
                await asyncio.wait_for(callers, STEP_TIMEOUT_S)
            line = await read_line(proc)
            assert line.startswith("done ")
            worker_count = int(line.removeprefix("done "))
            assert await asyncio.wait_for(proc.wait(), STEP_TIMEOUT_S) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await asyncio.wait_for(proc.wait(), STEP_TIMEOUT_S)
        assert worker_count >= 2 * PHASE_RECORDS
        assert renamed_at >= PHASE_RECORDS and tally.count >= renamed_at + PHASE_RECORDS
        total = tally.count + worker_count
        await asyncio.wait_for(store.flush(), STEP_TIMEOUT_S)

        renamed = await store.pools.get_node(KIRO, new)
        assert renamed is not None and renamed.state.usage_count == total
        assert renamed.uuid == new and node_to_json(renamed)["uuid"] == new
        assert await store.pools.get_node(KIRO, old) is None
        pools = await store.pools.list()
        assert [n.uuid for n in pools.types[KIRO]] == [new, "bystander"]
        bystander = await store.pools.get_node(KIRO, "bystander")
        assert bystander is not None and bystander.state.usage_count == 0

        moved = await store.credentials.get(KIRO, new)
        assert moved is not None and moved.document == kiro_doc(old)
        assert moved.version == cred_version
        assert await store.credentials.get(KIRO, old) is None

    keys = Keys(spec["redis_prefix"])
    async with raw_redis(spec) as client:  # nothing at all under the old uuid
        assert await client.exists(keys.node(KIRO, old)) == 0
        file_key = await client.hget(keys.node(KIRO, new), "@cred")
        assert await client.hget(keys.credential(file_key), "users") == f"{KIRO}:{new}"
    async with Store.open(settings_of(spec)) as store:  # durable, seen by a new instance
        reopened = await store.pools.get_node(KIRO, new)
        assert reopened is not None and reopened.state.usage_count == total
        assert await store.pools.get_node(KIRO, old) is None
        assert [c.uuid for c in await store.credentials.list()] == [new, "bystander"]


async def test_rename_onto_a_taken_uuid_is_refused_and_changes_nothing(spec: Spec) -> None:
    async with Store.open(settings_of(spec)) as store:
        version_a = await seed(store, "a")
        version_b = await seed(store, "b")
        for _ in range(3):
            await store.pools.record_success(KIRO, "b")
        await store.flush()
        before_b = await store.pools.get_node(KIRO, "b")
        assert before_b is not None

        tally, stop = Tally(), asyncio.Event()
        callers = asyncio.create_task(run_callers(store, tally, stop, ["a"], CALLERS))
        try:
            await tally.reach(PHASE_RECORDS // 2)
            with pytest.raises(AlreadyExists):  # while records for `a` are in flight
                await asyncio.wait_for(store.pools.rename_node(KIRO, "a", "b"), STEP_TIMEOUT_S)
            refused_at = tally.count
            await tally.reach(refused_at + PHASE_RECORDS // 2)
        finally:
            stop.set()
            await asyncio.wait_for(callers, STEP_TIMEOUT_S)
        await asyncio.wait_for(store.flush(), STEP_TIMEOUT_S)

        pools = await store.pools.list()
        assert [n.uuid for n in pools.types[KIRO]] == ["a", "b"]
        a = await store.pools.get_node(KIRO, "a")
        assert a is not None and a.state.usage_count == tally.count  # nothing forwarded away
        b = await store.pools.get_node(KIRO, "b")
        assert b is not None and node_to_json(b) == node_to_json(before_b)
        cred_a = await store.credentials.get(KIRO, "a")
        cred_b = await store.credentials.get(KIRO, "b")
        assert cred_a is not None and cred_a.document == kiro_doc("a")
        assert cred_a.version == version_a
        assert cred_b is not None and cred_b.document == kiro_doc("b")
        assert cred_b.version == version_b
    keys = Keys(spec["redis_prefix"])
    async with raw_redis(spec) as client:  # no forwarding pointer was left behind
        assert await client.exists(keys.forward(KIRO, "a")) == 0


if __name__ == "__main__":
    asyncio.run(_worker(json.loads(sys.argv[1])))
