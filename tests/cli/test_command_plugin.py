"""A third-party cfgctl command, installed through a real ``cfgstore`` entry point.

The plugin is a tiny distribution (a package plus a ``*.dist-info`` with ``METADATA`` and
``entry_points.txt``) written into a temporary site directory on ``sys.path``, so
``importlib.metadata`` finds it exactly as it finds an installed wheel. Nothing is
installed into the environment; ``sys.path`` and ``sys.modules`` are restored afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cfgstore.adapters.plugins import make_plugin_manager
from cfgstore.cli.app import build_app
from tests.adapters.test_third_party_backend import write_distribution

SUBPROCESS_TIMEOUT_S = 60
PACKAGE = "hello_cmd_plugin"
DISTRIBUTION = "hello-cmd-plugin"
ENTRY_NAME = "hello-cmd"

HELLO_SOURCE = '''
"""hello_cmd_plugin: adds ``cfgctl hello`` (written by the cfgstore test suite)."""

import typer

from cfgstore import hookimpl


@hookimpl
def cfgctl_register_commands(app):
    @app.command()
    def hello(
        name: str = typer.Option("world", "--name", help="Whom to greet."),
        shout: bool = typer.Option(False, "--shout", help="Greet loudly (exits 3)."),
    ) -> None:
        """Greet someone (a third-party command)."""
        greeting = f"hello, {name}!"
        typer.echo(greeting.upper() if shout else greeting)
        if shout:
            raise typer.Exit(3)
'''


@pytest.fixture
def hello_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site-hello"
    write_distribution(
        site,
        dist=DISTRIBUTION,
        version="0.3",
        package=PACKAGE,
        source=HELLO_SOURCE,
        entry_points=f"[cfgstore]\n{ENTRY_NAME} = {PACKAGE}\n",
    )
    monkeypatch.delitem(sys.modules, PACKAGE, raising=False)
    monkeypatch.syspath_prepend(str(site))  # also invalidates the import caches
    return site


def test_plugin_command_is_listed_and_runs(hello_site: Path) -> None:
    app = build_app()  # built after the path change: discovers the new entry point
    runner = CliRunner()

    help_text = runner.invoke(app, ["--help"])
    assert help_text.exit_code == 0, help_text.output
    assert "hello" in help_text.stdout and "Greet someone" in help_text.stdout
    assert "status" in help_text.stdout and "init" in help_text.stdout  # built-ins still there

    greeted = runner.invoke(app, ["hello", "--name", "cfgstore"])
    assert greeted.exit_code == 0, greeted.output
    assert greeted.stdout == "hello, cfgstore!\n"

    shouted = runner.invoke(app, ["hello", "--shout"])
    assert shouted.exit_code == 3 and shouted.stdout == "HELLO, WORLD!\n"

    own_help = runner.invoke(app, ["hello", "--help"])
    assert own_help.exit_code == 0 and "--name" in own_help.stdout


def test_plugin_is_listed_with_its_distribution(hello_site: Path) -> None:
    plugins = make_plugin_manager(environ={})
    assert plugins.distributions[ENTRY_NAME] == (DISTRIBUTION, "0.3")
    listing = CliRunner().invoke(build_app(plugins), ["plugins", "--json"])
    assert listing.exit_code == 0, listing.output
    [row] = [r for r in json.loads(listing.stdout)["plugins"] if r["name"] == ENTRY_NAME]
    assert row["distribution"] == DISTRIBUTION and row["version"] == "0.3"
    assert row["hooks"] == ["cfgctl_register_commands"]


def test_disabled_plugin_adds_no_command(hello_site: Path) -> None:
    plugins = make_plugin_manager(environ={"CFGSTORE_DISABLE_PLUGINS": ENTRY_NAME})
    app = build_app(plugins)
    help_text = CliRunner().invoke(app, ["--help"])
    assert help_text.exit_code == 0, help_text.output
    assert "hello" not in help_text.stdout and "status" in help_text.stdout
    missing = CliRunner().invoke(app, ["hello"])
    assert missing.exit_code == 2


def test_real_cfgctl_runs_the_plugin_command(hello_site: Path) -> None:
    """The installed console script in a fresh interpreter, the plugin found through
    ``PYTHONPATH`` as if installed into a site directory."""
    script = shutil.which("cfgctl", path=str(Path(sys.executable).parent))
    assert script is not None, "the cfgctl console script is not installed in this environment"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFGSTORE_")}
    env["PYTHONPATH"] = str(hello_site)

    def cfgctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [script, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
            check=False,
        )

    help_text = cfgctl("--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "hello" in help_text.stdout and "status" in help_text.stdout
    assert help_text.stderr == ""
    greeted = cfgctl("hello", "--name", "subprocess")
    assert greeted.returncode == 0, greeted.stderr
    assert greeted.stdout == "hello, subprocess!\n"
