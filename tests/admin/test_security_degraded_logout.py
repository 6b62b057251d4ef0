"""A logout during a Redis outage, with two gateway instances (memory fallback over one
real, AOF-persisted ``redis-server``, which is stopped and restarted): the logout is
journaled by the instance that took it (the token's digest, never the token) and replayed
when Redis is back, so the other instance, which had seen the session and kept it through
the outage, refuses it from then on. Before the fix the logout was refused (503) and the
session stayed valid everywhere after the outage."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cfgstore.adapters import Store
from cfgstore.model.sessions import token_digest
from tests.admin.conftest import Admin, admin_gateway
from tests.gateway.redis_instances import seeded_namespace
from tests.support.redis_server import RedisServerProcess
from tests.support.waiting import until


async def storage_mode(store: Store) -> str:
    return (await store.status())[0].mode


async def test_a_logout_while_redis_is_down_ends_the_session_on_every_instance(
    tmp_path: Path, aof_server: RedisServerProcess
) -> None:
    namespace = await seeded_namespace(aof_server.url, tmp_path, "out-")
    async with (
        admin_gateway(namespace.instance_settings("one")) as one,
        admin_gateway(namespace.instance_settings("two")) as two,
    ):
        signed_in = await one.login()
        token = signed_in.token or ""
        on_two = Admin(two.client, two.store, token)
        assert (await signed_in.call("GET", "/api/session"))[0] == 200
        assert (await on_two.call("GET", "/api/session"))[0] == 200

        await aof_server.astop()
        status, body = await signed_in.call("POST", "/api/logout")
        assert (status, body) == (200, {"success": True})
        assert (await signed_in.call("GET", "/api/session"))[0] == 401
        journal = namespace.root / "state-one" / "journal"
        journaled = await asyncio.to_thread(journal.read_bytes)
        assert token_digest(token).encode() in journaled
        assert token.encode() not in journaled

        await aof_server.arestart()

        async def one_back() -> bool:
            return await storage_mode(one.store) == "redis"

        await until(one_back, "instance one replaying its journal and serving from Redis")
        assert (await one.store.status())[0].details["journal depth"] == "0"

        async def refused_on_two() -> bool:
            status, _ = await on_two.call("GET", "/api/session")
            return status == 401

        await until(refused_on_two, "instance two refusing the session logged out on one")
        assert await one.store.sessions.get(token) is None
