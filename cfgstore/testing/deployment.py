"""The store a contract test runs against: its settings, its backend's capabilities, and
how to open instances of it (in this process or in another one).

Each test gets fresh storage: ``configs_dir`` and the instances' state directories live in
the test's temporary directory, and ``{tmp}`` / ``{unique}`` in a setting's value become
that directory and a short id of the test's own (e.g. ``redis_prefix=t{unique}`` gives a
shared server one namespace per test).
"""

from __future__ import annotations

import functools
import pickle
import uuid as uuidlib
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs

from cfgstore.adapters import Settings, Store
from cfgstore.adapters.backend import SHARED, SHARED_LOGINS
from cfgstore.errors import InvalidData
from cfgstore.model.versions import SCHEMA_VERSION

#: What the suite sets before the environment and ``--cfgstore-setting`` (which win):
#: counters survive a reopen, and the file backend writes soon and watches nothing.
SUITE_DEFAULTS = {
    "reset_counters_on_start": "false",
    "watch_interval_ms": "0",
    "write_debounce_ms": "20",
    "write_max_wait_ms": "100",
}


def parse_chain(text: str) -> tuple[str, ...]:
    """``"memory,file"`` (or ``memory+file``) → ``("memory", "file")``, top first."""
    names = tuple(part.strip() for part in text.replace("+", ",").split(",") if part.strip())
    if not names:
        raise InvalidData("--cfgstore-chain", text, "expected backend names, e.g. memory,file")
    return names


def parse_setting(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (``KEY`` a settings field or a third-party name, any case, with or
    without the ``CFGSTORE_`` prefix) → the ``CFGSTORE_KEY`` variable and its value."""
    key, sep, value = text.partition("=")
    key = key.strip().upper().removeprefix("CFGSTORE_")
    if not sep or not key:
        raise InvalidData("--cfgstore-setting", text, "expected KEY=VALUE")
    return f"CFGSTORE_{key}", value


def suite_settings(
    chain: tuple[str, ...],
    tmp_path: Path,
    unique: str,
    environ: Mapping[str, str],
    settings_args: Iterable[str] = (),
) -> Settings:
    """The settings of one test's store, lowest precedence first: :data:`SUITE_DEFAULTS`
    and a configs folder in ``tmp_path``, then ``CFGSTORE_*`` (and ``REDIS_URL``) from
    ``environ``, then ``--cfgstore-setting`` values. ``{tmp}`` and ``{unique}`` are
    replaced in every value. Third-party names land in :attr:`Settings.extra`."""
    configs = tmp_path / "configs"
    configs.mkdir(exist_ok=True)
    merged = {f"CFGSTORE_{key.upper()}": value for key, value in SUITE_DEFAULTS.items()}
    merged["CFGSTORE_CONFIGS_DIR"] = str(configs)
    merged.update(
        (key, value)
        for key, value in environ.items()
        if (key.startswith("CFGSTORE_") and not key.startswith("CFGSTORE_TEST_"))
        or key == "REDIS_URL"
    )
    merged.update(parse_setting(text) for text in settings_args)
    filled = {
        key: value.replace("{tmp}", str(tmp_path)).replace("{unique}", unique)
        for key, value in merged.items()
    }
    return Settings.load({"backends": chain}, environ=filled)


@functools.cache
def capabilities_of(backend: str) -> frozenset[str]:
    """The capabilities the installed backend named ``backend`` declares (empty when no
    installed plugin announces it: opening the chain then names the problem)."""
    from cfgstore.adapters.chain import descriptors
    from cfgstore.adapters.plugins import make_plugin_manager

    descriptor = descriptors(make_plugin_manager().manager).get(backend)
    return descriptor.capabilities if descriptor is not None else frozenset()


@attrs.define
class Deployment:
    """One store under test. ``settings`` open it; every instance opened gets a state
    directory of its own under ``root``; ``capabilities`` are those of the chain's bottom
    backend (the storage), which decide the several-instance tests."""

    settings: Settings
    root: Path
    capabilities: frozenset[str] = attrs.field()
    _initialised: bool = attrs.field(default=False, init=False)

    @capabilities.default
    def _bottom_capabilities(self) -> frozenset[str]:
        return capabilities_of(self.settings.chain[-1])

    @property
    def name(self) -> str:
        return "+".join(self.settings.chain)

    @property
    def shared(self) -> bool:
        """Several instances work on one storage (:data:`cfgstore.adapters.backend.SHARED`)."""
        return SHARED in self.capabilities

    @property
    def shared_logins(self) -> bool:
        """The login counter is shared by every instance too (``SHARED_LOGINS``)."""
        return SHARED_LOGINS in self.capabilities

    def instance_settings(self, **overrides: Any) -> Settings:
        """Settings of one new instance: a state directory of its own."""
        overrides.setdefault("state_dir", self.root / "instances" / uuidlib.uuid4().hex[:8])
        return attrs.evolve(self.settings, **overrides)

    @asynccontextmanager
    async def open(self, **overrides: Any) -> AsyncIterator[Store]:
        """Open a new instance on the storage (closed, hence flushed, on exit)."""
        await self.initialise()
        async with Store.open(self.instance_settings(**overrides)) as store:
            yield store

    async def initialise(self) -> None:
        """Mark the storage initialised once, as ``cfgctl init`` and ``migrate`` do: the
        bottom backend's meta holds the schema and a namespace id. Nothing else is
        written (a layer such as the memory fallback refuses a namespace nobody
        initialised)."""
        if self._initialised:
            return
        bottom = self.instance_settings(backends=self.settings.chain[-1:])
        async with Store.open(bottom) as store:
            meta = await store.meta.get()
            if "namespace" not in meta:
                await store.meta.update(
                    {"schema": str(SCHEMA_VERSION), "namespace": uuidlib.uuid4().hex}
                )
        self._initialised = True

    async def subprocess_settings(self) -> str:
        """The settings of a new instance as text for another process
        (:func:`load_subprocess_settings`), the storage initialised first."""
        await self.initialise()
        return pickle.dumps(self.instance_settings()).hex()


def load_subprocess_settings(text: str) -> Settings:
    """The settings :meth:`Deployment.subprocess_settings` wrote (this suite's own
    processes only: the text is a pickle)."""
    settings: Settings = pickle.loads(bytes.fromhex(text))
    return settings
