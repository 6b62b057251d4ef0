"""Redis going back in time: a host crash with ``appendfsync everysec`` loses the last
second of acknowledged writes, and nothing tells the writers. The instance must notice
(a lower revision, confirmed batches missing), say so, and apply again what was lost.

The crash is made for real: the AOF directory of a running ``redis-server`` is copied
under load (as the disk holds it at that moment: a command cut in the middle is what a
power loss leaves too, and Redis drops it on load), the load goes on and is confirmed,
then the server is SIGKILLed and started on the copy."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from cfgstore.adapters import Store
from cfgstore.model.credentials import Credential
from cfgstore.model.pools import node_from_json
from tests.memory_fallback.conftest import (
    DEGRADE_WAIT_S,
    PROCESS_WAIT_S,
    RECOVER_WAIT_S,
    TYPE,
    Load,
    Worker,
    fallback_settings,
    fallback_status,
    make_node,
    new_prefix,
    open_observed,
    redis_settings,
    redis_usage,
    seed_with_nodes,
)
from tests.support.redis_server import RedisServerProcess
from tests.support.waiting import until

LOST_RECORDS = 300
"""Records confirmed after the copy of the AOF: what the crash makes Redis forget."""


def _made(load: Load) -> int:
    return sum(load.counts.values())


async def test_redis_rolled_back_by_a_crash_is_detected_and_repaired_exactly(
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    """Under load, Redis is rolled back to its AOF of a moment earlier (SIGKILL, started on
    the copy). The instance reports the rollback (status: count and the revision gap) and
    re-sends the batches it confirmed in the last seconds under their operation ids: the
    final counts equal the records made. A second, harmless restart re-sends the tail
    again and changes nothing (no second rollback, counts still exact)."""
    url, prefix = aof_server.url, new_prefix()
    uuids = ["n1", "n2"]
    await seed_with_nodes(url, prefix, *uuids)
    aof = aof_server.dir / "appendonlydir"
    earlier = tmp_path / "appendonlydir-earlier"
    settings = fallback_settings(url, prefix, tmp_path / "state")
    async with open_observed(settings) as (store, observer):
        load = Load(store, uuids, tasks=20, pause_s=0.005)
        await until(lambda: _made(load) > 100, "the load is running")
        await asyncio.to_thread(shutil.copytree, aof, earlier)
        at_copy = _made(load)
        await until(lambda: _made(load) > at_copy + LOST_RECORDS, "records after the copy")
        await store.flush()  # confirmed by Redis: in the AOF, not in the copy
        assert (await fallback_status(store)).details["rollbacks detected"] == "0"

        await asyncio.to_thread(aof_server.kill)
        await asyncio.to_thread(shutil.rmtree, aof)
        await asyncio.to_thread(shutil.copytree, earlier, aof)
        await observer.wait(True, within=DEGRADE_WAIT_S)
        await aof_server.arestart()
        await observer.wait(False, within=RECOVER_WAIT_S)
        details = (await fallback_status(store)).details
        assert details["rollbacks detected"] == "1", details
        assert "revisions lost" in details["last rollback"], details
        assert "were missing and are applied again" in details["last rollback"]

        seen = len(observer.transitions)
        await aof_server.arestart()  # SIGTERM: appendfsync always keeps every write
        await observer.wait(True, within=DEGRADE_WAIT_S, after=seen)
        await observer.wait(False, within=RECOVER_WAIT_S, after=seen)
        counts = await load.stop()
        await store.flush()
        details = (await fallback_status(store)).details
        assert details["rollbacks detected"] == "1", details
    assert await redis_usage(url, prefix, *uuids) == counts


async def test_instance_and_redis_crashed_together_resend_the_durable_tail_exactly(
    aof_server: RedisServerProcess, tmp_path: Path, workers: list[Worker]
) -> None:
    """A host crash takes the instance down with Redis: the instance process is SIGKILLed
    and Redis restarted on its AOF of a moment earlier. The instance started again on the
    same state directory finds the batches it had confirmed in its on-disk tail, sends them
    again under their original ids before serving, reports the rollback, and the counts
    equal the records made. A second crash of the instance alone (Redis lost nothing)
    re-sends the tail again and changes nothing."""
    url, prefix = aof_server.url, new_prefix()
    uuids = ["n1", "n2"]
    await seed_with_nodes(url, prefix, *uuids)
    aof = aof_server.dir / "appendonlydir"
    earlier = tmp_path / "appendonlydir-earlier"
    settings = fallback_settings(url, prefix, tmp_path / "state")
    made = dict.fromkeys(uuids, 0)

    async def record(worker: Worker, count: int) -> None:
        for uuid in uuids:
            reply = await worker.request("record", uuid=uuid, count=count, concurrency=20)
            made[uuid] += reply["made"]
        await worker.request("flush")  # confirmed by Redis

    first = await Worker.spawn(settings, tmp_path / "first.log")
    workers.append(first)
    await first.wait_event("open", within=PROCESS_WAIT_S)
    await record(first, 150)
    await asyncio.to_thread(shutil.copytree, aof, earlier)
    await record(first, LOST_RECORDS)  # in the AOF, not in the copy
    await first.kill()
    await asyncio.to_thread(aof_server.kill)
    await asyncio.to_thread(shutil.rmtree, aof)
    await asyncio.to_thread(shutil.copytree, earlier, aof)
    await aof_server.arestart()
    assert await redis_usage(url, prefix, *uuids) == dict.fromkeys(uuids, 150)  # rolled back

    second = await Worker.spawn(settings, tmp_path / "second.log")
    workers.append(second)
    opened = await second.wait_event("open", within=PROCESS_WAIT_S)
    assert opened["mode"] == "redis", opened
    assert opened["details"]["rollbacks detected"] == "1", opened["details"]
    assert "were missing and are applied again" in opened["details"]["last rollback"]
    assert await redis_usage(url, prefix, *uuids) == made
    await record(second, 50)
    await second.kill()

    third = await Worker.spawn(settings, tmp_path / "third.log")
    workers.append(third)
    opened = await third.wait_event("open", within=PROCESS_WAIT_S)
    assert opened["details"]["rollbacks detected"] == "0", opened["details"]
    await record(third, 10)
    await third.close()
    assert await redis_usage(url, prefix, *uuids) == made


KIRO = "claude-kiro-oauth"


def _kiro(refresh_token: str) -> dict[str, object]:
    return {"accessToken": f"at-{refresh_token}", "refreshToken": refresh_token}


async def test_admin_edits_a_rollback_undid_are_written_again_by_version_or_reported(
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    """Edits the instance had confirmed, undone by a rollback: a credential refresh whose
    replaced version is the one stored again is written again; a config edit whose
    replaced version is gone too (another writer's edit, also undone) is reported with
    both versions and not written; a pool edit (no version) is reported by name. The
    status and the log say which, and the storage holds what the report says."""
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    async with Store.open(redis_settings(url, prefix)) as admin:
        kiro_node = {"uuid": "k1", "KIRO_OAUTH_CREDS_FILE_PATH": "kiro/k1.json"}
        await admin.pools.add_node(KIRO, node_from_json(kiro_node, "test"))
        await admin.credentials.put(Credential(KIRO, "k1", _kiro("r1")), None)
        config_before = (await admin.config.get()).version
    aof = aof_server.dir / "appendonlydir"
    earlier = tmp_path / "appendonlydir-earlier"
    settings = fallback_settings(url, prefix, tmp_path / "state")
    async with open_observed(settings) as (store, observer):
        held = await store.credentials.get(KIRO, "k1")
        assert held is not None
        await asyncio.to_thread(shutil.copytree, aof, earlier)
        async with Store.open(redis_settings(url, prefix)) as admin:
            theirs = await admin.config.put({"MAX_ERROR_COUNT": 5}, config_before)
        ours = await store.config.put({"MAX_ERROR_COUNT": 7}, theirs)
        refreshed = await store.credentials.put(Credential(KIRO, "k1", _kiro("r2")), held.version)
        await store.pools.add_node(TYPE, make_node("n9"))
        await store.pools.record_success(TYPE, "n1")
        await store.flush()

        await asyncio.to_thread(aof_server.kill)
        await asyncio.to_thread(shutil.rmtree, aof)
        await asyncio.to_thread(shutil.copytree, earlier, aof)
        await observer.wait(True, within=DEGRADE_WAIT_S)
        await aof_server.arestart()
        await observer.wait(False, within=RECOVER_WAIT_S)
        status = await fallback_status(store)
    report = status.details["admin edits after the last rollback"].split(" | ")
    assert len(report) == 3, report
    config_line, credential_line, pool_line = report
    assert config_line.startswith(f"config version {ours} "), config_line
    assert f"holds version {config_before}, not {theirs} the edit replaced" in config_line
    assert credential_line.startswith(f"credential {KIRO}/k1 version {refreshed} ")
    assert f"held version {held.version} it replaced); written again" in credential_line
    assert pool_line.startswith(f"pool edit add_node {TYPE}/n9 "), pool_line
    assert any(config_line in w for w in status.warnings), status.warnings
    assert not any(credential_line in w for w in status.warnings), status.warnings
    async with Store.open(redis_settings(url, prefix)) as admin:
        credential = await admin.credentials.get(KIRO, "k1")
        assert credential is not None and credential.document == _kiro("r2")
        config = await admin.config.get()
        assert (config.version, config.document) == (config_before, {})
