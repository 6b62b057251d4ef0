"""``cfgctl serve`` as a real process: a fresh folder, workers, Redis, stopping, refusals.

Each test starts ``cfgctl serve --port 0`` in a temporary folder (stderr, the log, goes to
a file there), waits for its ``listening on`` line, talks HTTP to it, and stops it with
SIGTERM. Counts are checked in the files after the stop: the write debounce is set far
beyond the test's length, so only the flush at the stop can have written them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import attrs
import pytest

from cfgstore.adapters import Store
from cfgstore.model import jsjson
from cfgstore.model.pools import node_from_json
from cfgstore.model.versions import ABSENT_VERSION
from cfgstore_gateway.serve import JsonFormatter
from tests.gateway.conftest import TYPE, api_node, scaled
from tests.gateway.test_storage_modes import private_prefix, redis_only
from tests.gateway.upstream_stub import Reply, UpstreamStub, sse_chunks
from tests.support.namespace_seed import seed_namespace

START_S = 90.0
"""Bound for a start (workers are spawned interpreters; a slow CI box needs time)."""
STOP_S = 60.0
LISTENING = re.compile(r"listening on http://([^:]+):(\d+) \(storage: ([\w-]+)")
KEY_LINE = re.compile(r"client API key \(shown once.*\): (\w+)")
PASSWORD_LINE = re.compile(r"web UI admin password \(shown once.*\): (\S+)")
MODEL = "stub-served-model"


def cfgctl() -> list[str]:
    script = Path(sys.executable).parent / "cfgctl"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from cfgstore.cli.app import main; main()"]


def process_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("CFGSTORE_") and not k.startswith("CFGSTORE_TEST_"))
        and k != "REDIS_URL"
    }
    env.update(
        CFGSTORE_WRITE_DEBOUNCE_MS="600000",
        CFGSTORE_WRITE_MAX_WAIT_MS="600000",
        CFGSTORE_WATCH_INTERVAL_MS="100",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@attrs.define
class Served:
    process: asyncio.subprocess.Process
    url: str
    storage: str
    lines: list[str]
    log: Path

    async def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), STOP_S)
        assert self.process.stdout is not None
        rest = await asyncio.wait_for(self.process.stdout.read(), STOP_S)
        self.lines.extend(rest.decode().splitlines())
        return code


@asynccontextmanager
async def cfgctl_serve(cwd: Path, *args: str, env: dict[str, str]) -> AsyncIterator[Served]:
    """Run ``cfgctl serve --host 127.0.0.1 --port 0 ARGS`` in ``cwd`` until it listens."""
    log = cwd / "serve.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *cfgctl(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *args,
            cwd=cwd,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        found = None
        async with asyncio.timeout(START_S):
            while found is None:
                raw = await process.stdout.readline()
                if not raw:
                    raise AssertionError(
                        f"cfgctl serve exited ({await process.wait()}) before listening:\n"
                        + "\n".join(lines)
                        + "\n"
                        + log.read_text()
                    )
                lines.append(raw.decode().rstrip())
                found = LISTENING.search(lines[-1])
        host, port, storage = found.groups()
        yield Served(process, f"http://{host}:{port}", storage, lines, log)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def fresh_connections() -> aiohttp.ClientSession:
    """A client that opens a new connection per request (spreads over SO_REUSEPORT)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        timeout=aiohttp.ClientTimeout(total=30),
    )


def add_node_to_file(configs: Path, base_url: str, *uuids: str) -> None:
    """Replace the pools file (atomically) with ``uuids`` as ``openai-custom`` nodes."""
    nodes = [api_node(u, base_url, f"key-{u}", supportedModels=[MODEL]) for u in uuids]
    temporary = configs / "provider_pools.json.test-tmp"
    temporary.write_bytes(jsjson.dump_bytes({TYPE: nodes}))
    os.replace(temporary, configs / "provider_pools.json")


async def wait_for_model(client: aiohttp.ClientSession, url: str, key: str) -> None:
    """Until the gateway lists :data:`MODEL` (its file watcher picked up the new node)."""
    for _ in range(200):  # 10 s
        async with client.get(f"{url}/v1/models", headers={"x-api-key": key}) as response:
            assert response.status == 200
            if MODEL in [m["id"] for m in (await response.json())["data"]]:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the gateway never saw the new node")


async def send_chats(client: aiohttp.ClientSession, url: str, key: str, count: int) -> None:
    async def one(index: int) -> None:
        body: dict[str, object] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        if index % 2:
            body["stream"] = True
        async with client.post(
            f"{url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}", "model-provider": TYPE},
        ) as response:
            assert response.status == 200, await response.text()
            await response.read()

    await asyncio.gather(*(one(i) for i in range(count)))


def usage_in_file(configs: Path) -> dict[str, int]:
    pools = json.loads((configs / "provider_pools.json").read_bytes())
    return {node["uuid"]: node.get("usageCount", 0) for node in pools[TYPE]}


# ----------------------------------------------------------------------------- tests


async def test_serve_in_an_empty_folder_creates_configs_serves_and_flushes_on_sigterm(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    configs = tmp_path / "configs"
    async with cfgctl_serve(tmp_path, env=process_env()) as served:
        assert served.storage == "file"
        keys = [m.group(1) for line in served.lines if (m := KEY_LINE.search(line))]
        assert len(keys) == 1, served.lines
        key = keys[0]
        config = json.loads((configs / "config.json").read_bytes())
        assert config["REQUIRED_API_KEY"] == key
        assert config["SERVER_PORT"] == 3000  # the flag overrode it
        assert json.loads((configs / "provider_pools.json").read_bytes()) == {}
        assert "default-auth" in json.loads((configs / "plugins.json").read_bytes())["plugins"]
        assert (configs / "config.json").stat().st_mode & 0o777 == 0o600
        assert configs.stat().st_mode & 0o777 == 0o700  # secrets inside (issue 13, 7)
        (password,) = [m.group(1) for line in served.lines if (m := PASSWORD_LINE.search(line))]
        assert (configs / "pwd").read_text().startswith("pbkdf2:")
        assert (configs / "pwd").stat().st_mode & 0o777 == 0o600

        async with fresh_connections() as client:
            async with client.get(f"{served.url}/health") as response:
                assert response.status == 200
                assert (await response.json())["storage"] == "file"
            # The right one first: a wrong one is followed by LOGIN_MIN_INTERVAL (5 s).
            for tried, expected in ((password, 200), ("admin123", 401)):
                login = {"password": tried}
                async with client.post(f"{served.url}/api/login", json=login) as response:
                    assert response.status == expected
            async with client.get(f"{served.url}/v1/models") as response:
                assert response.status == 401
            node = "aaaaaaaa-0000-4000-8000-0000000000aa"
            add_node_to_file(configs, upstream.base_url, node)
            await wait_for_model(client, served.url, key)
            count = scaled(10, minimum=4)
            await send_chats(client, served.url, key, count)
        assert usage_in_file(configs) == {node: 0}  # the debounce holds the counts back
        assert await served.stop() == 0
    assert served.lines[-1].endswith("stopped")
    assert usage_in_file(configs) == {node: count}
    log = served.log.read_text()
    assert key not in log and f"key-{node}" not in log and password not in log
    assert "req=" in log


async def test_serve_keeps_an_existing_config_and_its_key(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "config.json").write_bytes(
        jsjson.dump_bytes({"REQUIRED_API_KEY": "operator-key", "SERVER_PORT": 1})
    )
    (configs / "pwd").write_text("operator password\n")
    async with cfgctl_serve(tmp_path, env=process_env()) as served:
        assert not any(KEY_LINE.search(line) for line in served.lines)
        assert not any(PASSWORD_LINE.search(line) for line in served.lines)
        async with (
            fresh_connections() as client,
            client.get(
                f"{served.url}/v1/models", headers={"Authorization": "Bearer operator-key"}
            ) as response,
        ):
            assert response.status == 200
        assert await served.stop() == 0
    assert json.loads((configs / "config.json").read_bytes()) == {
        "REQUIRED_API_KEY": "operator-key",
        "SERVER_PORT": 1,
    }
    assert (configs / "pwd").read_text() == "operator password\n"


@pytest.mark.parametrize("pwd", [None, b"", b" \r\n"], ids=["no-pwd", "empty", "blank"])
async def test_a_config_without_a_password_gets_a_generated_one_never_admin123(
    tmp_path: Path, pwd: bytes | None
) -> None:
    """Security (issue 13, 7): the Node service reads no ``pwd`` (or a blank one) as
    ``admin123``; ``cfgctl serve`` generates a password, prints it once, stores it hashed."""
    configs = tmp_path / "configs"
    configs.mkdir()
    config = {"REQUIRED_API_KEY": "operator-key"}
    (configs / "config.json").write_bytes(jsjson.dump_bytes(config))
    if pwd is not None:
        (configs / "pwd").write_bytes(pwd)
    async with cfgctl_serve(tmp_path, env=process_env()) as served:
        assert not any(KEY_LINE.search(line) for line in served.lines)
        (password,) = [m.group(1) for line in served.lines if (m := PASSWORD_LINE.search(line))]
        async with fresh_connections() as client:
            # The right one first: a wrong one would hold the next try for LOGIN_MIN_INTERVAL.
            for tried, expected in ((password, 200), ("admin123", 401)):
                login = {"password": tried}
                async with client.post(f"{served.url}/api/login", json=login) as response:
                    assert response.status == expected, tried
        assert await served.stop() == 0
    assert json.loads((configs / "config.json").read_bytes()) == config
    assert (configs / "pwd").read_text().startswith("pbkdf2:")
    assert (configs / "pwd").stat().st_mode & 0o777 == 0o600
    assert password not in served.log.read_text()


async def test_workers_share_one_port_and_lose_no_count(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    configs = tmp_path / "configs"
    nodes = ["aaaaaaaa-0000-4000-8000-0000000000a1", "bbbbbbbb-0000-4000-8000-0000000000b2"]
    configs.mkdir()
    (configs / "config.json").write_bytes(jsjson.dump_bytes({"REQUIRED_API_KEY": "wk"}))
    add_node_to_file(configs, upstream.base_url, *nodes)
    state = tmp_path / "state"
    async with cfgctl_serve(
        tmp_path, "--workers", "2", "--state-dir", str(state), env=process_env()
    ) as served:
        assert "2 workers" in served.lines[-1]
        instances: set[str] = set()
        async with fresh_connections() as client:
            for _ in range(200):
                async with client.get(f"{served.url}/health") as response:
                    instances.add((await response.json())["instance"])
                if len(instances) == 2:
                    break
            assert len(instances) == 2  # both workers answer on the one port
            count = scaled(40, minimum=10)
            await send_chats(client, served.url, "wk", count)
        assert await served.stop() == 0
    assert sum(usage_in_file(configs).values()) == count


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    with private_prefix(redis_url) as prefix:
        yield prefix


async def test_serve_on_redis(
    tmp_path: Path, redis_url: str, redis_prefix: str, upstream: UpstreamStub
) -> None:
    await asyncio.to_thread(seed_namespace, redis_url, redis_prefix)
    admin = redis_only(redis_url, redis_prefix)
    async with Store.open(admin) as store:
        await store.config.put({"REQUIRED_API_KEY": "rk", "MODEL_PROVIDER": TYPE}, ABSENT_VERSION)
        node = node_from_json(
            api_node("cccccccc-0000-4000-8000-0000000000c3", upstream.base_url, "k"), "t"
        )
        await store.pools.add_node(TYPE, node)
    env = process_env(CFGSTORE_REDIS_PREFIX=redis_prefix)
    state = tmp_path / "state"
    async with cfgctl_serve(
        tmp_path, "--redis-url", redis_url, "--state-dir", str(state), env=env
    ) as served:
        assert served.storage == "redis"
        assert not (tmp_path / "configs").exists()  # Redis mode creates no files
        async with fresh_connections() as client:
            await send_chats(client, served.url, "rk", 3)
        assert await served.stop() == 0
    assert (state / "instance.json").exists()
    async with Store.open(admin) as store:
        stored = await store.pools.get_node(TYPE, "cccccccc-0000-4000-8000-0000000000c3")
        assert stored is not None and stored.state.usage_count == 3


async def test_an_address_in_use_exits_2_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            *cfgctl(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            cwd=tmp_path,
            env=process_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(process.communicate(), START_S)
    assert process.returncode == 2
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("cfgctl: cannot listen on 127.0.0.1:"), err.decode()


async def test_sigterm_lets_a_stream_in_flight_finish(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "config.json").write_bytes(jsjson.dump_bytes({"REQUIRED_API_KEY": "gk"}))
    node = "dddddddd-0000-4000-8000-0000000000d4"
    add_node_to_file(configs, upstream.base_url, node)
    hold = asyncio.Event()
    chunks = sse_chunks(MODEL, ["one", "two", "three"])
    upstream.responder = lambda received: Reply(chunks=chunks, hold=hold)
    async with cfgctl_serve(tmp_path, env=process_env()) as served, fresh_connections() as client:
        body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "x"}]}
        headers = {"Authorization": "Bearer gk", "model-provider": TYPE}
        async with client.post(
            f"{served.url}/v1/chat/completions", json=body, headers=headers
        ) as response:
            assert response.status == 200
            first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), STOP_S)
            served.process.send_signal(signal.SIGTERM)
            # Stopped accepting: a new connection is refused while the stream goes on.
            for _ in range(100):
                try:
                    async with client.get(f"{served.url}/health"):
                        pass
                except aiohttp.ClientConnectionError:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the gateway kept accepting connections after SIGTERM")
            assert served.process.returncode is None
            hold.set()
            rest = await asyncio.wait_for(response.content.read(), STOP_S)
        assert first + rest == b"".join(chunks)
        assert await asyncio.wait_for(served.process.wait(), STOP_S) == 0
    assert usage_in_file(configs) == {node: 1}


SIGTERM_REQUESTS = int(os.environ.get("CFGSTORE_TEST_SIGTERM_REQUESTS", "60"))
"""Answered requests before the SIGTERM of the load test (the load goes on after it)."""
SIGTERM_CLIENTS = 8


async def test_sigterm_under_load_with_two_workers_on_redis_loses_no_record(
    tmp_path: Path, redis_url: str, redis_prefix: str, upstream: UpstreamStub
) -> None:
    """Clients keep sending chat requests to two workers on one Redis namespace; SIGTERM
    arrives mid-load. Every request answered 200 is counted in Redis after the exit, and
    nothing else is."""
    await asyncio.to_thread(seed_namespace, redis_url, redis_prefix)
    admin = redis_only(redis_url, redis_prefix)
    uuids = ["eeeeeeee-0000-4000-8000-0000000000e1", "ffffffff-0000-4000-8000-0000000000f2"]
    async with Store.open(admin) as store:
        await store.config.put({"REQUIRED_API_KEY": "lk", "MODEL_PROVIDER": TYPE}, ABSENT_VERSION)
        for uuid in uuids:
            await store.pools.add_node(
                TYPE, node_from_json(api_node(uuid, upstream.base_url, f"key-{uuid}"), "t")
            )
    env = process_env(CFGSTORE_REDIS_PREFIX=redis_prefix)
    state = tmp_path / "state"
    args = ("--workers", "2", "--redis-url", redis_url, "--state-dir", str(state))
    answered = 0
    statuses: dict[int, int] = {}
    enough = asyncio.Event()
    sigterm_sent = False
    async with cfgctl_serve(tmp_path, *args, env=env) as served:
        assert served.storage == "redis" and "2 workers" in served.lines[-1]

        async def client_loop(client: aiohttp.ClientSession) -> None:
            nonlocal answered
            body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
            headers = {"Authorization": "Bearer lk"}
            while True:
                try:
                    async with client.post(
                        f"{served.url}/v1/chat/completions", json=body, headers=headers
                    ) as response:
                        await response.read()
                        statuses[response.status] = statuses.get(response.status, 0) + 1
                        if response.status == 200:
                            answered += 1
                            if answered >= SIGTERM_REQUESTS:
                                enough.set()
                except aiohttp.ClientConnectionError:
                    if sigterm_sent:
                        return  # both workers stopped accepting
                    raise

        async with fresh_connections() as client:
            loops = [asyncio.ensure_future(client_loop(client)) for _ in range(SIGTERM_CLIENTS)]
            try:
                await asyncio.wait_for(enough.wait(), STOP_S)
                served.process.send_signal(signal.SIGTERM)
                sigterm_sent = True
                code = await asyncio.wait_for(served.process.wait(), STOP_S)
                await asyncio.wait_for(asyncio.gather(*loops), STOP_S)
            finally:
                for loop in loops:
                    loop.cancel()
        assert code == 0, served.log.read_text()[-3000:]
    assert statuses == {200: answered}, statuses
    assert answered >= SIGTERM_REQUESTS
    async with Store.open(admin) as store:
        counted = 0
        for uuid in uuids:
            stored = await store.pools.get_node(TYPE, uuid)
            assert stored is not None
            counted += stored.state.usage_count
    assert counted == answered


async def test_json_logs_parse_and_hold_no_secret(tmp_path: Path, upstream: UpstreamStub) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    client_key = "json-log-client-key-5f0c2e"
    (configs / "config.json").write_bytes(
        jsjson.dump_bytes({"REQUIRED_API_KEY": client_key, "MODEL_PROVIDER": TYPE})
    )
    node = "abababab-0000-4000-8000-0000000000ab"
    add_node_to_file(configs, upstream.base_url, node)  # API key "key-<node>"
    secrets = [client_key, f"key-{node}"]
    async with (
        cfgctl_serve(tmp_path, "--log-format", "json", env=process_env()) as served,
        fresh_connections() as client,
    ):
        await wait_for_model(client, served.url, client_key)
        await send_chats(client, served.url, client_key, 2)
        # The key in the query string, and a wrong key that contains the right one.
        async with client.get(f"{served.url}/v1/models", params={"key": client_key}) as ok:
            assert ok.status == 200
        wrong = {"Authorization": f"Bearer {client_key}-wrong"}
        async with client.get(f"{served.url}/v1/models", headers=wrong) as refused:
            assert refused.status == 401
        assert await served.stop() == 0
    lines = [line for line in served.log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)
    requests = [
        e for e in entries if e["logger"] == "cfgstore_gateway.app" and "req=" in e["message"]
    ]
    chats = [e for e in requests if e.get("path") == "/v1/chat/completions"]
    assert len(chats) == 2 and all(e["status"] == 200 and e["method"] == "POST" for e in chats)
    assert all(e["request_id"] and e["provider_type"] == TYPE and e["node"] for e in chats)
    assert any(e["status"] == 401 for e in requests)
    assert all(e["level"] == "INFO" for e in requests)
    for secret in secrets:
        assert not [line for line in lines if secret in line], secret


def test_json_formatter_keeps_extra_fields_and_tracebacks() -> None:
    formatter = JsonFormatter()
    record = logging.makeLogRecord(
        {
            "name": "cfgstore_gateway.app",
            "levelname": "INFO",
            "levelno": logging.INFO,
            "msg": "req=%s status=%d",
            "args": ("r1", 200),
            "request_id": "r1",
            "status": 200,
            "ms": 1.5,
        }
    )
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "req=r1 status=200"
    assert (entry["level"], entry["logger"]) == ("INFO", "cfgstore_gateway.app")
    assert (entry["request_id"], entry["status"], entry["ms"]) == ("r1", 200, 1.5)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.makeLogRecord({"msg": "failed", "exc_info": sys.exc_info()})
    line = formatter.format(failed)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]
