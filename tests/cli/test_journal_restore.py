"""``cfgctl journal list|replay``, ``cfgctl restore`` and the live instances in ``cfgctl
status``, on a real Redis (a namespace of its own per test), with real journals written by
:class:`~cfgstore_memory.journal.Journal` and real snapshot files.

cfgctl runs its own event loop: these tests are synchronous and write journals or seed and
read Redis with ``asyncio.run``; every Store they open is Redis alone (never the memory
fallback, whose state directory would land in the working directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from cfgstore.adapters import Settings, Store
from cfgstore.model.credentials import Credential, TokenFormat
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import pools_from_json, pools_to_json
from cfgstore.model.records import Success
from cfgstore.model.replica import InstanceInfo
from cfgstore.model.snapshot import StoreSnapshot, snapshot_to_bytes
from cfgstore.model.timefmt import iso_ms, parse_time_ms
from cfgstore.model.versions import SCHEMA_VERSION
from cfgstore_memory.journal import Journal
from cfgstore_memory.replay import CREDENTIAL, RECORDS, credential_data, records_data
from tests.cli.deployments import (
    CLI_TIMEOUT_S,
    Namespace,
    cfgctl,
    deadline,
    describe,
    plugins,
)
from tests.support.sample_snapshot import read_sample_snapshot

AT_MS = 1773576000123  # 2026-03-15T12:00:00.123Z
SET_ASIDE_MS = 1773576009999
JOURNAL_BYTES = 1 << 20
ACCESS_TOKEN = "FAKE-kiro-access-5d0c"
REFRESH_TOKEN = "FAKE-kiro-refresh-91ab"

POOLS: dict[str, Any] = {
    "openai-custom": [
        {"customName": None, "uuid": "n-1", "OPENAI_API_KEY": "sk-FAKE-1", "usageCount": 10},
        {"customName": None, "uuid": "n-2", "OPENAI_API_KEY": "sk-FAKE-2", "usageCount": 0},
    ],
    "claude-kiro-oauth": [
        {
            "customName": None,
            "uuid": "k-1",
            "KIRO_OAUTH_CREDS_FILE_PATH": "./configs/kiro/k-1/kiro-auth-token.json",
            "usageCount": 0,
        }
    ],
}

KIRO_CREDENTIAL = Credential(
    "claude-kiro-oauth",
    "k-1",
    {
        "accessToken": ACCESS_TOKEN,
        "refreshToken": REFRESH_TOKEN,
        "expiresAt": "2026-03-15T13:00:00.000Z",
    },
    source_path="./configs/kiro/k-1/kiro-auth-token.json",
    token_format=TokenFormat.KIRO,
)

Entry = tuple[str, JSONValue, str]


# -- Redis -----------------------------------------------------------------------------------


def redis_alone(ns: Namespace) -> Settings:
    return Settings(
        configs_dir=Path("unused"),
        backends=("redis",),
        redis_url=ns.url,
        redis_prefix=ns.prefix,
        reset_counters_on_start=False,
        watch_interval_ms=0,
    )


def on_redis(ns: Namespace, action: Callable[[Store], Awaitable[Any]]) -> Any:
    """``asyncio.run`` an ``async def action(store)`` on the Redis backend alone."""

    async def go() -> Any:
        async with Store.open(redis_alone(ns), plugins=plugins()) as store:
            result = await action(store)
            await store.flush()
            return result

    with deadline(CLI_TIMEOUT_S):
        return asyncio.run(go())


def seed(ns: Namespace, namespace_id: str) -> None:
    """Pools :data:`POOLS` and a namespace id, as ``cfgctl migrate`` would leave them."""

    async def action(store: Store) -> None:
        await store.pools.import_all(pools_from_json(POOLS, "test"), keep_live_state=False)
        await store.meta.update({"schema": str(SCHEMA_VERSION), "namespace": namespace_id})

    on_redis(ns, action)


def usage(ns: Namespace) -> dict[str, int]:
    async def action(store: Store) -> dict[str, int]:
        return {f"{t}/{n.uuid}": n.state.usage_count for t, n in await store.pools.list()}

    result: dict[str, int] = on_redis(ns, action)
    return result


def stored_credential(ns: Namespace, provider_type: str, uuid: str) -> Credential | None:
    async def action(store: Store) -> Credential | None:
        return await store.credentials.get(provider_type, uuid)

    result: Credential | None = on_redis(ns, action)
    return result


def run_cfgctl(*args: str | Path) -> Result:
    return cfgctl(*args)


# -- journals --------------------------------------------------------------------------------


def successes(uuid: str, count: int, at_ms: int = AT_MS) -> JSONValue:
    return records_data([Success("openai-custom", uuid, at_ms + i) for i in range(count)])


def write_journal(path: Path, entries: Sequence[Entry], at_ms: int = AT_MS) -> None:
    """Append ``entries`` (kind, data, op id) through a real Journal, then close it."""

    async def go() -> None:
        journal = await Journal.open(path, JOURNAL_BYTES)
        try:
            for i, (kind, data, op_id) in enumerate(entries):
                await journal.append(kind, data, op_id, at_ms + i)
        finally:
            await journal.close()

    with deadline(CLI_TIMEOUT_S):
        asyncio.run(go())


def write_orphan(
    directory: Path, namespace_id: str, entries: Sequence[Entry], at_ms: int = AT_MS
) -> Path:
    """A journal set aside as the instance does it: written as ``journal``, then renamed
    ``journal.orphan-<namespace id>-<ms>`` (its old lock file is not renamed with it)."""
    build = directory / ".build"
    write_journal(build / "journal", entries, at_ms)
    orphan = directory / f"journal.orphan-{namespace_id}-{SET_ASIDE_MS}"
    os.replace(build / "journal", orphan)
    shutil.rmtree(build)
    return orphan


def write_identity(directory: Path, instance_id: str, namespaces: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    doc = {"instance_id": instance_id, "namespaces": namespaces}
    (directory / "instance.json").write_text(json.dumps(doc))


@contextlib.contextmanager
def held_open(path: Path) -> Iterator[Journal]:
    """The journal open (its lock held), as a running instance keeps it."""
    with deadline(CLI_TIMEOUT_S):
        journal = asyncio.run(Journal.open(path, JOURNAL_BYTES))
    try:
        yield journal
    finally:
        with deadline(CLI_TIMEOUT_S):
            asyncio.run(journal.close())


def depth(path: Path) -> int:
    async def go() -> int:
        journal = await Journal.open(path, JOURNAL_BYTES)
        try:
            return journal.depth
        finally:
            await journal.close()

    with deadline(CLI_TIMEOUT_S):
        return asyncio.run(go())


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, describe(result)
    assert lines[0].startswith("cfgctl: "), describe(result)
    return lines[0]


# -- journal list ----------------------------------------------------------------------------


def test_list_shows_in_use_and_orphaned_journals_read_only(tmp_path: Path) -> None:
    root = tmp_path / "state"
    worker = root / "worker-1"
    write_identity(root, "inst-root", {"pfx": "ns-a"})
    write_journal(
        root / "journal",
        [
            (RECORDS, successes("n-1", 3), "op-a"),
            (CREDENTIAL, credential_data(KIRO_CREDENTIAL, None), "op-b"),
        ],
    )
    write_identity(worker, "inst-w1", {"pfx": "ns-a"})
    write_journal(worker / "journal", [(RECORDS, successes("n-2", 2), "op-c")], AT_MS + 100)
    orphan = write_orphan(
        worker,
        "old-ns",
        [(RECORDS, successes("n-1", 1), "op-d"), (RECORDS, successes("n-2", 4), "op-e")],
        AT_MS - 500,
    )
    # Not listed: deeper than one level, other files beside the journals.
    write_journal(worker / "deeper" / "journal", [(RECORDS, successes("n-1", 1), "op-f")])
    (root / "notes.txt").write_text("journal")
    (worker / "journal.corrupt-1773576000000").write_bytes(b"x")

    with held_open(root / "journal"):
        before = tree(root)
        listed = run_cfgctl("journal", "list", "--state-dir", root, "--json")
        text = run_cfgctl("journal", "list", "--state-dir", root)
        assert tree(root) == before  # read-only: no lock file made, nothing repaired

    assert listed.exit_code == 0, describe(listed)
    report = json.loads(listed.stdout)
    assert report["state_dir"] == str(root)
    rows = report["journals"]
    assert [r["path"] for r in rows] == [
        str(root / "journal"),
        str(worker / "journal"),
        str(orphan),
    ]
    expected = [
        ("journal", "inst-root", True, 2, 3, 1, AT_MS, None),
        ("journal", "inst-w1", False, 1, 2, 0, AT_MS + 100, None),
        ("orphan", "inst-w1", False, 2, 5, 0, AT_MS - 500, "old-ns"),
    ]
    for row, (kind, instance, in_use, entries, records, creds, oldest, orphan_ns) in zip(
        rows, expected, strict=True
    ):
        assert row["kind"] == kind
        assert row["instance_id"] == instance
        assert row["in_use"] is in_use and row["orphaned"] is (not in_use)
        assert (row["entries"], row["records"], row["credentials"]) == (entries, records, creds)
        assert row["bytes"] == Path(row["path"]).stat().st_size
        assert row["oldest_at"] == iso_ms(oldest)
        assert row["oldest_age_ms"] >= 0
        assert row["orphan_namespace_id"] == orphan_ns
        assert row["namespaces"] == {"pfx": "ns-a"}
        assert row["problem"] is None
    assert rows[2]["set_aside_at"] == iso_ms(SET_ASIDE_MS)

    assert text.exit_code == 0, describe(text)
    lines = text.stdout.splitlines()
    assert lines[0] == f"3 journals under {root} (1 in use, 2 orphaned)"
    assert lines.count("  state        in use by a running instance") == 1
    assert "  state        orphaned: no running instance holds it" in lines
    assert (
        f"  state        orphaned: set aside from namespace old-ns at {iso_ms(SET_ASIDE_MS)}"
        in (lines)
    )
    assert "  entries      2 (3 records, 1 credential)" in lines
    assert ACCESS_TOKEN not in text.stdout + listed.stdout  # counted, never shown

    # The lock is released: nothing is in use any more.
    after = run_cfgctl("journal", "list", "--state-dir", root, "--json")
    assert [r["in_use"] for r in json.loads(after.stdout)["journals"]] == [False, False, False]


def test_list_of_a_folder_without_journals(tmp_path: Path) -> None:
    (tmp_path / "empty" / "worker").mkdir(parents=True)
    text = run_cfgctl("journal", "list", "--state-dir", tmp_path / "empty")
    assert text.exit_code == 0, describe(text)
    assert text.stdout == f"no journals under {tmp_path / 'empty'}\n"
    as_json = run_cfgctl("journal", "list", "--state-dir", tmp_path / "empty", "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["journals"] == []
    missing = run_cfgctl("journal", "list", "--state-dir", tmp_path / "nope")
    assert missing.exit_code == 2
    assert one_error_line(missing) == (
        f"cfgctl: {tmp_path / 'nope'}: the state directory does not exist"
    )
    (tmp_path / "a-file").write_text("x")
    a_file = run_cfgctl("journal", "list", "--state-dir", tmp_path / "a-file")
    assert a_file.exit_code == 2
    assert one_error_line(a_file) == (
        f"cfgctl: {tmp_path / 'a-file'}: the state directory is a file, not a folder"
    )


# -- journal replay --------------------------------------------------------------------------


def test_replay_counts_exactly_and_a_second_run_changes_nothing(
    tmp_path: Path, ns: Namespace
) -> None:
    namespace_id = "ns-replay-7a1"
    seed(ns, namespace_id)
    state = tmp_path / "state"
    write_identity(state, "inst-1", {ns.prefix: namespace_id})
    write_journal(
        state / "journal",
        [
            (RECORDS, successes("n-1", 3), "op-1"),
            (
                RECORDS,
                records_data(
                    [
                        Success("openai-custom", "n-1", AT_MS + 5),
                        Success("openai-custom", "n-2", AT_MS + 6),
                    ]
                ),
                "op-2",
            ),
            (CREDENTIAL, credential_data(KIRO_CREDENTIAL, None), "op-3"),
        ],
    )
    # The same entries under the same operation ids, set aside for a second replay.
    copy = tmp_path / "copy" / f"journal.orphan-{namespace_id}-{SET_ASIDE_MS}"
    copy.parent.mkdir()
    shutil.copyfile(state / "journal", copy)
    assert usage(ns) == {
        "openai-custom/n-1": 10,
        "openai-custom/n-2": 0,
        "claude-kiro-oauth/k-1": 0,
    }

    first = run_cfgctl("journal", "replay", "--state-dir", state, "--redis-url", ns.url, "--json")
    assert first.exit_code == 0, describe(first)
    report = json.loads(first.stdout)
    assert report["replayed"] is True and report["redis_namespace_id"] == namespace_id
    assert report["journals"] == [
        {
            "path": str(state / "journal"),
            "kind": "journal",
            "instance_id": "inst-1",
            "status": "replayed",
            "namespace_id": namespace_id,
            "reason": None,
            "entries": 3,
            "records": 5,
            "duplicates": 0,
            "credentials_written": 1,
            "credentials_kept_newer": 0,
            "credentials_dropped": 0,
            "removed": False,
            "torn_tail_dropped": False,
        }
    ]
    assert usage(ns) == {
        "openai-custom/n-1": 14,
        "openai-custom/n-2": 1,
        "claude-kiro-oauth/k-1": 0,
    }
    credential = stored_credential(ns, "claude-kiro-oauth", "k-1")
    assert credential is not None and credential.document == KIRO_CREDENTIAL.document
    assert (state / "journal").is_file() and depth(state / "journal") == 0  # left cleared

    second = run_cfgctl("journal", "replay", "--journal", copy, "--redis-url", ns.url)
    assert second.exit_code == 0, describe(second)
    lines = second.stdout.splitlines()
    assert f"{copy}: replayed 3 entries onto namespace {namespace_id}" in lines
    assert "  records      5 (2 batches already applied)" in lines
    assert "  credentials  0 written, 1 kept newer, 0 dropped (node gone)" in lines
    assert "  removed      (fully replayed)" in lines
    assert usage(ns) == {
        "openai-custom/n-1": 14,
        "openai-custom/n-2": 1,
        "claude-kiro-oauth/k-1": 0,
    }
    assert not copy.exists() and not copy.with_name(copy.name + ".lock").exists()
    assert list(copy.parent.iterdir()) == []
    for result in (first, second):
        assert ACCESS_TOKEN not in result.output and REFRESH_TOKEN not in result.output


def test_replay_refuses_a_journal_in_use(tmp_path: Path, ns: Namespace) -> None:
    namespace_id = "ns-in-use-3c2"
    seed(ns, namespace_id)
    state = tmp_path / "state"
    write_identity(state, "inst-live", {ns.prefix: namespace_id})
    write_journal(state / "journal", [(RECORDS, successes("n-2", 2), "op-live")])
    before = ns.dump()

    with held_open(state / "journal") as live:
        refused = run_cfgctl(
            "journal", "replay", "--journal", state / "journal", "--redis-url", ns.url
        )
        assert refused.exit_code == 1, describe(refused)
        line = one_error_line(refused)
        assert "nothing was replayed" in line
        assert f"{state / 'journal'}: in use by a running instance; it replays it itself" in line

        skipped = run_cfgctl(
            "journal", "replay", "--state-dir", state, "--redis-url", ns.url, "--json"
        )
        assert skipped.exit_code == 0, describe(skipped)
        [row] = json.loads(skipped.stdout)["journals"]
        assert row["status"] == "in-use" and row["entries"] == 0
        assert live.depth == 1

    assert ns.dump() == before
    assert depth(state / "journal") == 1  # the one entry is still there


def test_replay_refuses_another_namespace_unless_named(tmp_path: Path, ns: Namespace) -> None:
    namespace_id = "ns-now-9e4"
    seed(ns, namespace_id)
    state = tmp_path / "state"
    state.mkdir()
    orphan = write_orphan(state, "ns-old-51f", [(RECORDS, successes("n-2", 2), "op-old")])
    kept = orphan.read_bytes()
    before = ns.dump()

    refused = run_cfgctl("journal", "replay", "--state-dir", state, "--redis-url", ns.url)
    assert refused.exit_code == 1, describe(refused)
    line = one_error_line(refused)
    assert "nothing was replayed" in line
    assert (
        f"written on namespace ns-old-51f, but Redis namespace {ns.tag} holds {namespace_id}"
        in line
    )
    assert f"--namespace-id {namespace_id}" in line
    assert f"{orphan}: refused: " in refused.stdout

    wrong = run_cfgctl(
        "journal",
        "replay",
        "--journal",
        orphan,
        "--namespace-id",
        "ns-other",
        "--redis-url",
        ns.url,
    )
    assert wrong.exit_code == 1, describe(wrong)
    assert f"--namespace-id ns-other, but Redis namespace {ns.tag} holds {namespace_id}" in (
        one_error_line(wrong)
    )
    assert ns.dump() == before and orphan.read_bytes() == kept

    named = run_cfgctl(
        "journal",
        "replay",
        "--state-dir",
        state,
        "--namespace-id",
        namespace_id,
        "--redis-url",
        ns.url,
        "--json",
    )
    assert named.exit_code == 0, describe(named)
    [row] = json.loads(named.stdout)["journals"]
    assert (row["status"], row["entries"], row["records"], row["removed"]) == (
        "replayed",
        1,
        2,
        True,
    )
    assert usage(ns)["openai-custom/n-2"] == 2
    assert not orphan.exists()


def test_replay_of_a_set_aside_journal_counts_though_its_instance_wrote_since(
    tmp_path: Path, ns: Namespace
) -> None:
    """Batch ids are ``<instance>:<epoch>:<seq>``, checked against a mark per instance and
    run. An instance set its journal aside (its run 1000 on an old namespace) and has run
    on this namespace since (run 2000): its later batches do not hide the set-aside ones,
    and a second replay of the same entries counts nothing."""
    namespace_id = "ns-now-b7d"
    seed(ns, namespace_id)

    async def later_run(store: Store) -> None:
        apply = store.replicas.operations["cfgstore_replica_apply"]
        for seq in range(1, 6):
            records = [Success("openai-custom", "n-1", AT_MS + seq)]
            await apply(records=records, op_id=f"inst-1:2000:{seq}", namespace_id=namespace_id)

    on_redis(ns, later_run)
    state = tmp_path / "state"
    state.mkdir()
    orphan = write_orphan(
        state,
        "ns-old-1c9",
        [
            (RECORDS, successes("n-2", 2), "inst-1:1000:1"),
            (RECORDS, successes("n-2", 3), "inst-1:1000:2"),
        ],
    )
    copy = tmp_path / "copy" / orphan.name
    copy.parent.mkdir()
    shutil.copyfile(orphan, copy)

    for journal, duplicates in ((orphan, 0), (copy, 2)):
        result = run_cfgctl(
            "journal",
            "replay",
            "--journal",
            journal,
            "--namespace-id",
            namespace_id,
            "--redis-url",
            ns.url,
        )
        assert result.exit_code == 0, describe(result)
        counted = f"  records      5 ({duplicates} batches already applied)"
        assert counted in result.stdout.splitlines(), result.stdout
        assert usage(ns) == {
            "openai-custom/n-1": 15,
            "openai-custom/n-2": 5,
            "claude-kiro-oauth/k-1": 0,
        }


def test_replay_onto_an_emptied_namespace_points_at_restore(tmp_path: Path, ns: Namespace) -> None:
    state = tmp_path / "state"
    write_identity(state, "inst-gone", {ns.prefix: "ns-gone-0d8"})
    write_journal(state / "journal", [(RECORDS, successes("n-1", 1), "op-gone")])
    result = run_cfgctl("journal", "replay", "--state-dir", state, "--redis-url", ns.url)
    assert result.exit_code == 1, describe(result)
    line = one_error_line(result)
    assert f"it belongs to namespace ns-gone-0d8, but Redis namespace {ns.tag} holds no" in line
    assert "`cfgctl restore --snapshot FILE` can bring namespace ns-gone-0d8 back" in line
    assert ns.key_names() == []
    assert depth(state / "journal") == 1

    # Without an identity beside it, the journal's namespace is unknown.
    (state / "instance.json").unlink()
    unknown = run_cfgctl("journal", "replay", "--journal", state / "journal", "--redis-url", ns.url)
    assert unknown.exit_code == 1, describe(unknown)
    assert "no namespace is known for it" in one_error_line(unknown)


def test_replay_of_a_damaged_journal_exits_2_and_changes_nothing(
    tmp_path: Path, ns: Namespace
) -> None:
    namespace_id = "ns-damaged-6b0"
    seed(ns, namespace_id)
    before = ns.dump()
    not_journal = tmp_path / "a" / "journal"
    not_journal.parent.mkdir()
    not_journal.write_bytes(b'{"this": "is a snapshot, not a journal"}\n')
    result = run_cfgctl("journal", "replay", "--journal", not_journal, "--redis-url", ns.url)
    assert result.exit_code == 2, describe(result)
    assert "not a cfgstore journal" in one_error_line(result)
    assert not_journal.read_bytes() == b'{"this": "is a snapshot, not a journal"}\n'

    # Damage in the middle, good frames after it: refused, the file kept as it is.
    middle = tmp_path / "b" / f"journal.orphan-{namespace_id}-{SET_ASIDE_MS}"
    write_journal(
        tmp_path / "b" / "journal", [(RECORDS, successes("n-1", 1), f"op-{i}") for i in range(3)]
    )
    os.replace(tmp_path / "b" / "journal", middle)
    data = bytearray(middle.read_bytes())
    frame = len(data) // 3
    data[frame + 20] ^= 0x01  # a payload byte of the second frame: its CRC no longer matches
    middle.write_bytes(bytes(data))
    damaged = run_cfgctl("journal", "replay", "--journal", middle, "--redis-url", ns.url)
    assert damaged.exit_code == 2, describe(damaged)
    line = one_error_line(damaged)
    assert f"{middle}: offset {frame}: damaged (CRC mismatch), followed by 1 frame that" in line
    assert "nothing was replayed" in line
    assert middle.read_bytes() == bytes(data)
    assert sorted(p.name for p in middle.parent.iterdir()) == ["journal.lock", middle.name]

    missing = run_cfgctl("journal", "replay", "--journal", tmp_path / "nope", "--redis-url", ns.url)
    assert missing.exit_code == 2
    assert one_error_line(missing) == f"cfgctl: {tmp_path / 'nope'}: no such journal file"
    assert ns.dump() == before


# -- restore ---------------------------------------------------------------------------------


def sample_snapshot(tmp_path: Path, prefix: str, namespace_id: str) -> StoreSnapshot:
    """Everything a file store over a copy of the sample deployment serves."""
    with deadline(CLI_TIMEOUT_S):
        return asyncio.run(
            read_sample_snapshot(
                tmp_path,
                namespace_id=namespace_id,
                prefix=prefix,
                revision=4242,
                saved_at_ms=AT_MS,
                plugins=plugins(),
            )
        )


def write_snapshot(tmp_path: Path, snapshot: StoreSnapshot) -> Path:
    path = tmp_path / "snapshot.json"
    path.write_bytes(snapshot_to_bytes(snapshot))
    return path


def served(snapshot: StoreSnapshot) -> dict[str, Any]:
    """What a snapshot holds, comparable across stores (versions left out)."""
    return {
        "pools": pools_to_json(snapshot.pools),
        "credentials": {
            f"{c.provider_type}/{c.uuid}": (
                c.document,
                c.source_path,
                c.token_format.value,
                c.siblings,
            )
            for c in snapshot.credentials
        },
        "config": snapshot.config.document,
        "system_prompt": snapshot.system_prompt,
        "custom_models": [m.to_json() for m in snapshot.custom_models],
        "plugins": snapshot.plugins.to_json(),
        "password": snapshot.password,
        "usage_cache": None if snapshot.usage_cache is None else snapshot.usage_cache.to_json(),
    }


def redis_snapshot(ns: Namespace) -> StoreSnapshot:
    async def action(store: Store) -> StoreSnapshot:
        return await store.replicas.snapshot()

    result: StoreSnapshot = on_redis(ns, action)
    return result


def meta(ns: Namespace) -> dict[str, str]:
    async def action(store: Store) -> dict[str, str]:
        return await store.meta.get()

    result: dict[str, str] = on_redis(ns, action)
    return result


def secrets_of(snapshot: StoreSnapshot) -> list[str]:
    found = [snapshot.password or ""]
    for credential in snapshot.credentials:
        for key, value in credential.document.items():
            if "token" in key.lower() and isinstance(value, str) and len(value) > 8:
                found.append(value)
    api_key = snapshot.config.document.get("REQUIRED_API_KEY")
    if isinstance(api_key, str):
        found.append(api_key)
    return [s for s in found if s]


def test_restore_into_an_empty_namespace(tmp_path: Path, ns: Namespace) -> None:
    snapshot = sample_snapshot(tmp_path, ns.prefix, "ns-restored-2f7")
    assert snapshot.password is not None and snapshot.usage_cache is not None
    assert snapshot.system_prompt is not None and len(snapshot.credentials) >= 5
    path = write_snapshot(tmp_path, snapshot)

    result = run_cfgctl("restore", "--snapshot", path, "--redis-url", ns.url, "--json")
    assert result.exit_code == 0, describe(result)
    summary = json.loads(result.stdout)
    assert summary["restored"] is True and summary["forced"] is False
    assert summary["namespace_id"] == "ns-restored-2f7"
    assert summary["previous_namespace_id"] is None
    assert summary["snapshot_revision"] == 4242
    assert summary["snapshot_saved_at"] == iso_ms(AT_MS)
    assert summary["counts"] == {
        "provider_types": len(snapshot.pools.types),
        "nodes": snapshot.pools.node_count(),
        "credentials": len(snapshot.credentials),
        "custom_models": len(snapshot.custom_models),
        "plugins": len(snapshot.plugins.plugins),
    }

    stored = redis_snapshot(ns)
    assert stored.namespace_id == "ns-restored-2f7"
    assert served(stored) == served(snapshot)
    marker = meta(ns)
    assert marker["namespace"] == "ns-restored-2f7"
    assert marker["schema"] == str(SCHEMA_VERSION)
    assert marker["restored_from"] == str(path)
    assert marker["restored_revision"] == "4242"
    assert marker["restored_at"] == summary["restored_at"]
    assert parse_time_ms(marker["restored_at"]) is not None
    for secret in secrets_of(snapshot):
        assert secret not in result.output


def test_restore_refuses_a_namespace_with_data_and_force_overwrites_it(
    tmp_path: Path, ns: Namespace
) -> None:
    snapshot = sample_snapshot(tmp_path, ns.prefix, "ns-restored-c30")
    path = write_snapshot(tmp_path, snapshot)
    first = run_cfgctl("restore", "--snapshot", path, "--redis-url", ns.url)
    assert first.exit_code == 0, describe(first)

    # Life goes on: a counter moves, a token is refreshed.
    [kiro] = [c for c in snapshot.credentials if c.provider_type == "claude-kiro-oauth"][:1]
    provider_type, first_node = next(iter(snapshot.pools))

    async def change(store: Store) -> None:
        current = await store.credentials.get(kiro.provider_type, kiro.uuid)
        assert current is not None
        fresh = Credential(
            kiro.provider_type,
            kiro.uuid,
            {**kiro.document, "accessToken": "FAKE-refreshed-e1"},
            kiro.source_path,
            kiro.token_format,
        )
        await store.credentials.put(fresh, current.version)
        await store.pools.record_success(provider_type, first_node.uuid)

    on_redis(ns, change)
    changed = served(redis_snapshot(ns))
    assert changed != served(snapshot)
    before = ns.dump()

    refused = run_cfgctl("restore", "--snapshot", path, "--redis-url", ns.url)
    assert refused.exit_code == 1, describe(refused)
    line = one_error_line(refused)
    assert f"refusing to restore into namespace {ns.tag}" in line
    assert "namespace id ns-restored-c30" in line and "--force" in line
    assert "Nothing was written" in line
    assert ns.dump() == before

    forced = run_cfgctl("restore", "--snapshot", path, "--redis-url", ns.url, "--force")
    assert forced.exit_code == 0, describe(forced)
    lines = forced.stdout.splitlines()
    assert (
        lines[0]
        == f"restored (forced over existing data) namespace {ns.tag} at {ns.url} from {path}"
    )
    assert "  namespace id      ns-restored-c30" in lines
    assert "  snapshot          revision 4242, saved 2026-03-15T12:00:00.123Z" in lines
    assert served(redis_snapshot(ns)) == served(snapshot)
    assert meta(ns)["namespace"] == "ns-restored-c30"
    for secret in [*secrets_of(snapshot), "FAKE-refreshed-e1"]:
        assert secret not in forced.output


def test_restore_refuses_another_prefix(tmp_path: Path, ns: Namespace) -> None:
    snapshot = sample_snapshot(tmp_path, "aiclient", "ns-elsewhere-4d1")
    path = write_snapshot(tmp_path, snapshot)
    result = run_cfgctl("restore", "--snapshot", path, "--redis-url", ns.url)
    assert result.exit_code == 1, describe(result)
    line = one_error_line(result)
    assert "taken under key prefix {aiclient}" in line and f"the configured {ns.tag}" in line
    assert ns.key_names() == []


def test_restore_of_a_missing_or_damaged_snapshot_exits_2(tmp_path: Path, ns: Namespace) -> None:
    good = snapshot_to_bytes(sample_snapshot(tmp_path, ns.prefix, "ns-damaged-88c"))
    damaged = tmp_path / "damaged.json"
    damaged.write_bytes(good[: len(good) // 2])
    result = run_cfgctl("restore", "--snapshot", damaged, "--redis-url", ns.url)
    assert result.exit_code == 2, describe(result)
    line = one_error_line(result)
    assert line.startswith(f"cfgctl: {damaged}: line ") and "nothing was written" in line

    wrong = tmp_path / "wrong.json"
    doc = json.loads(good)
    del doc["credentials"][0]["uuid"]
    wrong.write_text(json.dumps(doc))
    shaped = run_cfgctl("restore", "--snapshot", wrong, "--redis-url", ns.url)
    assert shaped.exit_code == 2, describe(shaped)
    assert f"cfgctl: {wrong}: $.credentials[0]" in one_error_line(shaped)

    missing = run_cfgctl("restore", "--snapshot", tmp_path / "nope.json", "--redis-url", ns.url)
    assert missing.exit_code == 2
    assert one_error_line(missing) == f"cfgctl: snapshot {tmp_path / 'nope.json'} does not exist"
    assert ns.key_names() == []


# -- status: live instances ------------------------------------------------------------------


def test_status_lists_live_instances(ns: Namespace) -> None:
    none = run_cfgctl("status", "--redis-url", ns.url)
    assert none.exit_code == 0, describe(none)
    assert none.stdout.splitlines()[-1] == "instances: none"
    none_json = run_cfgctl("status", "--redis-url", ns.url, "--json")
    assert json.loads(none_json.stdout)["instances"] == []

    info = InstanceInfo(
        instance_id="inst-status-1",
        host="gw-host-a",
        pid=4242,
        version="0.1.0",
        mode="degraded",
        journal_depth=7,
        oldest_entry_age_ms=90_000,
        last_error="storage unreachable: connection refused",
        last_resync="2026-03-15T12:00:00.000Z",
        started_at="2026-03-15T11:00:00.000Z",
        state_dir="/srv/gateway/state/worker-1",
    )

    async def beat(store: Store) -> None:
        await store.replicas.operations["cfgstore_replica_heartbeat"](info=info, ttl_ms=60_000)

    on_redis(ns, beat)
    as_json = run_cfgctl("status", "--redis-url", ns.url, "--json")
    assert as_json.exit_code == 0, describe(as_json)
    assert json.loads(as_json.stdout)["instances"] == [info.to_json()]
    text = run_cfgctl("status", "--redis-url", ns.url)
    assert text.exit_code == 0, describe(text)
    lines = text.stdout.splitlines()
    start = lines.index("instances: 1")
    assert lines[start:] == [
        "instances: 1",
        "  inst-status-1: gw-host-a pid 4242, cfgstore 0.1.0",
        "    mode           degraded",
        "    journal        7 entries, oldest 1.5 min old",
        "    last error     storage unreachable: connection refused",
        "    last resync    2026-03-15T12:00:00.000Z",
        "    started        2026-03-15T11:00:00.000Z",
        "    state dir      /srv/gateway/state/worker-1",
    ]


def test_status_survives_a_failing_instance_listing(ns: Namespace) -> None:
    with contextlib.closing(ns.client()) as client:
        client.set(ns.key("instances"), "not a sorted set")  # WRONGTYPE for the listing
    result = run_cfgctl("status", "--redis-url", ns.url)
    assert result.exit_code == 0, describe(result)
    last = result.stdout.splitlines()[-1]
    assert last.startswith("warning: live instances not listed: ") and "WRONGTYPE" in last
    as_json = run_cfgctl("status", "--redis-url", ns.url, "--json")
    report = json.loads(as_json.stdout)
    assert report["instances"] == [] and "WRONGTYPE" in report["instances_error"]


@pytest.mark.parametrize("args", [[], ["--state-dir", "X", "--journal", "Y"]])
def test_replay_needs_exactly_one_source(args: list[str]) -> None:
    result = run_cfgctl("journal", "replay", *args)
    assert result.exit_code == 2
    assert (
        one_error_line(result) == "cfgctl: give exactly one of --state-dir DIR and --journal FILE"
    )
