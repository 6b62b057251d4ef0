"""The backend contract suite: every test here runs unchanged against every backend chain.

A chain is described by a :class:`Deployment`: it knows how to open any number of stores
on the same underlying storage (several stores = several instances) and how to run a
store in another OS process. Adding a backend = adding a deployment factory below.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import attrs
import pytest

from cfgstore.adapters import Settings, Store
from tests.support.namespace_seed import seed_namespace


@attrs.define
class Deployment:
    """Shared storage plus the settings that open a store on it."""

    name: str
    settings: Settings
    state_root: Path | None = None
    """Where each instance opened on a shared backend gets its own state directory."""

    def open(self, **overrides: Any) -> AbstractAsyncContextManager[Store]:
        return Store.open(attrs.evolve(self.settings, **self._instance(overrides)))

    def _instance(self, overrides: dict[str, Any]) -> dict[str, Any]:
        if self.state_root is not None:
            overrides.setdefault("state_dir", self.state_root / uuidlib.uuid4().hex[:8])
        return overrides

    def settings_overrides(self) -> dict[str, Any]:
        """Plain values a subprocess can rebuild the same settings from (a new instance)."""
        state = self._instance({}).get("state_dir")
        return {
            "state_dir": str(state) if state is not None else None,
            "configs_dir": str(self.settings.configs_dir),
            "backends": ",".join(self.settings.chain),
            "reset_counters_on_start": False,
            "watch_interval_ms": 0,
            "redis_url": self.settings.redis_url,
            "redis_prefix": self.settings.redis_prefix,
        }


def _file_deployment(chain: tuple[str, ...]) -> Callable[[Path], Deployment]:
    def make(tmp_path: Path) -> Deployment:
        configs = tmp_path / "configs"
        configs.mkdir()
        settings = Settings(
            configs_dir=configs,
            backends=chain,
            reset_counters_on_start=False,
            watch_interval_ms=0,
            write_debounce_ms=20,
            write_max_wait_ms=100,
        )
        return Deployment("+".join(chain), settings)

    return make


def _redis_deployment(chain: tuple[str, ...]) -> Callable[[Path], Deployment]:
    def make(tmp_path: Path) -> Deployment:
        # Each test gets a namespace of its own on the shared test server.
        settings = Settings(
            configs_dir=tmp_path / "configs",
            backends=chain,
            redis_url=REDIS_URL_PLACEHOLDER,
            redis_prefix=f"t{uuidlib.uuid4().hex[:12]}",
        )
        return Deployment("+".join(chain), settings, tmp_path / "states")

    return make


REDIS_URL_PLACEHOLDER = "redis://placeholder"

DEPLOYMENTS: dict[str, Callable[[Path], Deployment]] = {
    "file": _file_deployment(("file",)),
    "memory+file": _file_deployment(("memory", "file")),
    "redis": _redis_deployment(("redis",)),
    "memory+redis": _redis_deployment(("memory", "redis")),
}


@pytest.fixture(params=sorted(DEPLOYMENTS))
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    made = DEPLOYMENTS[request.param](tmp_path)
    if made.settings.redis_url == REDIS_URL_PLACEHOLDER:
        redis_url = request.getfixturevalue("redis_url")
        made = attrs.evolve(made, settings=attrs.evolve(made.settings, redis_url=redis_url))
        seed_namespace(redis_url, made.settings.redis_prefix)
    yield made


@pytest.fixture
async def store(deployment: Deployment) -> AsyncIterator[Store]:
    async with deployment.open() as opened:
        yield opened
