"""Attacks on the admin login and sessions, over HTTP against running gateways (the file
backend, and two instances over one Redis namespace): a burst of concurrent guesses
against the lockout, ``X-Forwarded-For`` spoofing, guesses through the password-change
endpoint, sessions outliving a password change, bodies that used to end in a traceback,
logins faster than ``LOGIN_MIN_INTERVAL``, and a login flood against the latency of keyed
requests. The logout during a Redis outage is in ``test_security_degraded_logout``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cfgstore.adapters import Store
from cfgstore.model.password import hash_password
from cfgstore.model.pools import node_from_json
from tests.admin.conftest import (
    PASSWORD,
    SECRET_KEY,
    Admin,
    admin_gateway,
    file_deployment,
)
from tests.gateway.conftest import CLIENT_KEY, TYPE, api_node, auth
from tests.gateway.redis_instances import delete_namespace, seeded_namespace
from tests.gateway.upstream_stub import UpstreamStub
from tests.support.waiting import until

WAIT_S = 60.0
"""Bound of every burst (the happy path takes a second or two)."""
NEW_PASSWORD = "a-brand-new-admin-password"
ATTACKER = "203.0.113.5"
VICTIM = "198.51.100.7"
PROXY = {"TRUST_PROXY": True, "TRUSTED_PROXY_IPS": ["127.0.0.1"]}


@pytest.fixture(params=["file", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def gateways(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, **config: Any
) -> AsyncIterator[list[Admin]]:
    """One gateway over a configs folder, or two instances (memory fallback over Redis)
    over one namespace; ``config`` over the test deployment's config."""
    if backend == "file":
        async with admin_gateway(file_deployment(tmp_path, **config)) as admin:
            yield [admin]
        return
    redis_url = request.getfixturevalue("redis_url")
    namespace = await seeded_namespace(redis_url, tmp_path, "sec-")
    try:
        async with Store.open(namespace.redis_settings()) as store:
            current = await store.config.get()
            document = {
                **current.document,
                "REQUIRED_API_KEY": CLIENT_KEY,
                "MODEL_PROVIDER": TYPE,
                **config,
            }
            await store.config.put(document, current.version)
            node = api_node("n1", "http://127.0.0.1:9", SECRET_KEY)
            await store.pools.add_node(TYPE, node_from_json(node, "test"))
        async with (
            admin_gateway(namespace.instance_settings("one")) as one,
            admin_gateway(namespace.instance_settings("two")) as two,
        ):
            yield [one, two]
    finally:
        await asyncio.to_thread(delete_namespace, redis_url, namespace.prefix)


async def use_pbkdf2(admins: list[Admin]) -> None:
    """Store :data:`PASSWORD` hashed, as a real deployment has it: every check costs PBKDF2.
    Waits until every instance reads the new form."""
    stored = await asyncio.to_thread(hash_password, PASSWORD)
    await admins[0].store.password.put_stored(stored)
    for admin in admins:

        async def reads_it(admin: Admin = admin) -> bool:
            return await admin.store.password.get_stored() == stored

        await until(reads_it, "every instance reading the hashed password")


async def login_as(admin: Admin, password: str, forwarded: str | None = None) -> tuple[int, Any]:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else None
    return await admin.call("POST", "/api/login", json={"password": password}, headers=headers)


_LOGIN_CODES = {
    "login.error.locked": "locked_out",
    "login.error.tooFrequent": "too_frequent",
    "login.error.incorrectWithRemaining": "invalid_password",
    "login.error.incorrectWithLock": "invalid_password_locked",
    "login.error.invalidJson": "bad_request",
}
"""The Node login's message codes (``POST /api/login`` answers in its shape) by the
refusal they name."""


def code(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    if "error" in body:
        return str(body["error"]["code"])
    return _LOGIN_CODES.get(body.get("messageCode", ""))


# ------------------------------------------------------------------- the lockout race


async def test_a_burst_of_concurrent_guesses_gets_at_most_max_attempts_checked(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Bursts of 20 concurrent wrong guesses (spread over the instances) until the client
    is locked out: at most LOGIN_MAX_ATTEMPTS of them are counted (each counted guess is
    one that was hashed), at most LOGIN_MAX_ATTEMPTS answered 401 (the last one saying it
    locked the client out, as the Node service answers it), and then the right
    password is refused too. Before the fix every guess of a burst passed the check
    before any was counted: 20 hashed, and a right guess among them got in."""
    config = {"LOGIN_MAX_ATTEMPTS": 5, "LOGIN_LOCKOUT_DURATION": 600, "LOGIN_MIN_INTERVAL": 0}
    async with gateways(backend, request, tmp_path, **config) as admins:
        await use_pbkdf2(admins)
        statuses: list[tuple[int, str | None]] = []
        async with asyncio.timeout(WAIT_S):
            for _ in range(20):  # rounds: a burst may meet busy hashing slots
                burst = await asyncio.gather(
                    *(login_as(admins[i % len(admins)], f"guess-{i}") for i in range(20))
                )
                statuses += [(status, code(body)) for status, body in burst]
                if all(c == "locked_out" for _, c in statuses[-20:]):
                    break
        guard = await admins[0].store.logins.guard("127.0.0.1")
        assert guard.locked_until_ms is not None, statuses
        assert guard.failures <= 5, f"{guard.failures} guesses checked: {statuses}"
        assert sum(1 for status, _ in statuses if status == 401) <= 5, statuses
        assert sum(1 for _, c in statuses if c == "invalid_password_locked") == 1, statuses
        assert all(status in (401, 429) for status, _ in statuses), statuses
        for admin in admins:
            status, body = await login_as(admin, PASSWORD)
            assert (status, code(body)) == (429, "locked_out")


# ------------------------------------------------------------------- X-Forwarded-For


async def test_spoofed_forwarded_entries_neither_escape_nor_cause_a_lockout(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Behind one trusted proxy the attacker writes any X-Forwarded-For it likes; the
    proxy appends the attacker's real address. Varying the written entry does not give
    fresh guesses, and writing a victim's address does not lock the victim out. Before
    the fix the leftmost (written) entry was the client."""
    config = {**PROXY, "LOGIN_MAX_ATTEMPTS": 3, "LOGIN_LOCKOUT_DURATION": 600}
    config["LOGIN_MIN_INTERVAL"] = 0
    async with gateways(backend, request, tmp_path, **config) as admins:
        answers = [
            await login_as(admins[i % len(admins)], "wrong", f"10.9.8.{i}, {ATTACKER}")
            for i in range(6)
        ]
        assert [status for status, _ in answers] == [401, 401, 401, 429, 429, 429]
        assert code(answers[2][1]) == "invalid_password_locked"
        status, body = await login_as(admins[0], PASSWORD, f"10.9.9.9, {ATTACKER}")
        assert (status, code(body)) == (429, "locked_out")
        # The attacker wrote the victim's address: the count went to the attacker's.
        assert (await login_as(admins[-1], PASSWORD, VICTIM))[0] == 200


async def test_the_client_is_the_entry_the_outermost_trusted_proxy_appended(
    tmp_path: Path,
) -> None:
    """TRUSTED_PROXY_HOPS = 2: the client is the second entry from the right; a header
    with fewer entries than hops counts as the proxy itself (the peer)."""
    config = {**PROXY, "TRUSTED_PROXY_HOPS": 2, "LOGIN_MAX_ATTEMPTS": 1, "LOGIN_MIN_INTERVAL": 0}
    async with admin_gateway(file_deployment(tmp_path, **config)) as admin:
        proxy1 = "192.0.2.10"
        status, body = await login_as(admin, "wrong", f"1.1.1.1, {ATTACKER}, {proxy1}")
        assert (status, code(body)) == (401, "invalid_password_locked")
        status, body = await login_as(admin, PASSWORD, f"2.2.2.2, {ATTACKER}, {proxy1}")
        assert (status, code(body)) == (429, "locked_out")
        assert (await login_as(admin, PASSWORD, f"{VICTIM}, {proxy1}"))[0] == 200
        status, body = await login_as(admin, "wrong", ATTACKER)  # counted for the peer
        assert (status, code(body)) == (401, "invalid_password_locked")
        assert (await login_as(admin, PASSWORD, "3.3.3.3"))[0] == 429
        assert (await login_as(admin, PASSWORD, f"{VICTIM}, {proxy1}"))[0] == 200


# ------------------------------------------------------------------- LOGIN_MIN_INTERVAL


async def test_a_second_attempt_within_the_minimum_interval_is_429(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """LOGIN_MIN_INTERVAL (ms) between two attempts of one client, on every instance; not
    counted as a failure. Before the fix the key was ignored."""
    config = {"LOGIN_MIN_INTERVAL": 60_000, "LOGIN_MAX_ATTEMPTS": 2}
    async with gateways(backend, request, tmp_path, **config) as admins:
        assert (await login_as(admins[0], "wrong"))[0] == 401
        for admin in admins:
            async with admin.client.post("/api/login", json={"password": PASSWORD}) as answer:
                assert answer.status == 429
                assert code(await answer.json()) == "too_frequent"
                assert 0 < int(answer.headers["Retry-After"]) <= 60
        guard = await admins[-1].store.logins.guard("127.0.0.1")
        assert guard.failures == 1 and guard.locked_until_ms is None


# ------------------------------------------------------------------- password change


async def test_current_password_guesses_count_in_the_lockout(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Someone holding a session guesses the current password on the change endpoint:
    the guesses count in the login lockout. Before the fix they were unlimited."""
    config = {"LOGIN_MAX_ATTEMPTS": 3, "LOGIN_LOCKOUT_DURATION": 600, "LOGIN_MIN_INTERVAL": 0}
    async with gateways(backend, request, tmp_path, **config) as admins:
        signed_in = [await admin.login() for admin in admins]
        statuses = []
        for attempt in range(4):
            guess = {"currentPassword": f"guess-{attempt}", "newPassword": NEW_PASSWORD}
            status, body = await signed_in[attempt % len(admins)].call(
                "POST", "/api/admin-password", json=guess
            )
            statuses.append((status, code(body)))
        assert statuses == [
            (401, "invalid_password"),
            (401, "invalid_password"),
            (401, "invalid_password"),  # this one locked the client out (Retry-After)
            (429, "locked_out"),
        ]
        right = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
        status, _ = await signed_in[0].call("POST", "/api/admin-password", json=right)
        assert status == 429
        assert await admins[0].store.password.verify(PASSWORD)
        assert (await login_as(admins[-1], PASSWORD))[0] == 429


async def test_a_password_change_ends_every_other_session(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Sessions made before a password change (on any instance) stop working; the one
    that changed it goes on. Before the fix they all survived."""
    async with gateways(backend, request, tmp_path) as admins:
        changer = await admins[0].login()
        others = [await admin.login() for admin in admins for _ in range(2)]
        for other in others:
            assert (await other.call("GET", "/api/session"))[0] == 200  # remembered too
        change = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
        status, body = await changer.call("POST", "/api/admin-password", json=change)
        assert status == 200
        for other in others:
            status, answer = await other.call("GET", "/api/session")
            assert (status, code(answer)) == (401, "UNAUTHORIZED")
        assert body == {"success": True, "message": "Admin password updated successfully"}
        assert (await changer.call("GET", "/api/session"))[0] == 200
        assert (await login_as(admins[-1], NEW_PASSWORD))[0] == 200


# ------------------------------------------------------------------- hostile bodies


@pytest.mark.parametrize(
    ("path", "body"),
    [
        # Deeper than the parser follows, yet under the 64 KiB a public body may have.
        ("/api/login", b"[" * 20_000 + b"]" * 20_000),
        ("/api/login", b'{"password": ' + b'{"a":' * 8_000 + b"1" + b"}" * 8_001),
        ("/api/login", b'{"password": "abc\\ud800def"}'),
        ("/api/login", b'{"password": "\\udfff"}'),
        ("/api/admin-password", b'{"currentPassword": "x", "newPassword": "long-\\udc00-pw"}'),
    ],
    ids=["deep-array", "deep-object", "lone-high-surrogate", "lone-low", "change-password"],
)
async def test_a_body_json_cannot_take_is_400_and_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, path: str, body: bytes
) -> None:
    """Before the fix: 500 and a traceback (RecursionError, UnicodeEncodeError)."""
    async with admin_gateway(file_deployment(tmp_path)) as anonymous:
        admin = await anonymous.login()
        caplog.set_level(logging.INFO)
        caplog.clear()
        headers = {"Content-Type": "application/json"}
        status, answer = await admin.call("POST", path, data=body, headers=headers)
        assert status == 400 and code(answer) == "bad_request", answer
        problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(problems) == 1 and path in problems[0].getMessage(), problems
        assert not any(r.exc_info for r in caplog.records)
        assert await admin.store.password.verify(PASSWORD)
        # A surrogate *pair* is fine text: not refused as such.
        pair = b'{"password": "\\ud83d\\ude00"}'
        assert (await anonymous.call("POST", "/api/login", data=pair, headers=headers))[0] == 401


# ------------------------------------------------------------------- login flood


async def keyed_latency(client: aiohttp.ClientSession, count: int) -> float:
    """The median latency (s) of ``count`` keyed ``GET /v1/models``, one after another."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        async with client.get("/v1/models", headers=auth()) as response:
            await response.read()
            assert response.status == 200
        samples.append(time.perf_counter() - started)
    samples.sort()
    return samples[len(samples) // 2]


async def test_a_flood_of_bad_logins_does_not_stall_keyed_requests(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    """150 concurrent wrong logins from 150 client addresses (behind the trusted proxy,
    so no lockout applies) while a client lists models with its key: the listing's median
    latency stays within a small factor of the quiet one, and most logins are refused at
    once (busy) instead of queueing PBKDF2 work. Before the fix all 150 were hashed at
    once, and keyed requests waited for them (47.8 s were seen)."""
    config = {**PROXY, "LOGIN_MAX_ATTEMPTS": 1000}
    async with admin_gateway(file_deployment(tmp_path, upstream.base_url, **config)) as admin:
        await use_pbkdf2([admin])
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=WAIT_S)
        base = str(admin.client._base_url)
        async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as client:
            await keyed_latency(client, 10)  # warm-up: connections, caches
            quiet = await keyed_latency(client, 40)

            async def bad_login(index: int) -> int:
                forwarded = f"10.{index // 250}.{index % 250}.1"
                headers = {"X-Forwarded-For": forwarded}
                body = {"password": f"guess-{index}"}
                async with client.post("/api/login", json=body, headers=headers) as response:
                    await response.read()
                    return response.status

            async with asyncio.timeout(WAIT_S):
                flood = asyncio.gather(*(bad_login(i) for i in range(150)))
                during = await keyed_latency(client, 40)
                statuses = await flood
        assert set(statuses) <= {401, 429}, statuses
        assert statuses.count(429) >= 100, statuses
        assert during <= max(10 * quiet, quiet + 0.05), (
            f"median keyed latency {during * 1e3:.1f} ms during the flood, "
            f"{quiet * 1e3:.1f} ms quiet"
        )
