"""``Store.open`` builds the chain (backend factories, pluggy registration) in a worker
thread, not in one long event-loop turn; a factory that needs the running loop still
works (the chain is then built on the loop)."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from cfgstore import hookimpl
from cfgstore.adapters import BackendContext, BackendDescriptor, Operations, Settings, Store
from cfgstore.adapters.plugins import PluginSet, make_plugin_manager
from cfgstore.model.config import MainConfig

REPO = Path(__file__).resolve().parents[2]


class Probe:
    """A layer recording the thread its factory ran in; ``needs_loop`` makes the factory
    ask for the running loop (as a factory creating a task would)."""

    built_in: ClassVar[list[threading.Thread]] = []
    needs_loop = False

    def __init__(self, context: BackendContext) -> None:
        assert context.below is not None
        Probe.built_in.append(threading.current_thread())
        if Probe.needs_loop:
            self.loop = asyncio.get_running_loop()
        self.below: Operations = context.below

    @hookimpl
    async def cfgstore_config_get(self) -> MainConfig:
        value: MainConfig = await self.below["cfgstore_config_get"]()
        return value


def _plugins() -> PluginSet:
    plugins = make_plugin_manager(environ={"CFGSTORE_LOAD_PLUGINS": "memory,file"})

    class Announce:
        @hookimpl
        def cfgstore_register_backends(self, register: Callable[[BackendDescriptor], None]) -> None:
            register(BackendDescriptor("probe", "records its build", Probe, layer=True))

    plugins.manager.register(Announce())
    return plugins


def _settings(tmp_path: Path) -> Settings:
    shutil.copytree(REPO / "examples" / "deployment", tmp_path / "app")
    return Settings(
        configs_dir=tmp_path / "app" / "configs",
        backends=("memory", "probe", "file"),
        watch_interval_ms=0,
    )


async def test_the_chain_is_built_off_the_event_loop(tmp_path: Path) -> None:
    Probe.built_in, Probe.needs_loop = [], False
    async with Store.open(_settings(tmp_path), plugins=_plugins()) as store:
        assert store.backend_names == ["memory", "probe", "file"]
        assert (await store.config.get()).document
    assert Probe.built_in and Probe.built_in[0] is not threading.main_thread()


async def test_a_factory_that_needs_the_running_loop_still_opens(tmp_path: Path) -> None:
    Probe.built_in, Probe.needs_loop = [], True
    try:
        async with Store.open(_settings(tmp_path), plugins=_plugins()) as store:
            assert (await store.config.get()).document
    finally:
        Probe.needs_loop = False
    assert Probe.built_in[-1] is threading.main_thread(), "built again on the loop"
