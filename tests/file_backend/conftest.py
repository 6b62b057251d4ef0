"""Fixtures for file-backend specific tests: a writable copy of a deployment folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from cfgstore.adapters import Settings, Store

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "deployment"
SHARED = REPO.parent / "shared" / "fixtures" / "aiclient-2-api" / "deployment"


@pytest.fixture
def deployment_copy(tmp_path: Path) -> Path:
    """A writable copy of the project's sample deployment (the folder is the cwd)."""
    target = tmp_path / "app"
    shutil.copytree(EXAMPLE, target)
    return target


def file_settings(cwd: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "configs_dir": cwd / "configs",
        "backends": ("file",),
        "reset_counters_on_start": False,
        "watch_interval_ms": 0,
        "write_debounce_ms": 50,
        "write_max_wait_ms": 200,
    }
    values.update(overrides)
    return Settings(**values)


OpenStore = Callable[..., AbstractAsyncContextManager[Store]]


@pytest.fixture
def open_store(deployment_copy: Path) -> OpenStore:
    def opener(**overrides: Any) -> AbstractAsyncContextManager[Store]:
        return Store.open(file_settings(deployment_copy, **overrides))

    return opener


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes under ``folder`` (lock folder excluded)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".cfgstore-locks" not in p.parts
    }
