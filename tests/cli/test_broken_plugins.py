"""Broken third-party plugins installed beside cfgstore: every cfgctl command still works.

Each plugin is a tiny out-of-tree distribution (a package plus the ``*.dist-info`` a wheel
install leaves, with its ``entry_points.txt`` in group ``cfgstore``) written into one
temporary site directory. The real ``cfgctl`` console script runs in a fresh interpreter
with that directory on ``PYTHONPATH``, so ``importlib.metadata`` discovers the plugins
exactly as installed wheels. Installed, each broken in its own way:

* ``badname``: a hook method whose name matches no spec (a typo);
* ``sqlite``: a backend whose module fails to import (a dependency is missing);
* ``dropped``: a backend whose method drops a spec argument;
* ``syncy``: a backend whose method is a plain ``def`` where the spec is async;
* ``gwtypo``: the gateway's hook misspelt, marked with ``cfgstore.hookimpl``;
* ``clash``: a command reusing the built-in name ``status``;
* ``exploding``: a backend announcement that raises.

Beside them, ``acme-adapter`` implements the gateway's hook correctly but marked with plain
``cfgstore.hookimpl`` (once a crash of every command): it must load and serve.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from cfgstore.adapters.plugins import make_plugin_manager
from cfgstore_gateway.app import load_adapters
from tests.adapters.test_third_party_backend import write_distribution
from tests.cli.deployments import EXAMPLE, Namespace, copy_deployment
from tests.gateway.test_serve import PASSWORD_LINE, cfgctl_serve, process_env

CFGCTL_TIMEOUT_S = 60

BROKEN: dict[str, tuple[str, str]] = {
    # entry-point name: (package, source)
    "badname": (
        "thirdparty_badname",
        """
        from cfgstore import hookimpl

        @hookimpl
        def cfgctl_register_comands(app):
            pass
        """,
    ),
    "sqlite": (
        "thirdparty_sqlite",
        """
        import cfgstore_sqlite_driver_not_installed  # the distribution forgot a dependency
        """,
    ),
    "dropped": (
        "thirdparty_dropped",
        """
        from cfgstore import hookimpl
        from cfgstore.adapters.backend import BackendDescriptor

        class Dropped:
            def __init__(self, context):
                self.context = context

            @hookimpl
            async def cfgstore_pools_get_node(self, uuid):
                return None

        @hookimpl
        def cfgstore_register_backends(register):
            register(BackendDescriptor("dropped", "drops an argument", Dropped))
        """,
    ),
    "syncy": (
        "thirdparty_syncy",
        """
        from cfgstore import hookimpl
        from cfgstore.adapters.backend import BackendDescriptor
        from cfgstore.model.pools import ProviderPools

        class Syncy:
            def __init__(self, context):
                self.context = context

            @hookimpl
            def cfgstore_pools_list(self):
                return ProviderPools()

        @hookimpl
        def cfgstore_register_backends(register):
            register(BackendDescriptor("syncy", "a plain def where async is due", Syncy))
        """,
    ),
    "gwtypo": (
        "thirdparty_gwtypo",
        """
        from cfgstore import hookimpl

        @hookimpl
        def cfgstore_gateway_adaptors(register):
            pass
        """,
    ),
    "clash": (
        "thirdparty_clash",
        """
        from cfgstore import hookimpl

        @hookimpl
        def cfgctl_register_commands(app):
            @app.command("status")
            def status():
                '''Not the built-in status.'''
        """,
    ),
    "exploding": (
        "thirdparty_exploding",
        """
        from cfgstore import hookimpl

        @hookimpl
        def cfgstore_register_backends(register):
            raise RuntimeError("no licence file found")
        """,
    ),
}

EXPECTED_LINES = {
    "badname": "cfgctl: plugin badname (thirdparty-badname 0.1) not loaded: "
    "cfgctl_register_comands: no hook is named cfgctl_register_comands; "
    "did you mean cfgctl_register_commands? (rename it)",
    "sqlite": "cfgctl: plugin sqlite (thirdparty-sqlite 0.1) not loaded: ModuleNotFoundError: "
    "No module named 'cfgstore_sqlite_driver_not_installed'",
    "dropped": "cfgctl: plugin dropped (thirdparty-dropped 0.1) not loaded: backend 'dropped': "
    "cfgstore_pools_get_node(uuid) does not match the spec "
    "cfgstore_pools_get_node(provider_type, uuid): missing provider_type; "
    "declare exactly the spec's arguments",
    "syncy": "cfgctl: plugin syncy (thirdparty-syncy 0.1) not loaded: backend 'syncy': "
    "cfgstore_pools_list must be an async def: the spec cfgstore_pools_list is async",
    "gwtypo": "cfgctl: plugin gwtypo (thirdparty-gwtypo 0.1) not loaded: "
    "cfgstore_gateway_adaptors: no hook is named cfgstore_gateway_adaptors; "
    "did you mean cfgstore_gateway_adapters? (rename it)",
    "clash": "cfgctl: plugin clash (thirdparty-clash 0.1) not loaded: its command 'status' is "
    "already a command of plugin cfgctl-builtins (cfgstore 0.1.0); rename it",
    "exploding": "cfgctl: plugin exploding (thirdparty-exploding 0.1) not loaded: "
    "cfgstore_register_backends raised RuntimeError: no licence file found",
}

ACME_TYPE = "acme-chat"
ACME_SOURCE = f"""
from cfgstore import hookimpl


class AcmeAdapter:
    name = "acme"
    provider_types = ("{ACME_TYPE}",)

    def serves(self, provider_type):
        return provider_type == "{ACME_TYPE}"

    def needs_credential(self, provider_type):
        return False

    def check_node(self, provider_type, node, config):
        pass

    def static_models(self, provider_type):
        return ("acme-1",)

    async def chat_completions(self, call):
        raise NotImplementedError

    async def list_models(self, call):
        return ["acme-1"]


class HalfAdapter:
    '''Forgot list_models and static_models.'''

    name = "half"

    def serves(self, provider_type):
        return provider_type == "half-chat"

    def needs_credential(self, provider_type):
        return False

    def check_node(self, provider_type, node, config):
        pass

    async def chat_completions(self, call):
        raise NotImplementedError


@hookimpl  # plain cfgstore.hookimpl, not the gateway's adapters_hookimpl
def cfgstore_gateway_adapters(register):
    register(HalfAdapter())
    register(AcmeAdapter())
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One site directory holding every broken distribution and the acme adapter."""
    root = tmp_path_factory.mktemp("broken-site")
    for entry, (package, source) in BROKEN.items():
        write_distribution(
            root,
            dist=package.replace("_", "-"),
            version="0.1",
            package=package,
            source=source,
            entry_points=f"[cfgstore]\n{entry} = {package}\n",
        )
    write_distribution(
        root,
        dist="thirdparty-acme",
        version="0.1",
        package="thirdparty_acme",
        source=ACME_SOURCE,
        entry_points="[cfgstore]\nacme-adapter = thirdparty_acme\n",
    )
    return root


@pytest.fixture
def on_path(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The site directory on ``sys.path`` for in-process discovery, removed afterwards."""
    for package, _ in [*BROKEN.values(), ("thirdparty_acme", "")]:
        monkeypatch.delitem(sys.modules, package, raising=False)
    monkeypatch.syspath_prepend(str(site))
    yield site


def environment(site: Path, **extra: str) -> dict[str, str]:
    """The test's environment without operator settings, the site on ``PYTHONPATH``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFGSTORE_")}
    env.pop("REDIS_URL", None)
    env["PYTHONPATH"] = str(site)
    env.update(extra)
    return env


def cfgctl(
    site: Path, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    script = shutil.which("cfgctl", path=str(Path(sys.executable).parent))
    assert script is not None, "the cfgctl console script is not installed in this environment"
    return subprocess.run(
        [script, *args],
        env=environment(site, **env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CFGCTL_TIMEOUT_S,
        check=False,
    )


def assert_reports_each_broken_plugin_once(stderr: str) -> None:
    """Each broken plugin named on exactly one line: the expected one."""
    for name, line in EXPECTED_LINES.items():
        naming = [row for row in stderr.splitlines() if f"plugin {name} " in row]
        assert naming == [line], f"{name}:\n{stderr}"
    assert "Traceback" not in stderr and "acme" not in stderr, stderr


def test_help_and_plugins_list_every_broken_plugin_with_its_problem(site: Path) -> None:
    help_text = cfgctl(site, "--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "status" in help_text.stdout and "plugins" in help_text.stdout
    assert_reports_each_broken_plugin_once(help_text.stderr)

    listing = cfgctl(site, "plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    assert_reports_each_broken_plugin_once(listing.stderr)
    report = json.loads(listing.stdout)
    failures = {f["name"]: f for f in report["failures"]}
    assert set(failures) == set(BROKEN)
    for name, failure in failures.items():
        package = BROKEN[name][0]
        assert failure["distribution"] == f"{package.replace('_', '-')} 0.1"
        assert EXPECTED_LINES[name].endswith(failure["error"]), name
    rows = {row["name"]: row for row in report["plugins"]}
    assert not set(BROKEN) & set(rows)  # skipped entirely
    assert rows["acme-adapter"]["hooks"] == ["cfgstore_gateway_adapters"]
    assert rows["acme-adapter"]["distribution"] == "thirdparty-acme"
    assert {"file", "memory", "redis"} <= {b["name"] for b in report["backends"]}

    text = cfgctl(site, "plugins")
    assert text.returncode == 0, text.stderr
    assert (
        "not loaded: syncy (thirdparty-syncy 0.1): backend 'syncy': cfgstore_pools_list must "
        "be an async def"
    ) in text.stdout


def test_debug_shows_the_traceback_of_a_plugin_that_raised(site: Path) -> None:
    result = cfgctl(site, "--debug", "plugins")
    assert result.returncode == 0, result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "ModuleNotFoundError: No module named 'cfgstore_sqlite_driver_not_installed'" in (
        result.stderr
    )
    assert 'raise RuntimeError("no licence file found")' in result.stderr


def test_status_on_the_default_chain(site: Path, tmp_path: Path) -> None:
    deployment = copy_deployment(EXAMPLE, tmp_path)
    result = cfgctl(site, "status", "--configs", str(deployment / "configs"), "--json")
    assert result.returncode == 0, result.stderr
    assert_reports_each_broken_plugin_once(result.stderr)
    layers = json.loads(result.stdout)["backends"]
    assert layers[-1]["name"] == "file" and layers[-1]["counts"]["nodes"] > 0


def test_migrate_dry_run_of_the_sample_deployment(
    site: Path, tmp_path: Path, ns: Namespace
) -> None:
    deployment = copy_deployment(EXAMPLE, tmp_path)
    result = cfgctl(
        site,
        "migrate",
        "--configs",
        str(deployment / "configs"),
        "--redis-url",
        ns.url,
        "--dry-run",
        "--json",
        CFGSTORE_REDIS_PREFIX=ns.prefix,
    )
    assert result.returncode == 0, result.stderr
    assert_reports_each_broken_plugin_once(result.stderr)
    assert json.loads(result.stdout)["action"] == "planned"


@pytest.mark.parametrize(
    ("chain", "expected"),
    [
        (
            "memory,dropped",
            "cfgctl: backend 'dropped' is not available: " + EXPECTED_LINES["dropped"][8:],
        ),
        ("syncy", "cfgctl: backend 'syncy' is not available: " + EXPECTED_LINES["syncy"][8:]),
        ("sqlite", "cfgctl: backend 'sqlite' is not available: " + EXPECTED_LINES["sqlite"][8:]),
        (
            "memory,exploding",
            "cfgctl: backend 'exploding' is not available: " + EXPECTED_LINES["exploding"][8:],
        ),
    ],
)
def test_a_chain_naming_a_broken_backend_refuses_naming_the_plugin(
    site: Path, tmp_path: Path, chain: str, expected: str
) -> None:
    deployment = copy_deployment(EXAMPLE, tmp_path)
    before = sorted(p.name for p in (deployment / "configs").iterdir())
    result = cfgctl(
        site, "status", "--configs", str(deployment / "configs"), CFGSTORE_BACKENDS=chain
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == expected
    assert result.stdout == ""
    assert sorted(p.name for p in (deployment / "configs").iterdir()) == before


async def test_serve_on_the_default_file_chain_with_the_plain_marked_adapter(
    site: Path, tmp_path: Path
) -> None:
    env = process_env(PYTHONPATH=str(site))
    async with cfgctl_serve(tmp_path, env=env) as served:
        assert served.storage == "file"
        (password,) = [m.group(1) for line in served.lines if (m := PASSWORD_LINE.search(line))]
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as client:
            async with client.get(f"{served.url}/health") as response:
                assert response.status == 200
            login = {"password": password}
            async with client.post(f"{served.url}/api/login", json=login) as response:
                assert response.status == 200
                token = (await response.json())["token"]
            session = {"Authorization": f"Bearer {token}"}
            async with client.get(
                f"{served.url}/api/providers/supported", headers=session
            ) as response:
                assert response.status == 200
                supported = await response.json()
        assert ACME_TYPE in supported  # offered by the plugin, no pool of it yet
        assert "half-chat" not in supported
        assert await served.stop() == 0
    log = served.log.read_text()
    assert_reports_each_broken_plugin_once(
        "\n".join(line for line in log.splitlines() if line.startswith("cfgctl: plugin "))
    )
    assert (
        "plugin acme-adapter (thirdparty-acme 0.1): adapter skipped: adapter 'half' "
        "(thirdparty_acme.HalfAdapter) does not implement the gateway Adapter protocol: "
        "missing static_models, list_models\n"
    ) in log


def test_adapters_of_a_plugin_marked_with_the_plain_hookimpl_are_registered(
    on_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugins = make_plugin_manager(environ={})
    with caplog.at_level(logging.ERROR, logger="cfgstore_gateway"):
        registry = load_adapters(plugins)
    acme = registry.for_type(ACME_TYPE)
    assert acme is not None and acme.name == "acme"
    assert registry.for_type("half-chat") is None
    assert ACME_TYPE in registry.declared_types()
    [problem] = [r.getMessage() for r in caplog.records if "half" in r.getMessage().lower()]
    assert problem.endswith("missing static_models, list_models")
    assert "\n" not in problem
