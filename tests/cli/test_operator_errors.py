"""What an operator meets when the filesystem says no, or when they press Ctrl-C.

Every filesystem error is one line naming the path and what to do (exit 2, nothing
half-written); a stop signal ends a long command at a safe point (exit 130) and the same
command run again completes it.

The tests run as root, whom ``chmod`` does not stop. The failures are made the ways they
happen to root too: a path under a regular file (ENOTDIR), a folder where a file is expected
(EISDIR: the "unreadable file"), and — where the test may mount — a read-only tmpfs (EROFS,
as a read-only volume in a container) and a tiny tmpfs (ENOSPC). The mount tests skip
cleanly where ``mount`` is not permitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import queue
import shutil
import signal
import subprocess
import sys
import threading
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cfgstore.model import jsjson
from cfgstore.model.config import MainConfig
from cfgstore.model.snapshot import snapshot_to_bytes
from tests.cli.deployments import (
    EXAMPLE,
    Namespace,
    cfgctl,
    copy_deployment,
    describe,
    read_json,
    tree_bytes,
)
from tests.support.redis_server import RedisServerProcess
from tests.support.sample_snapshot import read_sample_snapshot

SUBPROCESS_TIMEOUT_S = 60.0
LINE_TIMEOUT_S = 60.0
QUIET_SERVE = ("--port", "0", "--log-level", "warning")


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("cfgctl: "), stderr
    return lines[0]


def cfgctl_script() -> str:
    script = shutil.which("cfgctl", path=str(Path(sys.executable).parent))
    assert script is not None, "the cfgctl console script is not installed in this environment"
    return script


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFGSTORE_")}
    env.pop("REDIS_URL", None)
    return env


# -- mounts (skipped where not permitted) ------------------------------------------------------


@contextlib.contextmanager
def tmpfs(where: Path, *options: str) -> Iterator[Path]:
    """A private tmpfs at ``where``; the test skips when this process may not mount."""
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a read-only or full file system")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(["mode=0755", *options]), "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], timeout=SUBPROCESS_TIMEOUT_S, check=False)


def remount_read_only(where: Path) -> None:
    subprocess.run(
        ["mount", "-o", "remount,ro", str(where)], timeout=SUBPROCESS_TIMEOUT_S, check=True
    )


@pytest.fixture
def migrated(ns: Namespace, tmp_path: Path) -> Path:
    """The example deployment, migrated into the test's namespace; its working directory."""
    deployment = copy_deployment(EXAMPLE, tmp_path)
    result = cfgctl("migrate", "--configs", deployment / "configs", "--redis-url", ns.url)
    assert result.exit_code == 0, describe(result)
    return deployment


# -- 1. filesystem errors -----------------------------------------------------------------------


def test_export_into_a_read_only_folder_is_one_line(
    ns: Namespace, migrated: Path, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "ro", "size=1m") as mount:
        remount_read_only(mount)
        for target in (mount / "backup", mount):
            result = cfgctl("export", "--to", target, "--redis-url", ns.url, "--force")
            assert result.exit_code == 2, describe(result)
            line = one_error_line(result.stderr)
            assert str(mount) in line and "read-only file system" in line, line
            assert "writable" in line  # what to do
            assert "nothing was written" in line
        assert list(mount.iterdir()) == []


def test_export_under_a_regular_file_is_one_line(ns: Namespace, migrated: Path) -> None:
    blocker = migrated.parent / "a-file"
    blocker.write_text("not a folder")
    result = cfgctl("export", "--to", blocker / "backup", "--redis-url", ns.url)
    assert result.exit_code == 2, describe(result)
    line = one_error_line(result.stderr)
    assert str(blocker) in line and "a file" in line and "check the path" in line, line
    assert "Traceback" not in result.output


def test_export_where_even_root_may_not_write_is_one_line(ns: Namespace, migrated: Path) -> None:
    """sysfs refuses new entries to root as well (a permission error without chmod)."""
    target = Path("/sys/kernel/cfgstore-export-test")
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no sysfs at /sys")
    result = cfgctl("export", "--to", target, "--redis-url", ns.url)
    assert result.exit_code == 2, describe(result)
    line = one_error_line(result.stderr)
    assert str(target) in line and ("not permitted" in line or "permission denied" in line)
    assert "nothing was written" in line
    assert not target.exists()


def test_export_onto_a_full_disk_leaves_only_whole_files(
    ns: Namespace, migrated: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "whole"
    assert cfgctl("export", "--to", whole, "--redis-url", ns.url).exit_code == 0
    with tmpfs(tmp_path / "small", "size=24k") as mount:  # a few pages: fills mid-export
        result = cfgctl("export", "--to", mount / "backup", "--redis-url", ns.url)
        assert result.exit_code == 2, describe(result)
        line = one_error_line(result.stderr)
        assert "no space left on the device" in line and "free some space" in line, line
        assert "files written" in line and "--force" in line, line
        partial = tree_bytes(mount / "backup")
    expected = tree_bytes(whole)
    assert partial, "the disk should take a few files before it is full"
    assert not [name for name in partial if name.endswith(".tmp")]
    for name, data in partial.items():
        assert data == expected[name], f"{name} is half-written"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_read_only_configs_folder_is_one_line(tmp_path: Path, workers: str) -> None:
    """With workers too: the worker's one line, exit 2, as a single process says it."""
    with tmpfs(tmp_path / "ro", "size=1m") as mount:
        shutil.copytree(EXAMPLE, mount / "deployment")
        remount_read_only(mount)
        configs = mount / "deployment" / "configs"
        result = subprocess.run(
            [
                cfgctl_script(),
                "serve",
                "--configs",
                str(configs),
                "--workers",
                workers,
                *QUIET_SERVE,
            ],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    line = one_error_line(result.stderr)
    assert ".cfgstore-locks" in line and "read-only file system" in line, line


def test_serve_with_a_configs_path_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    configs = tmp_path / "a-file" / "configs"
    result = subprocess.run(
        [cfgctl_script(), "serve", "--configs", str(configs), *QUIET_SERVE],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    line = one_error_line(result.stderr)
    assert str(tmp_path / "a-file") in line and "a file" in line, line


def test_migrate_of_an_unreadable_file_names_it_and_writes_nothing(
    ns: Namespace, tmp_path: Path
) -> None:
    """For root, an unreadable file is one that is not a file: a folder in its place."""
    deployment = copy_deployment(EXAMPLE, tmp_path)
    pools = deployment / "configs" / "provider_pools.json"
    pools.unlink()
    pools.mkdir()
    result = cfgctl("migrate", "--configs", deployment / "configs", "--redis-url", ns.url)
    assert result.exit_code == 2, describe(result)
    line = one_error_line(result.stderr)
    assert str(pools) in line and "is a folder where a file is expected" in line, line
    assert "nothing was written" in line and "internal error" not in line
    assert ns.key_names() == []


def test_a_configs_folder_that_is_a_file_is_not_said_to_be_missing(tmp_path: Path) -> None:
    (tmp_path / "configs").write_text("x")
    result = cfgctl("status", "--configs", tmp_path / "configs")
    assert result.exit_code == 2, describe(result)
    assert "is a file, not a folder" in one_error_line(result.stderr)
    missing = cfgctl("status", "--configs", tmp_path / "absent" / "configs")
    assert missing.exit_code == 2, describe(missing)
    assert "does not exist" in one_error_line(missing.stderr)


# -- 2. stop signals ---------------------------------------------------------------------------

BULK_CREDENTIALS = 250
"""Enough credentials for the write phase to announce itself (progress from 200 items)."""


def big_deployment(tmp_path: Path) -> Path:
    """The example deployment with :data:`BULK_CREDENTIALS` more Gemini nodes, each with
    its own token file."""
    deployment = copy_deployment(EXAMPLE, tmp_path, "big")
    pools_path = deployment / "configs" / "provider_pools.json"
    pools = read_json(pools_path)
    template = pools["gemini-cli-oauth"][0]
    token = (deployment / template["GEMINI_OAUTH_CREDS_FILE_PATH"]).read_bytes()
    for i in range(BULK_CREDENTIALS):
        path = f"configs/gemini/bulk-{i:04d}_oauth_creds.json"
        (deployment / path).write_bytes(token)
        node = {
            **template,
            "uuid": str(uuidlib.UUID(int=i + 1)),
            "GEMINI_OAUTH_CREDS_FILE_PATH": path,
        }
        pools["gemini-cli-oauth"].append(node)
    pools_path.write_bytes(jsjson.dump_bytes(pools))
    return deployment


class Running:
    """A ``cfgctl`` subprocess whose stderr lines can be awaited (bounded)."""

    def __init__(self, *args: str | Path) -> None:
        self.process = subprocess.Popen(
            [cfgctl_script(), *map(str, args)],
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def await_line(self, fragment: str) -> str:
        while True:
            try:
                line = self.lines.get(timeout=LINE_TIMEOUT_S)
            except queue.Empty:
                raise AssertionError(
                    f"no line with {fragment!r} within {LINE_TIMEOUT_S:g} s: {self}"
                ) from None
            if line is None:
                raise AssertionError(f"cfgctl ended without a line with {fragment!r}: {self}")
            self.stderr.append(line)
            if fragment in line:
                return line

    def finish(self) -> tuple[int, str, str]:
        # Not communicate(): it would read stderr too, racing the reader thread.
        self.process.wait(timeout=SUBPROCESS_TIMEOUT_S)
        assert self.process.stdout is not None
        stdout = self.process.stdout.read()
        self._reader.join(timeout=SUBPROCESS_TIMEOUT_S)
        while not self.lines.empty():
            line = self.lines.get()
            if line is not None:
                self.stderr.append(line)
        return self.process.returncode, stdout, "".join(self.stderr)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=SUBPROCESS_TIMEOUT_S)

    def __str__(self) -> str:
        return "".join(self.stderr)


@contextlib.contextmanager
def writes_paused(server: RedisServerProcess) -> Iterator[None]:
    """Redis holds every write until the block ends (``CLIENT PAUSE … WRITE``): the
    command is held inside its write phase while the test signals it."""
    client = redis.Redis.from_url(server.url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
        yield
    finally:
        client.execute_command("CLIENT", "UNPAUSE")
        client.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_mid_write_stops_safely_and_migrate_again_completes(
    redis_server_process: RedisServerProcess, tmp_path: Path, signum: signal.Signals
) -> None:
    deployment = big_deployment(tmp_path)
    url = redis_server_process.url
    migrate = ("migrate", "--configs", deployment / "configs", "--redis-url", url)
    running = Running(*migrate)
    try:
        running.await_line("writing credentials: 0/")
        with writes_paused(redis_server_process):
            running.process.send_signal(signum)
            running.await_line("stopping at the next safe point")
        code, stdout, stderr = running.finish()
    finally:
        running.kill()
    assert code == 130, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"cfgctl: stopped by {signum.name}: migrate wrote "), last
    assert "marked as mid-migration" in last and "run migrate again" in last, last
    assert stdout == ""

    status = cfgctl("status", "--redis-url", url)
    assert "`cfgctl migrate` started" in status.stdout, describe(status)
    assert "did not finish" in status.stdout, describe(status)
    again = cfgctl(*migrate)
    assert again.exit_code == 0, describe(again)
    assert again.stdout.startswith("migrated (completed an interrupted migration)")
    verify = cfgctl("verify", "--configs", deployment / "configs", "--redis-url", url)
    assert verify.exit_code == 0, describe(verify)


def test_a_second_signal_stops_at_once_without_a_traceback(
    redis_server_process: RedisServerProcess, tmp_path: Path
) -> None:
    deployment = big_deployment(tmp_path)
    url = redis_server_process.url
    migrate = ("migrate", "--configs", deployment / "configs", "--redis-url", url)
    running = Running(*migrate)
    try:
        running.await_line("writing credentials: 0/")
        with writes_paused(redis_server_process):  # held in a write: only "at once" ends it
            running.process.send_signal(signal.SIGINT)
            running.await_line("stopping at the next safe point")
            running.process.send_signal(signal.SIGINT)
            code, _, stderr = running.finish()
    finally:
        running.kill()
    assert code == 130, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("cfgctl: SIGINT again: stopped at once."), last
    assert "run migrate again" in last, last
    again = cfgctl(*migrate)
    assert again.exit_code == 0, describe(again)
    verify = cfgctl("verify", "--configs", deployment / "configs", "--redis-url", url)
    assert verify.exit_code == 0, describe(verify)


def test_a_stop_signal_mid_restore_stops_safely_and_restore_force_completes(
    redis_server_process: RedisServerProcess, tmp_path: Path
) -> None:
    deployment = big_deployment(tmp_path)
    snapshot = asyncio.run(
        read_sample_snapshot(
            tmp_path / "snap",
            namespace_id="ns-big",
            prefix="aiclient",
            revision=7,
            saved_at_ms=1773576000000,
            source=deployment,
        )
    )
    snapshot_file = tmp_path / "snapshot.json"
    snapshot_file.write_bytes(snapshot_to_bytes(snapshot))
    url = redis_server_process.url
    restore = ("restore", "--snapshot", snapshot_file, "--redis-url", url)
    running = Running(*restore)
    try:
        running.await_line("restoring credentials: 0/")
        with writes_paused(redis_server_process):
            running.process.send_signal(signal.SIGINT)
            running.await_line("stopping at the next safe point")
        code, _, stderr = running.finish()
    finally:
        running.kill()
    assert code == 130, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("cfgctl: stopped by SIGINT: restore wrote the pools and "), last
    assert "--force` to complete it" in last, last
    again = cfgctl(*restore, "--force", "--json")
    assert again.exit_code == 0, describe(again)
    summary = json.loads(again.stdout)
    assert summary["restored"] is True
    status = cfgctl("status", "--redis-url", url, "--json")
    assert status.exit_code == 0, describe(status)
    counts = json.loads(status.stdout)["backends"][0]["counts"]
    assert counts["credentials"] == len(snapshot.credentials) > BULK_CREDENTIALS
    assert json.loads(status.stdout)["initialised"] is True


def test_a_stop_signal_mid_export_leaves_whole_files_and_says_how_to_finish(
    ns: Namespace, migrated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signal is raised by the third file write itself (the operator's Ctrl-C at a
    known moment); the export stops before the fourth."""
    from cfgstore.cli import export_cmd

    real_write = export_cmd.atomic_write
    calls = 0

    def write_then_signal(path: Path, data: bytes, mode: int = 0o600) -> None:
        nonlocal calls
        real_write(path, data, mode)
        calls += 1
        if calls == 3:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(export_cmd, "atomic_write", write_then_signal)
    target = tmp_path / "backup"
    result = cfgctl("export", "--to", target, "--redis-url", ns.url)
    assert result.exit_code == 130, describe(result)
    lines = result.stderr.strip().splitlines()
    assert (
        lines[0] == "cfgctl: SIGINT: stopping at the next safe point (SIGINT again stops at once)"
    )
    assert lines[-1].startswith("cfgctl: stopped by SIGINT: 3 of "), describe(result)
    assert "run the export again with --force" in lines[-1]
    assert len(tree_bytes(target)) == 3
    monkeypatch.setattr(export_cmd, "atomic_write", real_write)
    again = cfgctl("export", "--to", target, "--redis-url", ns.url, "--force")
    assert again.exit_code == 0, describe(again)


# -- 9. papercuts --------------------------------------------------------------------------------


def test_version() -> None:
    from cfgstore import __version__

    result = cfgctl("--version")
    assert result.exit_code == 0, describe(result)
    assert result.stdout == f"cfgctl (cfgstore) {__version__}\n"


def test_debug_works_after_the_command(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    args = ("status", "--configs", tmp_path / "a-file" / "configs")
    quiet = cfgctl(*args)
    assert "Traceback" not in quiet.stderr
    for debug_args in (("--debug", *args), (*args, "--debug")):
        loud = cfgctl(*debug_args)
        assert loud.exit_code == 2, describe(loud)
        assert "Traceback" in loud.stderr, describe(loud)
        assert loud.stderr.strip().splitlines()[-1] == quiet.stderr.strip()


def test_flags_have_no_value_placeholder_and_take_no_value(tmp_path: Path) -> None:
    help_text = cfgctl("migrate", "--help")
    assert help_text.exit_code == 0
    assert "<bool>" not in help_text.stdout
    assert "--json / --no-json" in help_text.stdout
    assert "<bool>" not in cfgctl("--help").stdout
    configs = copy_deployment(EXAMPLE, tmp_path) / "configs"
    assert cfgctl("status", "--configs", configs, "--json", "true").exit_code == 2
    plain = cfgctl("status", "--configs", configs, "--no-json")
    assert plain.exit_code == 0 and plain.stdout.startswith("backend chain:"), describe(plain)


def test_with_json_an_error_is_json_too(tmp_path: Path) -> None:
    result = cfgctl("status", "--configs", tmp_path / "absent", "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)
    assert error["exit_code"] == 2 and "does not exist" in error["error"]
    assert result.stderr.strip() == f"cfgctl: {error['error']}"
    usage = cfgctl("status", "--json", "--no-such-option")
    assert usage.exit_code == 2
    error = json.loads(usage.stdout)
    assert error["exit_code"] == 2 and "--no-such-option" in error["error"]
    assert "--no-such-option" in usage.stderr


def test_init_force_over_data_needs_yes_without_a_terminal(ns: Namespace) -> None:
    assert cfgctl("init", "--redis-url", ns.url).exit_code == 0
    before = ns.dump()
    refused = cfgctl("init", "--redis-url", ns.url, "--force")
    assert refused.exit_code == 1, describe(refused)
    line = one_error_line(refused.stderr)
    assert "replaces its config.json" in line and "--yes" in line and "Nothing was written" in line
    assert ns.dump() == before
    confirmed = cfgctl("init", "--redis-url", ns.url, "--force", "--yes")
    assert confirmed.exit_code == 0, describe(confirmed)
    assert confirmed.stdout.startswith("re-initialised")


@pytest.mark.parametrize(("answer", "code"), [("n", 1), ("y", 0)])
def test_init_force_over_data_asks_on_a_terminal(
    redis_server_process: RedisServerProcess, answer: str, code: int
) -> None:
    url = redis_server_process.url
    assert cfgctl("init", "--redis-url", url).exit_code == 0
    controller, terminal = pty.openpty()
    try:
        os.write(controller, f"{answer}\n".encode())
        result = subprocess.run(
            [cfgctl_script(), "init", "--redis-url", url, "--force"],
            env=clean_env(),
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == code, result.stderr
    assert "replaces its config.json" in result.stderr and "Replace them? [y/N]" in result.stderr
    if code:
        assert result.stderr.strip().endswith("cfgctl: nothing was written")
    else:
        assert result.stdout.startswith("re-initialised")


def test_init_password_file_follows_the_admin_api_rule(ns: Namespace, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(" abcdefghijk \n")  # 11 once trimmed: the Node service's minimum is 12
    result = cfgctl("init", "--redis-url", ns.url, "--password-file", secret)
    assert result.exit_code == 2, describe(result)
    assert "at least 12 characters" in one_error_line(result.stderr)
    assert ns.key_names() == []
    secret.write_text(" abcdefghijkl \n")
    assert cfgctl("init", "--redis-url", ns.url, "--password-file", secret).exit_code == 0


def test_migrating_an_empty_folder_is_refused(ns: Namespace, tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    result = cfgctl("migrate", "--configs", tmp_path / "configs", "--redis-url", ns.url)
    assert result.exit_code == 2, describe(result)
    line = one_error_line(result.stderr)
    assert "holds no AIClient-2-API data" in line and "nothing was written" in line
    assert ns.key_names() == []


def test_the_sample_deployment_calls_nothing_at_start() -> None:
    """Serving the sample must not send its fake tokens to real OAuth and health
    endpoints: no proactive refresh, no start-up health check."""
    from cfgstore_gateway.health_checks import HealthCheckSettings

    config = MainConfig(read_json(EXAMPLE / "configs" / "config.json"))
    assert config.get("CRON_REFRESH_TOKEN") is not True
    checks = HealthCheckSettings.of(config)
    assert not checks.startup and not checks.periodic
