"""The gateway (:mod:`cfgstore_gateway`) under HTTP load: what the storage costs a request,
what the HTTP stack costs, and what a SIGKILL loses.

Every server here is a separate process, so the measured one has a core of its own: on a
machine with ≥ 2 CPUs the server under test (gateway or pass-through proxy) is pinned to
the first CPU of this process's affinity set and everything else — the upstream stub, the
load generator, the private ``redis-server`` and this orchestrating process — to the
others. Processes:

* **upstream stub** (``python -m bench.bench_gateway stub``): a raw asyncio protocol on a
  free loopback port that answers every ``POST …/chat/completions`` at once with the same
  small OpenAI chat completion (~300 bytes, ``Content-Length``, keep-alive). No parsing
  beyond the request framing, so it costs a few µs per request.
* **load generator** (``… load``, one process for the whole benchmark): 200 keep-alive
  connections (opened one after another), one asyncio task each, sending the same
  non-streaming ``POST /v1/chat/completions`` (``{"model": "gpt-4o", "messages": […]}``,
  the client key as bearer) and reading the whole answer with a minimal HTTP/1.1 client on
  asyncio streams (~30 µs of CPU per request, far less than the gateway). Per phase:
  5 warm-up requests per connection (connections, pools and caches warm), then the timed
  requests shared by the 200 tasks. Latency = request written → last body byte read.
* **gateway** (``… gateway``): :func:`cfgstore_gateway.app.create_app` over a Store, run
  like :func:`cfgstore_gateway.serve.run_gateway` runs it (``AppRunner`` with
  ``access_log=None``, default :class:`~cfgstore_gateway.services.GatewayOptions`), logging
  at WARNING (so without the per-request INFO line that ``cfgctl serve`` logs by default).
  Stopped with SIGTERM: graceful stop, then ``store.flush()`` and close.

Ten ``openai-custom`` nodes (API key inline, ``OPENAI_BASE_URL`` = the stub) form the pool;
``config.json`` has the client key, ``MODEL_PROVIDER`` ``openai-custom`` and
``MAX_ERROR_COUNT`` 3. Each request therefore does: key check, body parse, pools view,
selection, one ``apply_records`` (``Selected``), the upstream call through the shared
``ClientSession``, ``record_success``, and the answer.

``gateway-storage`` — one gateway process per store, measured in interleaved rounds
    ``noop`` (baseline)
        :class:`bench.noop_backend.NoopBackend` alone (``backends=("noop",)``): fixed config
        and pools, every write discarded.
    ``redis``
        ``memory+redis`` (the service chain of the Redis mode) on the private
        ``redis-server``, a fresh prefix seeded as ``cfgctl init`` would, with config and
        nodes written through a Redis-only store; own state directory.
    ``file``
        ``memory+file`` on a temporary ``configs/`` folder (``config.json`` and
        ``provider_pools.json`` written beforehand), default debounce and watch interval.

    The three gateways run side by side (idle when not measured); the phases go round
    robin (noop, redis, file, noop, …; :data:`ROUNDS` rounds) so that a busier moment of
    the machine hits every store alike. A row adds up its rounds: ``ops`` = timed
    successes, ``seconds`` = the timed phases' wall time, p50/p99 over all its requests.
    The note gives the range of the per-round rates, the gateway's **process CPU time per
    request** over the timed phases (``utime + stime`` from ``/proc/<pid>/stat``, all
    threads, so the file store's writer threads count) and the share of a core that was,
    and for ``redis``/``file`` the **storage CPU per request** = that figure minus the
    ``noop`` gateway's (everything the store does in the gateway process: the memory
    layer, the replicator or the file flushes, redis-py, garbage). For ``redis`` also the
    CPU that redis-server spent per request (its process CPU over the same phases) and
    the script calls (``EVALSHA`` from ``INFO commandstats``) per request.

    Checks (else ``ERROR``): every timed and warm-up request answered 200; after the
    gateways stopped, the ``usageCount`` sum in Redis (read through a Redis-only store),
    resp. in ``provider_pools.json``, equals the successful responses of that gateway.

``gateway-http`` — the HTTP stack alone, in the same run
    A minimal pass-through proxy (``… passthrough``): read the client's body, POST it to
    the stub through one pooled client (512 connections), read the answer, return its body
    with its status and ``Content-Type``. No store, no auth, no selection.

    ``aiohttp`` (baseline)
        ``aiohttp.web`` server (``AppRunner``, ``access_log=None``) + ``aiohttp.ClientSession``
        — the gateway's stack.
    ``starlette-httpx``
        Starlette on uvicorn (``loop="asyncio"``, ``http="httptools"``: the C parser, no
        uvloop, so both use the standard event loop; access log off) + ``httpx.AsyncClient``
        (512 connections). An eighth of the requests: it is an order of magnitude slower.
    ``starlette-aiohttp``
        The same server with the aiohttp client: separates the server from the client.

    The alternatives need the ``bench`` dependency group (``uv sync --group bench``, or
    ``uv run --group bench python -m bench …``); without it their rows are left out and
    the aiohttp row's note says so. Every server binds with ``IPPROTO_TCP`` (see
    :func:`_listening_socket`).

    :data:`HTTP_ROUNDS` interleaved rounds; CPU per request as above.

``gateway-sigkill`` — what a SIGKILL loses, Redis mode
    A fresh ``memory+redis`` gateway under the same 200-connection load, killed with
    SIGKILL :data:`KILL_AFTER_S` after the timed phase began; the load generator's tasks
    stop at their first failed request. ``ops`` = timed requests answered 200,
    ``seconds`` = GO → kill. **Lost** = every request answered 200 (warm-up included)
    minus the ``usageCount`` sum in Redis afterwards. The gateway process reports the
    memory layer's own status (its ``pending records``: accepted, not yet confirmed by
    Redis = queued plus the batch in flight) every :data:`SAMPLE_MS` ms on its stdout;
    the note gives the last sample before the kill and its age, and the mean batch of the
    run (records / ``EVALSHA`` calls). Each request makes two records (``Selected``,
    ``Success``); only ``Success`` counts, so a backlog of B records stands for about B/2
    successes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib.util
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from bench.harness import BenchFailure, Row, percentile_ms, private_redis, scaled
from bench.noop_backend import NOOP, noop_plugins
from cfgstore.adapters import Settings, Store
from cfgstore.adapters.plugins import PluginSet
from cfgstore.adapters.settings import DEFAULT_FILE_CHAIN
from cfgstore.model import jsjson
from cfgstore.model.config import MainConfig
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import ProviderNode, ProviderPools, node_from_json
from cfgstore.model.versions import ABSENT_VERSION
from cfgstore_gateway.app import create_app
from cfgstore_gateway.selection import Choice, Selector
from cfgstore_gateway.services import SERVICES, GatewayOptions
from tests.support.namespace_seed import seed_namespace
from tests.support.redis_server import (
    RedisServerProcess,
)

NAME = "gateway"
STORAGE = "gateway-storage"
HTTP = "gateway-http"
KILL = "gateway-sigkill"

LOOPBACK = "127.0.0.1"
CONCURRENCY = 200
WARMUP_PER_CONNECTION = 5
ROUNDS = 4
REQUESTS_PER_PHASE = 6_000
"""Timed requests of one storage phase at scale 1 (× :data:`ROUNDS` per store)."""
HTTP_ROUNDS = 2
HTTP_REQUESTS_PER_PHASE = 6_000
KILL_AFTER_S = 1.5
KILL_MAX_RUN_S = 10.0
SAMPLE_MS = 5
NODES = 10
TYPE = "openai-custom"
MODEL = "gpt-4o"
CLIENT_KEY = "bench-gateway-client-key-0123456789"
CHAT_PATH = "/v1/chat/completions"
START_TIMEOUT_S = 60.0
PHASE_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0
ROOT = Path(__file__).resolve().parents[1]

REQUEST_BODY = json.dumps(
    {"model": MODEL, "messages": [{"role": "user", "content": "Say hi in one word."}]}
).encode()
STUB_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
    }
).encode()
STUB_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(STUB_BODY)).encode() + b"\r\n\r\n" + STUB_BODY
)


# =============================================================================== the run


def run(scale: float) -> list[Row]:
    """Every row of ``gateway-storage``, ``gateway-http`` and ``gateway-sigkill``."""
    per_phase = scaled(REQUESTS_PER_PHASE, scale, CONCURRENCY)
    http_per_phase = scaled(HTTP_REQUESTS_PER_PHASE, scale, CONCURRENCY)
    kill_after = max(0.3, KILL_AFTER_S * min(scale, 1.0))
    server = private_redis(NAME)
    cpus = _cpu_plan()
    previous = os.sched_getaffinity(0)
    with contextlib.ExitStack() as stack:
        stack.enter_context(server)
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cfgstore-bench-gw-")))
        if cpus is not None:
            os.sched_setaffinity(0, cpus.others)
            stack.callback(os.sched_setaffinity, 0, previous)
            _pin_all_threads(server.pid, cpus.others)
        others = None if cpus is None else cpus.others
        stub = stack.enter_context(_child("stub", {}, others))
        stub_port = int(stub.expect("READY").split()[1])
        stub_url = f"http://{LOOPBACK}:{stub_port}/v1"
        load = stack.enter_context(_child("load", {}, others))
        load.expect("READY")
        context = _Context(server, root, stub_url, load, cpus)
        rows = _storage(context, per_phase)
        rows += _http_stacks(context, http_per_phase)
        rows += _sigkill(context, kill_after)
    return rows


@attrs.frozen
class _Cpus:
    """Where the processes run: the server under test alone on ``server``."""

    server: set[int]
    others: set[int]


def _cpu_plan() -> _Cpus | None:
    """The server under test on the first allowed CPU, the rest on the others; ``None``
    (no pinning) with a single CPU."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    return _Cpus({allowed[0]}, set(allowed[1:]))


def _pin_all_threads(pid: int, cpus: set[int]) -> None:
    """Pin every thread of process ``pid`` (redis-server has a few) to ``cpus``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)


@attrs.define
class _Context:
    server: RedisServerProcess
    root: Path
    stub_url: str
    load: _Child
    cpus: _Cpus | None

    @property
    def server_cpus(self) -> set[int] | None:
        return None if self.cpus is None else self.cpus.server


# ============================================================================= processes


class _Child:
    """A child process of this module (``python -m bench.bench_gateway ROLE SPEC``): its
    stdout lines go to a queue (``PENDING`` samples to :attr:`samples`), its stderr to a
    file, shown when something goes wrong."""

    def __init__(self, role: str, spec: Mapping[str, Any], cpus: set[int] | None) -> None:
        self.role = role
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        payload = {**spec, "cpus": sorted(cpus) if cpus is not None else None}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_gateway", role, json.dumps(payload)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.samples: list[tuple[float, int]] = []
        self._reader = threading.Thread(target=self._read, name=f"bench-{role}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("PENDING "):
                _, at, pending = line.split()
                self.samples.append((float(at), int(pending)))
            else:
                self.lines.put(line)
        self.lines.put(None)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def expect(self, prefix: str, timeout: float = START_TIMEOUT_S) -> str:
        """The next stdout line starting with ``prefix``; fails on EOF or time-out."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchFailure(
                    f"{NAME}: {self.role} said no {prefix!r} within {timeout:.0f} s"
                    f"{self.stderr_tail()}"
                ) from None
            if line is None:
                raise BenchFailure(
                    f"{NAME}: {self.role} exited ({self.process.wait()}) before {prefix!r}"
                    f"{self.stderr_tail()}"
                )
            if line.startswith(prefix):
                return line

    def stderr_tail(self, lines: int = 15) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip().splitlines()
        return ("; stderr: " + " | ".join(text[-lines:])) if text else ""

    def stop(self) -> int:
        """SIGTERM (graceful stop) and wait; SIGKILL after :data:`STOP_TIMEOUT_S`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise BenchFailure(f"{NAME}: {self.role} did not stop{self.stderr_tail()}") from None

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(BenchFailure):
                self.stop()
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        self._reader.join(timeout=5)
        self._stderr.close()


@contextlib.contextmanager
def _child(role: str, spec: Mapping[str, Any], cpus: set[int] | None) -> Iterator[_Child]:
    child = _Child(role, spec, cpus)
    try:
        yield child
    finally:
        child.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads, dead ones included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


@attrs.frozen
class _Phase:
    """One timed phase of the load generator against one server."""

    ok: int
    """Timed requests answered 200."""
    warm_ok: int
    failed: int
    """Timed or warm-up requests not answered 200 (or not answered at all)."""
    statuses: dict[str, int]
    seconds: float
    latencies: list[float]
    cpu: float
    """CPU seconds of the server process during the timed part."""
    extra_cpu: float = 0.0
    """CPU seconds of redis-server during the timed part (Redis phases)."""
    evalsha: tuple[int, int] = (0, 0)
    """``EVALSHA`` (calls, µs) on the server during the timed part (Redis phases)."""

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def _phase(
    context: _Context,
    target: _Child,
    port: int,
    total: int,
    *,
    redis_pid: int | None = None,
) -> _Phase:
    """Warm up, then ``total`` timed requests from the load generator against ``port``;
    the CPU of ``target`` (and of ``redis_pid``) measured over the timed part only."""
    load = context.load
    spec = {
        "port": port,
        "concurrency": CONCURRENCY,
        "warmup": WARMUP_PER_CONNECTION,
        "total": total,
    }
    load.send("RUN " + json.dumps(spec))
    load.expect("WARMED", PHASE_TIMEOUT_S)
    cpu0 = _cpu_seconds(target.pid)
    extra0 = _cpu_seconds(redis_pid) if redis_pid is not None else 0.0
    evalsha0 = _evalsha(context.server.url) if redis_pid is not None else (0, 0)
    load.send("GO")
    result = json.loads(load.expect("RESULT", PHASE_TIMEOUT_S).split(" ", 1)[1])
    cpu = _cpu_seconds(target.pid) - cpu0
    extra = _cpu_seconds(redis_pid) - extra0 if redis_pid is not None else 0.0
    evalsha1 = _evalsha(context.server.url) if redis_pid is not None else (0, 0)
    return _Phase(
        ok=result["ok"],
        warm_ok=result["warm_ok"],
        failed=result["failed"],
        statuses=result["statuses"],
        seconds=result["seconds"],
        latencies=result["latencies"],
        cpu=cpu,
        extra_cpu=extra,
        evalsha=(evalsha1[0] - evalsha0[0], evalsha1[1] - evalsha0[1]),
    )


def _evalsha(url: str) -> tuple[int, int]:
    """``EVALSHA`` calls and total µs so far on the server (``INFO commandstats``)."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    entry = stats.get("cmdstat_evalsha", {})
    return int(entry.get("calls", 0)), int(entry.get("usec", 0))


def _check_phase(where: str, phase: _Phase) -> None:
    if phase.failed:
        raise BenchFailure(
            f"{where}: {phase.failed} requests not answered 200 (statuses {phase.statuses})"
        )


@attrs.define
class _Series:
    """The phases of one variant, added up."""

    phases: list[_Phase] = attrs.Factory(list)

    @property
    def ok(self) -> int:
        return sum(p.ok for p in self.phases)

    @property
    def served(self) -> int:
        """Every 200 of the variant (warm-up included): what the store must have counted."""
        return sum(p.ok + p.warm_ok for p in self.phases)

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.phases)

    @property
    def cpu_us(self) -> float:
        """Server CPU µs per timed request."""
        return sum(p.cpu for p in self.phases) / max(self.ok, 1) * 1e6

    @property
    def core_share(self) -> float:
        return sum(p.cpu for p in self.phases) / self.seconds if self.seconds > 0 else 0.0

    def rates(self) -> str:
        rates = [p.rate for p in self.phases]
        return f"{min(rates):,.0f}–{max(rates):,.0f}/s" if len(rates) > 1 else f"{rates[0]:,.0f}/s"

    def row(self, benchmark: str, variant: str, baseline: str, note: str) -> Row:
        latencies = [x for p in self.phases for x in p.latencies]
        return Row(
            benchmark,
            variant,
            self.ok,
            self.seconds,
            baseline,
            note,
            p50_ms=percentile_ms(latencies, 0.50),
            p99_ms=percentile_ms(latencies, 0.99),
        )


# ============================================================================ deployments


def _node_documents(stub_url: str, count: int = NODES) -> list[dict[str, JSONValue]]:
    """The pool: ``count`` API-key nodes pointing at the stub."""
    return [
        {
            "customName": f"bench node {index}",
            "OPENAI_API_KEY": f"sk-bench-{index:04d}-0123456789abcdef",
            "OPENAI_BASE_URL": stub_url,
            "uuid": str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"bench-gateway/{index}")),
            "isHealthy": True,
            "isDisabled": False,
            "lastUsed": None,
            "usageCount": 0,
            "errorCount": 0,
            "lastErrorTime": None,
        }
        for index in range(count)
    ]


def _config_document() -> dict[str, JSONValue]:
    return {"REQUIRED_API_KEY": CLIENT_KEY, "MODEL_PROVIDER": TYPE, "MAX_ERROR_COUNT": 3}


def _redis_only(url: str, prefix: str) -> Settings:
    return Settings(backends=("redis",), redis_url=url, redis_prefix=prefix)


async def _seed_redis(url: str, prefix: str, stub_url: str, nodes: int = NODES) -> None:
    """Initialise namespace ``{prefix}`` and write the config and ``nodes`` nodes (one
    import: what ``cfgctl migrate`` does with a ``provider_pools.json``)."""
    await asyncio.to_thread(seed_namespace, url, prefix)
    async with Store.open(_redis_only(url, prefix)) as admin:
        await admin.config.put(_config_document(), ABSENT_VERSION)
        documents = _node_documents(stub_url, nodes)
        pools = ProviderPools({TYPE: [node_from_json(d, "bench") for d in documents]})
        await admin.pools.import_all(pools, keep_live_state=False)


async def _redis_usage(url: str, prefix: str) -> int:
    """The ``usageCount`` sum of the pool in Redis."""
    async with Store.open(_redis_only(url, prefix)) as admin:
        pools = await admin.pools.list()
    return sum(node.state.usage_count for _, node in pools)


def _file_usage(configs: Path) -> int:
    document = json.loads((configs / "provider_pools.json").read_bytes())
    return sum(int(node.get("usageCount", 0)) for node in document.get(TYPE, []))


def _gateway_spec(context: _Context, kind: str, **extra: Any) -> dict[str, Any]:
    """What a gateway child needs to open its store (``kind``: noop, redis, file)."""
    state = context.root / f"state-{kind}-{uuidlib.uuid4().hex[:6]}"
    spec: dict[str, Any] = {"kind": kind, "state_dir": str(state), **extra}
    if kind == "noop":
        spec["stub_url"] = context.stub_url
    elif kind == "redis":
        spec["redis_url"] = context.server.url
        spec["prefix"] = f"bench-gw-{uuidlib.uuid4().hex[:8]}"
        nodes = int(spec.get("nodes", NODES))
        asyncio.run(_seed_redis(context.server.url, spec["prefix"], context.stub_url, nodes))
    else:
        configs = context.root / f"configs-{uuidlib.uuid4().hex[:6]}"
        configs.mkdir()
        (configs / "config.json").write_bytes(jsjson.dump_bytes(_config_document()))
        pools: dict[str, JSONValue] = {TYPE: list(_node_documents(context.stub_url))}
        (configs / "provider_pools.json").write_bytes(jsjson.dump_bytes(pools))
        spec["configs_dir"] = str(configs)
    return spec


# ======================================================================= gateway-storage


STORES = ("noop", "redis", "file")


def _storage(context: _Context, per_phase: int) -> list[Row]:
    """The ``gateway-storage`` rows: three gateways, phases round robin."""
    specs = {kind: _gateway_spec(context, kind) for kind in STORES}
    series = {kind: _Series() for kind in STORES}
    with contextlib.ExitStack() as stack:
        gateways = {
            kind: stack.enter_context(_child("gateway", specs[kind], context.server_cpus))
            for kind in STORES
        }
        ports = {kind: int(gateways[kind].expect("READY").split()[1]) for kind in STORES}
        for _ in range(ROUNDS):
            for kind in STORES:
                redis_pid = context.server.pid if kind == "redis" else None
                phase = _phase(context, gateways[kind], ports[kind], per_phase, redis_pid=redis_pid)
                _check_phase(f"{STORAGE}/{kind}", phase)
                series[kind].phases.append(phase)
        for kind in STORES:
            status = gateways[kind].stop()
            if status != 0:
                raise BenchFailure(
                    f"{STORAGE}/{kind}: gateway exited with {status}{gateways[kind].stderr_tail()}"
                )
    # Every success counted once, after the graceful stop flushed.
    redis_spec, file_spec = specs["redis"], specs["file"]
    counted = {
        "redis": asyncio.run(_redis_usage(redis_spec["redis_url"], redis_spec["prefix"])),
        "file": _file_usage(Path(file_spec["configs_dir"])),
    }
    for kind, usage in counted.items():
        if usage != series[kind].served:
            raise BenchFailure(
                f"{STORAGE}/{kind}: usageCount sum {usage:,} after the stop, "
                f"expected {series[kind].served:,} (successful responses)"
            )
    base = series["noop"]
    rows: list[Row] = []
    for kind in STORES:
        s = series[kind]
        note = (
            f"rounds {s.rates()}; gateway CPU {s.cpu_us:,.0f} µs/req ({s.core_share:.0%} of a core)"
        )
        if kind != "noop":
            note += f", storage {s.cpu_us - base.cpu_us:+,.0f} µs/req vs noop"
        if kind == "redis":
            calls = sum(p.evalsha[0] for p in s.phases)
            usec = sum(p.evalsha[1] for p in s.phases)
            server_cpu = sum(p.extra_cpu for p in s.phases) / max(s.ok, 1) * 1e6
            note += (
                f"; redis-server {server_cpu:,.0f} µs/req CPU ({usec / max(s.ok, 1):,.0f} in "
                f"EVALSHA), {calls / max(s.ok, 1):.2f} EVALSHA/req "
                f"({2 * s.ok / max(calls, 1):,.1f} records/batch)"
            )
        if kind in counted:
            note += f"; usageCount {counted[kind]:,} = responses"
        rows.append(s.row(STORAGE, kind, "noop", note))
    return rows


# ========================================================================== gateway-http


@attrs.frozen
class _Stack:
    """One pass-through proxy of ``gateway-http``."""

    label: str
    modules: tuple[str, ...]
    """Modules it needs beyond the default environment (the ``bench`` group)."""
    share: float = 1.0
    """Its requests per phase, relative to the others (httpx is slow: fewer)."""


STACKS: dict[str, _Stack] = {
    "aiohttp": _Stack("aiohttp.web + aiohttp.ClientSession (the gateway's stack)", ()),
    "starlette-httpx": _Stack(
        "starlette + uvicorn (httptools, asyncio loop) + httpx.AsyncClient",
        ("starlette", "uvicorn", "httptools", "httpx", "sniffio"),
        share=0.125,
    ),
    "starlette-aiohttp": _Stack(
        "starlette + uvicorn (httptools, asyncio loop) + aiohttp.ClientSession",
        ("starlette", "uvicorn", "httptools"),
    ),
}


def _http_stacks(context: _Context, per_phase: int) -> list[Row]:
    """The ``gateway-http`` rows: pass-through proxies, phases round robin."""
    missing = {
        name: [m for m in stack.modules if importlib.util.find_spec(m) is None]
        for name, stack in STACKS.items()
    }
    names = [name for name in STACKS if not missing[name]]
    series = {name: _Series() for name in names}
    with contextlib.ExitStack() as exits:
        proxies = {
            name: exits.enter_context(
                _child(
                    "passthrough",
                    {"stack": name, "upstream": context.stub_url},
                    context.server_cpus,
                )
            )
            for name in names
        }
        ports = {name: int(proxies[name].expect("READY").split()[1]) for name in names}
        for _ in range(HTTP_ROUNDS):
            for name in names:
                total = max(CONCURRENCY, round(per_phase * STACKS[name].share))
                phase = _phase(context, proxies[name], ports[name], total)
                _check_phase(f"{HTTP}/{name}", phase)
                series[name].phases.append(phase)
    rows: list[Row] = []
    for name in names:
        s = series[name]
        note = (
            f"{STACKS[name].label}; rounds {s.rates()}; proxy CPU {s.cpu_us:,.0f} µs/req "
            f"({s.core_share:.0%} of a core)"
        )
        absent = sorted({m for other in STACKS for m in missing[other]})
        if name == "aiohttp" and absent:
            skipped = ", ".join(n for n in STACKS if missing[n])
            note += (
                f"; not measured: {skipped} ({', '.join(absent)} not installed: "
                "uv sync --group bench)"
            )
        rows.append(s.row(HTTP, name, "aiohttp", note))
    return rows


# ======================================================================= gateway-sigkill


def _sigkill(context: _Context, kill_after: float) -> list[Row]:
    """The ``gateway-sigkill`` row: kill -9 a Redis gateway under load, count the loss."""
    spec = _gateway_spec(context, "redis", sample_ms=SAMPLE_MS)
    load = context.load
    with _child("gateway", spec, context.server_cpus) as gateway:
        port = int(gateway.expect("READY").split()[1])
        run_spec = {
            "port": port,
            "concurrency": CONCURRENCY,
            "warmup": WARMUP_PER_CONNECTION,
            "duration": KILL_MAX_RUN_S,
        }
        load.send("RUN " + json.dumps(run_spec))
        load.expect("WARMED", PHASE_TIMEOUT_S)
        calls0 = _evalsha(context.server.url)[0]
        load.send("GO")
        started = time.monotonic()
        time.sleep(kill_after)
        killed_at = time.monotonic()
        os.kill(gateway.pid, signal.SIGKILL)
        gateway.process.wait()
        result = json.loads(load.expect("RESULT", PHASE_TIMEOUT_S).split(" ", 1)[1])
        samples = [s for s in gateway.samples if s[0] <= killed_at]
    time.sleep(0.2)  # a script call already sent is still applied by the server
    calls = _evalsha(context.server.url)[0] - calls0
    usage = asyncio.run(_redis_usage(context.server.url, spec["prefix"]))
    served = result["ok"] + result["warm_ok"]
    lost = served - usage
    if samples:
        at, pending = samples[-1]
        backlog = (
            f"memory layer's pending records at the kill: {pending} "
            f"(≈ {pending / 2:,.0f} successes; sampled every {SAMPLE_MS} ms, "
            f"last {(killed_at - at) * 1000:.1f} ms before the kill; "
            f"max over the run {max(p for _, p in samples)})"
        )
    else:
        backlog = "no backlog sample before the kill"
    note = (
        f"SIGKILL after {killed_at - started:.2f} s; {served:,} answered 200 (warm-up incl.), "
        f"usageCount in Redis {usage:,} → lost {lost:,}; {backlog}; "
        f"mean batch {2 * result['ok'] / max(calls, 1):,.1f} records ({calls:,} EVALSHA)"
    )
    return [Row(KILL, "redis-kill9", result["ok"], killed_at - started, "redis-kill9", note)]


# ========================================================================= child processes


def _child_main(role: str, spec: dict[str, Any]) -> int:
    """Entry point of a child process (see the module docstring)."""
    if spec.get("cpus"):
        os.sched_setaffinity(0, set(spec["cpus"]))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if role == "stub":
        asyncio.run(_stub_main())
    elif role == "load":
        asyncio.run(_load_main())
    elif role == "gateway":
        asyncio.run(_gateway_main(spec))
    elif role == "passthrough":
        if spec["stack"] == "aiohttp":
            asyncio.run(_aiohttp_passthrough(spec["upstream"]))
        else:
            asyncio.run(_starlette_passthrough(spec["upstream"], spec["stack"]))
    else:
        raise SystemExit(f"unknown role {role}")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def _stop_event() -> asyncio.Event:
    """Set on SIGTERM / SIGINT or when stdin closes (the orchestrator went away)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    _on_stdin_eof(stop.set)
    return stop


def _on_stdin_eof(callback: Callable[[], object]) -> None:
    """Call ``callback`` (on the event loop) once stdin reaches its end."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(fd)
            callback()

    loop.add_reader(fd, readable)


def _listening_socket() -> Any:
    """A bound loopback socket on a free port. ``IPPROTO_TCP`` explicitly, as
    ``loop.create_server(host=…)`` makes them: asyncio sets ``TCP_NODELAY`` on accepted
    connections only for such sockets (with ``proto`` 0, uvicorn's two writes per answer
    meet Nagle and delayed ACKs: ~40 ms per request; aiohttp sets it itself)."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    return sock


# -- upstream stub ------------------------------------------------------------------------


class _StubProtocol(asyncio.Protocol):
    """Answers every complete HTTP/1.1 request (``Content-Length`` framing) with
    :data:`STUB_RESPONSE`."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        assert self._transport is not None
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                if b"transfer-encoding" in head:
                    print("stub: chunked request bodies are not supported", file=sys.stderr)
                    self._transport.close()
                    return
                length = 0
            else:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            total = end + 4 + length
            if len(buffer) < total:
                return
            del buffer[:total]
            self._transport.write(STUB_RESPONSE)


async def _stub_main() -> None:
    stop = _stop_event()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_StubProtocol, sock=_listening_socket(), backlog=1024)
    _say(f"READY {server.sockets[0].getsockname()[1]}")
    await stop.wait()
    server.close()


# -- load generator -----------------------------------------------------------------------


def _request_bytes(port: int) -> bytes:
    head = (
        f"POST {CHAT_PATH} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
        f"Authorization: Bearer {CLIENT_KEY}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nContent-Length: {len(REQUEST_BODY)}\r\n\r\n"
    )
    return head.encode() + REQUEST_BODY


async def _roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> int:
    """Send one request, read the whole answer; its status."""
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        await reader.readexactly(int(lower[at + 17 : lower.index(b"\r\n", at + 2)]))
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        raise ValueError(f"an answer without length: {head[:200]!r}")
    if b"\r\nconnection: close" in lower:
        raise ConnectionResetError("the server closed the connection")
    return status


_FAILURES = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


async def _load_phase(spec: dict[str, Any], go: asyncio.Queue[str]) -> dict[str, Any]:
    """One ``RUN``: connect, warm up, say ``WARMED``, wait for ``GO``, run, return the
    result (see :func:`_load_main`)."""
    port = int(spec["port"])
    request = _request_bytes(port)
    connections = []
    for _ in range(int(spec["concurrency"])):
        connections.append(await asyncio.open_connection(LOOPBACK, port))
    statuses: Counter[str] = Counter()
    alive = [True] * len(connections)
    clock = time.perf_counter

    async def warm(index: int) -> int:
        reader, writer = connections[index]
        ok = 0
        for _ in range(int(spec["warmup"])):
            try:
                status = await _roundtrip(reader, writer, request)
            except _FAILURES as exc:
                statuses[type(exc).__name__] += 1
                alive[index] = False
                return ok
            statuses[str(status)] += 1
            ok += status == 200
        return ok

    warm_ok = sum(await asyncio.gather(*(warm(i) for i in range(len(connections)))))
    _say(f"WARMED {warm_ok}")
    await go.get()
    remaining = [int(spec["total"]) if spec.get("total") else 1 << 62]
    deadline = clock() + float(spec.get("duration") or PHASE_TIMEOUT_S)
    latencies: list[float] = []
    oks = [0]
    timed: Counter[str] = Counter()

    async def worker(index: int) -> None:
        if not alive[index]:
            return
        reader, writer = connections[index]
        while remaining[0] > 0 and clock() < deadline:
            remaining[0] -= 1
            began = clock()
            try:
                status = await _roundtrip(reader, writer, request)
            except _FAILURES as exc:
                timed[type(exc).__name__] += 1
                alive[index] = False
                return
            latencies.append(clock() - began)
            timed[str(status)] += 1
            if status == 200:
                oks[0] += 1

    started = clock()
    await asyncio.gather(*(worker(i) for i in range(len(connections))))
    seconds = clock() - started
    for _, writer in connections:
        writer.close()
    failed = sum(n for key, n in (statuses + timed).items() if key != "200")
    return {
        "ok": oks[0],
        "warm_ok": warm_ok,
        "failed": failed,
        "statuses": dict(statuses + timed),
        "seconds": seconds,
        "latencies": [round(x, 7) for x in latencies],
    }


async def _load_main() -> None:
    """Commands on stdin: ``RUN <json>`` (then ``GO``) → ``WARMED <n>`` … ``RESULT <json>``."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.strip())
        loop.call_soon_threadsafe(lines.put_nowait, "EOF")

    threading.Thread(target=read_stdin, daemon=True).start()
    _say("READY")
    while True:
        line = await lines.get()
        if line == "EOF":
            return
        if line.startswith("RUN "):
            result = await asyncio.wait_for(
                _load_phase(json.loads(line[4:]), lines), PHASE_TIMEOUT_S
            )
            _say("RESULT " + json.dumps(result))


# -- gateway ------------------------------------------------------------------------------


def _gateway_store(spec: dict[str, Any]) -> tuple[Settings, PluginSet | None]:
    """The settings (and for the no-op store the plugin set) of a gateway child."""
    state_dir = Path(spec["state_dir"])
    kind = spec["kind"]
    if kind == NOOP:
        pools = ProviderPools(
            {
                TYPE: [
                    node_from_json(d, "bench")
                    for d in _node_documents(spec["stub_url"], int(spec.get("nodes", NODES)))
                ]
            }
        )
        config = MainConfig(_config_document(), "1")
        return Settings(backends=(NOOP,), state_dir=state_dir), noop_plugins(pools, config)
    if kind == "redis":
        settings = Settings(
            backends=("memory", "redis"),
            redis_url=spec["redis_url"],
            redis_prefix=spec["prefix"],
            state_dir=state_dir,
            configs_dir=state_dir / "no-configs",
        )
        return settings, None
    settings = Settings(
        backends=DEFAULT_FILE_CHAIN, configs_dir=Path(spec["configs_dir"]), state_dir=state_dir
    )
    return settings, None


async def _sample_pending(store: Store, period_s: float) -> None:
    """Print the memory layer's ``pending records`` (its own status) every ``period_s``."""
    top = store._chain.layers[0]  # the memory layer's status alone: no Redis round trip
    status_of = top.lifecycle["cfgstore_status"]
    while True:
        status = await status_of()
        _say(f"PENDING {time.monotonic():.6f} {status.details.get('pending records', '-1')}")
        await asyncio.sleep(period_s)


def _window_selection(selector: Selector, window: int) -> None:
    """Make ``selector`` pick among ``window`` nodes of the pool, a window sliding one
    node per pick (so the picks still spread over every node): the rest of the gateway
    sees the whole pool, selection costs what it costs at ``window`` nodes. Isolates what
    else a large pool costs a request (``gateway-scale``'s ``…-window`` variant)."""
    select = selector.select
    offset = [0]

    def windowed(
        provider_type: str, nodes: Sequence[ProviderNode], model: str | None, **kw: Any
    ) -> Choice | None:
        if len(nodes) > window:
            start = offset[0] = (offset[0] + 1) % len(nodes)
            nodes = [*nodes[start : start + window], *nodes[: max(0, start + window - len(nodes))]]
        return select(provider_type, nodes, model, **kw)

    selector.select = windowed  # type: ignore[method-assign]


def _profiler(spec: Mapping[str, Any]) -> cProfile.Profile | None:
    """A running :mod:`cProfile` profiler when ``spec`` names a ``profile`` file (the
    stats are dumped there at the stop): how the per-request costs were found."""
    if not spec.get("profile"):
        return None
    profile = cProfile.Profile()
    profile.enable()
    return profile


async def _gateway_main(spec: dict[str, Any]) -> None:
    stop = _stop_event()
    settings, plugins = _gateway_store(spec)
    async with Store.open(settings, plugins=plugins) as store:
        app = create_app(store, options=GatewayOptions())
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=10)
        await runner.setup()
        if spec.get("select_window"):
            _window_selection(app[SERVICES].selector, int(spec["select_window"]))
        try:
            sock = _listening_socket()
            await web.SockSite(runner, sock).start()
            port = sock.getsockname()[1]
            sampler = None
            if spec.get("sample_ms"):
                sampler = asyncio.create_task(_sample_pending(store, spec["sample_ms"] / 1000))
            profile = _profiler(spec)
            _say(f"READY {port}")
            await stop.wait()
            if profile is not None:
                profile.disable()
                profile.dump_stats(spec["profile"])
            if sampler is not None:
                sampler.cancel()
        finally:
            await runner.cleanup()
        await store.flush()


# -- pass-through proxies -----------------------------------------------------------------


UPSTREAM_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json",
    "Authorization": "Bearer sk-bench-passthrough-0123456789",
}


Forward = Callable[[bytes], Awaitable[tuple[int, str, bytes]]]
"""POST a body to the upstream: (status, content type, body) of its answer."""


def _aiohttp_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=512, limit_per_host=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_read=600),
    )


def _aiohttp_forward(session: aiohttp.ClientSession, url: str) -> Forward:
    async def forward(body: bytes) -> tuple[int, str, bytes]:
        async with session.post(url, data=body, headers=UPSTREAM_HEADERS) as reply:
            data = await reply.read()
            return reply.status, reply.headers.get("Content-Type", "application/json"), data

    return forward


async def _aiohttp_passthrough(upstream: str) -> None:
    """aiohttp server + aiohttp client."""
    stop = _stop_event()
    session = _aiohttp_session()
    forward = _aiohttp_forward(session, upstream + "/chat/completions")

    async def chat(request: web.Request) -> web.Response:
        status, content_type, data = await forward(await request.read())
        return web.Response(body=data, status=status, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_post(CHAT_PATH, chat)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=10)
    await runner.setup()
    try:
        sock = _listening_socket()
        await web.SockSite(runner, sock).start()
        _say(f"READY {sock.getsockname()[1]}")
        await stop.wait()
    finally:
        await runner.cleanup()
        await session.close()


async def _starlette_passthrough(upstream: str, stack: str) -> None:
    """Starlette on uvicorn + httpx (``starlette-httpx``) or aiohttp (``starlette-aiohttp``)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    url = upstream + "/chat/completions"
    closers: list[Callable[[], Awaitable[None]]] = []
    if stack == "starlette-httpx":
        import httpx

        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=512),
            timeout=httpx.Timeout(600.0, connect=10.0, pool=30.0),
        )
        closers.append(client.aclose)

        async def httpx_forward(body: bytes) -> tuple[int, str, bytes]:
            reply = await client.post(url, content=body, headers=UPSTREAM_HEADERS)
            return reply.status_code, reply.headers.get("content-type", ""), reply.content

        forward: Forward = httpx_forward
    else:
        session = _aiohttp_session()
        closers.append(session.close)
        forward = _aiohttp_forward(session, url)

    async def chat(request: Request) -> Response:
        status, content_type, data = await forward(await request.body())
        return Response(data, status_code=status, media_type=content_type or "application/json")

    app = Starlette(routes=[Route(CHAT_PATH, chat, methods=["POST"])])
    sock = _listening_socket()
    config = uvicorn.Config(
        app,
        loop="asyncio",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=60,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
    _say(f"READY {sock.getsockname()[1]}")
    _on_stdin_eof(lambda: setattr(server, "should_exit", True))
    try:
        await task  # uvicorn handles SIGTERM itself (should_exit)
    finally:
        for close in closers:
            await close()


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_gateway")
    parser.add_argument("role", choices=["stub", "load", "gateway", "passthrough"])
    parser.add_argument("spec", nargs="?", default="{}")
    args = parser.parse_args(argv)
    return _child_main(args.role, json.loads(args.spec))


if __name__ == "__main__":
    sys.exit(_main())
