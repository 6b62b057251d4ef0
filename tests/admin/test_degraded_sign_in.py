"""Signing in during a Redis outage (issue 15.3), against real gateways over one real,
AOF-persisted ``redis-server`` that is stopped and restarted.

While the storage is degraded a login is checked against the last confirmed password and
gives a read-only session, valid on the instance that issued it only: it reads, every
change is refused with the reason, and it ends once that instance reaches Redis again.
The lockout still counts (in memory). Before, every login answered ``503 storage_degraded``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cfgstore.adapters import Store
from cfgstore.model.versions import ABSENT_VERSION
from cfgstore_gateway.admin.outage_sign_in import ENDED_AT_RECOVERY, READ_ONLY_REFUSAL
from tests.admin.conftest import PASSWORD, Admin, admin_gateway
from tests.gateway.redis_instances import Namespace, seeded_namespace
from tests.support.redis_server import RedisServerProcess
from tests.support.waiting import until

NEW_NODE = {
    "providerType": "openai-custom",
    "providerConfig": {"OPENAI_API_KEY": "sk-added-during-the-outage", "customName": "x"},
}


async def namespace_with(tmp_path: Path, server: RedisServerProcess, **config: object) -> Namespace:
    namespace = await seeded_namespace(server.url, tmp_path, "ro-")
    async with Store.open(namespace.redis_settings()) as store:
        await store.config.put({"LOGIN_MIN_INTERVAL": 0, **config}, ABSENT_VERSION)
    return namespace


async def stop_redis(admin: Admin, server: RedisServerProcess) -> None:
    """Stop Redis once the instance confirmed the admin password (``admin_gateway`` has
    just stored it: the instance's re-read after that change may still be on its way)."""
    assert await admin.store.password.get_stored() == PASSWORD
    await server.astop()
    await wait_for_mode(admin, "degraded")


async def mode_of(admin: Admin) -> str:
    return (await admin.store.status())[0].mode


async def wait_for_mode(admin: Admin, mode: str) -> None:
    async def reached() -> bool:
        return await mode_of(admin) == mode

    await until(reached, f"the instance's storage mode becoming {mode}")


async def test_a_login_while_redis_is_down_gives_a_read_only_session_on_that_instance(
    tmp_path: Path, aof_server: RedisServerProcess
) -> None:
    namespace = await namespace_with(tmp_path, aof_server)
    async with (
        admin_gateway(namespace.instance_settings("one")) as one,
        admin_gateway(namespace.instance_settings("two")) as two,
    ):
        before = await (await one.login()).call("GET", "/api/providers")
        await stop_redis(one, aof_server)

        status, body = await one.call("POST", "/api/login", json={"password": "wrong one"})
        assert (status, body["messageCode"]) == (401, "login.error.incorrectWithRemaining")
        status, body = await one.call("POST", "/api/login", json={"password": PASSWORD})
        assert status == 200, body
        assert body["readOnly"] is True and "read-only" in body["message"]
        read_only = Admin(one.client, one.store, body["token"])

        status, session = await read_only.call("GET", "/api/session")
        assert status == 200 and session["readOnly"] is True
        assert "read-only" in session["readOnlyReason"]
        assert await read_only.call("GET", "/api/providers") == before
        status, storage = await read_only.call("GET", "/api/storage/status")
        assert status == 200 and storage["degraded"] is True
        assert storage["degradedSince"] and isinstance(storage["journalDepth"], int)

        changes = [
            ("POST", "/api/providers", NEW_NODE),
            ("POST", "/api/config", {"LOGIN_EXPIRY": 60}),
            ("POST", "/api/admin-password", {"currentPassword": PASSWORD, "newPassword": "x" * 12}),
            ("POST", "/api/providers/openai-custom/health-check", None),
        ]
        for method, path, payload in changes:
            status, refused = await read_only.call(method, path, json=payload)
            assert status == 503, (path, refused)
            assert refused["error"] == {"code": "storage_degraded", "message": READ_ONLY_REFUSAL}

        # Local to the instance that issued it: the other one never heard of it.
        on_two = Admin(two.client, two.store, read_only.token)
        assert (await on_two.call("GET", "/api/session"))[0] == 401

        await aof_server.arestart()
        await wait_for_mode(one, "redis")
        status, ended = await read_only.call("GET", "/api/session")
        assert (status, ended["error"]["message"]) == (401, ENDED_AT_RECOVERY)
        full = await one.login()
        status, session = await full.call("GET", "/api/session")
        assert status == 200 and session["readOnly"] is False
        assert await full.call("GET", "/api/providers") == before  # nothing was changed


async def test_the_lockout_still_counts_during_the_outage(
    tmp_path: Path, aof_server: RedisServerProcess
) -> None:
    namespace = await namespace_with(
        tmp_path, aof_server, LOGIN_MAX_ATTEMPTS=2, LOGIN_LOCKOUT_DURATION=600
    )
    async with admin_gateway(namespace.instance_settings("one")) as one:
        await stop_redis(one, aof_server)
        assert (await one.call("POST", "/api/login", json={"password": "guess 1"}))[0] == 401
        status, body = await one.call("POST", "/api/login", json={"password": "guess 2"})
        assert (status, body["messageCode"]) == (401, "login.error.incorrectWithLock")
        status, body = await one.call("POST", "/api/login", json={"password": PASSWORD})
        assert (status, body["messageCode"]) == (429, "login.error.locked")


@pytest.mark.parametrize("ending", ["logout", "expiry"])
async def test_a_read_only_session_ends_at_its_logout_or_expiry(
    tmp_path: Path, aof_server: RedisServerProcess, ending: str
) -> None:
    namespace = await namespace_with(tmp_path, aof_server, LOGIN_EXPIRY=1)
    async with admin_gateway(namespace.instance_settings("one")) as one:
        await stop_redis(one, aof_server)
        read_only = await one.login()
        assert (await read_only.call("GET", "/api/session"))[0] == 200
        if ending == "logout":
            depth = (await one.store.status())[0].details["journal depth"]
            assert (await read_only.call("POST", "/api/logout"))[0] == 200
            # Never stored, so nothing to replay: the logout is not journaled.
            assert (await one.store.status())[0].details["journal depth"] == depth

        async def refused() -> bool:
            return (await read_only.call("GET", "/api/session"))[0] == 401

        await until(refused, f"the read-only session refused after its {ending}")
        _, body = await read_only.call("GET", "/api/session")
        assert body["error"]["code"] == "UNAUTHORIZED"  # not "the storage is back"
