"""Many gateway processes on one Redis namespace, under load (SC-002, SC-007; issue 6).

Four ``cfgctl serve`` OS processes (each on its own port, with its own ``--state-dir``,
memory fallback over one private namespace with 20 ``openai-custom`` nodes that all point at
one local upstream stub) take concurrent chat requests from one aiohttp client here (200 in
flight, each client task homed on one gateway, a quarter streamed). Counts are read from
Redis through a Redis-only store after every gateway has stopped.

* :func:`test_four_gateways_count_every_request_exactly`: every request succeeds and the sum
  of ``usageCount`` over the nodes equals the successes exactly: no record lost between four
  instances' replicators and the SIGTERM flush, none applied twice.
* :func:`test_a_redis_outage_under_load_fails_no_request_and_loses_no_count`: Redis (AOF,
  every write fsynced) stops for ~5 s mid-load; every gateway reports ``degraded``, requests
  keep succeeding through the outage (zero failures, and the longest pause between two
  successes is reported and bounded), and after the restart, the journal replay and a
  graceful stop, the counts are exact again.
* :func:`test_a_sigkilled_gateway_loses_at_most_its_unflushed_records`: one gateway is
  SIGKILLed under load; the survivors finish the run and stop. Only the victim's records
  that Redis had not acknowledged can be missing: ``successes - counted`` is bounded by
  what one replicator round trip can hold (see :func:`lost_bound`), and it is never below
  ``-failures`` (a request recorded just before the kill whose reply never arrived).

Sizes scale with ``CFGSTORE_TEST_SCALE`` (default 1: 4000 requests per load test, a 5 s
outage). Measured figures are printed (``pytest -s``) on lines starting ``[many-instances]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

from cfgstore.adapters import Settings, Store
from cfgstore.model.pools import node_from_json
from cfgstore.model.versions import ABSENT_VERSION
from tests.gateway.conftest import SCALE, TYPE, api_node, scaled
from tests.gateway.processes import GatewayProcess, gateway_fleet
from tests.gateway.test_storage_modes import private_prefix
from tests.gateway.upstream_stub import UpstreamStub
from tests.support.namespace_seed import seed_namespace
from tests.support.redis_server import RedisServerProcess

pytestmark = pytest.mark.slow

GATEWAYS = 4
NODES = 20
CONCURRENCY = 200
TOTAL = scaled(4000, minimum=200)
OUTAGE_S = max(1.0, 5.0 * SCALE)
KEY = "many-instances-client-key-0123"
MODEL = "gpt-4o"

REQUEST_S = 30.0
"""Client timeout of one request (the happy path takes milliseconds)."""
LOAD_S = 120.0
"""Bound of a whole load run, or of reaching a given number of successes."""
RECOVER_S = 30.0
"""Bound for every gateway to report ``redis`` again after the restart (probe backoff is
capped at 1 s here, plus the replay and the resync)."""
SERVE_ARGS = ("--log-level", "warning")
"""No per-request log line (4 processes writing thousands of lines cost CPU on a small box);
the storage transitions are warnings and stay in the logs."""
GATEWAY_ENV = {"CFGSTORE_PROBE_MAX_DELAY_MS": "1000"}
"""Outage probes at most 1 s apart: recovery follows the restart closely (default 5 s)."""


def report(message: str) -> None:
    print(f"[many-instances] {message}", flush=True)


# ----------------------------------------------------------------------------- namespace


def node_uuid(index: int) -> str:
    return f"{index:08x}-0000-4000-8000-{index:012x}"


UUIDS = [node_uuid(i) for i in range(1, NODES + 1)]


def redis_only(url: str, prefix: str) -> Settings:
    return Settings(
        configs_dir=Path("unused"), backends=("redis",), redis_url=url, redis_prefix=prefix
    )


async def seed(url: str, prefix: str, upstream_url: str) -> None:
    """Initialise ``{prefix}``: the client key, the default provider type and the nodes."""
    await asyncio.to_thread(seed_namespace, url, prefix)
    async with Store.open(redis_only(url, prefix)) as admin:
        await admin.config.put(
            {
                "REQUIRED_API_KEY": KEY,
                "MODEL_PROVIDER": TYPE,
                "MAX_ERROR_COUNT": 3,
                "REQUEST_MAX_RETRIES": 0,
            },
            ABSENT_VERSION,
        )
        for uuid in UUIDS:
            node = api_node(uuid, upstream_url, f"upstream-key-{uuid}")
            await admin.pools.add_node(TYPE, node_from_json(node, "test"))


async def usage_in_redis(url: str, prefix: str) -> dict[str, int]:
    """``usageCount`` of every node as Redis holds it."""
    out: dict[str, int] = {}
    async with Store.open(redis_only(url, prefix)) as admin:
        for uuid in UUIDS:
            node = await admin.pools.get_node(TYPE, uuid)
            assert node is not None, f"node {uuid} missing in Redis"
            out[uuid] = node.state.usage_count
    return out


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    with private_prefix(redis_url) as value:
        yield value


@contextlib.asynccontextmanager
async def http_client() -> AsyncIterator[aiohttp.ClientSession]:
    """Keep-alive connections, as many as the load keeps in flight (aiohttp's default
    caps a session at 100)."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY + 4 * GATEWAYS)
    timeout = aiohttp.ClientTimeout(total=REQUEST_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield session


# ----------------------------------------------------------------------------- the load


@attrs.define
class Load:
    """``concurrency`` client tasks; task *i* sends to gateway ``i % len(urls)`` (its home)
    one request at a time, every fourth streamed, until ``total`` requests were issued
    (``None``: until :meth:`stop`). A task whose home is marked dead moves to the next live
    gateway. Successes (status 200 and a complete body) and failures are counted per
    gateway; ``max_gap_s`` is the longest time between two successes in a row."""

    client: aiohttp.ClientSession
    urls: list[str]
    concurrency: int
    total: int | None
    issued: int = 0
    successes: int = 0
    ok: list[int] = attrs.field(init=False)
    failed: list[int] = attrs.field(init=False)
    failures: list[str] = attrs.Factory(list)
    dead: set[int] = attrs.Factory(set)
    homed: list[int] = attrs.field(init=False)
    """How many client tasks each gateway started with."""
    last_success_at: float = 0.0
    max_gap_s: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    _stopping: bool = False
    _progress: asyncio.Event = attrs.Factory(asyncio.Event)
    _tasks: list[asyncio.Task[None]] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        self.ok = [0] * len(self.urls)
        self.failed = [0] * len(self.urls)
        self.homed = [
            len(range(g, self.concurrency, len(self.urls))) for g in range(len(self.urls))
        ]

    def start(self) -> Load:
        self.started_at = self.last_success_at = time.monotonic()
        self._tasks = [asyncio.create_task(self._run(i)) for i in range(self.concurrency)]
        return self

    @property
    def rate(self) -> float:
        """Successes per second over the run."""
        elapsed = (self.finished_at or time.monotonic()) - self.started_at
        return self.successes / elapsed if elapsed > 0 else 0.0

    def mark_dead(self, index: int) -> None:
        self.dead.add(index)

    async def wait_successes(self, count: int, *, within: float = LOAD_S) -> None:
        """Until ``count`` requests succeeded."""
        try:
            async with asyncio.timeout(within):
                while self.successes < count:
                    if all(t.done() for t in self._tasks):
                        raise AssertionError(f"the load ended at {self.successes} < {count}")
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.successes} successes after {within}s, expected {count}; "
                f"failures: {self.failures[:5]}"
            ) from None

    async def finish(self, *, within: float = LOAD_S) -> None:
        """Until every task is done (``total`` issued and answered)."""
        try:
            await asyncio.wait_for(asyncio.gather(*self._tasks), within)
        except TimeoutError:
            raise AssertionError(
                f"the load did not finish within {within}s: {self.successes} successes, "
                f"{len(self.failures)} failures of {self.issued} issued"
            ) from None
        self.finished_at = time.monotonic()

    async def stop(self, *, within: float = LOAD_S) -> None:
        self._stopping = True
        await self.finish(within=within)

    async def _run(self, worker: int) -> None:
        home = worker % len(self.urls)
        while not self._stopping:
            if self.total is not None and self.issued >= self.total:
                return
            while home in self.dead:
                home = (home + 1) % len(self.urls)
            seq = self.issued
            self.issued += 1
            error = await self._one(self.urls[home], stream=seq % 4 == 0)
            if error is None:
                now = time.monotonic()
                self.max_gap_s = max(self.max_gap_s, now - self.last_success_at)
                self.last_success_at = now
                self.successes += 1
                self.ok[home] += 1
                self._progress.set()
            else:
                self.failed[home] += 1
                self.failures.append(f"gateway {home}: {error}")

    async def _one(self, url: str, *, stream: bool) -> str | None:
        """One chat request; ``None`` on success, else what went wrong."""
        body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        if stream:
            body["stream"] = True
        try:
            async with self.client.post(
                f"{url}/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {KEY}"},
            ) as response:
                data = await response.read()
                if response.status != 200:
                    return f"status {response.status}: {data[:200]!r}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"
        if stream:
            return None if data.endswith(b"data: [DONE]\n\n") else f"cut stream: {data[-80:]!r}"
        return None if b'"content":"ok"' in data.replace(b" ", b"") else f"body {data[:200]!r}"


async def stop_all(gateways: list[GatewayProcess]) -> list[int]:
    """SIGTERM every running gateway at once; their exit statuses."""
    return list(await asyncio.gather(*(g.terminate() for g in gateways if g.running)))


# ----------------------------------------------------------------------------- tests


async def test_four_gateways_count_every_request_exactly(
    tmp_path: Path, redis_url: str, prefix: str, upstream: UpstreamStub
) -> None:
    await seed(redis_url, prefix, upstream.base_url)
    started = time.monotonic()
    async with (
        http_client() as client,
        gateway_fleet(
            tmp_path,
            GATEWAYS,
            redis_url=redis_url,
            redis_prefix=prefix,
            client=client,
            extra_args=SERVE_ARGS,
        ) as gateways,
    ):
        ready_s = time.monotonic() - started
        assert len({g.url for g in gateways}) == GATEWAYS
        instances = {(await g.health(client))["instance"] for g in gateways}
        assert len(instances) == GATEWAYS  # four instances, not one answering four times
        load = Load(client, [g.url for g in gateways], CONCURRENCY, TOTAL).start()
        await load.finish()
        codes = await stop_all(gateways)
    usage = await usage_in_redis(redis_url, prefix)
    report(
        f"exact counts: {GATEWAYS} gateways ready in {ready_s:.1f}s; {load.successes} "
        f"requests in {load.finished_at - load.started_at:.1f}s ({load.rate:.0f}/s) at "
        f"{CONCURRENCY} in flight; per gateway {load.ok}; usageCount sum {sum(usage.values())} "
        f"over {sum(1 for v in usage.values() if v)} of {NODES} nodes "
        f"(min {min(usage.values())}, max {max(usage.values())})"
    )
    assert load.failures == [], load.failures[:10]
    assert load.successes == TOTAL
    assert all(count > 0 for count in load.ok), load.ok  # the load reached every gateway
    assert codes == [0] * GATEWAYS
    assert sum(usage.values()) == load.successes, usage
    assert len(upstream.chat_requests()) == TOTAL  # one upstream call each, no retry


async def test_a_redis_outage_under_load_fails_no_request_and_loses_no_count(
    tmp_path: Path, aof_server: RedisServerProcess, upstream: UpstreamStub
) -> None:
    url, prefix = aof_server.url, "gw-outage"
    await seed(url, prefix, upstream.base_url)
    before_outage = scaled(800, minimum=100)
    after_restart = scaled(400, minimum=50)
    async with (
        http_client() as client,
        gateway_fleet(
            tmp_path,
            GATEWAYS,
            redis_url=url,
            redis_prefix=prefix,
            client=client,
            extra_args=SERVE_ARGS,
            env=GATEWAY_ENV,
        ) as gateways,
    ):
        load = Load(client, [g.url for g in gateways], CONCURRENCY, None).start()
        await load.wait_successes(before_outage)
        gap_before = load.max_gap_s
        load.max_gap_s = 0.0  # from here on: the gaps during the outage and recovery
        at_stop = load.successes
        await aof_server.astop()
        down_at = time.monotonic()
        seen: list[set[str]] = [set() for _ in gateways]
        while time.monotonic() - down_at < OUTAGE_S:  # hold the outage window, watching
            for gateway, modes in zip(gateways, seen, strict=True):
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    modes.add((await gateway.health(client))["storage"])
            await asyncio.sleep(0.25)
        during = load.successes - at_stop
        down_s = time.monotonic() - down_at
        gap_outage = load.max_gap_s
        await aof_server.arestart()
        restarted_at = time.monotonic()
        recovered_s = await asyncio.gather(
            *(g.wait_storage(client, "redis", within=RECOVER_S) for g in gateways)
        )
        recovery_s = time.monotonic() - restarted_at
        await load.wait_successes(load.successes + after_restart)  # normal again, still loaded
        await load.stop()
        codes = await stop_all(gateways)
        replays = [g.log_lines(r"storage back after") for g in gateways]
    usage = await usage_in_redis(url, prefix)
    report(
        f"outage: Redis down {down_s:.1f}s (target {OUTAGE_S:.1f}s); {during} requests "
        f"succeeded while it was down ({during / down_s:.0f}/s); longest pause between two "
        f"successes {gap_before:.2f}s before, {gap_outage:.2f}s from the stop on; every "
        f"gateway back on redis {recovery_s:.1f}s after the restart (per gateway "
        f"{', '.join(f'{s:.1f}' for s in recovered_s)}); total {load.successes} successes, "
        f"{len(load.failures)} failures, usageCount sum {sum(usage.values())}"
    )
    for gateway, lines in zip(gateways, replays, strict=True):
        for line in lines:
            report(f"  {gateway.name}: {line.split(': ', 1)[-1]}")
    assert load.failures == [], load.failures[:10]
    assert all("degraded" in modes for modes in seen), seen  # the fallback really served
    assert during >= scaled(100, minimum=10), during  # requests kept succeeding...
    assert gap_outage < min(OUTAGE_S, 2.0), gap_outage  # ...all along, not in one burst
    assert all(replays), replays  # every gateway replayed its journal on recovery
    assert codes == [0] * GATEWAYS
    assert sum(usage.values()) == load.successes, usage


def lost_bound(clients: int) -> int:
    """The most records a SIGKILLed gateway can take with it, with ``clients`` client tasks
    on it (one request in flight each).

    The memory fallback hands every success record to its replicator, which sends all the
    pending records as one batch the moment the previous batch is acknowledged (there is no
    timed debounce). Redis can lack, at the kill, only the records of the batch in flight
    (it may still land: Redis runs a command it received even when its client dies) plus
    those pending behind it: the records booked during the last two Redis round trips. A
    request books one success, and a client task has one request in flight, so a round trip
    holds at most ``clients`` records unless a full request cycle (client → gateway →
    upstream → gateway → client: milliseconds on this loaded box) fits inside one Redis
    round trip of a small batch (a fraction of a millisecond on loopback). Hence
    ``2 × clients``."""
    return 2 * clients


async def test_a_sigkilled_gateway_loses_at_most_its_unflushed_records(
    tmp_path: Path, redis_url: str, prefix: str, upstream: UpstreamStub
) -> None:
    await seed(redis_url, prefix, upstream.base_url)
    victim = 1
    async with (
        http_client() as client,
        gateway_fleet(
            tmp_path,
            GATEWAYS,
            redis_url=redis_url,
            redis_prefix=prefix,
            client=client,
            extra_args=SERVE_ARGS,
        ) as gateways,
    ):
        load = Load(client, [g.url for g in gateways], CONCURRENCY, TOTAL).start()
        await load.wait_successes(TOTAL // 2)
        assert gateways[victim].running
        # The signal and the mark in one step: every task homed on the victim has its
        # request in flight there when it dies, and moves to a live gateway afterwards.
        gateways[victim].process.send_signal(signal.SIGKILL)
        load.mark_dead(victim)
        ok_at_kill = load.ok[victim]
        await gateways[victim].kill()  # reap
        await load.finish()
        codes = await stop_all(gateways)
    assert gateways[victim].process.returncode == -signal.SIGKILL
    usage = await usage_in_redis(redis_url, prefix)
    counted = sum(usage.values())
    lost = load.successes - counted
    clients = load.homed[victim]
    bound = lost_bound(clients)
    report(
        f"SIGKILL: gateway {victim} killed after {ok_at_kill} successes on it "
        f"({load.successes} in all at the end, {TOTAL} issued); {load.failed[victim]} "
        f"requests in flight on it failed; usageCount sum {counted}: successes - counted = "
        f"{lost} (bound {bound} = 2 x {clients} client tasks on it)"
    )
    others = [count for index, count in enumerate(load.failed) if index != victim]
    assert others == [0] * (GATEWAYS - 1), load.failures[:10]  # the survivors failed nothing
    assert load.failed[victim] <= clients  # one failure at most per task on the victim
    assert load.successes + load.failed[victim] == TOTAL
    assert codes == [0] * (GATEWAYS - 1)
    assert lost <= bound, (lost, bound)
    # Negative only by requests the victim recorded before it died without replying.
    assert lost >= -load.failed[victim], (lost, load.failed[victim])
