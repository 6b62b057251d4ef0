"""Security (issue 13, 7): ``cfgctl export`` writes its configs and credential folders
mode 0700 (every one it creates, intermediate ones included) and its files 0600, whatever
the umask: other local users read no token.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.cli.deployments import EXAMPLE, Namespace, cfgctl, copy_deployment, describe


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
