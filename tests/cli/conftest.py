"""Fixtures shared by the cfgctl tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli.deployments import Namespace, private_namespace


@pytest.fixture
def ns(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Namespace]:
    """A private Redis namespace (``CFGSTORE_REDIS_PREFIX``), deleted afterwards."""
    with private_namespace(redis_url, monkeypatch) as namespace:
        yield namespace
