"""``cfgctl serve`` on a chain whose storage is not the files (issue 14): the first start
seeds a generated client key and admin password into the *store*, prints them once and
writes no file; no well-known default (``123456``, ``admin123``) ever lets anyone in.

The third-party backend is the plain-dict one of the third-party backend tests, installed
as a real distribution in a temporary site directory (``PYTHONPATH``) of the served
process. Each test runs the real ``cfgctl serve`` and talks HTTP to it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from cfgstore.adapters import Settings, Store
from cfgstore.model import jsjson
from cfgstore.model.versions import ABSENT_VERSION
from tests.adapters.test_third_party_backend import DICTSTORE_SOURCE, write_distribution
from tests.gateway.conftest import TYPE, running_gateway, write_json
from tests.gateway.test_serve import (
    KEY_LINE,
    PASSWORD_LINE,
    Served,
    cfgctl_serve,
    fresh_connections,
    process_env,
)
from tests.gateway.test_storage_modes import private_prefix, redis_only

WELL_KNOWN_KEY = "123456"
WELL_KNOWN_PASSWORD = "admin123"


@pytest.fixture
def dict_site(tmp_path: Path) -> Path:
    """A site directory holding the ``dictstore`` backend distribution."""
    site = tmp_path / "site"
    write_distribution(
        site,
        dist="thirdparty-dict-backend",
        version="0.1",
        package="thirdparty_dict_backend",
        source=DICTSTORE_SOURCE,
        entry_points="[cfgstore]\ndictstore = thirdparty_dict_backend\n",
    )
    return site


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    with private_prefix(redis_url) as prefix:
        yield prefix


def printed_secrets(served: Served) -> tuple[str, str]:
    """The client key and the admin password the start printed, each exactly once."""
    keys = [m.group(1) for line in served.lines if (m := KEY_LINE.search(line))]
    passwords = [m.group(1) for line in served.lines if (m := PASSWORD_LINE.search(line))]
    assert len(keys) == 1 and len(passwords) == 1, served.lines
    return keys[0], passwords[0]


async def status_of(client: aiohttp.ClientSession, url: str, key: str | None) -> int:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    async with client.get(f"{url}/v1/models", headers=headers) as response:
        return response.status


async def login_status(client: aiohttp.ClientSession, url: str, password: str) -> int:
    async with client.post(f"{url}/api/login", json={"password": password}) as response:
        return response.status


async def assert_only_the_printed_secrets_work(served: Served, key: str, password: str) -> None:
    async with fresh_connections() as client:
        assert await status_of(client, served.url, key) == 200
        assert await status_of(client, served.url, WELL_KNOWN_KEY) == 401
        assert await status_of(client, served.url, None) == 401
        # The right one first: a wrong one holds the next try for LOGIN_MIN_INTERVAL.
        assert await login_status(client, served.url, password) == 200
        assert await login_status(client, served.url, WELL_KNOWN_PASSWORD) == 401


def files_under(root: Path, *ignored: str) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] not in ignored
    )


@pytest.mark.parametrize("named_by", ["flag", "environment"])
async def test_serve_on_a_third_party_chain_seeds_the_store_and_writes_no_file(
    tmp_path: Path, dict_site: Path, named_by: str
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    extra = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(dict_site), os.environ.get("PYTHONPATH")]))
    }
    args: tuple[str, ...] = ()
    if named_by == "flag":
        args = ("--backends", "memory,dictstore")
    else:
        extra["CFGSTORE_BACKENDS"] = "memory,dictstore"
    async with cfgctl_serve(run, *args, env=process_env(**extra)) as served:
        assert served.storage == "dict"
        key, password = printed_secrets(served)
        assert any("seeded a default deployment into the store" in line for line in served.lines)
        await assert_only_the_printed_secrets_work(served, key, password)
        assert await served.stop() == 0
    assert files_under(run) == ["serve.log"]  # no config.json, no pwd, no configs folder
    log = served.log.read_text()
    assert key not in log and password not in log


@pytest.mark.parametrize("chain", ["redis", "memory,redis"])
async def test_serve_on_redis_named_explicitly_seeds_the_namespace_once(
    tmp_path: Path, redis_url: str, redis_prefix: str, chain: str
) -> None:
    """Redis alone is seeded in the store that serves; under the memory fallback (which
    does not open on an empty shared namespace) through Redis alone, before it opens."""
    env = process_env(CFGSTORE_REDIS_PREFIX=redis_prefix)
    args = ("--backends", chain, "--redis-url", redis_url, "--state-dir", str(tmp_path / "state"))
    async with cfgctl_serve(tmp_path, *args, env=env) as served:
        assert served.storage == "redis"
        key, password = printed_secrets(served)
        await assert_only_the_printed_secrets_work(served, key, password)
        assert await served.stop() == 0
    assert files_under(tmp_path, "state") == ["serve.log"]

    admin = redis_only(redis_url, redis_prefix)
    async with Store.open(admin) as store:
        assert (await store.config.get()).get("REQUIRED_API_KEY") == key
        stored = await store.password.get_stored()
        assert stored is not None and stored.startswith("pbkdf2:")
        assert (await store.meta.get()).get("namespace")

    # A second start finds the store seeded: nothing new, nothing printed, the key works.
    async with cfgctl_serve(tmp_path, *args, env=env) as again:
        assert not any(KEY_LINE.search(line) or PASSWORD_LINE.search(line) for line in again.lines)
        async with fresh_connections() as client:
            assert await status_of(client, again.url, key) == 200
        assert await again.stop() == 0


async def test_serve_on_a_store_with_a_config_but_no_password_generates_only_a_password(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """The store's config and key are kept; the missing password (which the Node service
    would read as ``admin123``) is generated, stored hashed and printed once."""
    admin = redis_only(redis_url, redis_prefix)
    async with Store.open(admin) as store:
        await store.config.put({"REQUIRED_API_KEY": "operator-key"}, ABSENT_VERSION)
    env = process_env(CFGSTORE_REDIS_PREFIX=redis_prefix)
    args = ("--backends", "redis", "--redis-url", redis_url, "--state-dir", str(tmp_path / "state"))
    async with cfgctl_serve(tmp_path, *args, env=env) as served:
        assert not any(KEY_LINE.search(line) for line in served.lines), served.lines
        [password] = [m.group(1) for line in served.lines if (m := PASSWORD_LINE.search(line))]
        await assert_only_the_printed_secrets_work(served, "operator-key", password)
        assert await served.stop() == 0
    async with Store.open(admin) as store:
        assert (await store.config.get()).document == {"REQUIRED_API_KEY": "operator-key"}
        assert await store.password.verify(password)


@pytest.mark.parametrize("config", [{"MODEL_PROVIDER": TYPE}, None], ids=["no-key", "no-config"])
async def test_a_config_naming_no_client_key_lets_no_one_in_not_even_123456(
    tmp_path: Path, config: dict[str, str] | None
) -> None:
    """Unlike the Node service, an absent ``REQUIRED_API_KEY`` (or no stored config at all)
    never reads as the well-known ``123456``."""
    configs = tmp_path / "configs"
    write_json(configs / "provider_pools.json", {})
    if config is not None:
        (configs / "config.json").write_bytes(jsjson.dump_bytes(config))
    settings = Settings(configs_dir=configs, state_dir=tmp_path / "state", watch_interval_ms=0)
    async with running_gateway(settings) as gateway:
        for headers in ({"Authorization": f"Bearer {WELL_KNOWN_KEY}"}, {}):
            async with gateway.client.get("/v1/models", headers=headers) as response:
                assert response.status == 401, await response.text()
        async with gateway.client.get("/health") as response:
            assert response.status == 200
