"""A randomized fault soak with a counting checker:
``uv run python -m bench.soak [--seconds 60] [--seed S] [--gateways 2] [--clients 24]``.

Several ``cfgctl serve`` gateways (OS processes, memory fallback) share one private
``redis-server`` (AOF with ``appendfsync everysec`` unless told otherwise), each reaching it
through its own :class:`~tests.support.fault_proxy.FaultProxy`. Concurrent clients send
chat requests (to a local upstream stub) and count their 200s while faults are drawn from
a seeded random generator (the seed is printed: the same seed draws the same faults, in
the same order, with the same durations):

* ``redis-kill``: SIGKILL, down for a while, restart on the same port and AOF;
* ``redis-stop``: SIGSTOP for a while, then SIGCONT;
* ``reset``: every connection through one proxy (or all) reset (``RST``), a few times;
* ``latency``: one proxy (or all) adds a delay to every request for a while;
* ``host-crash``: the AOF directory is copied, ~1 s of load later Redis is SIGKILLed and
  started on the copy: the last second of acknowledged writes is gone, as after a power
  loss with ``everysec`` (the instances must notice and send them again);
* ``gateway-kill``: one gateway SIGKILLed (its clients move to the others, as behind a
  load balancer) and started again on the same state directory.

After each fault the soak waits until every gateway's ``GET /health`` reports storage
``redis`` again (the fault's recovery time), then pauses before the next one. At the end the
load stops, every gateway must be back to ``redis``, every gateway stops gracefully
(SIGTERM: flush) and the checker compares the clients' 200s with the ``usageCount`` sum
Redis holds:

* lost = successes - stored. A SIGKILLed gateway may lose its pending flush, at most
  ``2 × the clients homed on it`` (:func:`tests.gateway.test_many_instances.lost_bound`,
  README "gateway SIGKILLed"): that much is booked as *lost to gateway kills*; anything
  beyond is *lost to storage faults* (must be 0).
* doubled = stored - successes - ambiguous failures (a request whose connection broke may
  have been counted without its 200 arriving): must be 0.
* availability = 200s / requests, overall and in each fault's window (from its start until
  every gateway is back to normal).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import attrs

from tests.gateway.processes import GatewayProcess, start_gateway
from tests.gateway.test_many_instances import (
    GATEWAY_ENV,
    KEY,
    MODEL,
    SERVE_ARGS,
    lost_bound,
    seed,
    usage_in_redis,
)
from tests.gateway.upstream_stub import UpstreamStub
from tests.support.fault_proxy import FaultProxy
from tests.support.redis_server import RedisServerProcess

FAULTS = ("redis-kill", "redis-stop", "reset", "latency", "host-crash", "gateway-kill")
REQUIRED = ("host-crash", "gateway-kill")
"""Every soak runs these at least once (first, in a seeded order), however short."""
REQUEST_S = 30.0
"""Client timeout of one request."""
RECOVER_S = 60.0
"""Bound for every gateway to report ``redis`` again once the load has stopped."""
HOST_CRASH_LAG_S = 1.0
"""Load between the AOF copy and the crash: the last second the disk had not fsynced."""
END_MARGIN_S = 5.0
"""No new fault starts this close to the end of the run (it needs time to recover)."""
ROLLBACK_LOG = "the storage went back in time"


@attrs.frozen
class SoakConfig:
    seconds: float = 60.0
    seed: int = 0
    gateways: int = 2
    clients: int = 24
    fsync: str = "everysec"
    required: tuple[str, ...] = REQUIRED
    faults: tuple[str, ...] = FAULTS
    """The kinds drawn after the required ones."""
    recover_s: float = 60.0
    """How long to wait, after a fault, for every gateway to report ``redis`` before the
    next fault starts anyway (the window's "normal after" shows "–" then)."""
    keep: bool = False
    """Keep the work directory (gateway logs and state) for a look afterwards."""


@attrs.frozen
class Fault:
    """One planned fault: what, its parameters, and the pause after its recovery."""

    kind: str
    duration_s: float
    target: int | None
    """Proxy or gateway index; None: every proxy."""
    latency_s: float
    gap_s: float

    def describe(self) -> str:
        where = "all" if self.target is None else f"#{self.target}"
        match self.kind:
            case "latency":
                return f"{self.kind} {self.latency_s * 1000:.0f} ms {where}"
            case "reset":
                return f"{self.kind} ×3 {where}"
            case "gateway-kill":
                return f"{self.kind} gw-{self.target}"
            case _:
                return self.kind


def plan(config: SoakConfig, count: int = 200) -> list[Fault]:
    """The faults the seed draws: the required ones first (shuffled), then random ones.
    The run takes them in order while time is left."""
    rng = random.Random(config.seed)
    kinds = list(config.required)
    rng.shuffle(kinds)
    if config.faults:
        kinds += [rng.choice(config.faults) for _ in range(count)]
    faults: list[Fault] = []
    for kind in kinds:
        if kind == "gateway-kill":
            target: int | None = rng.randrange(config.gateways)
        else:
            target = None if rng.random() < 0.5 else rng.randrange(config.gateways)
        faults.append(
            Fault(
                kind=kind,
                duration_s=round(rng.uniform(0.5, 3.0), 2),
                target=target,
                latency_s=round(rng.uniform(0.02, 0.2), 3),
                gap_s=round(rng.uniform(1.0, 3.0), 2),
            )
        )
    return faults


@attrs.define
class Window:
    """A fault as it happened (seconds since the start of the run)."""

    fault: Fault
    start: float
    end: float = 0.0
    normal: float | None = None
    """When every gateway reported ``redis`` again; None: not within the bound."""
    ok: int = 0
    failed: int = 0

    @property
    def availability(self) -> float:
        total = self.ok + self.failed
        return self.ok / total if total else 1.0


@attrs.frozen
class SoakResult:
    config: SoakConfig
    elapsed_s: float
    successes: int
    failures: int
    ambiguous: int
    stored: int
    kill_bound: int
    windows: list[Window]
    final_modes: list[str]
    rollbacks_logged: int
    failure_samples: list[str]
    problems: list[str]
    """Gateways that did not come back to normal in time (with their log tails)."""

    @property
    def lost(self) -> int:
        return max(0, self.successes - self.stored)

    @property
    def lost_to_gateway_kills(self) -> int:
        return min(self.lost, self.kill_bound)

    @property
    def lost_to_storage(self) -> int:
        return self.lost - self.lost_to_gateway_kills

    @property
    def doubled(self) -> int:
        return max(0, self.stored - self.successes - self.ambiguous)

    @property
    def availability(self) -> float:
        total = self.successes + self.failures
        return self.successes / total if total else 1.0

    @property
    def all_normal(self) -> bool:
        return all(mode == "redis" for mode in self.final_modes)

    def render(self) -> str:
        """The summary and the per-fault table."""
        c = self.config
        lines = [
            f"soak: seed {c.seed}, {self.elapsed_s:.1f} s, {c.gateways} gateways, "
            f"{c.clients} clients, appendfsync {c.fsync}",
            f"requests      {self.successes + self.failures:,} "
            f"({self.successes / self.elapsed_s:,.0f} 200s/s)",
            f"200s          {self.successes:,}",
            f"failed        {self.failures:,} ({self.ambiguous:,} without an HTTP answer)",
            f"stored        {self.stored:,} (usageCount sum)",
            f"lost, storage {self.lost_to_storage:,}",
            f"lost, kills   {self.lost_to_gateway_kills:,} (bound {self.kill_bound:,})",
            f"doubled       {self.doubled:,}",
            f"availability  {self.availability:.4%}",
            f"rollbacks     {self.rollbacks_logged} detected (gateway logs)",
            f"final modes   {', '.join(self.final_modes)}",
            "",
        ]
        header = ("#", "fault", "at s", "fault s", "normal after s", "200s", "failed", "avail")
        rows = [header]
        for index, w in enumerate(self.windows, 1):
            back = "–" if w.normal is None else f"{w.normal - w.start:.1f}"
            rows.append(
                (
                    str(index),
                    w.fault.describe(),
                    f"{w.start:.1f}",
                    f"{w.end - w.start:.1f}",
                    back,
                    f"{w.ok:,}",
                    f"{w.failed:,}",
                    f"{w.availability:.2%}",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            cells = [
                cell.ljust(width) if i == 1 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
        lines.extend(f"failure: {sample}" for sample in self.failure_samples)
        lines.extend(f"PROBLEM {problem}" for problem in self.problems)
        return "\n".join(lines)


@attrs.define
class Clients:
    """``count`` client tasks; task *i* is homed on gateway ``i % len(urls)`` and moves to
    the next one while its home is down (``urls[i]`` is None). Every answer is kept as
    ``(finished at, ok, answered)`` in seconds since ``t0``."""

    session: aiohttp.ClientSession
    urls: list[str | None]
    count: int
    t0: float
    outcomes: list[tuple[float, bool, bool]] = attrs.Factory(list)
    samples: list[str] = attrs.Factory(list)
    _stopping: bool = False
    _tasks: list[asyncio.Task[None]] = attrs.Factory(list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(i)) for i in range(self.count)]

    def homed(self, gateway: int) -> int:
        return len(range(gateway, self.count, len(self.urls)))

    @property
    def successes(self) -> int:
        return sum(1 for _, ok, _ in self.outcomes if ok)

    async def stop(self) -> None:
        self._stopping = True
        await asyncio.wait_for(asyncio.gather(*self._tasks), REQUEST_S + 5)

    async def cancel(self) -> None:
        """End every task now (a run that failed half-way)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, worker: int) -> None:
        home = worker % len(self.urls)
        while not self._stopping:
            url = next(
                (
                    u
                    for k in range(len(self.urls))
                    if (u := self.urls[(home + k) % len(self.urls)]) is not None
                ),
                None,
            )
            if url is None:  # every gateway down: not a fault this soak makes
                raise RuntimeError("no gateway is up")
            ok, answered, error = await self._one(url)
            self.outcomes.append((time.monotonic() - self.t0, ok, answered))
            if error and len(self.samples) < 5:
                self.samples.append(error)

    async def _one(self, url: str) -> tuple[bool, bool, str]:
        body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        try:
            async with self.session.post(
                f"{url}/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {KEY}"},
            ) as response:
                data = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return False, False, f"{url}: {type(exc).__name__}: {exc}"
        if response.status == 200 and b'"content":"ok"' in data.replace(b" ", b""):
            return True, True, ""
        return False, True, f"{url}: status {response.status}: {data[:200]!r}"


class Soak:
    """The running system: Redis, the proxies, the gateways and the clients."""

    def __init__(
        self,
        config: SoakConfig,
        root: Path,
        redis: RedisServerProcess,
        proxies: list[FaultProxy],
        session: aiohttp.ClientSession,
        prefix: str,
    ) -> None:
        self.config = config
        self.root = root
        self.redis = redis
        self.proxies = proxies
        self.session = session
        self.prefix = prefix
        self.gateways: list[GatewayProcess] = []
        self.rollbacks = 0
        self.problems: list[str] = []
        self.t0 = time.monotonic()
        self.clients = Clients(session, [], config.clients, self.t0)

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def start_gateway(self, index: int) -> GatewayProcess:
        return await start_gateway(
            self.root / f"gw-{index}",
            name=f"gw-{index}",
            redis_url=self.proxies[index].url(),
            redis_prefix=self.prefix,
            client=self.session,
            extra_args=SERVE_ARGS,
            env=GATEWAY_ENV,
        )

    def _count_rollbacks(self, gateway: GatewayProcess) -> None:
        """Its log is rewritten on a restart: count its rollback lines before that."""
        self.rollbacks += len(gateway.log_lines(ROLLBACK_LOG))

    async def modes(self) -> list[str]:
        async def one(gateway: GatewayProcess) -> str:
            try:
                return str((await gateway.health(self.session))["storage"])
            except (aiohttp.ClientError, TimeoutError, AssertionError) as exc:
                return f"unanswered ({type(exc).__name__})"

        return list(await asyncio.gather(*(one(g) for g in self.gateways)))

    async def wait_normal(self, within: float) -> float | None:
        """Seconds since the start when every gateway reported ``redis``; None if not
        within ``within`` seconds."""
        try:
            await asyncio.gather(
                *(g.wait_storage(self.session, "redis", within=within) for g in self.gateways)
            )
        except AssertionError as exc:
            self.problems.append(f"at {self.now():.1f} s: {exc}")
            return None
        return self.now()

    async def inject(self, fault: Fault) -> None:
        """Make the fault happen; return when it is over (not when recovered)."""
        proxies = self.proxies if fault.target is None else [self.proxies[fault.target]]
        match fault.kind:
            case "redis-kill":
                await asyncio.to_thread(self.redis.kill)
                await asyncio.sleep(fault.duration_s)  # the outage itself
                await self.redis.arestart()
            case "redis-stop":
                self.redis.pause()
                await asyncio.sleep(fault.duration_s)
                self.redis.resume()
            case "reset":
                for _ in range(3):
                    for proxy in proxies:
                        proxy.reset_all()
                    await asyncio.sleep(fault.duration_s / 3)
            case "latency":
                for proxy in proxies:
                    proxy.latency_s = fault.latency_s
                await asyncio.sleep(fault.duration_s)
                for proxy in proxies:
                    proxy.latency_s = 0.0
            case "host-crash":
                await self.host_crash(fault.duration_s)
            case "gateway-kill":
                await self.gateway_kill(fault.target or 0)
            case _:
                raise ValueError(f"unknown fault {fault.kind!r}")

    async def host_crash(self, down_s: float) -> None:
        aof = self.redis.dir / "appendonlydir"
        earlier = self.root / "appendonlydir-earlier"
        await asyncio.to_thread(shutil.rmtree, earlier, True)
        await asyncio.to_thread(shutil.copytree, aof, earlier)
        await asyncio.sleep(HOST_CRASH_LAG_S)  # load the disk will "not have fsynced"
        await asyncio.to_thread(self.redis.kill)
        await asyncio.to_thread(shutil.rmtree, aof)
        await asyncio.to_thread(shutil.copytree, earlier, aof)
        await asyncio.sleep(min(down_s, 1.5))  # the reboot
        await self.redis.arestart()

    async def gateway_kill(self, index: int) -> None:
        victim = self.gateways[index]
        # Down for the clients and killed in one step (no await between): the clients
        # homed there have their requests in flight on it and move on afterwards.
        self.clients.urls[index] = None
        victim.process.send_signal(signal.SIGKILL)
        await victim.kill()
        self._count_rollbacks(victim)
        self.gateways[index] = await self.start_gateway(index)
        self.clients.urls[index] = self.gateways[index].url

    async def run(self) -> SoakResult:
        config = self.config
        self.gateways = list(
            await asyncio.gather(*(self.start_gateway(i) for i in range(config.gateways)))
        )
        self.t0 = time.monotonic()
        self.clients = Clients(
            self.session, [g.url for g in self.gateways], config.clients, self.t0
        )
        self.clients.start()
        windows: list[Window] = []
        await asyncio.sleep(min(3.0, config.seconds / 10))  # warm-up under load
        for fault in plan(config):
            required_left = {k for k in config.required if k not in {w.fault.kind for w in windows}}
            if self.now() > config.seconds - END_MARGIN_S and not required_left:
                break
            window = Window(fault, self.now())
            windows.append(window)
            await self.inject(fault)
            window.end = self.now()
            window.normal = await self.wait_normal(config.recover_s)
            await asyncio.sleep(fault.gap_s)  # quiet load between faults
        left = config.seconds - self.now()
        if left > 0:
            await asyncio.sleep(left)
        await self.clients.stop()
        elapsed = self.now()
        await self.wait_normal(RECOVER_S)
        final_modes = await self.modes()
        for gateway in self.gateways:
            await gateway.terminate()
            self._count_rollbacks(gateway)
        usage = await usage_in_redis(self.redis.url, self.prefix)
        outcomes = self.clients.outcomes
        for window in windows:
            until = window.normal if window.normal is not None else elapsed
            inside = [ok for t, ok, _ in outcomes if window.start <= t <= until]
            window.ok = sum(inside)
            window.failed = len(inside) - window.ok
        successes = self.clients.successes
        kill_bound = sum(
            lost_bound(self.clients.homed(w.fault.target or 0))
            for w in windows
            if w.fault.kind == "gateway-kill"
        )
        return SoakResult(
            config=config,
            elapsed_s=elapsed,
            successes=successes,
            failures=len(outcomes) - successes,
            ambiguous=sum(1 for _, ok, answered in outcomes if not ok and not answered),
            stored=sum(usage.values()),
            kill_bound=kill_bound,
            windows=windows,
            final_modes=final_modes,
            rollbacks_logged=self.rollbacks,
            failure_samples=self.clients.samples,
            problems=self.problems,
        )


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[str]:
    """A temporary directory, removed afterwards unless ``keep`` (gateway logs, journals)."""
    if keep:
        path = tempfile.mkdtemp(prefix="cfgstore-soak-")
        print(f"gateway logs and state kept in {path}", flush=True)
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="cfgstore-soak-") as path:
            yield path


@contextlib.asynccontextmanager
async def _system(config: SoakConfig) -> AsyncIterator[Soak]:
    aof = ("--appendonly", "yes", "--appendfsync", config.fsync)
    no_rewrite = ("--auto-aof-rewrite-percentage", "0")  # the AOF copy stays one file set
    with (
        _workdir(config.keep) as tmp,
        RedisServerProcess(extra_args=aof + no_rewrite) as redis,
    ):
        proxies = [FaultProxy("127.0.0.1", redis.port) for _ in range(config.gateways)]
        connector = aiohttp.TCPConnector(limit=config.clients + 4 * config.gateways)
        timeout = aiohttp.ClientTimeout(total=REQUEST_S)
        soak: Soak | None = None
        try:
            for proxy in proxies:
                await proxy.start()
            async with (
                UpstreamStub() as upstream,
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            ):
                prefix = f"soak{config.seed}"
                await seed(redis.url, prefix, upstream.base_url)
                soak = Soak(config, Path(tmp), redis, proxies, session, prefix)
                yield soak
        finally:
            if soak is not None:
                await soak.clients.cancel()
                for gateway in soak.gateways:
                    if gateway.running:
                        await gateway.kill()
            for proxy in proxies:
                await proxy.close()


async def soak(config: SoakConfig) -> SoakResult:
    """Run the soak described by ``config`` on a private Redis; the checker's result."""
    kinds = {*config.required, *config.faults}
    if "gateway-kill" in kinds and config.gateways < 2:
        raise ValueError("gateway-kill needs at least 2 gateways (the clients move over)")
    async with _system(config) as system:
        return await system.run()


def _kinds(value: str) -> tuple[str, ...]:
    kinds = tuple(kind for kind in value.split(",") if kind)
    unknown = [kind for kind in kinds if kind not in FAULTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown fault {', '.join(unknown)} (known: {FAULTS})")
    return kinds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--fsync", choices=("everysec", "always", "no"), default="everysec")
    parser.add_argument(
        "--faults",
        type=_kinds,
        default=FAULTS,
        help=f"comma-separated kinds to draw from (default: all: {','.join(FAULTS)})",
    )
    parser.add_argument(
        "--required",
        type=_kinds,
        default=REQUIRED,
        help=f"kinds run first, at least once (default: {','.join(REQUIRED)}; '' for none)",
    )
    parser.add_argument(
        "--recover-s",
        type=float,
        default=60.0,
        help="wait at most this long after a fault for every gateway to be normal",
    )
    parser.add_argument("--keep", action="store_true", help="keep gateway logs and state")
    args = parser.parse_args(argv)
    chosen = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    config = SoakConfig(
        seconds=args.seconds,
        seed=chosen,
        gateways=args.gateways,
        clients=args.clients,
        fsync=args.fsync,
        required=args.required,
        faults=args.faults,
        recover_s=args.recover_s,
        keep=args.keep,
    )
    print(f"seed {chosen} (repeat with --seed {chosen})", flush=True)
    try:
        result = asyncio.run(soak(config))
    except ValueError as exc:
        parser.error(str(exc))
    print(result.render())
    bad = result.lost_to_storage or result.doubled or not result.all_normal
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
