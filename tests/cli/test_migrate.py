"""``cfgctl migrate`` on a real Redis: exact (SC-005), idempotent (FR-013), refusing to
overwrite different data without ``--force``, and honest about what it could not read.

Every test copies its deployment into ``tmp_path`` and uses a Redis namespace of its own
(see :mod:`tests.cli.deployments`).
"""

from __future__ import annotations

import os
import re
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest

from cfgstore.adapters import Store
from cfgstore.model import jsjson
from cfgstore.model.password import is_hashed, verify_password
from cfgstore.model.pools import node_from_json
from cfgstore.model.sessions import token_digest
from cfgstore.model.timefmt import now_ms
from cfgstore.model.usage_cache import usage_cache_from_json
from cfgstore.model.versions import ANY_VERSION, SCHEMA_VERSION
from tests.cli.deployments import (
    EXAMPLE,
    NOT_MIGRATED,
    VARIANTS,
    Namespace,
    cfgctl,
    copy_deployment,
    deployment_sources,
    describe,
    dump_diff,
    edit_json,
    find_node,
    make_legacy_root,
    read_json,
    served,
    served_by_files,
    write_json,
)

EXAMPLE_COUNTS = {
    "provider types": 12,
    "nodes": 16,
    "credentials": 11,
    "custom models": 3,
    "plugins": 5,
}
OPENAI_CUSTOM = ("openai-custom", "dccb18cf-3859-4edd-b146-a98dd0c4dc28")
GEMINI = ("gemini-cli-oauth", "d93de8e5-3628-4795-92ae-b8a6b8f17f66")
GEMINI_TOKEN = "configs/gemini/1773300000000_oauth_creds.json"
LIVE_TOKEN = "8bcf2a5b75c5dd8fc0c6493a8372e7b57226e017259b02bb4cab2de6d1778df4"
EXPIRED_TOKEN = "2ec8afc82ecba46102146c9bacc5b98905e55021bdeb594c8bf0a4682117b5cd"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A private copy of ``examples/deployment`` (the Node cwd)."""
    return copy_deployment(EXAMPLE, tmp_path)


def migrate(ns: Namespace, configs: Path, *extra: str, timeout: float = 60.0) -> Any:
    return cfgctl("migrate", "--configs", configs, "--redis-url", ns.url, *extra, timeout=timeout)


def counts_in(output: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^  ([a-z ]+): (\d+)$", output, re.M)}


# -- SC-005: Redis serves exactly what the files serve ------------------------------------


@pytest.mark.parametrize("source", deployment_sources())
def test_redis_serves_exactly_what_the_file_backend_serves(
    source: Path, tmp_path: Path, ns: Namespace
) -> None:
    root = copy_deployment(source, tmp_path)
    configs = root / "configs"
    expected = served_by_files(configs)
    result = migrate(ns, configs)
    assert result.exit_code == 0, describe(result)
    assert result.stdout.startswith("migrated\n"), describe(result)
    assert "missing credential" not in result.stdout
    assert "unreadable credential" not in result.stdout
    actual = ns.run(served)
    expected["usage_cache"] = None  # not asked for (--include usage-cache)
    for key in expected:
        assert actual[key] == expected[key], key
    # The credentials are complete: one per node whose token file exists.
    assert len(actual["credentials"]) == counts_in(result.stdout)["credentials"]
    # First migration keeps the files' hot fields (counters, health, times) as they are.
    assert actual["pools_bytes"] == expected["pools_bytes"]
    # And the bytes the pools file would be written as are the bytes on disk.
    pools_file = configs / "provider_pools.json"
    assert actual["pools_bytes"].encode() == pools_file.read_bytes()
    # Independently of the file backend: every document is the file's, byte for byte.
    for name, credential in actual["credentials"].items():
        token_file = root / credential["source_path"]
        assert credential["bytes"].encode() == token_file.read_bytes(), name
        for sibling, document in credential["siblings"].items():
            assert jsjson.dump_bytes(document) == (token_file.parent / sibling).read_bytes()
    assert actual["config_bytes"].encode() == (configs / "config.json").read_bytes()
    assert jsjson.dump_bytes(actual["plugins"]) == (configs / "plugins.json").read_bytes()
    models = jsjson.dump_bytes(actual["custom_models"])
    assert models == (configs / "custom_models.json").read_bytes()
    prompt = (configs / "input_system_prompt.txt").read_text(encoding="utf-8")
    assert actual["system_prompt"] == prompt
    assert actual["password"] == (configs / "pwd").read_text(encoding="utf-8")


def test_migration_of_the_example_counts_and_lists_what_is_left_out(
    example: Path, ns: Namespace
) -> None:
    result = migrate(ns, example / "configs")
    assert result.exit_code == 0, describe(result)
    counts = counts_in(result.stdout)
    for label, count in EXAMPLE_COUNTS.items():
        assert counts[label] == count, (label, result.stdout)
    assert counts["sessions"] == 0
    line = next(x for x in result.stdout.splitlines() if x.startswith("  not migrated"))
    assert line.startswith(f"  not migrated: {NOT_MIGRATED[0]} (live Web-UI sessions")
    assert counts["kept files"] == 1  # usage-cache.json (the api-potluck keys are an entity)
    stored = ns.key_names()
    assert len([k for k in stored if k.startswith(ns.key("cred:"))]) == 11
    assert len([k for k in stored if k.startswith(ns.key("node:"))]) == 16
    assert not [k for k in stored if k.startswith(ns.key("session:"))]
    assert ns.key("usage") not in stored
    assert result.stderr == ""  # no progress lines for steps under 200 items


UNLINKED = [
    pytest.param("configs/gemini/1773999999999_oauth_creds.json", id="unlinked-token-file"),
    pytest.param("configs/temp/upload_oauth_creds.json", id="upload-staging"),
]


@pytest.mark.parametrize("relative", UNLINKED)
def test_files_in_sub_folders_no_node_links_to_are_kept(
    relative: str, example: Path, ns: Namespace
) -> None:
    write_json(example / relative, {"access_token": "FAKE", "refresh_token": "FAKE"})
    result = migrate(ns, example / "configs")
    assert result.exit_code == 0, describe(result)
    assert counts_in(result.stdout)["credentials"] == 11
    assert counts_in(result.stdout)["kept files"] == 2, describe(result)  # it and usage-cache.json
    assert ns.key("files") in ns.key_names()


# -- FR-013: idempotent ------------------------------------------------------------------


@pytest.mark.parametrize("source", deployment_sources())
def test_second_migration_has_nothing_to_do_and_changes_no_byte(
    source: Path, tmp_path: Path, ns: Namespace
) -> None:
    configs = copy_deployment(source, tmp_path) / "configs"
    first = migrate(ns, configs)
    assert first.exit_code == 0, describe(first)
    before = ns.dump()
    assert before
    second = migrate(ns, configs)
    assert second.exit_code == 0, describe(second)
    assert second.stdout.startswith("nothing to do"), describe(second)
    assert dump_diff(before, ns.dump()) == []


def test_second_migration_with_sessions_changes_no_byte(example: Path, ns: Namespace) -> None:
    configs = example / "configs"
    first = migrate(ns, configs, "--include", "sessions,usage-cache")
    assert first.exit_code == 0, describe(first)
    before = ns.dump()
    second = migrate(ns, configs, "--include", "sessions,usage-cache")
    assert second.exit_code == 0, describe(second)
    assert second.stdout.startswith("nothing to do"), describe(second)
    assert dump_diff(before, ns.dump()) == []


def test_nothing_to_do_does_not_bring_back_a_logged_out_session(
    example: Path, ns: Namespace
) -> None:
    configs = example / "configs"
    first = migrate(ns, configs, "--include", "sessions")
    assert first.exit_code == 0, describe(first)

    async def logout(store: Store) -> bool:
        return await store.sessions.delete(LIVE_TOKEN)

    assert ns.run(logout) is True
    before = ns.dump()
    second = migrate(ns, configs, "--include", "sessions")
    assert second.exit_code == 0, describe(second)
    assert second.stdout.startswith("nothing to do"), describe(second)
    assert dump_diff(before, ns.dump()) == []


def test_second_migration_with_usage_cache_only_changes_no_byte(
    example: Path, ns: Namespace
) -> None:
    configs = example / "configs"
    assert migrate(ns, configs, "--include", "usage-cache").exit_code == 0
    before = ns.dump()
    second = migrate(ns, configs, "--include", "usage-cache")
    assert second.exit_code == 0, describe(second)
    assert second.stdout.startswith("nothing to do"), describe(second)
    assert dump_diff(before, ns.dump()) == []


# -- --dry-run ---------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_writes_nothing(example: Path, ns: Namespace) -> None:
    result = migrate(ns, example / "configs", "--dry-run")
    assert result.exit_code == 0, describe(result)
    assert result.stdout.startswith("dry run: nothing written"), describe(result)
    counts = counts_in(result.stdout)
    for label, count in EXAMPLE_COUNTS.items():
        assert counts[label] == count, (label, result.stdout)
    assert "not migrated" in result.stdout
    assert ns.key_names() == []


def test_dry_run_with_sessions_on_a_migrated_namespace_writes_nothing(
    example: Path, ns: Namespace
) -> None:
    configs = example / "configs"
    assert migrate(ns, configs).exit_code == 0
    before = ns.dump()
    result = migrate(ns, configs, "--dry-run", "--include", "sessions")
    assert result.exit_code == 0, describe(result)
    assert dump_diff(before, ns.dump()) == []


def test_dry_run_with_force_over_different_data_writes_nothing(
    example: Path, ns: Namespace
) -> None:
    configs = example / "configs"
    assert migrate(ns, configs).exit_code == 0
    edit_json(configs / "config.json", lambda c: c.update(SERVER_PORT=4444))
    before = ns.dump()
    result = migrate(ns, configs, "--dry-run", "--force")
    assert result.exit_code == 0, describe(result)
    assert result.stdout.startswith("dry run"), describe(result)
    assert "difference: config: SERVER_PORT differ" in result.stdout
    assert dump_diff(before, ns.dump()) == []


# -- different data in Redis: refuse, --force, --reset-counters --------------------------


def _record_traffic(ns: Namespace) -> None:
    """Live traffic between two migrations: 3 successes on one node, and a second node
    made unhealthy by an immediate failure."""

    async def traffic(store: Store) -> None:
        for _ in range(3):
            await store.pools.record_success(*OPENAI_CUSTOM)
        await store.pools.record_failure(
            *GEMINI, "403 Forbidden", max_error_count=3, immediate=True
        )

    ns.run(traffic)


def _node(ns: Namespace, provider_type: str, uuid: str) -> Any:
    async def get(store: Store) -> Any:
        return await store.pools.get_node(provider_type, uuid)

    return ns.run(get)


def _file_node(configs: Path, provider_type: str, uuid: str) -> Any:
    doc = read_json(configs / "provider_pools.json")
    return node_from_json(next(n for n in doc[provider_type] if n["uuid"] == uuid), "file")


def _rename_openai_node(configs: Path, name: str) -> None:
    def change(pools: dict[str, Any]) -> None:
        find_node(pools, "openai-custom")["customName"] = name

    edit_json(configs / "provider_pools.json", change)


def test_counters_alone_are_no_difference(example: Path, ns: Namespace) -> None:
    configs = example / "configs"
    assert migrate(ns, configs).exit_code == 0
    _record_traffic(ns)
    before = ns.dump()
    result = migrate(ns, configs)
    assert result.exit_code == 0, describe(result)
    assert result.stdout.startswith("nothing to do"), describe(result)
    assert dump_diff(before, ns.dump()) == []


def test_different_data_is_refused_without_force(example: Path, ns: Namespace) -> None:
    configs = example / "configs"
    assert migrate(ns, configs).exit_code == 0
    _record_traffic(ns)
    _rename_openai_node(configs, "renamed in the files")
    edit_json(configs / "config.json", lambda c: c.update(SERVER_PORT=4444))
    before = ns.dump()
    result = migrate(ns, configs)
    assert result.exit_code == 1, describe(result)
    assert result.stdout.startswith("refused"), describe(result)
    assert f"difference: node {'/'.join(OPENAI_CUSTOM)}: settings differ" in result.stdout
    assert "difference: config: SERVER_PORT differ" in result.stdout
    assert dump_diff(before, ns.dump()) == []


def test_force_lets_the_files_win_and_keeps_live_counters_and_health(
    example: Path, ns: Namespace
) -> None:
    configs = example / "configs"
    assert migrate(ns, configs).exit_code == 0
    file_usage = _file_node(configs, *OPENAI_CUSTOM).state.usage_count
    _record_traffic(ns)
    live = _node(ns, *OPENAI_CUSTOM)
    assert live.state.usage_count == file_usage + 3
    assert _node(ns, *GEMINI).state.is_healthy is False
    _rename_openai_node(configs, "renamed in the files")
    edit_json(configs / "config.json", lambda c: c.update(SERVER_PORT=4444))

    result = migrate(ns, configs, "--force")
    assert result.exit_code == 0, describe(result)
    assert result.stdout.startswith("migrated"), describe(result)
    node = _node(ns, *OPENAI_CUSTOM)
    assert node.settings["customName"] == "renamed in the files"
    assert node.state.usage_count == file_usage + 3  # live counter kept
    assert node.state.last_used == live.state.last_used
    gemini = _node(ns, *GEMINI)
    assert gemini.state.is_healthy is False  # live health kept
    assert gemini.state.last_error_message == "403 Forbidden"

    async def config_port(store: Store) -> Any:
        return (await store.config.get()).document["SERVER_PORT"]

    assert ns.run(config_port) == 4444
    again = migrate(ns, configs)
    assert again.exit_code == 0 and again.stdout.startswith("nothing to do"), describe(again)


def test_force_with_reset_counters_takes_counters_from_the_files(
    example: Path, ns: Namespace
) -> None:
    configs = example / "configs"
    assert migrate(ns, configs).exit_code == 0
    _record_traffic(ns)
    _rename_openai_node(configs, "renamed in the files")
    result = migrate(ns, configs, "--force", "--reset-counters")
    assert result.exit_code == 0, describe(result)
    expected = served_by_files(configs)
    actual = ns.run(served)
    assert actual["pools"] == expected["pools"]  # hot fields included
    node = _node(ns, *OPENAI_CUSTOM)
    assert node.settings["customName"] == "renamed in the files"
    assert node.state == _file_node(configs, *OPENAI_CUSTOM).state
    assert _node(ns, *GEMINI).state.is_healthy is True


def test_reset_counters_applies_even_when_only_counters_differ(
    example: Path, ns: Namespace
) -> None:
    configs = example / "configs"
    assert migrate(ns, configs).exit_code == 0
    _record_traffic(ns)
    result = migrate(ns, configs, "--force", "--reset-counters")
    assert result.exit_code == 0, describe(result)
    assert _node(ns, *OPENAI_CUSTOM).state == _file_node(configs, *OPENAI_CUSTOM).state
    assert _node(ns, *GEMINI).state.is_healthy is True


REMOVED_FROM_FILES = [
    pytest.param("input_system_prompt.txt", "system prompt: differs", id="system-prompt"),
    pytest.param("pwd", "UI password: differs", id="pwd"),
]


@pytest.mark.parametrize(("name", "difference"), REMOVED_FROM_FILES)
def test_an_optional_file_missing_from_the_folder_is_not_a_difference(
    name: str, difference: str, example: Path, ns: Namespace
) -> None:
    """A folder without a system prompt or pwd file says nothing about them: Redis keeps
    what the operator set (deleting the password would mean the well-known default)."""
    configs = example / "configs"
    assert migrate(ns, configs).exit_code == 0
    before = ns.dump()
    (configs / name).unlink()
    again = migrate(ns, configs)
    assert again.exit_code == 0, describe(again)
    assert again.stdout.startswith("nothing to do"), describe(again)
    assert f"difference: {difference}" not in again.stdout
    assert dump_diff(before, ns.dump()) == []


def test_force_replaces_nodes_and_credentials(example: Path, ns: Namespace) -> None:
    """A node removed from the files goes (with its credential); a token file's new
    content replaces the stored credential."""
    configs = example / "configs"
    assert migrate(ns, configs).exit_code == 0

    def drop_qwen_raw(pools: dict[str, Any]) -> None:
        pools["openai-qwen-oauth"] = pools["openai-qwen-oauth"][1:]

    edit_json(configs / "provider_pools.json", drop_qwen_raw)
    edit_json(configs / GEMINI_TOKEN.removeprefix("configs/"), lambda t: t.update(access_token="x"))
    refused = migrate(ns, configs)
    assert refused.exit_code == 1, describe(refused)
    assert "only in the store" in refused.stdout
    assert f"credential {'/'.join(GEMINI)}: differs" in refused.stdout
    result = migrate(ns, configs, "--force")
    assert result.exit_code == 0, describe(result)
    actual = ns.run(served)
    expected = served_by_files(configs)
    assert actual["credentials"] == expected["credentials"]
    assert actual["types"] == expected["types"]
    assert (
        ns.key("cred:openai-qwen-oauth:6b6ec415-26d2-490d-bc62-fa8bdfc8f3c2") not in ns.key_names()
    )
    assert (
        ns.key("node:openai-qwen-oauth:6b6ec415-26d2-490d-bc62-fa8bdfc8f3c2") not in ns.key_names()
    )


# -- path layouts ------------------------------------------------------------------------


def test_windows_backslash_paths_find_their_credentials(example: Path, ns: Namespace) -> None:
    configs = example / "configs"
    windows = VARIANTS / "provider_pools.windows-paths.json"
    (configs / "provider_pools.json").write_bytes(windows.read_bytes())
    result = migrate(ns, configs)
    assert result.exit_code == 0, describe(result)
    assert "missing credential" not in result.stdout, describe(result)
    assert counts_in(result.stdout)["credentials"] == 5
    actual = ns.run(served)
    assert len(actual["credentials"]) == 5
    for name, credential in actual["credentials"].items():
        assert "\\" in credential["source_path"], name  # kept verbatim for export
        relative = credential["source_path"].replace("\\", "/")
        on_disk = read_json(example / relative)
        assert credential["document"] == on_disk, name
    # The Kiro IDE node's sibling (client registration) came along.
    ide = actual["credentials"]["claude-kiro-oauth/299f53b6-db17-48a2-a3e6-5754f00925e7"]
    assert ide["effective"]["clientId"] == "FAKE-example-clientId-ide-0003"
    assert actual == served_by_files(configs) | {"usage_cache": None}


def test_legacy_root_layout(example: Path, tmp_path: Path, ns: Namespace) -> None:
    root = tmp_path / "legacy"
    make_legacy_root(example, root)
    assert read_json(root / "provider_pools.json")["gemini-cli-oauth"][0][
        "GEMINI_OAUTH_CREDS_FILE_PATH"
    ] == ("gemini/1773300000000_oauth_creds.json")
    # Without the flag the paths resolve against the parent: nothing is found.
    plan = migrate(ns, root, "--dry-run")
    assert plan.exit_code == 0, describe(plan)
    assert counts_in(plan.stdout)["credentials"] == 0, describe(plan)

    result = migrate(ns, root, "--legacy-root")
    assert result.exit_code == 0, describe(result)
    assert "missing credential" not in result.stdout, describe(result)
    counts = counts_in(result.stdout)
    for label, count in EXAMPLE_COUNTS.items():
        assert counts[label] == count, (label, result.stdout)
    expected = served_by_files(root, cwd=root)
    expected["usage_cache"] = None
    assert ns.run(served) == expected
    again = migrate(ns, root, "--legacy-root")
    assert again.stdout.startswith("nothing to do"), describe(again)


# -- --include sessions,usage-cache ------------------------------------------------------


def test_include_sessions_and_usage_cache(example: Path, ns: Namespace) -> None:
    configs = example / "configs"
    soon = now_ms() + 3_600_000
    short_token = "ab" * 32

    def add_session(store: dict[str, Any]) -> None:
        store["tokens"][short_token] = {
            "username": "admin",
            "loginTime": soon - 7_200_000,
            "expiryTime": soon,
        }

    edit_json(configs / "token-store.json", add_session)
    result = migrate(ns, configs, "--include", "sessions,usage-cache")
    assert result.exit_code == 0, describe(result)
    assert counts_in(result.stdout)["sessions"] == 2  # the expired one is skipped
    assert "not migrated" not in result.stdout, describe(result)
    assert counts_in(result.stdout)["kept files"] == 0  # api-potluck keys: an entity

    async def lookups(store: Store) -> Any:
        return (
            await store.sessions.get(LIVE_TOKEN),
            await store.sessions.get(short_token),
            await store.sessions.get(EXPIRED_TOKEN, now=1773565200000 - 1),
            await store.usage_cache.get(),
        )

    live, short, expired, usage = ns.run(lookups)
    assert live is not None and live.expiry_time == 4070908800000
    assert live.login_time == 1773572400000 and live.username == "admin"
    assert short is not None and short.expiry_time == soon
    assert expired is None  # skipped even though it was valid at its own time
    ttl = ns.pttl(f"session:{token_digest(short_token)}")
    assert soon - now_ms() - 60_000 < ttl <= soon - now_ms() + 1000
    assert ns.pttl(f"session:{token_digest(EXPIRED_TOKEN)}") == -2  # no such key
    dump = ns.dump()
    for token in (LIVE_TOKEN, short_token, EXPIRED_TOKEN):
        raw = token.encode()
        for key, (_, value) in dump.items():
            assert raw not in key
            assert raw not in repr(value).encode(), key
    file_usage = read_json(configs / "usage-cache.json")
    assert usage is not None
    assert usage.to_json() == usage_cache_from_json(file_usage, "usage-cache.json").to_json()


def test_unknown_include_item_exits_2(example: Path, ns: Namespace) -> None:
    result = migrate(ns, example / "configs", "--include", "sessions,logs")
    assert result.exit_code == 2, describe(result)
    assert "logs" in result.stderr
    assert ns.key_names() == []


# -- missing and malformed input ---------------------------------------------------------


def test_missing_credential_is_reported_and_the_rest_migrates(example: Path, ns: Namespace) -> None:
    configs = example / "configs"
    (example / GEMINI_TOKEN).unlink()
    result = migrate(ns, configs)
    assert result.exit_code == 0, describe(result)
    assert f"missing credential file: {'/'.join(GEMINI)}: {GEMINI_TOKEN}" in result.stdout, (
        describe(result)
    )
    assert counts_in(result.stdout)["credentials"] == 10
    actual = ns.run(served)
    assert len(actual["credentials"]) == 10
    assert "/".join(GEMINI) not in actual["credentials"]
    assert GEMINI[1] in [n["uuid"] for n in actual["pools"][GEMINI[0]]]  # the node is there


def test_missing_credential_with_strict_exits_2_and_writes_nothing(
    example: Path, ns: Namespace
) -> None:
    (example / GEMINI_TOKEN).unlink()
    result = migrate(ns, example / "configs", "--strict")
    assert result.exit_code == 2, describe(result)
    assert GEMINI_TOKEN in result.stderr
    assert ns.key_names() == []


MALFORMED = [
    pytest.param("configs/provider_pools.json", id="provider_pools.json"),
    pytest.param("configs/config.json", id="config.json"),
    pytest.param(GEMINI_TOKEN, id="token-file"),
]


MALFORMED_MORE = [
    pytest.param("configs/plugins.json", (), id="plugins.json"),
    pytest.param("configs/custom_models.json", (), id="custom_models.json"),
    pytest.param("configs/token-store.json", ("--include", "sessions"), id="token-store.json"),
    pytest.param("configs/usage-cache.json", ("--include", "usage-cache"), id="usage-cache.json"),
]


@pytest.mark.parametrize("relative", MALFORMED)
def test_malformed_json_exits_2_naming_file_and_position(
    relative: str, example: Path, ns: Namespace
) -> None:
    _malformed_exits_2(relative, (), example, ns)


@pytest.mark.parametrize(("relative", "extra"), MALFORMED_MORE)
def test_other_malformed_files_exit_2_too(
    relative: str, extra: tuple[str, ...], example: Path, ns: Namespace
) -> None:
    _malformed_exits_2(relative, extra, example, ns)


def _malformed_exits_2(relative: str, extra: tuple[str, ...], example: Path, ns: Namespace) -> None:
    path = example / relative
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    lines[2] = lines[2] + " oops"  # line 3 becomes invalid JSON
    path.write_text("\n".join(lines), encoding="utf-8")
    result = migrate(ns, example / "configs", *extra)
    assert result.exit_code == 2, describe(result)
    assert path.name in result.stderr, describe(result)
    assert re.search(r"line 3 column \d+", result.stderr), describe(result)
    assert len(result.stderr.strip().splitlines()) == 1, describe(result)
    assert ns.key_names() == []


def test_malformed_token_file_with_strict_exits_2_and_writes_nothing(
    example: Path, ns: Namespace
) -> None:
    path = example / GEMINI_TOKEN
    path.write_bytes(path.read_bytes()[:-3])
    result = migrate(ns, example / "configs", "--strict")
    assert result.exit_code == 2, describe(result)
    assert path.name in result.stderr and re.search(r"line \d+ column \d+", result.stderr)
    assert ns.key_names() == []


def test_malformed_token_file_stops_the_run_without_strict_too(
    example: Path, ns: Namespace
) -> None:
    path = example / GEMINI_TOKEN
    path.write_bytes(path.read_bytes()[:-3])
    result = migrate(ns, example / "configs")
    assert result.exit_code == 2, describe(result)
    assert path.name in result.stderr and re.search(r"line \d+ column \d+", result.stderr)
    assert "nothing was written" in result.stderr
    assert ns.key_names() == []


def test_unreachable_redis_exits_2_with_one_line(example: Path, ns: Namespace) -> None:
    started = time.monotonic()
    result = cfgctl(
        "migrate", "--configs", example / "configs", "--redis-url", "redis://127.0.0.1:1/0"
    )
    assert time.monotonic() - started < 30
    assert result.exit_code == 2, describe(result)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, describe(result)
    assert lines[0].startswith("cfgctl: ") and "127.0.0.1:1" in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_configs_folder_exits_2(tmp_path: Path, ns: Namespace) -> None:
    result = migrate(ns, tmp_path / "nope")
    assert result.exit_code == 2, describe(result)
    assert ns.key_names() == []


# -- interrupted migration ---------------------------------------------------------------


def test_interrupted_migration_is_completed_without_force(example: Path, ns: Namespace) -> None:
    """A run that stopped halfway: its marker is set, part of the data (and an older
    config) is in Redis. A plain ``migrate`` finishes it; the next has nothing to do."""
    configs = example / "configs"
    pools = read_json(configs / "provider_pools.json")

    async def half_written(store: Store) -> None:
        await store.meta.update(
            {"migrating": "2026-03-15T12:00:00.000Z", "schema": str(SCHEMA_VERSION)}
        )
        await store.config.put({"SERVER_PORT": 1234, "HOST": "old"}, ANY_VERSION)
        await store.pools.add_node("openai-custom", node_from_json(pools["openai-custom"][0], "t"))

    ns.run(half_written)

    result = migrate(ns, configs)
    assert result.exit_code == 0, describe(result)
    assert "interrupted" in result.stdout, describe(result)
    expected = served_by_files(configs)
    expected["usage_cache"] = None
    assert ns.run(served) == expected

    async def marker(store: Store) -> dict[str, str]:
        return await store.meta.get()

    meta = ns.run(marker)
    assert meta.get("migrating", "") == ""
    assert meta.get("migrated_at")
    before = ns.dump()
    again = migrate(ns, configs)
    assert again.exit_code == 0, describe(again)
    assert again.stdout.startswith("nothing to do"), describe(again)
    assert dump_diff(before, ns.dump()) == []


def test_partial_data_without_the_marker_is_refused(example: Path, ns: Namespace) -> None:
    """The same half-written state without the marker is someone else's data."""

    async def other(store: Store) -> None:
        await store.config.put({"SERVER_PORT": 1234}, ANY_VERSION)

    ns.run(other)
    before = ns.dump()
    result = migrate(ns, example / "configs")
    assert result.exit_code == 1, describe(result)
    assert "config: " in result.stdout
    assert dump_diff(before, ns.dump()) == []


def test_plaintext_password_is_stored_hashed(example: Path, ns: Namespace) -> None:
    configs = example / "configs"
    (configs / "pwd").write_bytes((VARIANTS / "pwd.plaintext-with-newline").read_bytes())
    assert migrate(ns, configs).exit_code == 0

    async def stored(store: Store) -> Any:
        return await store.password.get_stored(), await store.password.verify(
            "legacy-plain-password"
        )

    value, ok = ns.run(stored)
    assert value is not None and is_hashed(value) and ok
    assert verify_password("legacy-plain-password", value)
    assert b"legacy-plain-password" not in repr(ns.dump()).encode()
    again = migrate(ns, configs)
    assert again.stdout.startswith("nothing to do"), describe(again)


# -- scale -------------------------------------------------------------------------------


def _big_deployment(root: Path, nodes: int) -> None:
    configs = root / "configs"
    write_json(configs / "config.json", {"REQUIRED_API_KEY": "FAKE", "MAX_ERROR_COUNT": 3})
    pool = []
    for i in range(nodes):
        path = f"./configs/gemini/{1780000000000 + i}_oauth_creds.json"
        pool.append(
            {
                "GEMINI_OAUTH_CREDS_FILE_PATH": path,
                "uuid": str(uuidlib.UUID(int=i + 1, version=4)),
                "checkModelName": "gemini-2.5-flash",
                "checkHealth": False,
                "isHealthy": True,
                "isDisabled": False,
                "lastUsed": None,
                "usageCount": i,
                "errorCount": 0,
                "lastErrorTime": None,
                "PROJECT_ID": f"fake-project-{i:05d}",
                "customName": f"gemini #{i}",
            }
        )
        write_json(
            root / path,
            {
                "access_token": f"ya29.FAKE-{i:05d}",
                "refresh_token": f"1//FAKE-{i:05d}",
                "token_type": "Bearer",
                "expiry_date": 1780131600000 + i,
            },
        )
    write_json(configs / "provider_pools.json", {"gemini-cli-oauth": pool})


@pytest.mark.slow
def test_two_thousand_nodes_with_their_token_files(tmp_path: Path, ns: Namespace) -> None:
    scale = float(os.environ.get("CFGSTORE_TEST_SCALE", "1") or "1")
    nodes = max(int(2000 * scale), 200)
    root = tmp_path / "big"
    _big_deployment(root, nodes)
    started = time.monotonic()
    result = migrate(ns, root / "configs", timeout=300)
    migrate_s = time.monotonic() - started
    assert result.exit_code == 0, describe(result)
    counts = counts_in(result.stdout)
    assert counts["nodes"] == nodes and counts["credentials"] == nodes, describe(result)
    progress = result.stderr.splitlines()
    for label in ("reading credentials", "writing credentials"):
        lines = [x for x in progress if x.startswith(f"{label}: ")]
        assert lines, (label, result.stderr)
        assert lines[-1] == f"{label}: {nodes}/{nodes}"
        assert len(lines) <= 11
    keys = ns.key_names()
    assert sum(k.startswith(ns.key("cred:")) for k in keys) == nodes
    assert sum(k.startswith(ns.key("node:")) for k in keys) == nodes
    started = time.monotonic()
    expected = served_by_files(root / "configs")
    actual = ns.run(served)
    compare_s = time.monotonic() - started
    expected["usage_cache"] = None
    assert actual == expected
    started = time.monotonic()
    again = migrate(ns, root / "configs", timeout=300)
    again_s = time.monotonic() - started
    assert again.stdout.startswith("nothing to do"), describe(again)
    assert [x for x in again.stderr.splitlines() if x.startswith("reading the store credentials: ")]
    started = time.monotonic()
    out = tmp_path / "out"
    exported = cfgctl("export", "--to", out, "--redis-url", ns.url, timeout=300)
    export_s = time.monotonic() - started
    assert exported.exit_code == 0, describe(exported)
    files = nodes + 5  # tokens + config, pools, plugins, custom models, token store
    written = [x for x in exported.stderr.splitlines() if x.startswith("writing files: ")]
    assert written and written[-1] == f"writing files: {files}/{files}", exported.stderr
    for path in (root / "configs" / "gemini").iterdir():
        relative = path.relative_to(root)
        assert (out / relative).read_bytes() == path.read_bytes(), relative
    print(
        f"\n{nodes} nodes: migrate {migrate_s:.1f} s, compare {compare_s:.1f} s, "
        f"second migrate {again_s:.1f} s, export {export_s:.1f} s"
    )
