"""``cfgctl``: the status command, errors as exit codes, and commands added by plugins.

In-process tests use :class:`typer.testing.CliRunner` on :func:`build_app`; one test runs
the installed ``cfgctl`` console script in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cfgstore import hookimpl
from cfgstore.adapters.plugins import PluginSet, make_plugin_manager
from cfgstore.cli.app import build_app
from cfgstore.model import jsjson

SUBPROCESS_TIMEOUT_S = 60
FAR_FUTURE_MS = 4_102_444_800_000  # 2100-01-01

REPO = Path(__file__).resolve().parents[2]

EXPECTED_COUNTS = {
    "provider_types": 3,
    "nodes": 4,
    "healthy_nodes": 3,
    "credentials": 1,
    "sessions": 1,
    "plugins": 2,
    "custom_models": 3,
}


def write_configs(configs: Path) -> None:
    """A folder whose counts are known: see :data:`EXPECTED_COUNTS`."""
    configs.mkdir(parents=True)

    def put(name: str, value: Any) -> None:
        path = configs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jsjson.dump_bytes(value))

    put("config.json", {"REQUIRED_API_KEY": "k", "SERVER_PORT": 3000})
    put(
        "provider_pools.json",
        {
            "openai-custom": [
                {"uuid": "n1", "customName": "one", "isHealthy": True, "usageCount": 5},
                {"uuid": "n2", "customName": "two", "isHealthy": False, "usageCount": 7},
            ],
            "claude-kiro-oauth": [
                {"uuid": "k1", "KIRO_OAUTH_CREDS_FILE_PATH": "./configs/kiro/k1/k1.json"}
            ],
            # Names a token file that does not exist: a node, but no credential.
            "gemini-cli-oauth": [
                {"uuid": "g1", "GEMINI_OAUTH_CREDS_FILE_PATH": "./configs/gemini/absent.json"}
            ],
        },
    )
    put("kiro/k1/k1.json", {"accessToken": "a", "expiresAt": "2100-01-01T00:00:00.000Z"})
    put(
        "token-store.json",
        {
            "tokens": {
                "live": {"username": "admin", "loginTime": 1, "expiryTime": FAR_FUTURE_MS},
                "expired": {"username": "admin", "loginTime": 1, "expiryTime": 2},
            }
        },
    )
    put("plugins.json", {"plugins": {"p1": {"enabled": True}, "p2": {"enabled": False}}})
    put("custom_models.json", [{"id": "a"}, {"id": "b"}, {"id": "c"}])
    (configs / "input_system_prompt.txt").write_bytes(b"prompt")


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    folder = tmp_path / "deploy" / "configs"
    write_configs(folder)
    return folder


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def plugins() -> PluginSet:
    """The installed plugins, discovered without the process environment."""
    return make_plugin_manager(environ={})


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int] | None]:
    """Every file (bytes, inode, mtime) and directory under ``root``."""
    out: dict[str, tuple[bytes, int, int] | None] = {}
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            out[str(path.relative_to(root))] = None
        else:
            st = path.stat()
            out[str(path.relative_to(root))] = (path.read_bytes(), st.st_ino, st.st_mtime_ns)
    return out


# -- status ------------------------------------------------------------------------------


def test_status_prints_chain_and_counts(
    configs: Path, runner: CliRunner, plugins: PluginSet
) -> None:
    result = runner.invoke(build_app(plugins), ["status", "--configs", str(configs)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "backend chain: memory → file"
    assert lines[1] == f"file: {configs.absolute()} (file)"
    labels = {
        "provider types": 3,
        "nodes": 4,
        "healthy nodes": 3,
        "credentials": 1,
        "sessions": 1,
        "plugins": 2,
        "custom models": 3,
    }
    for label, count in labels.items():
        pattern = rf"^  {re.escape(label)}\s+{count}$"
        assert any(re.match(pattern, line) for line in lines), (label, result.stdout)
    assert "warning" not in result.stdout
    assert result.stderr == ""


def test_status_json(configs: Path, runner: CliRunner, plugins: PluginSet) -> None:
    result = runner.invoke(build_app(plugins), ["status", "--configs", str(configs), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["chain"] == ["memory", "file"]
    [backend] = report["backends"]
    assert backend["name"] == "file"
    assert backend["mode"] == "file"
    assert backend["location"] == str(configs.absolute())
    assert backend["counts"] == EXPECTED_COUNTS
    assert backend["warnings"] == []


def test_status_takes_the_folder_from_the_environment(
    configs: Path, runner: CliRunner, plugins: PluginSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CFGSTORE_CONFIGS_DIR", str(configs))
    result = runner.invoke(build_app(plugins), ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["backends"][0]["counts"] == EXPECTED_COUNTS


def test_status_on_a_missing_folder_exits_2(
    tmp_path: Path, runner: CliRunner, plugins: PluginSet
) -> None:
    missing = tmp_path / "nowhere" / "configs"
    result = runner.invoke(build_app(plugins), ["status", "--configs", str(missing)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("cfgctl: ")
    assert str(missing) in result.stderr
    assert "the configs folder does not exist" in result.stderr
    assert "Traceback" not in result.output
    assert not missing.exists()  # and status did not create it


def test_status_on_malformed_pools_exits_2_naming_file_and_position(
    configs: Path, runner: CliRunner, plugins: PluginSet
) -> None:
    pools = configs / "provider_pools.json"
    text = '{\n  "openai-custom": [\n    {"uuid": "n1",}\n  ]\n}'
    pools.write_text(text, encoding="utf-8")
    with pytest.raises(json.JSONDecodeError) as parsed:
        json.loads(text)
    assert parsed.value.lineno == 3
    result = runner.invoke(build_app(plugins), ["status", "--configs", str(configs)])
    assert result.exit_code == 2, result.output
    assert str(pools) in result.stderr
    assert f"line 3 column {parsed.value.colno}" in result.stderr
    assert "Traceback" not in result.output
    assert pools.read_text(encoding="utf-8") == text


def test_status_writes_nothing(
    configs: Path, runner: CliRunner, plugins: PluginSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = configs.parent
    # Even an environment asking the *service* for a cold-start reset and a watcher does
    # not make the operator tool write.
    monkeypatch.setenv("CFGSTORE_RESET_COUNTERS_ON_START", "true")
    monkeypatch.setenv("CFGSTORE_WATCH_INTERVAL_MS", "10")
    before = snapshot(root)
    for args in (["status"], ["status", "--json"]):
        result = runner.invoke(build_app(plugins), [*args, "--configs", str(configs)])
        assert result.exit_code == 0, result.output
    assert snapshot(root) == before  # same files, bytes, inodes, mtimes; no lock folder
    pools = json.loads((configs / "provider_pools.json").read_bytes())
    assert [n["usageCount"] for n in pools["openai-custom"]] == [5, 7]  # no counter reset


def test_status_of_the_deployment_example(
    tmp_path: Path, runner: CliRunner, plugins: PluginSet
) -> None:
    example = REPO / "examples" / "deployment" / "configs"
    if not example.is_dir():
        pytest.skip("examples/deployment/configs is not in this checkout")
    configs = tmp_path / "configs"
    shutil.copytree(example, configs)
    result = runner.invoke(build_app(plugins), ["status", "--configs", str(configs), "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["backends"][0]["counts"]
    pools = json.loads((configs / "provider_pools.json").read_bytes())
    assert counts["provider_types"] == len(pools)
    assert counts["nodes"] == sum(len(nodes) for nodes in pools.values())


# -- commands from plugins ------------------------------------------------------------------


class HelloPlugin:
    @hookimpl
    def cfgctl_register_commands(self, app: typer.Typer) -> None:
        @app.command("hello")
        def hello(name: str = "world") -> None:
            """Say hello (a command added by a plugin)."""
            typer.echo(f"hello {name}")


class ExplodingPlugin:
    @hookimpl
    def cfgctl_register_commands(self, app: typer.Typer) -> None:
        raise RuntimeError("cannot register my commands")


def test_plugin_command_shows_up(runner: CliRunner, plugins: PluginSet) -> None:
    plugins.manager.register(HelloPlugin(), name="hello-plugin")
    app = build_app(plugins)
    result = runner.invoke(app, ["hello", "--name", "operator"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello operator\n"
    help_text = runner.invoke(app, ["--help"])
    assert help_text.exit_code == 0
    for command in ("hello", "status", "plugins"):
        assert re.search(rf"^\W*{command}\b", help_text.stdout, re.MULTILINE), command


def test_plugin_whose_registration_raises_is_reported(
    configs: Path, runner: CliRunner, plugins: PluginSet, capsys: pytest.CaptureFixture[str]
) -> None:
    plugins.manager.register(ExplodingPlugin(), name="exploding")
    plugins.manager.register(HelloPlugin(), name="hello-plugin")
    app = build_app(plugins)
    err = capsys.readouterr().err
    assert (
        "cfgctl: plugin exploding not loaded: "
        "cfgctl_register_commands raised RuntimeError: cannot register my commands\n"
    ) in err
    status = runner.invoke(app, ["status", "--configs", str(configs), "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["backends"][0]["counts"] == EXPECTED_COUNTS
    hello = runner.invoke(app, ["hello"])
    assert hello.exit_code == 0, hello.output
    assert hello.stdout == "hello world\n"


def test_cfgctl_plugins_lists_builtins(runner: CliRunner, plugins: PluginSet) -> None:
    result = runner.invoke(build_app(plugins), ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {row["name"]: row for row in report["plugins"]}
    assert rows["cfgctl-builtins"]["hooks"] == ["cfgctl_register_commands"]
    assert rows["file"]["distribution"] == "cfgstore-file"
    assert rows["memory"]["distribution"] == "cfgstore-memory"
    backends = {b["name"]: b["layer"] for b in report["backends"]}
    assert backends["memory"] is True
    assert backends["file"] is False


# -- the real console script -----------------------------------------------------------------


def test_real_cfgctl_status(configs: Path) -> None:
    script = shutil.which("cfgctl", path=str(Path(sys.executable).parent))
    assert script is not None, "the cfgctl console script is not installed in this environment"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFGSTORE_")}
    env.pop("REDIS_URL", None)
    before = snapshot(configs.parent)
    result = subprocess.run(
        [script, "status", "--configs", str(configs), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["chain"] == ["memory", "file"]
    assert report["backends"][0]["counts"] == EXPECTED_COUNTS
    assert snapshot(configs.parent) == before

    missing = subprocess.run(
        [script, "status", "--configs", str(configs.parent / "absent")],
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert missing.returncode == 2
    assert "the configs folder does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
