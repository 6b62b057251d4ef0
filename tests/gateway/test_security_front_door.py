"""The gateway's front door, attacked from outside: who gets in is decided by the route a
request matched (never a path prefix), before any body is read; unauthenticated bodies
stay small; reserved words are never provider types; bad headers, deep JSON and control
characters get clear answers and clean log lines; ``/metrics`` can require the key.

Each test is the attack; it succeeded before the fix (a pool type named ``ui`` let anyone
use the pools with no key, and an unauthenticated body was read and parsed on the event
loop)."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import attrs
import pytest
import pytest_asyncio
from yarl import URL

from cfgstore.adapters import Settings, Store
from cfgstore.model.pools import node_from_json
from cfgstore_gateway.access import PUBLIC_BODY_MAX
from cfgstore_gateway.app import create_app
from cfgstore_gateway.routing import RESERVED_TYPE_NAMES
from tests.admin.conftest import Admin, set_password
from tests.gateway.conftest import (
    CLIENT_KEY,
    TYPE,
    WAIT_S,
    api_node,
    auth,
    make_deployment,
    serving,
)
from tests.gateway.redis_instances import Namespace, delete_namespace, seeded_namespace
from tests.gateway.upstream_stub import UpstreamStub

NODE_KEY = "sk-node-secret-0123456789abcdef"
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
UI_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options")


@attrs.frozen
class Door:
    """A gateway on a loopback port: its base URL, a client of it and its store."""

    url: str
    client: aiohttp.ClientSession
    store: Store

    async def admin(self) -> Admin:
        return await Admin(self.client, self.store).login()


@asynccontextmanager
async def front_door(settings: Settings) -> AsyncIterator[Door]:
    async with Store.open(settings) as store:
        await set_password(store)
        async with (
            serving(create_app(store)) as url,
            aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=WAIT_S * 3)) as client,
        ):
            yield Door(url, client, store)


def deployment(root: Path, upstream_url: str, **config: Any) -> Settings:
    """One openai-custom node, plus pools under reserved words (``ui``, ``health``) as a
    legacy ``provider_pools.json`` may hold them: the admin API refuses to create those."""
    node = api_node("n1", upstream_url, NODE_KEY)
    pools = {TYPE: [node], "ui": [{**node, "uuid": "u1"}], "health": [{**node, "uuid": "h1"}]}
    return make_deployment(root, pools, **config)


@pytest_asyncio.fixture
async def door(tmp_path: Path, upstream: UpstreamStub) -> AsyncIterator[Door]:
    async with front_door(deployment(tmp_path, upstream.base_url)) as door:
        yield door


@pytest_asyncio.fixture
async def redis_door(redis_url: str, tmp_path: Path, upstream: UpstreamStub) -> AsyncIterator[Door]:
    """A gateway over a fresh Redis namespace holding an openai-custom pool and, as a store
    client may write it, a pool of type ``ui``."""
    namespace: Namespace = await seeded_namespace(redis_url, tmp_path, "door-")
    try:
        async with Store.open(namespace.redis_settings()) as store:
            config = await store.config.get()
            document = {**config.document, "REQUIRED_API_KEY": CLIENT_KEY, "MODEL_PROVIDER": TYPE}
            await store.config.put(document, config.version)
            for provider_type in (TYPE, "ui"):
                node = api_node("n-" + provider_type, upstream.base_url, NODE_KEY)
                await store.pools.add_node(provider_type, node_from_json(node, "test"))
        async with front_door(namespace.instance_settings("one")) as door:
            yield door
    finally:
        await asyncio.to_thread(delete_namespace, redis_url, namespace.prefix)


# ------------------------------------------------------------------ raw HTTP (the attacker)


@attrs.frozen
class Answer:
    status: int
    headers: dict[str, str]


async def answer_before_body(
    url: str, head: str, *, content_length: int, sent: bytes = b"", extra: bytes = b""
) -> Answer:
    """Send the request head ``head`` (request line and headers, without Content-Length)
    announcing ``content_length`` body bytes and ``sent`` of them, then wait for the answer
    without sending the rest. Only a server that answers without reading the body answers
    at all: one that reads it waits for bytes that never come (bounded by :data:`WAIT_S`)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        request = f"{head}\r\nHost: {parts.netloc}\r\nContent-Length: {content_length}\r\n"
        writer.write(request.encode("latin-1") + extra + b"\r\n" + sent)
        await writer.drain()
        try:
            async with asyncio.timeout(WAIT_S):
                raw = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            raise AssertionError(f"{head!r}: no answer before the body came: it is read") from None
    finally:
        writer.close()
    status_line, *header_lines = raw.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
    return Answer(int(status_line.split()[1]), headers)


BIG = 62 * 1024 * 1024
"""What the attack announced (the gateway's own ``client_max_size`` is 64 MiB)."""


# ------------------------------------------------------------------ finding 1: the bypass


async def test_paths_that_look_like_the_ui_need_the_client_key(
    door: Door, upstream: UpstreamStub
) -> None:
    """``/{provider}/v1/chat/completions`` matches ``/ui/v1/…``: with a pool named ``ui``
    the pools answered anyone (the upstream got the node's key)."""
    for path in (
        "/ui/v1/chat/completions",
        URL("/%75i/v1/chat/completions", encoded=True),
        URL("/ui%2Fx/v1/chat/completions", encoded=True),
        "/health/v1/chat/completions",
    ):
        async with door.client.post(path, json=CHAT, headers={"model-provider": TYPE}) as r:
            assert r.status == 401, (path, await r.text())
    for method, path, status in (
        ("GET", "/health/v1/models", 401),
        ("HEAD", "/v1/models", 401),
        ("HEAD", "/health", 200),
        ("HEAD", "/", 200),
    ):
        async with door.client.request(method, path) as r:
            assert r.status == status, (method, path)
    assert upstream.chat_requests() == []


async def test_reserved_words_are_never_a_path_type(door: Door, upstream: UpstreamStub) -> None:
    """With the key, ``/ui/v1/…`` and ``/health/v1/…`` go nowhere even though the pools
    file holds such types; the request is refused before its body is read."""
    for path in ("/ui/v1/chat/completions", "/health/v1/chat/completions", "/v1/v1/models"):
        method = "GET" if path.endswith("/models") else "POST"
        async with door.client.request(method, path, json=CHAT, headers=auth()) as r:
            assert r.status == 404, path
            assert (await r.json())["error"]["code"] == "unknown_provider"
    answer = await answer_before_body(
        door.url,
        f"POST /ui/v1/chat/completions HTTP/1.1\r\nAuthorization: Bearer {CLIENT_KEY}",
        content_length=BIG,
        sent=b'{"model": "gpt-4o", ',
    )
    assert answer.status == 404
    assert upstream.chat_requests() == []
    async with door.client.post("/v1/chat/completions", json=CHAT, headers=auth()) as r:
        assert r.status == 200  # the real pool still answers


async def test_the_admin_api_refuses_reserved_words_as_provider_types(door: Door) -> None:
    admin = await door.admin()
    before = await door.store.pools.list()
    for word in [*sorted(RESERVED_TYPE_NAMES), "UI", "Api"]:
        config = {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
        status, body = await admin.call(
            "POST", "/api/providers", json={"providerType": word, "providerConfig": config}
        )
        assert status == 400, (word, body)
        assert "reserved" in body["error"]["fields"]["providerType"]
        form = aiohttp.FormData()
        form.add_field("provider", word)
        form.add_field("file", b'{"access_token": "t"}', filename="creds.json")
        status, body = await admin.call("POST", "/api/cfgstore/upload-oauth-credentials", data=form)
        assert status == 400 and "reserved" in body["error"]["fields"]["provider"], word
    assert await door.store.pools.list() == before


async def test_over_redis_a_ui_pool_neither_opens_the_door_nor_can_be_added(
    redis_door: Door, upstream: UpstreamStub
) -> None:
    async with redis_door.client.post(
        "/ui/v1/chat/completions", json=CHAT, headers={"model-provider": TYPE}
    ) as r:
        assert r.status == 401
    assert upstream.chat_requests() == []
    admin = await redis_door.admin()
    status, _ = await admin.call(
        "POST", "/api/providers", json={"providerType": "v1beta", "providerConfig": {}}
    )
    assert status == 400
    assert "v1beta" not in (await redis_door.store.pools.list()).types


@pytest.mark.parametrize(
    ("head", "status"),
    [
        # no key: refused on the headers, the body never read
        ("POST /ui/v1/chat/completions HTTP/1.1\r\nmodel-provider: openai-custom", 401),
        ("POST /%75i/v1/chat/completions HTTP/1.1", 401),
        ("POST /v1/chat/completions HTTP/1.1", 401),
        # no session: the admin API refuses before its handler reads
        ("POST /api/providers HTTP/1.1", 401),
        ("POST /api/config HTTP/1.1", 401),
        # open routes take no large body
        ("POST /api/login HTTP/1.1", 413),
        ("GET /health HTTP/1.1", 413),
        ("GET /metrics HTTP/1.1", 413),
        ("GET /ui/app.js HTTP/1.1", 413),
    ],
)
async def test_an_unauthenticated_big_body_is_refused_without_being_read(
    door: Door, head: str, status: int
) -> None:
    answer = await answer_before_body(
        door.url, head, content_length=BIG, sent=b'{"model": "gpt-4o", "messages": ['
    )
    assert answer.status == status


async def test_a_login_body_over_the_public_limit_is_refused_unread(door: Door) -> None:
    """Under the admin API's 1 MiB but over the limit of what anyone may send."""
    answer = await answer_before_body(
        door.url, "POST /api/login HTTP/1.1", content_length=PUBLIC_BODY_MAX + 1, sent=b"{"
    )
    assert answer.status == 413


HEALTH_PROBES_MIN = 5
ATTACKERS = 3
PAD_ITEMS = 4_000_000
"""An 8 MB body of small JSON values: ~0.2 s of ``json.loads`` on this kind of machine."""
STALL_RATIO = 3.0


async def health_latencies(url: str, until_done: asyncio.Future[Any]) -> list[float]:
    """``GET /health`` back to back until ``until_done`` (at least
    :data:`HEALTH_PROBES_MIN` times); each one's latency."""
    latencies: list[float] = []
    async with aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=WAIT_S)) as c:
        while len(latencies) < HEALTH_PROBES_MIN or not until_done.done():
            started = time.perf_counter()
            async with c.get("/health") as r:
                assert r.status == 200
                await r.read()
            latencies.append(time.perf_counter() - started)
    return latencies


async def big_posts(url: str, path: str, body: bytes, headers: dict[str, str]) -> list[int]:
    """:data:`ATTACKERS` posts of ``body`` at once; their statuses (``0``: the gateway
    closed the connection while the rest was still being sent)."""

    async def one() -> int:
        connector = aiohttp.TCPConnector(force_close=True)
        timeout = aiohttp.ClientTimeout(total=WAIT_S * 3)
        async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as c:
            try:
                async with c.post(path, data=body, headers=headers) as r:
                    await r.read()
                    return r.status
            except aiohttp.ClientError:
                return 0

    return list(await asyncio.gather(*(one() for _ in range(ATTACKERS))))


async def phase(
    url: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[float, list[int]]:
    """The slowest ``/health`` while the big posts are in flight, and their statuses."""
    posts = asyncio.ensure_future(big_posts(url, path, body, headers))
    latencies = await health_latencies(url, posts)
    return max(latencies), await posts


async def test_health_stays_fast_while_unauthenticated_big_bodies_arrive(door: Door) -> None:
    """The control posts the same bodies *with* the key to a route that reads and parses
    them (a client's right): ``/health`` stalls behind the parsing, which shows the probe
    can see a stall. Without the key the bodies are refused unread: no stall."""
    body = b'{"messages": [], "pad": [' + b"0," * PAD_ITEMS + b"0]}"
    json_headers = {"Content-Type": "application/json", "model-provider": TYPE}
    quiet = statistics.median(await health_latencies(door.url, _done()))
    keyed = {**json_headers, **auth()}
    control_max, control = await phase(door.url, "/v1/chat/completions", body, keyed)
    attack_max, attack = await phase(door.url, "/ui/v1/chat/completions", body, json_headers)
    report = (
        f"slowest /health: quiet median {quiet * 1e3:.1f} ms, while {ATTACKERS} keyed bodies "
        f"were parsed {control_max * 1e3:.1f} ms, while {ATTACKERS} unauthenticated ones "
        f"arrived {attack_max * 1e3:.1f} ms"
    )
    print(report)
    assert control == [400] * ATTACKERS, report  # parsed: no model
    assert set(attack) <= {401, 0}, report
    assert control_max > quiet * STALL_RATIO, f"the probe cannot see a stall: {report}"
    assert attack_max * STALL_RATIO < control_max, report


def _done() -> asyncio.Future[None]:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


# ------------------------------------------------------------------ the UI's headers


async def test_every_ui_answer_carries_the_security_headers(door: Door) -> None:
    for path in ("/", "/ui/index.html", "/ui/app.js", "/ui/style.css", "/ui/missing.js"):
        async with door.client.get(path) as r:
            assert r.status == (404 if "missing" in path else 200), path
            for header in UI_HEADERS:
                assert header in r.headers, (path, header)
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


# ------------------------------------------------------------------ bad headers, deep JSON


@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/v1/models", b"x-api-key: \xff\xfe" + CLIENT_KEY.encode()),
        ("/v1/models", b"Authorization: Bearer \xff" + CLIENT_KEY.encode()),
        ("/api/session", b"Authorization: Bearer \xff\xfe0123"),
    ],
)
async def test_a_key_that_is_not_utf8_is_401_not_500(
    door: Door, path: str, header: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    answer = await answer_before_body(
        door.url, f"GET {path} HTTP/1.1", content_length=0, extra=header + b"\r\n"
    )
    assert answer.status == 401
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_json_nested_100k_deep_is_a_bad_request(door: Door) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    headers = {**auth(), "Content-Type": "application/json"}
    async with door.client.post("/v1/chat/completions", data=deep, headers=headers) as r:
        assert r.status == 400
        assert "JSON" in (await r.json())["error"]["message"]
    admin = await door.admin()
    status, body = await admin.call("POST", "/api/config", data=b'{"a":' * 100_000)
    assert status == 400 and body["error"]["code"] == "bad_request", body


# ------------------------------------------------------------------ log lines


async def test_control_characters_in_a_path_cannot_forge_log_lines(
    door: Door, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cfgstore_gateway.app")
    forged = "/x%0areq=forged%20POST%20/v1/chat/completions%20status=200%1b[2J%0d"
    async with door.client.get(URL(forged, encoded=True), headers=auth()) as r:
        assert r.status == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "cfgstore_gateway.app"]
    logged = [line for line in lines if "forged" in line]
    assert len(logged) == 1, lines
    assert "\n" not in logged[0] and "\r" not in logged[0] and "\x1b" not in logged[0]
    assert "/x\\nreq=forged POST /v1/chat/completions status=200\\x1b[2J\\r" in logged[0]


# ------------------------------------------------------------------ /metrics


async def test_metrics_can_require_the_client_key(tmp_path: Path, upstream: UpstreamStub) -> None:
    async with (
        front_door(deployment(tmp_path / "open", upstream.base_url)) as door,
        door.client.get("/metrics") as r,
    ):
        assert r.status == 200  # public by default: scrapers hold no key
    settings = deployment(tmp_path / "closed", upstream.base_url, METRICS_REQUIRE_API_KEY=True)
    async with front_door(settings) as door:
        async with door.client.get("/metrics") as r:
            assert r.status == 401
        async with door.client.get("/metrics", headers=auth()) as r:
            assert r.status == 200
            assert "# TYPE" in await r.text()
        admin = await door.admin()
        status, body = await admin.call("POST", "/api/config", json={"METRICS_REQUIRE_API_KEY": 1})
        assert status == 400 and "METRICS_REQUIRE_API_KEY" in body["error"]["fields"]
        status, _ = await admin.call("POST", "/api/config", json={"METRICS_REQUIRE_API_KEY": False})
        assert status == 200
        async with door.client.get("/metrics") as r:
            assert r.status == 200
