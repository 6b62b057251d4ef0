"""``console-poll``: what one 2-second poll of the web console costs at 5,000 nodes.

One gateway in this process (:func:`cfgstore_gateway.app.create_app` over ``memory+file``
on a fresh ``configs/`` folder holding ``bench/pools_data.py``'s realistic nodes, 5,000 at
scale 1 in four types), one signed-in client on a keep-alive connection. Each variant
repeats one kind of poll; the note gives the bytes the answer moved on the wire (status
line, headers and body, counted on the raw socket stream) and its status:

``providers`` (baseline)
    ``GET /api/providers`` without ``Accept-Encoding``: the whole pools, what the console
    downloaded every 2 s before.
``providers-gzip``
    the same with ``Accept-Encoding: gzip`` (admin JSON of 1 KiB or more is compressed).
``poll-first``
    ``POST /api/cfgstore/pools/poll`` naming nothing shown yet (the summary and the first
    page of 25 nodes of each type come), gzip: a console's first poll.
``poll-unchanged``
    the same poll naming the tags of what it shows: ``204``, nothing changed.

The ratio is the rate of polls the gateway answers, against ``providers`` (which, taking
about half a second each, runs an eighth of the polls). A poll must answer 200 (204 for
``poll-unchanged``), else the run fails.
"""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
from aiohttp import web

from bench.harness import BenchFailure, Row, fresh_configs_dir, scaled
from bench.pools_data import realistic_pools
from cfgstore.adapters import Settings, Store
from cfgstore.model import jsjson
from cfgstore_gateway.app import create_app

NAME = "console-poll"
SIZES = {
    "claude-kiro-oauth": 1500,
    "gemini-cli-oauth": 1250,
    "openai-custom": 1250,
    "claude-custom": 1000,
}
PASSWORD = "bench-console-password"
POLLS = 40


def run(scale: float) -> list[Row]:
    return asyncio.run(_run(scale))


async def _run(scale: float) -> list[Row]:
    sizes = {t: scaled(n, scale) for t, n in SIZES.items()}
    polls = scaled(POLLS, scale, minimum=5)
    with fresh_configs_dir() as configs:
        (configs / "config.json").write_bytes(jsjson.dump_bytes({"REQUIRED_API_KEY": "k" * 32}))
        (configs / "provider_pools.json").write_bytes(jsjson.dump_bytes(realistic_pools(sizes)))
        settings = Settings(
            configs_dir=configs, backends=("memory", "file"), state_dir=configs.parent / "state"
        )
        async with Store.open(settings) as store:
            await store.password.put_stored(PASSWORD)
            runner = web.AppRunner(create_app(store), access_log=None)
            await runner.setup()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            await web.SockSite(runner, sock).start()
            try:
                return await _measure(sock.getsockname()[1], sizes, polls)
            finally:
                await runner.cleanup()


async def _measure(port: int, sizes: dict[str, int], polls: int) -> list[Row]:
    base = f"http://127.0.0.1:{port}"
    async with (
        aiohttp.ClientSession(base) as client,
        client.post("/api/login", json={"password": PASSWORD}) as response,
    ):
        token = (await response.json())["token"]
    auth = f"Bearer {token}"
    nodes = sum(sizes.values())
    shown = [{"type": t, "per_page": 25} for t in sizes]
    first = {"summary": None, "pages": shown}
    raw = RawClient(port)
    await raw.open()
    try:
        status, _, answer = await raw.request(
            "POST", "/api/cfgstore/pools/poll", auth, jsjson.dump_bytes(first), gzip=False
        )
        if status != 200:
            raise BenchFailure(f"first poll answered {status}")
        decoded = jsjson.loads(answer, "poll")
        assert isinstance(decoded, dict)
        tags = [p["etag"] for p in decoded["pages"]]
        quiet = {
            "summary": decoded["summary"]["etag"],
            "pages": [{**s, "etag": t} for s, t in zip(shown, tags, strict=True)],
        }
        poll = "/api/cfgstore/pools/poll"
        whole = max(3, polls // 8)  # the whole pools take ~0.5 s a poll: fewer of them
        variants: list[tuple[str, str, str, bytes | None, bool, int, int]] = [
            ("providers", "GET", "/api/providers", None, False, 200, whole),
            ("providers-gzip", "GET", "/api/providers", None, True, 200, whole),
            ("poll-first", "POST", poll, jsjson.dump_bytes(first), True, 200, polls),
            ("poll-unchanged", "POST", poll, jsjson.dump_bytes(quiet), True, 204, polls),
        ]
        rows = []
        for variant, method, path, body, gzip, expected, count in variants:
            started = time.perf_counter()
            moved = 0
            for _ in range(count):
                status, size, _ = await raw.request(method, path, auth, body, gzip=gzip)
                if status != expected:
                    raise BenchFailure(f"{variant}: answered {status}, expected {expected}")
                moved = size
            seconds = time.perf_counter() - started
            note = f"{moved:,} bytes/poll ({expected}), {nodes:,} nodes"
            rows.append(Row(NAME, variant, count, seconds, "providers", note))
        return rows
    finally:
        await raw.close()


class RawClient:
    """A minimal keep-alive HTTP/1.1 client counting the bytes of each answer as they come
    off the socket (aiohttp's client does not report the wire size)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()

    async def request(
        self, method: str, path: str, auth: str, body: bytes | None, *, gzip: bool
    ) -> tuple[int, int, bytes]:
        """(status, bytes of the whole answer, its body as sent)."""
        assert self.reader is not None and self.writer is not None
        head = [f"{method} {path} HTTP/1.1", "Host: bench", f"Authorization: {auth}"]
        if gzip:
            head.append("Accept-Encoding: gzip")
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
        status_line = await self.reader.readuntil(b"\r\n")
        size = len(status_line)
        headers: dict[str, str] = {}
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            size += len(line)
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        size += 2
        length = int(headers.get("content-length", "0"))
        content = await self.reader.readexactly(length) if length else b""
        return int(status_line.split()[1]), size + length, content
