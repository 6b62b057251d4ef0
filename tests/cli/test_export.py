"""``cfgctl export`` after ``cfgctl migrate``: the files come back byte for byte.

``migrate --configs IN/configs`` then ``export --to OUT`` reproduces every migrated input
file exactly (the Node service's ``JSON.stringify(v, null, 2)`` bytes), except
``token-store.json``, which comes back as ``{"tokens": {}}`` with a note (sessions are kept
as digests only). Exported files have mode 0600.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cfgstore.adapters import Store
from tests.cli.deployments import (
    EMPTY_TOKEN_STORE,
    EXAMPLE,
    NOT_MIGRATED,
    VARIANTS,
    Namespace,
    cfgctl,
    copy_deployment,
    deployment_sources,
    describe,
    edit_json,
    file_modes,
    make_legacy_root,
    read_json,
    tree_bytes,
)

SESSIONS_NOTE = "token-store.json is written empty"
GEMINI_UUID = "d93de8e5-3628-4795-92ae-b8a6b8f17f66"
GEMINI_TOKEN = "configs/gemini/1773300000000_oauth_creds.json"


def migrate(ns: Namespace, configs: Path, *extra: str) -> Any:
    result = cfgctl("migrate", "--configs", configs, "--redis-url", ns.url, *extra)
    assert result.exit_code == 0, describe(result)
    return result


def export(ns: Namespace, to: Path, *extra: str) -> Any:
    return cfgctl("export", "--to", to, "--redis-url", ns.url, *extra)


def expected_files(root: Path) -> dict[str, bytes]:
    """What an export must write: every input file (the deployment README is not part of
    a deployment), token-store.json emptied."""
    files = {k: v for k, v in tree_bytes(root).items() if k != "README.md"}
    files["configs/token-store.json"] = EMPTY_TOKEN_STORE
    return files


@pytest.mark.parametrize("include", ["", "sessions,usage-cache"], ids=["plain", "include"])
@pytest.mark.parametrize("source", deployment_sources())
def test_migrate_then_export_reproduces_every_file_byte_for_byte(
    source: Path, include: str, tmp_path: Path, ns: Namespace
) -> None:
    root = copy_deployment(source, tmp_path)
    original = tree_bytes(root)
    extra = ("--include", include) if include else ()
    migrated = migrate(ns, root / "configs", *extra)
    lines = [x for x in migrated.stdout.splitlines() if x.startswith("  not migrated")]
    if include:
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].startswith(f"  not migrated: {NOT_MIGRATED[0]} (")

    out = tmp_path / "out"
    result = export(ns, out)
    assert result.exit_code == 0, describe(result)
    assert SESSIONS_NOTE in result.stdout
    assert "outside the folder" not in result.stdout  # nothing relocated: all paths relative
    written = tree_bytes(out)
    expected = expected_files(root)
    assert sorted(written) == sorted(expected)
    for name, data in expected.items():
        assert written[name] == data, name
    assert written["configs/token-store.json"] == b'{\n  "tokens": {}\n}'
    assert set(file_modes(out).values()) == {0o600}, file_modes(out)
    assert tree_bytes(root) == original  # the input was only read


def test_absolute_credential_paths_are_relocated_and_reported(
    tmp_path: Path, ns: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_deployment(EXAMPLE, tmp_path)
    elsewhere = tmp_path / "elsewhere" / "gemini-token.json"
    elsewhere.parent.mkdir()
    # Credential files outside the working directory need the operator's consent.
    monkeypatch.setenv("CFGSTORE_CREDENTIAL_ROOTS", str(elsewhere.parent))
    (root / GEMINI_TOKEN).rename(elsewhere)

    def absolute(pools: dict[str, Any]) -> None:
        node = pools["gemini-cli-oauth"][0]
        assert node["uuid"] == GEMINI_UUID
        node["GEMINI_OAUTH_CREDS_FILE_PATH"] = str(elsewhere)

    edit_json(root / "configs" / "provider_pools.json", absolute)
    token_bytes = elsewhere.read_bytes()
    migrated = migrate(ns, root / "configs")
    assert "missing credential" not in migrated.stdout, describe(migrated)

    out = tmp_path / "out"
    result = export(ns, out)
    # Written under the folder, but the pools still name the absolute path: exit 1.
    assert result.exit_code == 1, describe(result)
    relocated = "relocated/absolute/" + str(elsewhere).lstrip("/")
    assert f"{elsewhere} → {relocated}" in result.stdout, describe(result)
    assert str(elsewhere) in result.stderr and "--relocate-paths" in result.stderr
    assert (out / relocated).read_bytes() == token_bytes
    assert elsewhere.read_bytes() == token_bytes  # the original is never written
    # The pools file still names the absolute path, byte for byte.
    pools = "configs/provider_pools.json"
    assert (out / pools).read_bytes() == (root / pools).read_bytes()
    assert not (out / GEMINI_TOKEN).exists()
    as_json = export(ns, tmp_path / "out2", "--json")
    assert as_json.exit_code == 1, describe(as_json)
    report = json.loads(as_json.stdout)
    assert any(str(elsewhere) in item for item in report["relocated"])
    assert SESSIONS_NOTE in report["note"]


def test_windows_backslash_paths_export_to_the_same_files(tmp_path: Path, ns: Namespace) -> None:
    root = copy_deployment(EXAMPLE, tmp_path)
    windows = (VARIANTS / "provider_pools.windows-paths.json").read_bytes()
    (root / "configs" / "provider_pools.json").write_bytes(windows)
    migrated = migrate(ns, root / "configs")
    assert "missing credential" not in migrated.stdout, describe(migrated)
    out = tmp_path / "out"
    result = export(ns, out)
    assert result.exit_code == 0, describe(result)
    written = tree_bytes(out)
    assert written["configs/provider_pools.json"] == windows  # backslashes kept verbatim
    tokens = [
        "configs/kiro/1773400000000_kiro-auth-token/1773400000000_kiro-auth-token.json",
        "configs/kiro/ide-cache/kiro-auth-token.json",
        "configs/kiro/ide-cache/28890a7ab216cb7a67d9e6205acfecc2f4d9640f.json",
        "configs/gemini/1773300000000_oauth_creds.json",
        "configs/iflow/iflow-legacy-camel.json",
        "configs/codex/1773340000000_codex-bob@example.com_oauth_creds.json",
    ]
    for name in tokens:
        assert written[name] == (root / name).read_bytes(), name
    assert not [name for name in written if "\\" in name]


def test_export_into_a_non_empty_folder_needs_force(tmp_path: Path, ns: Namespace) -> None:
    root = copy_deployment(EXAMPLE, tmp_path)
    migrate(ns, root / "configs")
    out = tmp_path / "out"
    (out / "configs").mkdir(parents=True)
    (out / "keep.txt").write_bytes(b"operator file")
    (out / "configs" / "config.json").write_bytes(b"stale")
    (out / "configs" / "config.json").chmod(0o644)
    keep_mode = file_modes(out)["keep.txt"]
    before = tree_bytes(out)

    refused = export(ns, out)
    assert refused.exit_code == 1, describe(refused)
    assert "not empty" in refused.stderr and "--force" in refused.stderr
    assert tree_bytes(out) == before

    forced = export(ns, out, "--force")
    assert forced.exit_code == 0, describe(forced)
    written = tree_bytes(out)
    assert written["keep.txt"] == b"operator file"  # unrelated files stay
    expected = expected_files(root)
    for name, data in expected.items():
        assert written[name] == data, name
    assert set(written) == set(expected) | {"keep.txt"}
    modes = file_modes(out)
    assert modes.pop("keep.txt") == keep_mode  # not ours: left as it was
    assert set(modes.values()) == {0o600}, modes  # the overwritten config.json too


def test_export_to_a_file_exits_2(tmp_path: Path, ns: Namespace) -> None:
    target = tmp_path / "a-file"
    target.write_bytes(b"x")
    result = export(ns, target)
    assert result.exit_code == 2, describe(result)
    assert target.read_bytes() == b"x"


def test_export_with_unreachable_redis_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cfgctl("export", "--to", out, "--redis-url", "redis://127.0.0.1:1/0")
    assert result.exit_code == 2, describe(result)
    assert len(result.stderr.strip().splitlines()) == 1, describe(result)
    assert not out.exists() or not any(out.iterdir())


def test_export_after_live_traffic_carries_the_live_counters(tmp_path: Path, ns: Namespace) -> None:
    """An export is a backup of what runs now: counters recorded in Redis are in it, and
    every other byte is still the input's."""
    root = copy_deployment(EXAMPLE, tmp_path)
    migrate(ns, root / "configs")
    uuid = "dccb18cf-3859-4edd-b146-a98dd0c4dc28"

    async def traffic(store: Store) -> None:
        await store.pools.record_success("openai-custom", uuid)

    ns.run(traffic)
    out = tmp_path / "out"
    assert export(ns, out).exit_code == 0
    before = read_json(root / "configs" / "provider_pools.json")
    after = read_json(out / "configs" / "provider_pools.json")
    node_before = before["openai-custom"][0]
    node_after = after["openai-custom"][0]
    assert node_after["usageCount"] == node_before["usageCount"] + 1
    assert list(node_after)[: len(node_before)] == list(node_before)  # key order kept
    after["openai-custom"][0] = node_before
    assert after == before


@pytest.mark.parametrize("legacy", [False, True], ids=["modern", "legacy-root"])
def test_relative_folder_arguments(
    legacy: bool, tmp_path: Path, ns: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--configs`` and ``--to`` given relative to the shell's directory."""
    root = copy_deployment(EXAMPLE, tmp_path)
    configs = "in/configs"
    flags: tuple[str, ...] = ()
    if legacy:
        make_legacy_root(root, tmp_path / "legacy")
        configs, flags = "legacy", ("--legacy-root",)
    monkeypatch.chdir(tmp_path)
    migrated = migrate(ns, Path(configs), *flags)
    assert "missing credential" not in migrated.stdout, describe(migrated)
    verified = cfgctl("verify", "--configs", configs, "--redis-url", ns.url, *flags)
    assert verified.exit_code == 0, describe(verified)
    result = export(ns, Path("out"))
    assert result.exit_code == 0, describe(result)
    assert f"exported 21 files to {tmp_path / 'out'}" in result.stdout, describe(result)
