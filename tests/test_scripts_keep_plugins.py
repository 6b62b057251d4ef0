"""The project's scripts keep what the user installed (issue 14): ``scripts/cfgctl``,
``scripts/test`` and ``scripts/ensure-uv.sh`` never run an exact ``uv sync`` (which would
uninstall every plugin added to the environment) nor ``uv run --exact``.

Each script runs for real, with ``uv`` (and, for ``scripts/test``, ``redis-server`` and
``chromium``) replaced on ``PATH`` by stubs that record their arguments: what is checked is
what the script executes, not its text. That the inexact sync keeps an installed
distribution is uv's documented behaviour (``uv sync --inexact``: "do not remove
extraneous packages"); it was checked by hand when this test was written.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT_TIMEOUT_S = 60

STUB = """#!/bin/sh
printf '%s\\n' "$(basename "$0") $*" >> "{log}"
case "$1" in --version) echo "$(basename "$0") stub";; esac
exit 0
"""


@pytest.fixture
def stubs(tmp_path: Path) -> tuple[Path, Path]:
    """A folder of recording stubs (uv, redis-server, chromium) and their log."""
    folder, log = tmp_path / "bin", tmp_path / "calls.log"
    folder.mkdir()
    for name in ("uv", "redis-server", "chromium"):
        stub = folder / name
        stub.write_text(STUB.format(log=log), encoding="utf-8")
        stub.chmod(0o755)
    return folder, log


def run_script(command: list[str], stubs: tuple[Path, Path], cwd: Path) -> list[list[str]]:
    """Run ``command`` with the stubs first on PATH; the uv calls it made, as argv lists."""
    folder, log = stubs
    env = {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S
    )
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [line.split() for line in log.read_text(encoding="utf-8").splitlines()]
    return [call[1:] for call in calls if call and call[0] == "uv"]


def assert_keeps_installed_packages(uv_calls: list[list[str]]) -> None:
    syncs = [call for call in uv_calls if call[:1] == ["sync"]]
    assert syncs, uv_calls  # the scripts do install the workspace
    for call in syncs:
        assert "--inexact" in call and "--exact" not in call, call
    for call in uv_calls:
        if call[:1] == ["run"]:
            assert "--exact" not in call, call


@pytest.mark.parametrize(
    "command",
    [["bash", "-c", ". scripts/ensure-uv.sh"], ["scripts/cfgctl", "--help"], ["scripts/test"]],
    ids=["ensure-uv.sh", "cfgctl", "test"],
)
def test_scripts_sync_inexactly(command: list[str], stubs: tuple[Path, Path]) -> None:
    uv_calls = run_script(command, stubs, ROOT)
    assert_keeps_installed_packages(uv_calls)
    if command[0] == "scripts/cfgctl":
        assert ["run", "--project", str(ROOT), "--frozen", "cfgctl", "--help"] in uv_calls
