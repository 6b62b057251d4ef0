"""The example third-party backend (``examples/dict-backend``) and the contract suite as a
product, tried the way an outside author would.

The example distribution and the core one are built by their build backend and installed
(``uv pip install --target``) into a folder of their own; a separate ``python -m pytest
--pyargs cfgstore.testing`` process, started outside this repository (no ini, no conftest of
ours), with that folder first on its path, imports the suite and its ``pytest11`` plugin
from the installed core wheel, finds the example by its entry point and runs every contract
test on ``memory,dict``. A copy of the example that publishes no change events must fail,
naming the rule. Third-party dependencies (pluggy, pytest…) and the memory layer come from
this environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.deployments import EXAMPLE as SAMPLE_DEPLOYMENT
from tests.cli.deployments import copy_deployment, tree_bytes
from tests.cli.test_export import expected_files

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "dict-backend"
PUBLISH_LINE = (
    "        self.context.publish(ChangeEvent(entity, origin=self.context.instance_id))\n"
)
INSTALL_TIMEOUT_S = 180
SUITE_TIMEOUT_S = 300


def install(target: Path, *sources: Path) -> Path:
    """Build ``sources`` and install them (no dependencies) into ``target``; the build
    backend from the uv cache when it is there, else from the index."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("installing the example distribution needs uv on PATH")
    command = [uv, "pip", "install", "--no-deps", "--target", str(target), *map(str, sources)]
    result = subprocess.run(
        [*command[:3], "--offline", *command[3:]],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    if result.returncode != 0:
        result = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert result.returncode == 0, f"installing {sources} failed:\n{result.stderr}"
    assert list(target.glob("cfgstore_dict*.dist-info/entry_points.txt")), "no entry points"
    return target


def suite_env(site: Path | None) -> dict[str, str]:
    """This environment, minus pytest's and cfgstore's variables, ``site`` first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CFGSTORE_"))}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
    return env


def run_suite(site: Path | None, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pytest --pyargs cfgstore.testing ARGS`` in a fresh process whose only
    extra import path is ``site``, in a folder outside the repository."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "pytest.ini").write_text("[pytest]\n")  # this, not the repository's
    env = suite_env(site)
    env["CFGSTORE_TEST_SCALE"] = "0.05"  # the heavy scenarios small: this is about wiring
    pytest_args = ["--pyargs", "cfgstore.testing", "-p", "no:cacheprovider", "-q"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args, "--basetemp", str(workdir / "tmp"), *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
    )


def test_the_example_backend_passes_the_contract_suite(tmp_path: Path) -> None:
    site = install(tmp_path / "site", ROOT, EXAMPLE)
    imported = subprocess.run(
        [sys.executable, "-c", "import cfgstore.testing.plugin as p; print(p.__file__)"],
        cwd=tmp_path,  # not the checkout: `python -c` puts the working directory first
        env=suite_env(site),
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
    )
    assert Path(imported.stdout.strip()).is_relative_to(site), imported  # the wheel's copy
    result = run_suite(
        site,
        tmp_path / "run",
        "--cfgstore-chain=memory,dict",
        "--cfgstore-setting",
        "dict_path={tmp}/the-store.json",  # a third-party setting, through Settings.extra
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert " passed" in report and "failed" not in report and "error" not in report, report
    # Tests needing several instances on one storage are skipped: no "shared" capability.
    assert "skipped" in report, report
    assert list((tmp_path / "run" / "tmp").rglob("the-store.json")), "the setting was not used"


def test_a_backend_that_publishes_no_change_events_fails_naming_the_rule(tmp_path: Path) -> None:
    broken = tmp_path / "broken-dict-backend"
    shutil.copytree(EXAMPLE, broken, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    module = broken / "cfgstore_dict" / "backend.py"
    text = module.read_text()
    assert text.count(PUBLISH_LINE) == 1, "the example no longer publishes in one place"
    module.write_text(text.replace(PUBLISH_LINE, "        pass  # broken: publishes nothing\n"))
    project = broken / "pyproject.toml"
    project.write_text(project.read_text().replace('"cfgstore-dict"', '"cfgstore-dict-broken"'))
    site = install(tmp_path / "site", broken)

    # The rule's own tests, and one that shows the symptom on the chain.
    selected = "-k", "change_events or system_prompt_is_kept_verbatim"
    result = run_suite(site, tmp_path / "run", "--cfgstore-chain=memory,dict", *selected)
    report = result.stdout + result.stderr
    assert result.returncode == 1, report
    assert (
        "broken rule of cfgstore_config_put (cfgstore.hookspecs.config): every write "
        "publishes ChangeEvent('config') through BackendContext.publish" in report
    ), report
    # The symptom on the chain too: the memory layer serves the value the write replaced.
    failed = [line for line in report.splitlines() if line.startswith("FAILED")]
    assert any("test_system_prompt_is_kept_verbatim[memory+dict]" in line for line in failed)


def test_the_suite_needs_a_chain(tmp_path: Path) -> None:
    result = run_suite(None, tmp_path / "run")
    report = result.stdout + result.stderr
    assert result.returncode != 0, report
    assert "needs a backend chain: pass --cfgstore-chain=memory,NAME" in report, report


def test_a_malformed_setting_is_refused(tmp_path: Path) -> None:
    result = run_suite(
        None,
        tmp_path / "run",
        "--cfgstore-chain=memory,file",
        "--cfgstore-setting",
        "no-equals-sign",
    )
    report = result.stdout + result.stderr
    assert result.returncode != 0, report
    assert "expected KEY=VALUE" in report, report


def test_migrate_and_export_through_the_example_backend_are_byte_identical(
    tmp_path: Path,
) -> None:
    """The operator's round trip on a third-party chain: the sample deployment goes into
    ``memory,dict`` with ``cfgctl migrate`` and comes back byte for byte with ``export``
    (each command a process of its own: the store lives in the backend's file between)."""
    site = install(tmp_path / "site", ROOT, EXAMPLE)
    root = copy_deployment(SAMPLE_DEPLOYMENT, tmp_path)
    env = suite_env(site)
    env["CFGSTORE_DICT_PATH"] = str(tmp_path / "dict-store.json")

    def cfgctl(*args: str | Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", "from cfgstore.cli.app import main; main()"]
        return subprocess.run(
            [*command, *map(str, args)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=SUITE_TIMEOUT_S,
        )

    chain = ("--backends", "memory,dict")
    migrated = cfgctl("migrate", "--configs", root / "configs", *chain)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    exported = cfgctl("export", "--to", tmp_path / "out", *chain)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    written, expected = tree_bytes(tmp_path / "out"), expected_files(root)
    assert sorted(written) == sorted(expected)
    for name, data in expected.items():
        assert written[name] == data, name
