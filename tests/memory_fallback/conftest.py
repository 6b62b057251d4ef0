"""Shared helpers of the memory-fallback outage tests (real ``redis-server`` processes).

* settings for a fallback store (``memory`` over ``redis``, its own state dir) and for a
  Redis-only store (the truth the fallback replicates to);
* :class:`DegradedObserver`, a plugin that records ``cfgstore_storage_degraded``
  transitions so tests await them instead of polling;
* :class:`Worker`, an instance in its own OS process driven over stdin/stdout with JSON
  lines (records, flush, status, node reads, close), which can be SIGKILLed;
* restoring an emptied namespace from an instance's ``snapshot.json`` (``cfgctl restore``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import textwrap
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from typer.testing import CliRunner, Result

from cfgstore import hookimpl
from cfgstore.adapters import Settings, Store
from cfgstore.adapters.plugins import make_plugin_manager
from cfgstore.cli.app import build_app
from cfgstore.model.pools import ProviderNode, node_from_json
from cfgstore.model.records import Success
from cfgstore.model.snapshot import StoreSnapshot, snapshot_from_bytes
from cfgstore.model.status import BackendStatus
from cfgstore.model.timefmt import now_ms
from cfgstore_memory.journal import Journal
from cfgstore_memory.replay import RECORDS, records_data
from tests.support.namespace_seed import seed_namespace
from tests.support.redis_server import RedisServerProcess

SCALE = float(os.environ.get("CFGSTORE_TEST_SCALE", "1"))
TYPE = "openai-custom"

# Bounds of the waits (generous for a slow CI box; the happy path takes a fraction).
DEGRADE_WAIT_S = 10.0
RECOVER_WAIT_S = 30.0
"""The probe backs off up to ``probe_max_delay_ms`` (5 s) plus a connect timeout."""
PROCESS_WAIT_S = 60.0
CLI_WAIT_S = 60.0


def scaled(count: float, minimum: int = 1) -> int:
    return max(minimum, int(count * SCALE))


def new_prefix() -> str:
    return f"t{uuidlib.uuid4().hex[:12]}"


# ----------------------------------------------------------------------------- servers


@pytest.fixture
def volatile_server() -> Iterator[RedisServerProcess]:
    """A private ``redis-server`` without persistence: a restart starts it empty."""
    if shutil.which("redis-server") is None:
        pytest.skip("outage tests need the redis-server binary on PATH")
    with RedisServerProcess() as server:
        yield server


def wipe_server_data(server: RedisServerProcess) -> None:
    """Delete a stopped server's data files (AOF directory or file, RDB dump)."""
    assert not server.running, "stop the server before deleting its data"
    for name in ("appendonlydir", "appendonly.aof", "dump.rdb"):
        target = server.dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


# ----------------------------------------------------------------------------- settings


def fallback_settings(url: str, prefix: str, state_dir: Path, **overrides: Any) -> Settings:
    """An instance on Redis with its memory fallback: ``memory`` over ``redis``."""
    values: dict[str, Any] = {
        "configs_dir": Path("unused"),
        "backends": ("memory", "redis"),
        "redis_url": url,
        "redis_prefix": prefix,
        "state_dir": state_dir,
    }
    values.update(overrides)
    return Settings(**values)


def redis_settings(url: str, prefix: str) -> Settings:
    return Settings(
        configs_dir=Path("unused"), backends=("redis",), redis_url=url, redis_prefix=prefix
    )


def make_node(uuid: str) -> ProviderNode:
    return node_from_json({"uuid": uuid, "OPENAI_API_KEY": f"key-{uuid}"}, "test")


async def seed_with_nodes(url: str, prefix: str, *uuids: str) -> str:
    """Initialise namespace ``{prefix}`` and add ``uuids`` under :data:`TYPE`; return the
    namespace id."""
    namespace_id = await asyncio.to_thread(seed_namespace, url, prefix)
    async with Store.open(redis_settings(url, prefix)) as admin:
        for uuid in uuids:
            await admin.pools.add_node(TYPE, make_node(uuid))
    return namespace_id


async def redis_usage(url: str, prefix: str, *uuids: str) -> dict[str, int]:
    """``usageCount`` of each node as Redis holds it (read through a Redis-only store)."""
    out: dict[str, int] = {}
    async with Store.open(redis_settings(url, prefix)) as admin:
        for uuid in uuids:
            node = await admin.pools.get_node(TYPE, uuid)
            assert node is not None, f"node {uuid} missing in Redis"
            out[uuid] = node.state.usage_count
    return out


async def record(store: Store, uuid: str, count: int, concurrency: int = 50) -> None:
    """``count`` successes on ``uuid`` from ``concurrency`` concurrent callers."""

    async def caller(share: int) -> None:
        for _ in range(share):
            await store.pools.record_success(TYPE, uuid)

    shares = [count // concurrency + (i < count % concurrency) for i in range(concurrency)]
    await asyncio.gather(*(caller(share) for share in shares))


async def usage(store: Store, uuid: str) -> int:
    node = await store.pools.get_node(TYPE, uuid)
    assert node is not None, f"node {uuid} missing"
    return node.state.usage_count


async def fallback_status(store: Store) -> BackendStatus:
    status = (await store.status())[0]
    assert status.name == "memory", status
    return status


async def journal_depth(store: Store) -> int:
    return int((await fallback_status(store)).details["journal depth"])


REPLAYED = re.compile(r"(\d+) entries, (\d+) records \((\d+) batches already applied\)")


def replayed(details: dict[str, str]) -> tuple[int, int, int]:
    """(entries, records, duplicates) of the status detail ``replayed``; zeros if absent."""
    text = details.get("replayed")
    if text is None:
        return (0, 0, 0)
    found = REPLAYED.fullmatch(text)
    assert found is not None, f"unexpected 'replayed' detail: {text!r}"
    entries, records, duplicates = found.groups()
    return int(entries), int(records), int(duplicates)


async def write_journal(path: Path, uuid: str, entries: int) -> None:
    """The journal an outage would have left: ``entries`` one-success batches on ``uuid``,
    one entry per batch as the replicator writes them (kind ``records``, own op id)."""
    journal = await Journal.open(path, 1 << 30)
    try:
        at = now_ms()
        await asyncio.gather(
            *(
                journal.append(
                    RECORDS, records_data([Success(TYPE, uuid, at + i)]), uuidlib.uuid4().hex, at
                )
                for i in range(entries)
            )
        )
    finally:
        await journal.close()


# ----------------------------------------------------------------------------- waiting


@attrs.frozen
class Transition:
    at: float
    """``time.monotonic()`` when the hook fired."""
    degraded: bool
    reason: str


class DegradedObserver:
    """Records the store's ``cfgstore_storage_degraded`` notifications."""

    def __init__(self) -> None:
        self.transitions: list[Transition] = []
        self._changed = asyncio.Event()

    @hookimpl
    def cfgstore_storage_degraded(self, degraded: bool, reason: str) -> None:
        self.transitions.append(Transition(time.monotonic(), degraded, reason))
        self._changed.set()

    async def wait(
        self,
        degraded: bool,
        *,
        within: float,
        after: int = 0,
    ) -> Transition:
        """The first notification with ``degraded`` from index ``after`` on; waits for it
        at most ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                while True:
                    for seen in self.transitions[after:]:
                        if seen.degraded is degraded:
                            return seen
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            what = "degraded" if degraded else "recovered"
            raise AssertionError(
                f"no {what} notification within {within}s; seen: {self.transitions}"
            ) from None


@contextlib.asynccontextmanager
async def open_observed(settings: Settings) -> AsyncIterator[tuple[Store, DegradedObserver]]:
    """``Store.open`` with a :class:`DegradedObserver` registered before the chain opens
    (so a degraded start is seen too)."""
    plugins = make_plugin_manager({})
    observer = DegradedObserver()
    plugins.manager.register(observer, name="test-degraded-observer")
    async with Store.open(settings, plugins=plugins) as store:
        yield store, observer


async def poll_until(
    check: Callable[[], Awaitable[bool]], *, within: float, interval: float = 0.01
) -> float:
    """Poll ``check`` until it is true (for changes no event announces); return the
    seconds it took. Raises :class:`AssertionError` after ``within`` seconds."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)
    return time.monotonic() - started


class Load:
    """``tasks`` coroutines recording successes on ``uuids`` in turn until stopped;
    counts the records made (``record_success`` returned) per node."""

    def __init__(self, store: Store, uuids: list[str], tasks: int, pause_s: float) -> None:
        self.store = store
        self.uuids = uuids
        self.counts = dict.fromkeys(uuids, 0)
        self.errors: list[BaseException] = []
        self._pause_s = pause_s
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._run(i)) for i in range(tasks)]

    async def _run(self, index: int) -> None:
        turn = index
        while not self._stop.is_set():
            uuid = self.uuids[turn % len(self.uuids)]
            turn += 1
            try:
                await self.store.pools.record_success(TYPE, uuid)
            except Exception as exc:  # reported by stop(); a refused record is not counted
                self.errors.append(exc)
            else:
                self.counts[uuid] += 1
            await asyncio.sleep(self._pause_s)

    async def stop(self) -> dict[str, int]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        assert not self.errors, f"records refused: {self.errors[:3]}"
        return self.counts


# ----------------------------------------------------------------------------- snapshot


def read_snapshot(state_dir: Path) -> StoreSnapshot:
    path = state_dir / "snapshot.json"
    return snapshot_from_bytes(path.read_bytes(), str(path))


def snapshot_usage(snapshot: StoreSnapshot, uuid: str) -> int:
    for provider_type, node in snapshot.pools:
        if provider_type == TYPE and node.uuid == uuid:
            return node.state.usage_count
    raise AssertionError(f"node {uuid} not in the snapshot")


async def restore_namespace(url: str, prefix: str, snapshot_path: Path) -> dict[str, Any]:
    """``cfgctl restore --snapshot FILE --json`` (typer's CliRunner, in a worker thread: the
    command runs its own event loop) into namespace ``{prefix}``; returns its JSON summary.
    The command writes the namespace marker last, so an instance waiting in data-lost mode
    replays its journal only onto a complete namespace."""

    def invoke() -> Result:
        args = ["restore", "--snapshot", str(snapshot_path), "--redis-url", url, "--json"]
        return CliRunner().invoke(build_app(), args, env={"CFGSTORE_REDIS_PREFIX": prefix})

    result = await asyncio.wait_for(asyncio.to_thread(invoke), CLI_WAIT_S)
    assert result.exit_code == 0, (
        f"cfgctl restore exited {result.exit_code}\n{result.stdout}\n{result.stderr}"
    )
    summary: dict[str, Any] = json.loads(result.stdout)
    assert summary["restored"] is True and summary["forced"] is False, summary
    return summary


# ----------------------------------------------------------------------------- processes

WORKER = textwrap.dedent(
    """
    import asyncio, json, logging, os, sys
    from cfgstore import hookimpl
    from cfgstore.adapters import Settings, Store
    from cfgstore.adapters.plugins import make_plugin_manager

    TYPE = "openai-custom"
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    def emit(doc):
        sys.stdout.write(json.dumps(doc) + "\\n")
        sys.stdout.flush()

    class Observer:
        @hookimpl
        def cfgstore_storage_degraded(self, degraded, reason):
            emit({"event": "degraded" if degraded else "recovered", "reason": reason})

    async def status(store):
        st = (await store.status())[0]
        return {"mode": st.mode, "details": st.details, "warnings": list(st.warnings)}

    class Load:
        def __init__(self, store, uuids, tasks, pause_s):
            self.store, self.uuids, self.pause_s = store, uuids, pause_s
            self.counts = dict.fromkeys(uuids, 0)
            self.errors = []
            self.stopping = asyncio.Event()
            self.tasks = [asyncio.create_task(self.run(i)) for i in range(tasks)]

        async def run(self, index):
            turn = index
            while not self.stopping.is_set():
                uuid = self.uuids[turn % len(self.uuids)]
                turn += 1
                try:
                    await self.store.pools.record_success(TYPE, uuid)
                except Exception as exc:
                    self.errors.append(repr(exc))
                else:
                    self.counts[uuid] += 1
                await asyncio.sleep(self.pause_s)

        async def stop(self):
            self.stopping.set()
            await asyncio.gather(*self.tasks)
            return {"counts": self.counts, "errors": self.errors[:5]}

    async def record(store, uuid, count, concurrency):
        async def one(share):
            for _ in range(share):
                await store.pools.record_success(TYPE, uuid)
        shares = [count // concurrency + (1 if i < count % concurrency else 0)
                  for i in range(concurrency)]
        await asyncio.gather(*(one(s) for s in shares))
        return {"made": count}

    async def handle(store, load, cmd):
        op = cmd["cmd"]
        if op == "record":
            return await record(store, cmd["uuid"], cmd["count"], cmd.get("concurrency", 1))
        if op == "load_start":
            load.append(Load(store, cmd["uuids"], cmd["tasks"], cmd["pause_s"]))
            return {}
        if op == "load_stop":
            return await load.pop().stop()
        if op == "flush":
            await store.flush()
            return {}
        if op == "status":
            return await status(store)
        if op == "node":
            node = await store.pools.get_node(TYPE, cmd["uuid"])
            return {"usage_count": node.state.usage_count, "healthy": node.state.is_healthy}
        raise ValueError(f"unknown command {op!r}")

    async def main():
        plugins = make_plugin_manager({})
        plugins.manager.register(Observer(), name="worker-observer")
        settings = Settings.load(json.loads(sys.argv[1]), environ={})
        loop = asyncio.get_running_loop()
        async with Store.open(settings, plugins=plugins) as store:
            emit({"event": "open", "pid": os.getpid(), **(await status(store))})
            load = []
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line:
                    return
                cmd = json.loads(line)
                if cmd["cmd"] == "close":
                    break
                try:
                    reply = await handle(store, load, cmd)
                except Exception as exc:
                    reply = {"error": f"{type(exc).__name__}: {exc}"}
                emit({"reply": cmd["cmd"], **reply})
        emit({"event": "closed"})

    asyncio.run(main())
    """
)


def worker_overrides(settings: Settings) -> dict[str, Any]:
    """``Settings.load`` overrides that rebuild ``settings`` in a worker process."""
    out: dict[str, Any] = {}
    for name, value in attrs.asdict(settings, recurse=False).items():
        if name == "extra" or value is None:
            continue
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = ",".join(value)
        out[name] = value
    return out


class Worker:
    """An instance in its own process running :data:`WORKER`; stderr (its log) goes to a
    file so a chatty worker never blocks on a full pipe."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.events: list[dict[str, Any]] = []
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._event_seen = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def spawn(cls, settings: Settings, log_path: Path) -> Worker:
        with log_path.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                WORKER,
                json.dumps(worker_overrides(settings)),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        return cls(proc, log_path)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            doc = json.loads(line)
            if "event" in doc:
                self.events.append(doc)
                self._event_seen.set()
            else:
                await self._replies.put(doc)
        self._event_seen.set()  # the process ended: wake waiters so they can fail

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def saw(self, name: str) -> bool:
        return any(e["event"] == name for e in self.events)

    async def wait_event(self, name: str, *, within: float, after: int = 0) -> dict[str, Any]:
        try:
            async with asyncio.timeout(within):
                while True:
                    for event in self.events[after:]:
                        if event["event"] == name:
                            return event
                    if self._reader.done():
                        raise AssertionError(
                            f"worker {self.proc.pid} exited ({self.proc.returncode}) before "
                            f"{name!r}; events {self.events}\n{self.log_tail()}"
                        )
                    self._event_seen.clear()
                    await self._event_seen.wait()
        except TimeoutError:
            raise AssertionError(
                f"worker {self.proc.pid}: no {name!r} within {within}s; events "
                f"{self.events}\n{self.log_tail()}"
            ) from None

    async def request(self, cmd: str, *, within: float = 60.0, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        await self.proc.stdin.drain()
        try:
            reply = await asyncio.wait_for(self._replies.get(), within)
        except TimeoutError:
            raise AssertionError(
                f"worker {self.proc.pid}: no reply to {cmd!r} within {within}s\n" + self.log_tail()
            ) from None
        assert reply.get("reply") == cmd, reply
        assert "error" not in reply, f"{cmd}: {reply['error']}\n{self.log_tail()}"
        return reply

    async def close(self, *, within: float = PROCESS_WAIT_S) -> None:
        """Close the store (flush, journal closed) and wait for a clean exit."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b'{"cmd": "close"}\n')
        await self.proc.stdin.drain()
        code = await asyncio.wait_for(self.proc.wait(), within)
        await self._reader
        assert code == 0, f"worker {self.proc.pid} exited {code}\n{self.log_tail()}"
        assert self.saw("closed"), self.events

    async def kill(self) -> None:
        """SIGKILL: no flush, no close; the kernel drops the journal lock."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        await self._reader

    async def discard(self) -> None:
        """Cleanup: kill the process if it is still running."""
        if self.proc.returncode is None:
            await self.kill()
        elif not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


@pytest.fixture
async def workers() -> AsyncIterator[list[Worker]]:
    """Workers a test spawns (append them); killed at the end if still running."""
    spawned: list[Worker] = []
    try:
        yield spawned
    finally:
        for worker in spawned:
            await worker.discard()
