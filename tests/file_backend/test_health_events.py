"""The file backend announces healthy ↔ unhealthy transitions
(``cfgstore_provider_health_changed``) for the records this process applies: the health
alert webhook and the health metrics work without Redis too."""

from __future__ import annotations

from pathlib import Path

from cfgstore import hookimpl
from cfgstore.adapters import Settings, Store
from cfgstore.model import jsjson

TYPE = "openai-custom"


class HealthObserver:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bool]] = []

    @hookimpl
    def cfgstore_provider_health_changed(
        self, provider_type: str, uuid: str, healthy: bool
    ) -> None:
        self.seen.append((provider_type, uuid, healthy))


async def test_each_transition_is_announced_once(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    pools = {TYPE: [{"uuid": "a", "OPENAI_API_KEY": "k"}, {"uuid": "b", "OPENAI_API_KEY": "k"}]}
    (configs / "provider_pools.json").write_bytes(jsjson.dump_bytes(pools))
    async with Store.open(Settings(configs_dir=configs, watch_interval_ms=0)) as store:
        observer = HealthObserver()
        store.plugins.manager.register(observer)
        for _ in range(4):  # the third failure turns it unhealthy; the fourth changes nothing
            await store.pools.record_failure(TYPE, "a", "boom", max_error_count=3)
        await store.pools.record_success(TYPE, "b")
        assert observer.seen == [(TYPE, "a", False)]
        await store.pools.record_health_check(TYPE, "a", ok=True, model="m", max_error_count=3)
        await store.pools.record_health_check(TYPE, "a", ok=True, model="m", max_error_count=3)
        assert observer.seen == [(TYPE, "a", False), (TYPE, "a", True)]
