"""The Redis backend through a real Sentinel failover under hot-path load.

Topology: a master, a replica and three sentinels (private ``redis-server`` processes, see
:class:`~tests.support.redis_topologies.SentinelTopology`); the store opens
``redis+sentinel://…/<master>``. Concurrent callers keep calling ``record_success`` on a few
nodes while the master is SIGKILLed and the sentinels promote the replica; the load keeps
going through the switch and after it.

What must hold — "writes during the switch wait or raise the outage error, never vanish":

* A record is *accepted* when ``record_success`` returned normally (it enqueues into the
  group-commit writer, :mod:`cfgstore_redis.writer`); a caller whose call raised did not
  count (with this backend the call never raises: the writer retries instead).
* After the failover, ``store.flush()`` completes within a bounded time (the writer and the
  Sentinel client found the new master), and every accepted record counts exactly once:
  none lost, none applied twice by the re-sends (each batch is re-sent with the same
  operation id until it is applied; the id is written atomically with the batch, and script
  effects replicate as one transaction, so a batch is on the replica with its id or not at
  all).
* A durable waiter (``store.flush()``) that fails during the switch fails with
  :class:`~cfgstore.errors.StorageUnavailable` and nothing else.

Why the exact assertion is sound. Redis replicates asynchronously: a batch the old master
acknowledged just before the SIGKILL may never have reached the replica. That loss is
Redis's, not cfgstore's, and no client can prevent it. ``min-replicas-to-write 1`` does
*not* close this window: it only makes the master refuse writes while no replica has
acknowledged within ``min-replicas-max-lag`` seconds (10 by default); it never makes a write
wait for the replica, so an acknowledged batch can still be missing on the replica when the
master dies, and an exact assertion would pass or fail by luck. So the exact test closes the
window the way a controlled switch does: just before the SIGKILL it runs ``CLIENT PAUSE
<ms> WRITE`` on the master (no further write executes; the writer's in-flight script call
blocks, unanswered), then ``WAIT 1 <timeout>`` (returns once the replica has acknowledged
everything the master executed), then SIGKILL. Every batch the old master acknowledged is
then on the new master, the blocked one is re-sent there, and the final counts must equal
the accepted counts exactly, per node. The crash itself is still a crash: connections drop
mid-command, the sentinels notice the master is gone, elect and promote.

The second test does the same without the pause (a plain SIGKILL under load). There the
assertion is a bound: the final count is at most the accepted count (nothing applied twice)
and at least the records known to be on the replica before the kill (``flush()`` then
``WAIT 1``, with the load running) plus every record accepted after the kill (only the new
master can acknowledge those). The difference, if any, is the asynchronous replication
window; the test records it as the ``replication_window_records`` property and logs it.

Sized by ``CFGSTORE_TEST_SCALE`` (CI size: a few thousand records per test). Every wait is
bounded. Skipped when ``redis-server`` is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
import uuid as uuidlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import attrs
import pytest
import pytest_asyncio
import redis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.retry import Retry as SyncRetry

from cfgstore.adapters import Settings, Store
from cfgstore.errors import StorageUnavailable
from tests.contract.helpers import make_node
from tests.support.redis_server import pid_exists
from tests.support.redis_topologies import Address, SentinelTopology

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="Sentinel failover tests need redis-server on PATH "
    "(Debian/Ubuntu: apt-get install redis-server)",
)

log = logging.getLogger("tests.redis_backend.sentinel")

SCALE = float(os.environ.get("CFGSTORE_TEST_SCALE", "1"))
#: Concurrent callers, and the pause each takes between two records (a request's duration).
CALLERS = max(4, int(20 * SCALE))
CALLER_PAUSE_S = 0.03
#: Records accepted before the kill, and after the failover, before the load stops.
BEFORE_KILL = max(100, int(400 * SCALE))
AFTER_FAILOVER = max(100, int(400 * SCALE))

TYPE = "openai-custom"
NODES = ("n1", "n2", "n3")

#: Bounds: load phases, the failover itself, the final flush, one durable probe.
PHASE_DEADLINE_S = 30.0
FAILOVER_DEADLINE_S = 20.0
FLUSH_DEADLINE_S = 60.0
PROBE_DEADLINE_S = 15.0
#: The master's write pause before the kill (the kill comes first; this only bounds it).
PAUSE_MS = 10_000
WAIT_REPLICA_MS = 5_000
#: Socket timeouts of the plain verification clients (loopback answers at once).
CLIENT_TIMEOUT_S = 2.0


# ---------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def topology() -> Iterator[SentinelTopology]:
    """A fresh master + replica + 3 sentinels per test (a failover uses it up)."""
    started = SentinelTopology()
    with started:
        yield started
    survivors = [pid for pid in started.pids if pid_exists(pid)]
    assert not survivors, f"topology processes still alive after stop(): {survivors}"


@pytest_asyncio.fixture
async def store(topology: SentinelTopology, tmp_path: Path) -> AsyncIterator[Store]:
    settings = Settings(
        configs_dir=tmp_path / "configs",
        backends=("redis",),
        redis_url=topology.url,
        redis_prefix=f"t{uuidlib.uuid4().hex[:12]}",
    )
    async with asyncio.timeout(PHASE_DEADLINE_S):
        opened = Store.open(settings)
        entered = await opened.__aenter__()
    try:
        yield entered
    finally:
        # Closing flushes; bounded in case a failed test left the writer retrying forever.
        async with asyncio.timeout(FLUSH_DEADLINE_S):
            await opened.__aexit__(None, None, None)


# ---------------------------------------------------------------------------------------
# the load and the probes


@attrs.define
class HotPathLoad:
    """``CALLERS`` tasks calling ``record_success`` round-robin on ``NODES`` until stopped."""

    store: Store
    accepted: Counter[str] = attrs.field(factory=Counter)
    refused: list[StorageUnavailable] = attrs.field(factory=list)
    _stop: asyncio.Event = attrs.field(factory=asyncio.Event)
    _thresholds: list[tuple[int, asyncio.Event]] = attrs.field(factory=list)
    _tasks: list[asyncio.Task[None]] = attrs.field(factory=list)

    @property
    def total(self) -> int:
        return sum(self.accepted.values())

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._caller(i)) for i in range(CALLERS)]

    async def reach(self, total: int, what: str) -> None:
        """Wait until ``total`` records were accepted (bounded)."""
        if self.total >= total:
            return
        reached = asyncio.Event()
        self._thresholds.append((total, reached))
        try:
            async with asyncio.timeout(PHASE_DEADLINE_S):
                await reached.wait()
        except TimeoutError:
            pytest.fail(
                f"{what}: only {self.total} of {total} records accepted within "
                f"{PHASE_DEADLINE_S:.0f}s (callers failed: {self._failures()})"
            )

    async def stop(self) -> None:
        self._stop.set()
        async with asyncio.timeout(PHASE_DEADLINE_S):
            await asyncio.gather(*self._tasks)  # a caller's unexpected exception fails here

    async def cancel(self) -> None:
        """End the callers whatever happened (a failed test must not leave them running)."""
        await _cancel(self._tasks)

    async def _caller(self, index: int) -> None:
        turn = index
        while not self._stop.is_set():
            uuid = NODES[turn % len(NODES)]
            turn += 1
            try:
                await self.store.pools.record_success(TYPE, uuid)
            except StorageUnavailable as exc:  # refused: it must not count
                self.refused.append(exc)
            else:
                self.accepted[uuid] += 1
                self._notify()
            await asyncio.sleep(CALLER_PAUSE_S)

    def _notify(self) -> None:
        total = self.total
        for target, event in self._thresholds:
            if total >= target:
                event.set()

    def _failures(self) -> list[BaseException | None]:
        return [t.exception() for t in self._tasks if t.done() and not t.cancelled()]


@attrs.define
class DurableProbe:
    """Keeps calling ``store.flush()`` (each call bounded) and notes how each one ended."""

    store: Store
    confirmed: int = 0
    errors: list[BaseException] = attrs.field(factory=list)
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = attrs.field(factory=asyncio.Event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        async with asyncio.timeout(PROBE_DEADLINE_S + 5):
            await self._task

    async def cancel(self) -> None:
        await _cancel([self._task] if self._task is not None else [])

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                async with asyncio.timeout(PROBE_DEADLINE_S):
                    await self.store.flush()
            except TimeoutError:
                pytest.fail(f"a durable waiter got no answer within {PROBE_DEADLINE_S:.0f}s")
            except Exception as exc:  # any storage error: checked by the test
                self.errors.append(exc)
            else:
                self.confirmed += 1
            await asyncio.sleep(0.02)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def _load_and_probe(store: Store) -> AsyncIterator[tuple[HotPathLoad, DurableProbe]]:
    """Nodes added, the load running and past ``BEFORE_KILL`` records; a durable probe ready
    to start. Both are cancelled on the way out, whatever happened."""
    for uuid in NODES:
        await store.pools.add_node(TYPE, make_node(uuid))
    load = HotPathLoad(store)
    probe = DurableProbe(store)
    load.start()
    try:
        await load.reach(BEFORE_KILL, "before the kill")
        yield load, probe
    finally:
        await probe.cancel()
        await load.cancel()


async def _flush_within(store: Store, deadline_s: float) -> list[StorageUnavailable]:
    """``store.flush()`` until it succeeds (an outage error may still end an attempt that
    started before the new master was found); fail after ``deadline_s``."""
    outages: list[StorageUnavailable] = []
    began = time.monotonic()
    try:
        async with asyncio.timeout(deadline_s):
            while True:
                try:
                    await store.flush()
                    return outages
                except StorageUnavailable as exc:
                    outages.append(exc)
                    await asyncio.sleep(0.1)
    except TimeoutError:
        last = f"; last error: {outages[-1]}" if outages else ""
        pytest.fail(
            f"store.flush() did not succeed within {deadline_s:.0f}s after the failover "
            f"({len(outages)} outage errors{last}); the writer did not recover "
            f"(waited {time.monotonic() - began:.1f}s)"
        )


def _plain(address: Address) -> Redis:
    return Redis(
        host=address[0],
        port=address[1],
        socket_timeout=CLIENT_TIMEOUT_S,
        socket_connect_timeout=CLIENT_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _sync_command(address: Address, *args: str) -> object:
    """One command over a fresh blocking connection (run it in a worker thread)."""
    with redis.Redis(
        host=address[0],
        port=address[1],
        socket_timeout=(WAIT_REPLICA_MS / 1000) + CLIENT_TIMEOUT_S,
        socket_connect_timeout=CLIENT_TIMEOUT_S,
        retry=SyncRetry(NoBackoff(), 0),
        decode_responses=True,
    ) as client:
        return client.execute_command(*args)


async def _replica_has_everything(master: Address) -> None:
    """``WAIT 1``: the replica acknowledged every write the master executed so far."""
    acked = await asyncio.to_thread(_sync_command, master, "WAIT", "1", str(WAIT_REPLICA_MS))
    assert acked == 1, f"the replica did not acknowledge within {WAIT_REPLICA_MS} ms ({acked})"


async def _stored_counts(store: Store, master: Address, prefix: str) -> Counter[str]:
    """usageCount of every node, through the store and straight from the new master."""
    pools = await store.pools.list()
    through_store = Counter({n.uuid: n.state.usage_count for n in pools.types[TYPE]})
    client = _plain(master)
    try:
        assert (await client.execute_command("ROLE"))[0] == "master"
        raw = {
            uuid: await client.hget(f"{{{prefix}}}:node:{TYPE}:{uuid}", "usageCount")
            for uuid in NODES
        }
    finally:
        await client.aclose()
    on_master = Counter({uuid: int(value or 0) for uuid, value in raw.items()})
    assert through_store == on_master, (through_store, on_master)
    return through_store


def _assert_only_outage_errors(probe: DurableProbe) -> None:
    others = [e for e in probe.errors if not isinstance(e, StorageUnavailable)]
    assert not others, f"durable waiters got errors other than StorageUnavailable: {others!r}"


# ---------------------------------------------------------------------------------------
# the tests


async def test_failover_under_load_counts_every_accepted_record_exactly_once(
    topology: SentinelTopology, store: Store, record_property: Callable[[str, object], None]
) -> None:
    prefix = store.settings.redis_prefix
    async with _load_and_probe(store) as (load, probe):
        confirmed = load.total
        async with asyncio.timeout(PHASE_DEADLINE_S):
            await store.flush()  # the healthy path works before anything breaks

        # Close the asynchronous replication window, then crash the master (see the
        # module docstring): no write executes after the pause, WAIT 1 gets the replica
        # up to date, SIGKILL.
        old = topology.current_master()
        paused = await asyncio.to_thread(
            _sync_command, old, "CLIENT", "PAUSE", str(PAUSE_MS), "WRITE"
        )
        assert paused == "OK"
        await _replica_has_everything(old)
        probe.start()
        assert await asyncio.to_thread(topology.kill_master) == old
        at_kill = load.total
        new = await topology.await_failover(FAILOVER_DEADLINE_S)
        at_failover = load.total

        await load.reach(at_failover + AFTER_FAILOVER, "after the failover")
        await load.stop()
        await probe.stop()
    late_outages = await _flush_within(store, FLUSH_DEADLINE_S)

    counts = await _stored_counts(store, new, prefix)
    summary = {
        "accepted": load.total,
        "stored": sum(counts.values()),
        "confirmed_before_kill": confirmed,
        "accepted_at_kill": at_kill,
        "accepted_at_failover": at_failover,
        "failover_seconds": topology.last_failover_seconds,
        "durable_waiter_outages": len(probe.errors),
        "durable_waiter_successes": probe.confirmed,
        "flush_outages_after_failover": len(late_outages),
        "refused_records": len(load.refused),
    }
    for name, value in summary.items():
        record_property(name, value)
    log.info("failover with the window closed: %s", summary)

    _assert_only_outage_errors(probe)
    assert counts == load.accepted, summary
    assert at_failover > at_kill, "the load did not keep going through the switch"
    status = await store.status()
    assert not any("hot-path writes are failing" in w for s in status for w in s.warnings)


async def test_plain_sigkill_under_load_loses_at_most_the_replication_window(
    topology: SentinelTopology, store: Store, record_property: Callable[[str, object], None]
) -> None:
    prefix = store.settings.redis_prefix
    async with _load_and_probe(store) as (load, probe):
        # Known to be on the replica: everything accepted before this flush (the load
        # keeps running), once WAIT 1 returns.
        on_replica = Counter(load.accepted)
        async with asyncio.timeout(PHASE_DEADLINE_S):
            await store.flush()
        old = topology.current_master()
        await _replica_has_everything(old)

        probe.start()
        assert await asyncio.to_thread(topology.kill_master) == old
        # Accepted from here on: only the new master can acknowledge these.
        at_kill = Counter(load.accepted)
        new = await topology.await_failover(FAILOVER_DEADLINE_S)
        at_failover = load.total

        await load.reach(at_failover + AFTER_FAILOVER, "after the failover")
        await load.stop()
        await probe.stop()
    await _flush_within(store, FLUSH_DEADLINE_S)

    counts = await _stored_counts(store, new, prefix)
    after_kill = load.accepted - at_kill
    window = load.total - sum(counts.values())
    record_property("replication_window_records", window)
    record_property("failover_seconds", topology.last_failover_seconds)
    log.info(
        "plain SIGKILL: %d accepted, %d stored, %d lost in the replication window",
        load.total,
        sum(counts.values()),
        window,
    )

    _assert_only_outage_errors(probe)
    for uuid in NODES:
        # Never applied twice; never lost once on the replica or once past the kill.
        assert counts[uuid] <= load.accepted[uuid], (uuid, counts, load.accepted)
        assert counts[uuid] >= on_replica[uuid] + after_kill[uuid], (uuid, counts, on_replica)
    assert at_failover > sum(at_kill.values()), "the load did not keep going through the switch"
