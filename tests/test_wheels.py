"""The distributions as built wheels: what a third party installs and type-checks against.

Each workspace distribution is built with ``uv build --wheel`` (hatchling, as a release
would) into a temporary folder, and the wheel itself is read: every package ships its
``py.typed`` marker (PEP 561), without which mypy ignores the annotations of an installed
cfgstore; the gateway announces its hook specifications to every plugin manager.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 180

DISTRIBUTIONS = {
    # project folder: (wheel name prefix, package)
    ".": ("cfgstore-", "cfgstore"),
    "plugins/file_backend": ("cfgstore_file-", "cfgstore_file"),
    "plugins/memory_fallback": ("cfgstore_memory-", "cfgstore_memory"),
    "plugins/redis_backend": ("cfgstore_redis-", "cfgstore_redis"),
    "gateway": ("cfgstore_gateway-", "cfgstore_gateway"),
}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (it builds the wheels)")
    out = tmp_path_factory.mktemp("wheels")
    built: dict[str, Path] = {}
    for folder, (prefix, package) in DISTRIBUTIONS.items():
        result = subprocess.run(
            [uv, "build", "--wheel", "--out-dir", str(out / package), str(REPO / folder)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        [wheel] = (out / package).glob(f"{prefix}*.whl")
        built[package] = wheel
    return built


@pytest.mark.parametrize("package", [package for _, package in DISTRIBUTIONS.values()])
def test_every_package_ships_py_typed(wheels: dict[str, Path], package: str) -> None:
    with zipfile.ZipFile(wheels[package]) as wheel:
        assert f"{package}/py.typed" in wheel.namelist()


def test_the_gateway_announces_its_hookspecs(wheels: dict[str, Path]) -> None:
    with zipfile.ZipFile(wheels["cfgstore_gateway"]) as wheel:
        [entry_points] = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
        text = wheel.read(entry_points).decode()
    assert "[cfgstore.hookspecs]\ngateway = cfgstore_gateway.hookspecs\n" in text


def test_the_core_wheel_ships_the_protocols(wheels: dict[str, Path]) -> None:
    with zipfile.ZipFile(wheels["cfgstore"]) as wheel:
        assert "cfgstore/protocols.py" in wheel.namelist()
