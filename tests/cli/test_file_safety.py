"""Security (issue 13): ``cfgctl export`` writes its configs and credential folders mode
0700 (every one it creates, intermediate ones included) and its files 0600, whatever the
umask (finding 7); ``cfgctl migrate`` reads no credential file outside the deployment's
working directory unless the operator lists its folder in ``CFGSTORE_CREDENTIAL_ROOTS``
(finding 6).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.cli.deployments import (
    EXAMPLE,
    Namespace,
    cfgctl,
    copy_deployment,
    describe,
    edit_json,
)

GEMINI_TOKEN = "configs/gemini/1773300000000_oauth_creds.json"


def test_export_creates_private_folders_and_files(tmp_path: Path, ns: Namespace) -> None:
    root = copy_deployment(EXAMPLE, tmp_path)
    result = cfgctl("migrate", "--configs", root / "configs", "--redis-url", ns.url)
    assert result.exit_code == 0, describe(result)
    out = tmp_path / "out"
    previous = os.umask(0o022)  # the common default, under which mkdir gives 0755
    try:
        result = cfgctl("export", "--to", out, "--redis-url", ns.url)
    finally:
        os.umask(previous)
    assert result.exit_code == 0, describe(result)
    folders = {p: stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")] if p.is_dir()}
    assert (out / "configs" / "kiro") in folders  # an intermediate folder is among them
    assert set(folders.values()) == {0o700}, folders
    files = {p: stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()}
    assert files and set(files.values()) == {0o600}, files


def test_migrate_refuses_a_token_file_outside_unless_its_folder_is_listed(
    tmp_path: Path, ns: Namespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_deployment(EXAMPLE, tmp_path)
    outside = tmp_path / "outside" / "token.json"
    outside.parent.mkdir()
    (root / GEMINI_TOKEN).rename(outside)

    def escape(pools: dict[str, Any]) -> None:
        pools["gemini-cli-oauth"][0]["GEMINI_OAUTH_CREDS_FILE_PATH"] = "../outside/token.json"

    edit_json(root / "configs" / "provider_pools.json", escape)
    refused = cfgctl("migrate", "--configs", root / "configs", "--redis-url", ns.url)
    assert refused.exit_code == 2, describe(refused)
    assert "../outside/token.json" in refused.stderr
    assert "CFGSTORE_CREDENTIAL_ROOTS" in refused.stderr
    status = cfgctl("status", "--redis-url", ns.url)
    assert "not initialised" in status.stdout + status.stderr, describe(status)

    monkeypatch.setenv("CFGSTORE_CREDENTIAL_ROOTS", str(outside.parent))
    allowed = cfgctl("migrate", "--configs", root / "configs", "--redis-url", ns.url)
    assert allowed.exit_code == 0, describe(allowed)
    assert "missing credential" not in allowed.stdout, describe(allowed)
