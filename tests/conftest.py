"""Suite-wide fixtures: the real-Redis harness, and a clean environment."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_fixture import *  # noqa: F403


@pytest.fixture(autouse=True)
def _no_operator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's cfgstore settings (``CFGSTORE_*``, ``REDIS_URL``) never leak into a
    test; the test harness's own ``CFGSTORE_TEST_*`` variables stay."""
    for key in list(os.environ):
        if (key.startswith("CFGSTORE_") and not key.startswith("CFGSTORE_TEST_")) or (
            key == "REDIS_URL"
        ):
            monkeypatch.delenv(key)


REPO_STATE_DIR = Path(__file__).resolve().parent.parent / ".cfgstore-state"


@pytest.fixture(autouse=True)
def _no_state_directory_in_the_repository() -> Iterator[None]:
    """A service instance keeps a state directory (journal, snapshot) under its working
    directory by default; a test must give each instance its own (``state_dir``), never
    share the checkout's."""
    existed = REPO_STATE_DIR.exists()
    yield
    if not existed and REPO_STATE_DIR.exists():
        shutil.rmtree(REPO_STATE_DIR, ignore_errors=True)
        pytest.fail(f"the test left a state directory in the checkout: {REPO_STATE_DIR}")
