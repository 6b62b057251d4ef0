"""SC-003: config updates from the web UI cause no measurable delay to API requests.

One gateway instance (memory fallback over Redis) serves a 200-concurrency chat load
against a local upstream that takes :data:`UPSTREAM_DELAY_S` per answer, as real models do
(so the loop is busy but not saturated, and a stall shows). A probe task measures the
event loop's lag (how late a 5 ms sleep wakes up) during phases of equal load: load only,
load plus a burst of admin config writes and logins (PBKDF2 included), load only again,
and a control: load plus a password check run *on* the loop, the stall the design avoids.
The burst's lag is compared with the quieter plain phase by *ratios* with generous margins,
never an absolute time; the control must break the same ratio, which shows the probe can
see a stall on this machine (a test that could not fail would prove nothing).

Size: ``CFGSTORE_SC003_REQUESTS`` requests per phase (default 1200).
"""

from __future__ import annotations

import asyncio
import os
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import attrs
import pytest_asyncio
from aiohttp import web

from cfgstore.adapters import Store
from cfgstore.model.password import hash_password, verify_password
from cfgstore.model.pools import node_from_json
from tests.admin.conftest import PASSWORD, Admin, admin_gateway
from tests.gateway.conftest import CLIENT_KEY, TYPE, api_node, auth, serving
from tests.gateway.redis_instances import Namespace, delete_namespace, seeded_namespace
from tests.gateway.upstream_stub import completion

REQUESTS = int(os.environ.get("CFGSTORE_SC003_REQUESTS", "1200"))
UPSTREAM_DELAY_S = 0.4
CONCURRENCY = 200
PROBE_S = 0.005
P99_MARGIN = 3.5
"""Allowed ratio of the burst phase's 99th-percentile lag to the quiet one's (stalls;
measured 0.9–2.7 on a busy 2-core machine, where the PBKDF2 thread competes with the loop
for a core; the control 7–8)."""
MEAN_MARGIN = 4.0
"""Allowed ratio of mean lags (the admin calls are real work on the loop: measured
1.2–2.5, the control 20–40)."""


@pytest_asyncio.fixture
async def slow_upstream() -> AsyncIterator[str]:
    """A local upstream answering every chat request after :data:`UPSTREAM_DELAY_S`."""

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(UPSTREAM_DELAY_S)
        return web.json_response(completion(body["model"]))

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with serving(app) as url:
        yield url + "/v1"


@pytest_asyncio.fixture
async def namespace(redis_url: str, tmp_path: Path, slow_upstream: str) -> AsyncIterator[Namespace]:
    namespace = await seeded_namespace(redis_url, tmp_path, "sc3-")
    async with Store.open(namespace.redis_settings()) as store:
        config = await store.config.get()
        document = {
            **config.document,
            "REQUIRED_API_KEY": CLIENT_KEY,
            "MODEL_PROVIDER": TYPE,
            "REQUEST_MAX_RETRIES": 0,
            "LOGIN_MAX_ATTEMPTS": 1000,
        }
        await store.config.put(document, config.version)
        for index in range(4):
            node = api_node(f"n{index}", slow_upstream, f"sk-{index:032d}")
            await store.pools.add_node(TYPE, node_from_json(node, "test"))
    try:
        yield namespace
    finally:
        await asyncio.to_thread(delete_namespace, redis_url, namespace.prefix)


class LagProbe:
    """Samples how late a :data:`PROBE_S` sleep wakes up while running."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(PROBE_S)
            self.samples.append(loop.time() - started - PROBE_S)

    def __enter__(self) -> LagProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def summary(self) -> tuple[float, float]:
        """(mean, 99th percentile) lag in seconds."""
        ordered = sorted(self.samples)
        return statistics.fmean(ordered), ordered[int(len(ordered) * 0.99)]


async def load(client: aiohttp.ClientSession, total: int) -> int:
    """``total`` chat requests, :data:`CONCURRENCY` at a time; the number answered 200."""
    remaining = iter(range(total))
    ok = 0
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}

    async def worker() -> None:
        nonlocal ok
        for _ in remaining:
            async with client.post("/v1/chat/completions", json=body, headers=auth()) as r:
                await r.read()
                ok += r.status == 200

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return ok


async def admin_burst(admin: Admin, stop: asyncio.Event) -> int:
    """Config writes and logins, back to back, until ``stop``; how many were made."""
    made = 0

    async def writes() -> None:
        nonlocal made
        value = 3
        while not stop.is_set():
            value = 3 + (value + 1) % 50
            status, _ = await admin.call("POST", "/api/config", json={"MAX_ERROR_COUNT": value})
            assert status == 200
            made += 1

    async def logins() -> None:
        nonlocal made
        while not stop.is_set():
            status, _ = await admin.call("POST", "/api/login", json={"password": PASSWORD})
            assert status == 200
            made += 1

    await asyncio.gather(writes(), writes(), logins())
    return made


async def blocking_checks(stored: str, stop: asyncio.Event) -> int:
    """The control: password checks run on the event loop (what ``to_thread`` avoids)."""
    made = 0
    while not stop.is_set():
        verify_password(PASSWORD, stored)
        made += 1
        await asyncio.sleep(0.05)
    return made


Burst = Callable[[asyncio.Event], Awaitable[int]]


@attrs.frozen
class Phase:
    mean_s: float
    p99_s: float
    operations: int

    def __str__(self) -> str:
        return f"{self.mean_s * 1e3:.2f}/{self.p99_s * 1e3:.2f} ms"


async def phase(client: aiohttp.ClientSession, burst: Burst | None = None) -> Phase:
    """:data:`REQUESTS` requests with ``burst`` running alongside, under the lag probe."""
    stop = asyncio.Event()
    with LagProbe() as probe:
        side = asyncio.ensure_future(burst(stop)) if burst is not None else None
        ok = await load(client, REQUESTS)
        stop.set()
        made = await side if side is not None else 0
    assert ok == REQUESTS
    return Phase(*probe.summary(), made)


async def test_sc003_admin_writes_and_logins_do_not_raise_event_loop_lag(
    namespace: Namespace,
) -> None:
    async with admin_gateway(namespace.instance_settings("one")) as anonymous:
        hashed = await asyncio.to_thread(hash_password, PASSWORD)  # logins pay PBKDF2
        await anonymous.store.password.put_stored(hashed)
        admin = await anonymous.login()
        stored = await admin.store.password.get_stored()
        assert stored is not None
        async with aiohttp.ClientSession(
            admin.client._base_url,
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=60),
        ) as client:
            await load(client, CONCURRENCY)  # warm-up: connections, caches
            before = await phase(client)
            during = await phase(client, lambda stop: admin_burst(admin, stop))
            after = await phase(client)
            control = await phase(client, lambda stop: blocking_checks(stored, stop))
    quiet = min(before.mean_s, after.mean_s), min(before.p99_s, after.p99_s)
    report = (
        f"event-loop lag mean/p99: load only {before}, with {during.operations} admin writes "
        f"and logins {during}, load only again {after}, control ({control.operations} "
        f"password checks on the loop) {control}"
    )
    print(report)
    assert during.operations >= 10, f"too few admin calls to mean anything: {report}"
    assert control.p99_s > quiet[1] * P99_MARGIN, f"the probe cannot see a stall: {report}"
    assert during.p99_s <= quiet[1] * P99_MARGIN, report
    assert during.mean_s <= quiet[0] * MEAN_MARGIN, report
