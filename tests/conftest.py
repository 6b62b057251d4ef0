"""Suite-wide fixtures: the real-Redis harness, and a clean environment."""

from __future__ import annotations

import os

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
