"""Two gateway instances over one Redis namespace (memory fallback over Redis, each with
its own state directory): sessions, lockout, plugins, config and usage are shared
(US6-2, US6-3, US3-2, US7-2, US8-2, FR-017); a Redis outage refuses admin edits with 503
while reads keep answering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest_asyncio
import redis.asyncio as redis_async

from cfgstore.adapters import Settings, Store
from cfgstore.model.pools import node_from_json
from tests.admin.conftest import PASSWORD, SECRET_KEY, Admin, admin_gateway
from tests.gateway.conftest import CLIENT_KEY, TYPE, api_node
from tests.gateway.redis_instances import Namespace, delete_namespace, seeded_namespace
from tests.support.redis_server import RedisServerProcess
from tests.support.waiting import until


@pytest_asyncio.fixture
async def namespace(redis_url: str, tmp_path: Path) -> AsyncIterator[Namespace]:
    namespace = await seeded_namespace(redis_url, tmp_path, "adm-")
    async with Store.open(namespace.redis_settings()) as store:
        config = await store.config.get()
        document = {**config.document, "REQUIRED_API_KEY": CLIENT_KEY, "MODEL_PROVIDER": TYPE}
        await store.config.put(document, config.version)
        node = api_node("n1", "http://127.0.0.1:9", SECRET_KEY)
        await store.pools.add_node(TYPE, node_from_json(node, "test"))
    try:
        yield namespace
    finally:
        await asyncio.to_thread(delete_namespace, redis_url, namespace.prefix)


@asynccontextmanager
async def two(namespace: Namespace) -> AsyncIterator[tuple[Admin, Admin]]:
    async with (
        admin_gateway(namespace.instance_settings("one")) as one,
        admin_gateway(namespace.instance_settings("two")) as two,
    ):
        yield one, two


async def all_keys_and_values(url: str, prefix: str) -> str:
    client = redis_async.Redis.from_url(url)
    parts: list[str] = []
    try:
        async for key in client.scan_iter(match="{" + prefix + "}:*", count=500):
            parts.append(key.decode())
            kind = (await client.type(key)).decode()
            if kind == "string":
                parts.append(str(await client.get(key)))
            elif kind == "hash":
                parts.append(str(await client.hgetall(key)))
            elif kind == "zset":
                parts.append(str(await client.zrange(key, 0, -1)))
            elif kind == "set":
                parts.append(str(await client.smembers(key)))
            elif kind == "list":
                parts.append(str(await client.lrange(key, 0, -1)))
            elif kind == "stream":
                parts.append(str(await client.xrange(key)))
    finally:
        await client.aclose()
    return "\n".join(parts)


async def test_a_session_made_on_one_instance_works_on_the_other_and_only_its_digest_is_stored(
    namespace: Namespace,
) -> None:
    async with two(namespace) as (one, other):
        signed_in = await one.login()
        token = signed_in.token or ""
        as_other = Admin(other.client, other.store, token)
        status, body = await as_other.call("GET", "/api/session")
        assert status == 200 and body["username"] == "admin"
        dump = await all_keys_and_values(namespace.url, namespace.prefix)
        assert token not in dump and token.upper() not in dump
        assert "session" in dump  # the digest is there: the search looked in the right place
        assert (await as_other.call("POST", "/api/logout"))[0] == 200
        assert (await signed_in.call("GET", "/api/session"))[0] == 401


async def test_a_session_expires_by_its_redis_ttl(namespace: Namespace) -> None:
    async with Store.open(namespace.redis_settings()) as store:
        config = await store.config.get()
        await store.config.put({**config.document, "LOGIN_EXPIRY": 1}, config.version)
    async with two(namespace) as (one, other):
        signed_in = await one.login()
        client = redis_async.Redis.from_url(namespace.url)
        try:
            ttls = []
            async for key in client.scan_iter(match="{" + namespace.prefix + "}:session:*"):
                ttls.append(await client.pttl(key))
        finally:
            await client.aclose()
        assert ttls and all(0 < ttl <= 1000 for ttl in ttls), ttls
        as_other = Admin(other.client, other.store, signed_in.token)

        async def expired() -> bool:
            return (await as_other.call("GET", "/api/session"))[0] == 401

        await until(expired, "the session expiring after LOGIN_EXPIRY = 1 s")


async def test_a_lockout_holds_across_instances(namespace: Namespace) -> None:
    async with Store.open(namespace.redis_settings()) as store:
        config = await store.config.get()
        document = {**config.document, "LOGIN_MAX_ATTEMPTS": 3, "LOGIN_MIN_INTERVAL": 0}
        await store.config.put(document, config.version)
    async with two(namespace) as (one, other):
        wrong = {"password": "wrong"}
        assert (await one.call("POST", "/api/login", json=wrong))[0] == 401
        assert (await other.call("POST", "/api/login", json=wrong))[0] == 401
        assert (await one.call("POST", "/api/login", json=wrong))[0] == 401  # locks (Node)
        status, body = await other.call("POST", "/api/login", json={"password": PASSWORD})
        assert status == 429 and body["messageCode"] == "login.error.locked"


async def test_plugin_config_and_usage_changes_on_one_instance_reach_the_other(
    namespace: Namespace,
) -> None:
    async with two(namespace) as (one, other):
        one, other = await one.login(), await other.login()
        status, _ = await one.call("POST", "/api/plugins/ai-monitor/toggle", json={"enabled": True})
        assert status == 200
        _, listed = await other.call("GET", "/api/plugins")
        assert {"name": "ai-monitor", "enabled": True} in [
            {"name": p["name"], "enabled": p["enabled"]} for p in listed["plugins"]
        ]
        status, _ = await one.call(
            "POST", "/api/config", json={"REQUIRED_API_KEY": "rotated-key-42"}
        )
        assert status == 200

        async def other_takes_the_new_key() -> bool:
            headers = {"Authorization": "Bearer rotated-key-42"}
            async with other.client.get("/v1/models", headers=headers) as response:
                return response.status == 200

        await until(other_takes_the_new_key, "the other instance using the new client key")
        _, config = await other.call("GET", "/api/cfgstore/config")
        assert config["version"] == (await one.store.config.get()).version
        status, _ = await one.call("GET", "/api/usage?refresh=true")
        assert status == 200
        status, entry = await other.call("GET", f"/api/usage/{TYPE}")
        assert status == 200 and entry["instances"][0]["uuid"] == "n1"


async def test_while_redis_is_down_edits_are_503_and_reads_still_answer(
    tmp_path: Path, aof_server: RedisServerProcess
) -> None:
    namespace = await seeded_namespace(aof_server.url, tmp_path, "deg-")
    settings: Settings = namespace.instance_settings("one")
    async with admin_gateway(settings) as anonymous:
        admin = await anonymous.login()
        await admin.call("GET", "/api/providers")
        await aof_server.astop()

        async def degraded() -> bool:
            status, body = await admin.call("GET", "/api/storage/status")
            return status == 200 and body["degraded"] is True

        await until(degraded, "the storage status turning degraded")
        status, body = await admin.call("POST", "/api/config", json={"MAX_ERROR_COUNT": 4})
        assert status == 503 and body["error"]["code"] == "storage_degraded"
        assert "degraded" in body["error"]["message"] and "127.0.0.1" not in str(body)
        status, body = await admin.call("POST", "/api/plugins/x/toggle", json={"enabled": True})
        assert status == 503 and body["error"]["code"] == "storage_degraded"
        assert (await admin.call("GET", "/api/providers"))[0] == 200
        # A login is read-only now (tests/admin/test_degraded_sign_in.py).
        status, body = await anonymous.call("POST", "/api/login", json={"password": PASSWORD})
        assert status == 200 and body["readOnly"] is True
        await aof_server.arestart()

        async def back() -> bool:
            status, body = await admin.call("GET", "/api/storage/status")
            return status == 200 and body["degraded"] is False

        await until(back, "the storage status back to normal")
        status, _ = await admin.call("POST", "/api/config", json={"MAX_ERROR_COUNT": 4})
        assert status == 200


async def test_storage_status_names_the_instances_and_redis(namespace: Namespace) -> None:
    async with two(namespace) as (one, other):
        admin = await one.login()

        as_other = Admin(other.client, other.store, admin.token)
        _, seen_by_other = await as_other.call("GET", "/api/storage/status")

        async def both_listed() -> bool:
            _, body = await admin.call("GET", "/api/storage/status")
            ids = {i["instance_id"] for i in body["instances"]}
            return {body["instance"], seen_by_other["instance"]} <= ids

        await until(both_listed, "both instances in the storage status")
        status, body = await admin.call("GET", "/api/storage/status")
    assert status == 200
    assert body["degraded"] is False and body["instance"] != seen_by_other["instance"]
    assert [layer["name"] for layer in body["layers"]] == ["memory", "redis"]
    assert body["redis"]["version"] and body["redis"]["maxmemoryPolicy"]
    assert isinstance(body["journalDepth"], int)
