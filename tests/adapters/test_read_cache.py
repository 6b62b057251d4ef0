"""The memory layer's read cache over the real file backend.

* a repeated read is served from memory (and is a copy);
* a write through the store invalidates at once (read-after-write);
* a write by another process, or a file rewritten on disk, is picked up once the file
  watcher notices it (the test waits for the change *event*, never a sleep);
* a read that was in flight while its entity was invalidated never stores its stale value
  (driven deterministically by a layer that holds the read until the test releases it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cfgstore import hookimpl
from cfgstore.adapters import BackendContext, BackendDescriptor, Operations, Settings, Store
from cfgstore.adapters.plugins import PluginSet, make_plugin_manager
from cfgstore.model import jsjson
from cfgstore.model.config import MainConfig
from cfgstore.model.custom_models import CustomModel
from cfgstore.model.events import ChangeEvent
from cfgstore.model.versions import ANY_VERSION
from cfgstore_memory.read_cache import ReadCache

WAIT_S = 10.0
"""Upper bound of every wait for an event (generous for a loaded CI machine)."""

WATCH_MS = 50

REPO = Path(__file__).resolve().parents[2]


# -- a small configs folder ------------------------------------------------------------


def write_configs(configs: Path) -> None:
    configs.mkdir(parents=True)

    def put(name: str, value: Any) -> None:
        (configs / name).write_bytes(jsjson.dump_bytes(value))

    put("config.json", {"REQUIRED_API_KEY": "old-key", "SERVER_PORT": 3000})
    put(
        "provider_pools.json",
        {"openai-custom": [{"uuid": "n1", "customName": "one", "usageCount": 4}]},
    )
    put("custom_models.json", [{"id": "m1", "alias": "first"}])
    put("plugins.json", {"plugins": {"p1": {"enabled": True}}})
    put("usage-cache.json", {"timestamp": "2026-01-01T00:00:00.000Z", "providers": {}})
    (configs / "input_system_prompt.txt").write_bytes(b"old prompt")
    (configs / "pwd").write_bytes(b"old-password")


def rewrite_on_disk(path: Path, data: bytes) -> None:
    """What another program does: write beside the file and rename over it."""
    tmp = path.with_name(path.name + ".other-writer")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    folder = tmp_path / "configs"
    write_configs(folder)
    return folder


def settings_for(configs: Path, watch_ms: int = 0) -> Settings:
    return Settings(
        configs_dir=configs,
        watch_interval_ms=watch_ms,
        reset_counters_on_start=False,
    )


def cache_of(store: Store) -> ReadCache:
    [cache] = [layer.instance for layer in store._chain.layers if layer.name == "memory"]
    assert isinstance(cache, ReadCache)
    return cache


class ChangeListener:
    """Observer plugin: ``expect(...)`` returns an event set by the first matching change."""

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []
        self._expected: list[tuple[str, bool | None, asyncio.Event]] = []

    @hookimpl
    def cfgstore_changed(self, event: ChangeEvent) -> None:
        self.events.append(event)
        for entity, remote, flag in self._expected:
            if event.entity == entity and (remote is None or event.remote == remote):
                flag.set()

    def expect(self, entity: str, *, remote: bool | None = None) -> asyncio.Event:
        flag = asyncio.Event()
        self._expected.append((entity, remote, flag))
        return flag


async def arrived(flag: asyncio.Event, what: str) -> None:
    try:
        async with asyncio.timeout(WAIT_S):
            await flag.wait()
    except TimeoutError:
        pytest.fail(f"no {what} within {WAIT_S} s")


@pytest.fixture
async def listening() -> AsyncIterator[Callable[[Store], ChangeListener]]:
    registered: list[tuple[Store, ChangeListener]] = []

    def attach(store: Store) -> ChangeListener:
        listener = ChangeListener()
        store.plugins.manager.register(listener)
        registered.append((store, listener))
        return listener

    yield attach
    for store, listener in registered:
        store.plugins.manager.unregister(listener)


# -- what each cached entity looks like --------------------------------------------------

Read = Callable[[Store], Awaitable[Any]]
Write = Callable[[Store], Awaitable[None]]


async def _read_config(store: Store) -> Any:
    return (await store.config.get()).document["REQUIRED_API_KEY"]


async def _write_config(store: Store) -> None:
    await store.config.put({"REQUIRED_API_KEY": "new-key"}, (await store.config.get()).version)


async def _read_models(store: Store) -> Any:
    return [m.id for m in await store.custom_models.list()]


async def _write_models(store: Store) -> None:
    await store.custom_models.add(CustomModel("m2", {"id": "m2"}))


async def _read_plugins(store: Store) -> Any:
    return (await store.plugin_config.get()).plugins


async def _write_plugins(store: Store) -> None:
    await store.plugin_config.set_enabled("p1", False)


async def _read_usage(store: Store) -> Any:
    cache = await store.usage_cache.get()
    return None if cache is None else cache.providers


async def _write_usage(store: Store) -> None:
    await store.usage_cache.put_type("openai-custom", {"left": 5}, "2026-02-01T00:00:00.000Z")


async def _write_prompt(store: Store) -> None:
    await store.system_prompt.put("new prompt")


async def _write_password(store: Store) -> None:
    await store.password.put_stored("new-password")


CACHED: list[tuple[str, str, Read, Write, Any, Any]] = [
    # operation, entity, read, write through the store, value before, value after
    ("cfgstore_config_get", "config", _read_config, _write_config, "old-key", "new-key"),
    (
        "cfgstore_system_prompt_get",
        "system_prompt",
        lambda s: s.system_prompt.get(),
        _write_prompt,
        "old prompt",
        "new prompt",
    ),
    (
        "cfgstore_custom_models_list",
        "custom_models",
        _read_models,
        _write_models,
        ["m1"],
        ["m1", "m2"],
    ),
    (
        "cfgstore_plugin_config_get",
        "plugin_config",
        _read_plugins,
        _write_plugins,
        {"p1": {"enabled": True}},
        {"p1": {"enabled": False}},
    ),
    (
        "cfgstore_password_get",
        "password",
        lambda s: s.password.get_stored(),
        _write_password,
        "old-password",
        "new-password",
    ),
    (
        "cfgstore_usage_cache_get",
        "usage_cache",
        _read_usage,
        _write_usage,
        {},
        {"openai-custom": {"left": 5}},
    ),
]
CACHED_IDS = [entity for _, entity, *_ in CACHED]


def count_below(cache: ReadCache, operation: str) -> list[int]:
    """Count how often the cache asks the backend below for ``operation``."""
    calls = [0]
    table = cache._below._table
    original = table[operation]

    def counted(**kwargs: Any) -> Awaitable[Any]:
        calls[0] += 1
        return original(**kwargs)

    table[operation] = counted
    return calls


# -- hits ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "entity", "read", "write", "old", "new"), CACHED, ids=CACHED_IDS
)
async def test_second_read_is_a_cache_hit(
    configs: Path, operation: str, entity: str, read: Read, write: Write, old: Any, new: Any
) -> None:
    async with Store.open(settings_for(configs), environ={}) as store:
        cache = cache_of(store)
        below = count_below(cache, operation)
        assert await read(store) == old
        assert (cache.hits, cache.misses, below[0]) == (0, 1, 1)
        assert await read(store) == old
        assert await read(store) == old
        assert (cache.hits, cache.misses, below[0]) == (2, 1, 1)


async def test_cached_values_are_copies(configs: Path) -> None:
    async with Store.open(settings_for(configs), environ={}) as store:
        first = await store.config.get()
        first.document["REQUIRED_API_KEY"] = "mutated by a caller"
        models = await store.custom_models.list()
        models[0].document["alias"] = "mutated"
        models.clear()
        again = await store.config.get()
        assert again.document["REQUIRED_API_KEY"] == "old-key"
        assert [m.document for m in await store.custom_models.list()] == [
            {"id": "m1", "alias": "first"}
        ]
        assert cache_of(store).hits == 2


async def test_uncached_entities_are_not_served_from_memory(configs: Path) -> None:
    """Pools, credentials and sessions go straight to the backend (its truth)."""
    async with Store.open(settings_for(configs), environ={}) as store:
        cache = cache_of(store)
        await store.pools.list()
        await store.pools.list()
        await store.sessions.count()
        assert (cache.hits, cache.misses) == (0, 0)


# -- invalidation by writes through the store ------------------------------------------


@pytest.mark.parametrize(
    ("operation", "entity", "read", "write", "old", "new"), CACHED, ids=CACHED_IDS
)
async def test_write_through_the_store_invalidates(
    configs: Path, operation: str, entity: str, read: Read, write: Write, old: Any, new: Any
) -> None:
    async with Store.open(settings_for(configs), environ={}) as store:
        cache = cache_of(store)
        assert await read(store) == old
        assert await read(store) == old  # now cached
        await write(store)
        assert await read(store) == new  # read-after-write, no waiting
        misses = cache.misses
        assert await read(store) == new
        assert cache.misses == misses  # and cached again


# -- invalidation by other writers ------------------------------------------------------


DISK_CHANGES: list[tuple[str, str, Read, bytes, Any]] = [
    (
        "config.json",
        "config",
        _read_config,
        jsjson.dump_bytes({"REQUIRED_API_KEY": "disk"}),
        "disk",
    ),
    (
        "input_system_prompt.txt",
        "system_prompt",
        lambda s: s.system_prompt.get(),
        b"prompt edited by hand",
        "prompt edited by hand",
    ),
    (
        "custom_models.json",
        "custom_models",
        _read_models,
        jsjson.dump_bytes([{"id": "x"}, {"id": "y"}]),
        ["x", "y"],
    ),
    (
        "plugins.json",
        "plugin_config",
        _read_plugins,
        jsjson.dump_bytes({"plugins": {"p9": {"enabled": False}}}),
        {"p9": {"enabled": False}},
    ),
]


@pytest.mark.parametrize(
    ("filename", "entity", "read", "data", "expected"),
    DISK_CHANGES,
    ids=[entity for _, entity, *_ in DISK_CHANGES],
)
async def test_file_rewritten_on_disk_is_picked_up_by_the_watcher(
    configs: Path,
    listening: Callable[[Store], ChangeListener],
    filename: str,
    entity: str,
    read: Read,
    data: bytes,
    expected: Any,
) -> None:
    async with Store.open(settings_for(configs, WATCH_MS), environ={}) as store:
        listener = listening(store)
        cache = cache_of(store)
        before = await read(store)
        assert await read(store) == before  # cached
        noticed = listener.expect(entity, remote=True)
        await asyncio.to_thread(rewrite_on_disk, configs / filename, data)
        await arrived(noticed, f"remote {entity} change event")
        misses = cache.misses
        assert await read(store) == expected
        assert cache.misses == misses + 1


OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from cfgstore.adapters import Settings, Store
    from cfgstore.model.versions import ANY_VERSION

    async def main() -> None:
        settings = Settings(
            configs_dir=Path(sys.argv[1]), watch_interval_ms=0, reset_counters_on_start=False
        )
        async with Store.open(settings, environ={}) as store:
            await store.config.put({"REQUIRED_API_KEY": "from-process-2"}, ANY_VERSION)
            await store.system_prompt.put("prompt from process 2")

    asyncio.run(main())
    """
)


async def test_write_by_another_process_is_picked_up(
    configs: Path, listening: Callable[[Store], ChangeListener]
) -> None:
    async with Store.open(settings_for(configs, WATCH_MS), environ={}) as store:
        listener = listening(store)
        assert await _read_config(store) == "old-key"
        assert await store.system_prompt.get() == "old prompt"
        config_changed = listener.expect("config", remote=True)
        prompt_changed = listener.expect("system_prompt", remote=True)

        env = {k: v for k, v in os.environ.items() if not k.startswith("CFGSTORE_")}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            OTHER_PROCESS,
            str(configs),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(60):
                _out, err = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == 0, err.decode()

        await arrived(config_changed, "remote config change event")
        await arrived(prompt_changed, "remote system prompt change event")
        assert await _read_config(store) == "from-process-2"
        assert await store.system_prompt.get() == "prompt from process 2"


# -- a read in flight during an invalidation --------------------------------------------


class Gate:
    """A layer between the cache and the file backend that holds the first config read
    *after* it has read the file, until the test releases it: the read has its value in
    hand while the test changes the stored one."""

    def __init__(self, context: BackendContext) -> None:
        assert context.below is not None
        self.below: Operations = context.below
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.armed = False

    @hookimpl
    async def cfgstore_config_get(self) -> MainConfig:
        value: MainConfig = await self.below["cfgstore_config_get"]()
        if self.armed:
            self.armed = False
            self.holding.set()
            await self.release.wait()
        return value


def gated_plugins() -> PluginSet:
    plugins = make_plugin_manager(environ={"CFGSTORE_LOAD_PLUGINS": "memory,file"})

    class Announce:
        @hookimpl
        def cfgstore_register_backends(self, register: Callable[[BackendDescriptor], None]) -> None:
            register(BackendDescriptor("gate", "holds reads", Gate, layer=True))

    plugins.manager.register(Announce())
    return plugins


def gate_of(store: Store) -> Gate:
    [gate] = [layer.instance for layer in store._chain.layers if layer.name == "gate"]
    assert isinstance(gate, Gate)
    return gate


async def _change_through_store(store: Store, configs: Path, listener: ChangeListener) -> None:
    await store.config.put({"REQUIRED_API_KEY": "new-key"}, ANY_VERSION)


async def _change_on_disk(store: Store, configs: Path, listener: ChangeListener) -> None:
    noticed = listener.expect("config", remote=True)
    data = jsjson.dump_bytes({"REQUIRED_API_KEY": "new-key"})
    await asyncio.to_thread(rewrite_on_disk, configs / "config.json", data)
    await arrived(noticed, "remote config change event")


@pytest.mark.parametrize(
    "change", [_change_through_store, _change_on_disk], ids=["store-write", "disk-rewrite"]
)
async def test_read_in_flight_during_invalidation_does_not_store_a_stale_value(
    configs: Path,
    listening: Callable[[Store], ChangeListener],
    change: Callable[[Store, Path, ChangeListener], Awaitable[None]],
) -> None:
    settings = Settings(
        configs_dir=configs,
        backends=("memory", "gate", "file"),
        watch_interval_ms=WATCH_MS,
        reset_counters_on_start=False,
    )
    async with Store.open(settings, plugins=gated_plugins()) as store:
        listener = listening(store)
        cache, gate = cache_of(store), gate_of(store)
        gate.armed = True
        reader = asyncio.create_task(store.config.get())
        await arrived(gate.holding, "gated read")
        # The read holds the old document; now the stored one changes and is announced.
        await change(store, configs, listener)
        gate.release.set()
        async with asyncio.timeout(WAIT_S):
            in_flight = await reader
        # The race really happened: the read that started before the change got the old
        # document (that is fine for that caller)...
        assert in_flight.document["REQUIRED_API_KEY"] == "old-key"
        # ...but the cache did not keep it: the next read goes below and sees the new one.
        assert (await store.config.get()).document["REQUIRED_API_KEY"] == "new-key"
        assert (cache.hits, cache.misses) == (0, 2)
        assert (await store.config.get()).document["REQUIRED_API_KEY"] == "new-key"
        assert (cache.hits, cache.misses) == (1, 2)


async def test_read_in_flight_is_stored_when_nothing_it_read_changed(configs: Path) -> None:
    """Control for the test above: the gate itself does not stop the cache from storing,
    and a change of *another* entity during the read does not discard it."""
    settings = Settings(
        configs_dir=configs,
        backends=("memory", "gate", "file"),
        watch_interval_ms=0,
        reset_counters_on_start=False,
    )
    async with Store.open(settings, plugins=gated_plugins()) as store:
        cache, gate = cache_of(store), gate_of(store)
        gate.armed = True
        reader = asyncio.create_task(store.config.get())
        await arrived(gate.holding, "gated read")
        await store.system_prompt.put("unrelated change")
        gate.release.set()
        async with asyncio.timeout(WAIT_S):
            await reader
        assert (await store.config.get()).document["REQUIRED_API_KEY"] == "old-key"
        assert (cache.hits, cache.misses) == (1, 1)


async def test_deployment_example_is_cached_and_invalidated(
    tmp_path: Path, listening: Callable[[Store], ChangeListener]
) -> None:
    """The same on a copy of the example deployment (when the repository has one)."""
    example = REPO / "examples" / "deployment" / "configs"
    if not example.is_dir():
        pytest.skip("examples/deployment/configs is not in this checkout")
    await asyncio.to_thread(shutil.copytree, example, tmp_path / "configs")
    configs = tmp_path / "configs"
    async with Store.open(settings_for(configs, WATCH_MS), environ={}) as store:
        listener = listening(store)
        cache = cache_of(store)
        original = await store.config.get()
        await store.config.get()
        assert (cache.hits, cache.misses) == (1, 1)
        document = dict(original.document)
        document["SERVER_PORT"] = 4321
        await store.config.put(document, original.version)
        assert (await store.config.get()).document["SERVER_PORT"] == 4321
        noticed = listener.expect("config", remote=True)
        document["SERVER_PORT"] = 5432
        await asyncio.to_thread(
            rewrite_on_disk, configs / "config.json", jsjson.dump_bytes(document)
        )
        await arrived(noticed, "remote config change event")
        assert (await store.config.get()).document["SERVER_PORT"] == 5432
