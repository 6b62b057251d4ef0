"""Storage operations do not go through pluggy: the Store resolves every operation once, at
start-up, and then awaits plain callables (``cfgstore.hookspecs`` docstring, DESIGN).

Two independent detectors watch pluggy while the hot path runs: the manager's own hook-call
monitoring, and class-level counters on :class:`pluggy.HookCaller` (which see a hook call on
*any* manager, including one the Store might have created behind our back). Both are shown to
fire on a real hook call, so a zero count means something.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pluggy
import pytest

from cfgstore.adapters import Settings, Store
from cfgstore.adapters.chain import OPERATIONS
from cfgstore.model import jsjson
from cfgstore.model.events import ChangeEvent
from cfgstore.model.sessions import UiSession
from cfgstore.model.timefmt import now_ms

N = 500


def make_configs(root: Path) -> Path:
    configs = root / "configs"
    configs.mkdir()
    (configs / "config.json").write_bytes(jsjson.dump_bytes({"REQUIRED_API_KEY": "k"}))
    pools = {
        "openai-custom": [
            {"uuid": "n1", "customName": "one", "isHealthy": True, "usageCount": 0},
            {"uuid": "n2", "customName": "two", "isHealthy": True, "usageCount": 0},
        ]
    }
    (configs / "provider_pools.json").write_bytes(jsjson.dump_bytes(pools))
    (configs / "input_system_prompt.txt").write_bytes(b"prompt")
    return configs


class PluggyCounter:
    """Counts every way into pluggy's dispatch while installed."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.monitored: collections.Counter[str] = collections.Counter()

    def install(self, monkeypatch: pytest.MonkeyPatch, manager: pluggy.PluginManager) -> None:
        for attr in ("__call__", "call_extra", "call_historic", "get_hookimpls"):
            original = getattr(pluggy.HookCaller, attr)
            monkeypatch.setattr(pluggy.HookCaller, attr, self._counting(attr, original))

        def before(hook_name: str, impls: Sequence[Any], kwargs: Any) -> None:
            self.monitored[hook_name] += 1

        def after(outcome: Any, hook_name: str, impls: Sequence[Any], kwargs: Any) -> None:
            pass

        undo = manager.add_hookcall_monitoring(before, after)
        monkeypatch.setattr(self, "_undo", undo, raising=False)

    def _counting(self, attr: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(hook: pluggy.HookCaller, *args: Any, **kwargs: Any) -> Any:
            self.calls[f"{attr}:{hook.name}"] += 1
            return original(hook, *args, **kwargs)

        return counted

    def storage_calls(self) -> dict[str, int]:
        """Counts that concern a storage operation, by detector and hook."""
        found = {k: v for k, v in self.calls.items() if k.split(":", 1)[1] in OPERATIONS}
        found.update({f"monitor:{k}": v for k, v in self.monitored.items() if k in OPERATIONS})
        return found


@pytest.fixture
def counter() -> Iterator[PluggyCounter]:
    yield PluggyCounter()


def settings_for(configs: Path) -> Settings:
    # No watcher, no counter reset, and a debounce long enough that no coalesced flush runs
    # in the middle of the measured loop.
    return Settings(
        configs_dir=configs,
        watch_interval_ms=0,
        reset_counters_on_start=False,
        write_debounce_ms=600_000,
        write_max_wait_ms=600_000,
    )


async def test_detectors_see_a_real_hook_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counter: PluggyCounter
) -> None:
    """Control: the counters are wired to the manager the Store uses."""
    async with Store.open(settings_for(make_configs(tmp_path)), environ={}) as store:
        counter.install(monkeypatch, store.plugins.manager)
        impls = store.plugins.manager.hook.cfgstore_pools_list.get_hookimpls()
        assert impls, "the file backend implements cfgstore_pools_list"
        store.plugins.manager.hook.cfgstore_changed(event=ChangeEvent("config"))
        assert counter.calls["get_hookimpls:cfgstore_pools_list"] == 1
        assert counter.calls["__call__:cfgstore_changed"] == 1
        assert counter.monitored["cfgstore_changed"] == 1
        assert counter.storage_calls() == {"get_hookimpls:cfgstore_pools_list": 1}


async def test_hot_path_and_reads_make_no_pluggy_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counter: PluggyCounter
) -> None:
    async with Store.open(settings_for(make_configs(tmp_path)), environ={}) as store:
        await store.sessions.add("tok", UiSession("admin", now_ms(), now_ms() + 3_600_000))
        counter.install(monkeypatch, store.plugins.manager)

        for i in range(N):
            uuid = "n1" if i % 2 else "n2"
            await store.pools.record_selected("openai-custom", uuid, seq=i)
            await store.pools.record_success("openai-custom", uuid)
            await store.pools.get_node("openai-custom", uuid)
            await store.config.get()
            await store.system_prompt.get()
        await store.pools.list()
        await store.sessions.get("tok")
        await store.credentials.list()
        await store.custom_models.list()

        assert counter.calls == collections.Counter()
        assert counter.monitored == collections.Counter()

        # The loop did real work through the resolved table.
        n1 = await store.pools.get_node("openai-custom", "n1")
        n2 = await store.pools.get_node("openai-custom", "n2")
        assert n1 is not None and n2 is not None
        assert (n1.state.usage_count, n2.state.usage_count) == (N // 2, N // 2)


async def test_writes_make_no_pluggy_hook_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counter: PluggyCounter
) -> None:
    """Writes publish change events to observers (a fan-out over the registered observer
    implementations, not a storage hook); the storage operation itself is still a plain
    await, and no hook is *called* through pluggy even for the event."""
    async with Store.open(settings_for(make_configs(tmp_path)), environ={}) as store:
        counter.install(monkeypatch, store.plugins.manager)
        config = await store.config.get()
        for i in range(20):
            config_version = await store.config.put({"REQUIRED_API_KEY": f"k{i}"}, config.version)
            config = await store.config.get()
            assert config.version == config_version
            await store.system_prompt.put(f"prompt {i}")
            await store.pools.record_success("openai-custom", "n1")
        await store.flush()
        assert counter.storage_calls() == {}
        assert not [k for k in counter.calls if k.startswith(("__call__", "call_"))]
        assert counter.monitored == collections.Counter()
        assert config.document == {"REQUIRED_API_KEY": "k19"}
