"""Outages of the Redis below the memory fallback, one instance (or two) in this process:
an emptied Redis (data lost, restored from the snapshot), a hung server (SIGSTOP), changes
crossing instances, admin edits refused while degraded, a torn journal tail, the start-up
table and the journal bound. Real ``redis-server`` processes; every count exact."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import struct
import time
from pathlib import Path

import pytest

from cfgstore.adapters import Settings, Store
from cfgstore.errors import JournalFull, NotInitialised, StorageDegraded, StorageUnavailable
from cfgstore.model.credentials import Credential
from cfgstore.model.pools import node_from_json
from cfgstore.model.versions import ABSENT_VERSION
from cfgstore_memory.journal import MAGIC
from tests.memory_fallback.conftest import (
    DEGRADE_WAIT_S,
    RECOVER_WAIT_S,
    TYPE,
    Load,
    fallback_settings,
    fallback_status,
    journal_depth,
    make_node,
    new_prefix,
    open_observed,
    poll_until,
    read_snapshot,
    record,
    redis_settings,
    redis_usage,
    replayed,
    restore_namespace,
    scaled,
    seed_with_nodes,
    snapshot_usage,
    usage,
    wipe_server_data,
)
from tests.support.redis_server import RedisServerProcess, free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIGS = REPO / "examples" / "deployment" / "configs"


# ------------------------------------------------------------------------- data lost


async def test_emptied_redis_is_data_lost_until_restored_from_the_snapshot(
    volatile_server: RedisServerProcess, tmp_path: Path
) -> None:
    """The server goes down and comes back EMPTY: the instance reports data loss (not a
    fresh start), keeps journaling and serving hot-path records, re-creates nothing; once
    the namespace is restored from its snapshot it replays the journal and runs normally,
    every record counted once (snapshot counts + journaled records)."""
    url, prefix = volatile_server.url, new_prefix()
    namespace_id = await seed_with_nodes(url, prefix, "n1")
    state = tmp_path / "state"
    before, during, after = scaled(300), scaled(200), scaled(250)
    async with open_observed(fallback_settings(url, prefix, state)) as (store, observer):
        await record(store, "n1", before)
        await store.flush()
        await volatile_server.astop()
        await record(store, "n1", during)  # meets the outage: journaled
        await observer.wait(True, within=DEGRADE_WAIT_S)
        await store.flush()
        degraded = len(observer.transitions)

        async def snapshot_saved_at_the_outage() -> bool:  # in the background
            return snapshot_usage(read_snapshot(state), "n1") == before

        await poll_until(snapshot_saved_at_the_outage, within=5)
        wipe_server_data(volatile_server)
        await volatile_server.arestart()
        await observer.wait(True, after=degraded, within=RECOVER_WAIT_S)  # the probe
        status = await fallback_status(store)
        assert status.mode == "data-lost"
        snapshot_path = state / "snapshot.json"
        assert status.warnings[0].startswith("DATA LOST: ")
        assert f"cfgctl restore --snapshot {snapshot_path}" in status.warnings[0]
        depth = int(status.details["journal depth"])
        assert depth > 0
        await record(store, "n1", after)  # still accepted, journaled, visible
        await store.flush()
        assert await journal_depth(store) > depth
        assert await usage(store, "n1") == before + during + after
        async with Store.open(redis_settings(url, prefix)) as admin:
            head = await admin.replicas.head()
            assert head.namespace_id is None and not head.has_data  # nothing re-created
        snapshot = read_snapshot(state)
        assert snapshot.namespace_id == namespace_id
        assert snapshot_usage(snapshot, "n1") == before  # confirmed when the outage began

        journaled = await journal_depth(store)
        summary = await restore_namespace(url, prefix, snapshot_path)
        assert summary["namespace_id"] == namespace_id
        await observer.wait(False, within=RECOVER_WAIT_S)
        status = await fallback_status(store)
        assert status.mode == "redis"
        assert status.details["journal depth"] == "0"
        assert replayed(status.details)[0] == journaled
        assert replayed(status.details)[1] == during + after
        assert await usage(store, "n1") == before + during + after
    assert await redis_usage(url, prefix, "n1") == {"n1": before + during + after}


async def test_data_loss_noticed_while_idle_restores_every_confirmed_record(
    volatile_server: RedisServerProcess, tmp_path: Path
) -> None:
    """An idle instance whose Redis restarts empty between two requests goes from normal
    straight to data-lost. The snapshot it leaves for the restore must hold what Redis had
    confirmed until then (the instance holds it in memory), or those records are lost."""
    url, prefix = volatile_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    state = tmp_path / "state"
    before, after = scaled(300), scaled(100)
    async with open_observed(fallback_settings(url, prefix, state)) as (store, observer):
        await record(store, "n1", before)
        await store.flush()
        await volatile_server.astop()
        wipe_server_data(volatile_server)
        await volatile_server.arestart()
        await record(store, "n1", after)
        await observer.wait(True, within=DEGRADE_WAIT_S)
        await store.flush()
        assert (await fallback_status(store)).mode == "data-lost"
        await restore_namespace(url, prefix, state / "snapshot.json")
        await observer.wait(False, within=RECOVER_WAIT_S)
        await store.flush()
    assert await redis_usage(url, prefix, "n1") == {"n1": before + after}


# ------------------------------------------------------------------------- hang

HANG_S = 3.0


async def test_hung_server_degrades_within_a_second_and_counts_exactly(
    volatile_server: RedisServerProcess, tmp_path: Path
) -> None:
    """SIGSTOP under load: the batch in flight gets no answer, the instance goes degraded
    after ``degrade_after_ms`` (1 s) while the server is still stopped and journals that
    batch under its operation id. After SIGCONT the server applies the abandoned batch
    anyway; the replay recognises it (one batch already applied) and the totals are exact."""
    url, prefix = volatile_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1", "n2")
    async with open_observed(fallback_settings(url, prefix, tmp_path / "state")) as (
        store,
        observer,
    ):
        load = Load(store, ["n1", "n2"], tasks=scaled(200, minimum=20), pause_s=0.02)
        await poll_until(lambda: _made(load, 500), within=10)  # traffic flows
        volatile_server.pause()
        paused_at = time.monotonic()
        degraded = await observer.wait(True, within=HANG_S)
        during = await fallback_status(store)
        await _sleep_until(paused_at + HANG_S)
        volatile_server.resume()
        resumed_at = time.monotonic()
        await observer.wait(False, within=RECOVER_WAIT_S)
        target = sum(load.counts.values()) + 500
        await poll_until(lambda: _made(load, target), within=10)  # traffic after it
        made = await load.stop()
        await store.flush()
        status = await fallback_status(store)
        for uuid, count in made.items():
            assert await usage(store, uuid) == count

    assert paused_at < degraded.at < resumed_at
    assert degraded.at - paused_at < 2.0  # degrade_after_ms is 1000
    assert during.mode == "degraded"
    assert status.mode == "redis"
    entries, records, duplicates = replayed(status.details)
    assert entries > 0 and records > 0
    assert duplicates == 1  # the batch the client gave up on, applied after SIGCONT
    assert await redis_usage(url, prefix, *made) == made


async def _made(load: Load, at_least: int) -> bool:
    return sum(load.counts.values()) >= at_least


async def _sleep_until(deadline: float) -> None:
    """Hold an outage until ``deadline`` (``time.monotonic()``)."""
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


# ------------------------------------------------------------------------- two instances

PROPAGATION_S = 2.0


async def test_changes_on_one_instance_reach_the_other(
    volatile_server: RedisServerProcess, tmp_path: Path
) -> None:
    """Health changes (a failure past the error limit, a cooldown) and a config edit on
    instance A are served by instance B within 2 s."""
    url, prefix = volatile_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "failing", "cooling")
    async with (
        open_observed(fallback_settings(url, prefix, tmp_path / "a")) as (a, _),
        open_observed(fallback_settings(url, prefix, tmp_path / "b")) as (b, _),
    ):
        for uuid in ("failing", "cooling"):  # B holds healthy copies
            node = await b.pools.get_node(TYPE, uuid)
            assert node is not None and node.state.is_healthy
        config = await b.config.get()  # and the config
        assert config.version == ABSENT_VERSION

        await a.pools.record_failure(TYPE, "failing", "boom", max_error_count=1)
        await a.pools.record_cooldown(
            TYPE, "cooling", "rate limited", max_error_count=3, recovery_at_ms=4_102_444_800_000
        )
        await a.flush()

        async def b_sees_unhealthy() -> bool:
            nodes = [await b.pools.get_node(TYPE, uuid) for uuid in ("failing", "cooling")]
            return all(node is not None and not node.state.is_healthy for node in nodes)

        await poll_until(b_sees_unhealthy, within=PROPAGATION_S)
        version = await a.config.put({"MAX_ERROR_COUNT": 7}, config.version)

        async def b_sees_config() -> bool:
            return (await b.config.get()).version == version

        await poll_until(b_sees_config, within=PROPAGATION_S)
        assert (await b.config.get()).document == {"MAX_ERROR_COUNT": 7}
        cooling = await b.pools.get_node(TYPE, "cooling")
        assert cooling is not None
        assert cooling.state.scheduled_recovery_time is not None


# ------------------------------------------------------------------------- admin edits


async def test_admin_edits_are_refused_while_degraded_and_nothing_changes(
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    """While degraded, node disable, node add, config edit and plugin toggle raise
    StorageDegraded; reads are still served. After the recovery none of them shows up
    (config version, node, plugin setting unchanged), in the instance or in Redis."""
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    async with open_observed(fallback_settings(url, prefix, tmp_path / "state")) as (
        store,
        observer,
    ):
        version = await store.config.put({"MAX_ERROR_COUNT": 4}, ABSENT_VERSION)
        assert (await store.config.get()).version == version  # read back, as a gateway does
        await store.plugin_config.set_enabled("api-potluck", True)
        node_before = await store.pools.get_node(TYPE, "n1")
        assert node_before is not None and not node_before.state.is_disabled
        plugins_before = await store.plugin_config.get()

        await aof_server.astop()
        await store.pools.record_success(TYPE, "n1")
        await observer.wait(True, within=DEGRADE_WAIT_S)
        with pytest.raises(StorageDegraded):
            await store.pools.set_disabled(TYPE, "n1", True)
        with pytest.raises(StorageDegraded):
            await store.pools.add_node(TYPE, make_node("n2"))
        with pytest.raises(StorageDegraded):
            await store.config.put({"MAX_ERROR_COUNT": 9}, version)
        with pytest.raises(StorageDegraded):
            await store.plugin_config.set_enabled("api-potluck", False)
        assert (await store.config.get()).version == version  # reads still served
        assert await store.plugin_config.get() == plugins_before

        await aof_server.arestart()
        await observer.wait(False, within=RECOVER_WAIT_S)
        await store.flush()
        await _assert_unchanged(store, version, plugins_before.to_json())
    async with Store.open(redis_settings(url, prefix)) as admin:
        await _assert_unchanged(admin, version, plugins_before.to_json())


async def _assert_unchanged(store: Store, version: str, plugins: object) -> None:
    config = await store.config.get()
    assert (config.version, config.document) == (version, {"MAX_ERROR_COUNT": 4})
    pools = await store.pools.list()
    assert [node.uuid for node in pools.types[TYPE]] == ["n1"]
    node = pools.types[TYPE][0]
    assert not node.state.is_disabled
    assert node.state.usage_count == 1  # the record made during the outage
    assert (await store.plugin_config.get()).to_json() == plugins


KIRO = "claude-kiro-oauth"


async def test_config_edit_confirmed_before_an_outage_is_served_during_it(
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    """A config edit Redis confirmed just before an outage, not read back yet: degraded
    reads serve it and the snapshot (what a restore would bring back) holds it."""
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    state = tmp_path / "state"
    async with open_observed(fallback_settings(url, prefix, state)) as (store, observer):
        before = await store.config.get()
        version = await store.config.put({"MAX_ERROR_COUNT": 4}, before.version)
        await aof_server.astop()
        await store.pools.record_success(TYPE, "n1")
        await observer.wait(True, within=DEGRADE_WAIT_S)
        await store.flush()
        served = await store.config.get()
        assert (served.version, served.document) == (version, {"MAX_ERROR_COUNT": 4})

        async def snapshot_has_the_edit() -> bool:  # saved in the background at the outage
            return read_snapshot(state).config.version == version

        await poll_until(snapshot_has_the_edit, within=5)


async def test_credential_refresh_confirmed_before_an_outage_is_served_during_it(
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    """A token refresh Redis confirmed just before an outage, not read back yet: degraded
    reads serve the refreshed token (the old refresh token may already be spent) and the
    snapshot holds it."""
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    async with Store.open(redis_settings(url, prefix)) as admin:
        node = node_from_json({"uuid": "k1", "KIRO_OAUTH_CREDS_FILE_PATH": "kiro/k1.json"}, "t")
        await admin.pools.add_node(KIRO, node)
    state = tmp_path / "state"
    async with open_observed(fallback_settings(url, prefix, state)) as (store, observer):
        await store.credentials.put(Credential(KIRO, "k1", {"refreshToken": "first"}), None)
        held = await store.credentials.get(KIRO, "k1")
        assert held is not None
        refreshed = Credential(KIRO, "k1", {"refreshToken": "second"})
        version = await store.credentials.put(refreshed, held.version)
        await aof_server.astop()
        await store.pools.record_success(TYPE, "n1")
        await observer.wait(True, within=DEGRADE_WAIT_S)
        await store.flush()
        served = await store.credentials.get(KIRO, "k1")
        assert served is not None
        assert (served.version, served.document) == (version, {"refreshToken": "second"})

        async def snapshot_has_the_refresh() -> bool:  # saved in the background
            return [c.document for c in read_snapshot(state).credentials] == [
                {"refreshToken": "second"}
            ]

        await poll_until(snapshot_has_the_refresh, within=5)


# ------------------------------------------------------------------------- torn tail


async def test_torn_journal_tail_is_cut_and_the_intact_entries_replay(
    aof_server: RedisServerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Records journaled during an outage, the store closed, then half a frame appended
    to the journal (a write cut short): the next start warns about the torn tail, naming
    the file and the offset, drops it, replays every intact entry and counts exactly."""
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    state = tmp_path / "state"
    settings = fallback_settings(url, prefix, state)
    before, rounds, per_round = scaled(100), 5, scaled(40)
    async with open_observed(settings) as (store, observer):
        await record(store, "n1", before)
        await store.flush()
        await aof_server.astop()
        for _ in range(rounds):  # a flush between rounds: separate journal entries
            await record(store, "n1", per_round)
            await store.flush()
        await observer.wait(True, within=DEGRADE_WAIT_S)
        depth = await journal_depth(store)
        assert depth >= rounds
    journal = state / "journal"
    intact = journal.stat().st_size
    with journal.open("ab") as fh:  # a header promising 64 bytes, and 7 of them
        fh.write(MAGIC + struct.pack(">II", 64, 0) + b'{"seq":')

    await aof_server.arestart()
    caplog.set_level(logging.WARNING, logger="cfgstore.memory")
    async with open_observed(settings) as (store, _):
        status = await fallback_status(store)
        assert status.mode == "redis"
        assert status.details["journal depth"] == "0"
        assert replayed(status.details) == (depth, rounds * per_round, 0)
        assert await usage(store, "n1") == before + rounds * per_round
    torn = [
        r.getMessage()
        for r in caplog.records
        if r.name == "cfgstore.memory.journal" and r.levelno == logging.WARNING
    ]
    assert len(torn) == 1, torn
    assert f"journal {journal}: torn or corrupt tail at offset {intact}" in torn[0]
    assert f"keeping {depth} entries" in torn[0]
    assert await redis_usage(url, prefix, "n1") == {"n1": before + rounds * per_round}


# ------------------------------------------------------------------------- start-up


async def test_start_unreachable_without_snapshot_fails_naming_the_state_dir(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings = fallback_settings(url, new_prefix(), state, redis_connect_timeout_ms=500)
    with pytest.raises(StorageUnavailable) as raised:
        async with Store.open(settings):
            pass
    assert not isinstance(raised.value, StorageDegraded)
    assert f"no snapshot in {state}" in str(raised.value)


async def test_start_on_empty_never_used_redis_serves_files_on_the_default_chain(
    volatile_server: RedisServerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The default chain (no backends chosen) on an empty Redis this instance never used:
    a warning naming ``cfgctl migrate`` and ``cfgctl init``, then the files are served;
    nothing is written to Redis."""
    configs = tmp_path / "configs"
    shutil.copytree(EXAMPLE_CONFIGS, configs)
    prefix = new_prefix()
    settings = Settings(
        configs_dir=configs,
        redis_url=volatile_server.url,
        redis_prefix=prefix,
        state_dir=tmp_path / "state",
    )
    caplog.set_level(logging.WARNING, logger="cfgstore.store")
    async with Store.open(settings) as store:
        assert store.backend_names == ["memory", "file"]
        pools = await store.pools.list()
        expected = json.loads((configs / "provider_pools.json").read_text())
        assert {t: [n.uuid for n in nodes] for t, nodes in pools.types.items()} == {
            t: [n["uuid"] for n in nodes] for t, nodes in expected.items()
        }
    warnings = [r.getMessage() for r in caplog.records if r.name == "cfgstore.store"]
    assert len(warnings) == 1, warnings
    assert "cfgctl migrate" in warnings[0] and "cfgctl init" in warnings[0]
    assert str(configs) in warnings[0]
    async with Store.open(redis_settings(volatile_server.url, prefix)) as admin:
        head = await admin.replicas.head()
        assert head.namespace_id is None and not head.has_data


async def test_start_on_empty_never_used_redis_with_an_explicit_chain_fails(
    volatile_server: RedisServerProcess, tmp_path: Path
) -> None:
    settings = fallback_settings(volatile_server.url, new_prefix(), tmp_path / "state")
    with pytest.raises(NotInitialised) as raised:
        async with Store.open(settings):
            pass
    assert "cfgctl migrate" in str(raised.value) and "cfgctl init" in str(raised.value)


# ------------------------------------------------------------------------- journal bound


async def test_full_journal_refuses_new_records_and_loses_none_it_accepted(
    aof_server: RedisServerProcess, tmp_path: Path
) -> None:
    """With a 4 KiB journal and the server down, records are accepted until the journal
    is full, then refused with JournalFull (status says "journal full"); after the
    recovery every accepted record is counted, none twice."""
    url, prefix = aof_server.url, new_prefix()
    await seed_with_nodes(url, prefix, "n1")
    settings = fallback_settings(url, prefix, tmp_path / "state", journal_max_bytes=4096)
    async with open_observed(settings) as (store, observer):
        await aof_server.astop()
        accepted = 0
        refused: JournalFull | None = None
        for _ in range(1000):  # a flush after each: one journal entry per record
            try:
                await store.pools.record_success(TYPE, "n1")
            except JournalFull as exc:
                refused = exc
                break
            accepted += 1
            with contextlib.suppress(JournalFull):  # accepted, kept in memory; next refused
                await store.flush()
        assert refused is not None, "the 4 KiB journal never filled"
        await observer.wait(True, within=DEGRADE_WAIT_S)
        assert accepted > 1
        status = await fallback_status(store)
        assert status.mode == "degraded"
        assert [w for w in status.warnings if w.startswith("journal full: ")], status.warnings
        assert "4096" in status.details["journal bytes"]
        with pytest.raises(JournalFull):
            await store.pools.record_success(TYPE, "n1")
        assert await usage(store, "n1") == accepted

        await aof_server.arestart()
        await observer.wait(False, within=RECOVER_WAIT_S)
        await store.flush()
        status = await fallback_status(store)
        assert not [w for w in status.warnings if "journal full" in w], status.warnings
        assert await usage(store, "n1") == accepted
    assert await redis_usage(url, prefix, "n1") == {"n1": accepted}
