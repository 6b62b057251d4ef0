"""Shared helpers for the ``cfgctl migrate`` / ``export`` / ``verify`` tests.

* Deployment folders (the sample in ``examples/deployment`` and, when present, the shared
  fixture ``../shared/fixtures/aiclient-2-api/deployment``) are always *copied* into the
  test's ``tmp_path`` first: nothing here writes to a fixture folder.
* Every test gets a Redis namespace of its own (``CFGSTORE_REDIS_PREFIX=<unique>``), so no
  test flushes or sees another's keys.
* cfgctl runs its own event loop (``asyncio.run``): tests that invoke it are sync tests, and
  Redis is seeded and inspected with ``asyncio.run`` helpers or a plain sync client.
* Every cfgctl call runs under a deadline (an interval timer raising
  :class:`DeadlineExceeded`, which is not an ``Exception`` so cfgctl's catch-all cannot
  swallow it).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import stat
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis
from typer.testing import CliRunner, Result

from cfgstore.adapters import Settings, Store
from cfgstore.adapters.plugins import PluginSet, make_plugin_manager
from cfgstore.cli.app import build_app
from cfgstore.model import jsjson
from cfgstore.model.credentials import credential_path_of
from cfgstore.model.pools import node_to_json

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "deployment"
VARIANTS = REPO / "examples" / "variants"
SHARED = REPO.parent / "shared" / "fixtures" / "aiclient-2-api"
SHARED_DEPLOYMENT = SHARED / "deployment"

CLI_TIMEOUT_S = 60.0
"""Bound of one cfgctl call (the Redis client's own socket timeouts are 2 s)."""

REDIS_SOCKET_TIMEOUT_S = 5.0

NOT_MIGRATED = ("token-store.json",)
"""Top-level files of both deployments that a plain migration leaves out: live sessions
(stored as digests only, with ``--include sessions``). Everything else is stored: typed,
or kept as bytes (plugin data, ``usage-cache.json`` unless included)."""

EMPTY_TOKEN_STORE = jsjson.dump_bytes({"tokens": {}})


class DeadlineExceeded(BaseException):  # not an Exception, on purpose
    """A cfgctl call ran past its deadline."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`DeadlineExceeded` in the main thread after ``seconds``."""

    def expire(signum: int, frame: Any) -> None:
        raise DeadlineExceeded(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- deployments ---------------------------------------------------------------------------


def deployment_sources() -> list[Any]:
    """pytest params: the sample deployment, and the shared fixture (skipped when absent)."""
    return [
        pytest.param(EXAMPLE, id="example"),
        pytest.param(
            SHARED_DEPLOYMENT,
            id="shared",
            marks=pytest.mark.skipif(
                not (SHARED_DEPLOYMENT / "configs").is_dir(),
                reason=f"shared fixture not present at {SHARED_DEPLOYMENT} (fresh clone)",
            ),
        ),
    ]


def copy_deployment(source: Path, tmp_path: Path, name: str = "in") -> Path:
    """A private copy of a deployment folder (the Node cwd); returns the copy's root."""
    if not (source / "configs").is_dir():
        pytest.skip(f"{source} is not present")
    target = tmp_path / name
    shutil.copytree(source, target)
    return target


def read_json(path: Path) -> Any:
    return jsjson.loads(path.read_bytes(), str(path))


def write_json(path: Path, value: Any) -> None:
    """Write in the Node service's exact format (so byte round trips stay meaningful)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jsjson.dump_bytes(value))


def edit_json(path: Path, change: Callable[[Any], Any]) -> None:
    """Read, change (in place or by returning a new value), write back in Node format."""
    value = read_json(path)
    result = change(value)
    write_json(path, value if result is None else result)


def make_legacy_root(deployment: Path, root: Path) -> None:
    """The pre-2025-12 layout: every file in one folder that is also the process cwd,
    credential paths relative to it. Moves ``deployment/configs`` to ``root`` and
    rewrites every ``configs/…`` path (pools and config.json) relative to ``root``."""
    configs = deployment / "configs"
    configs.rename(root)

    def strip(path: str) -> str:
        return path.replace("./configs/", "./").removeprefix("configs/")

    def fix_pools(pools: dict[str, Any]) -> None:
        for nodes in pools.values():
            for node in nodes:
                for key, value in node.items():
                    if key.endswith("_PATH") and isinstance(value, str):
                        node[key] = strip(value)

    def fix_config(config: dict[str, Any]) -> None:
        for key, value in config.items():
            if key.endswith("_FILE_PATH") and isinstance(value, str):
                config[key] = strip(value)

    edit_json(root / "provider_pools.json", fix_pools)
    edit_json(root / "config.json", fix_config)


def find_node(pools_doc: dict[str, Any], provider_type: str, index: int = 0) -> dict[str, Any]:
    node: dict[str, Any] = pools_doc[provider_type][index]
    return node


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative posix path → bytes)."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def file_modes(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# -- cfgctl --------------------------------------------------------------------------------

_plugins: PluginSet | None = None


def plugins() -> PluginSet:
    """The installed plugins, discovered once (without the process environment)."""
    global _plugins
    if _plugins is None:
        _plugins = make_plugin_manager(environ={})
    return _plugins


def cfgctl(*args: str | Path, timeout: float = CLI_TIMEOUT_S) -> Result:
    """Run ``cfgctl ARGS`` in-process; stdout and stderr are separate (``result.stdout``,
    ``result.stderr``; typer's CliRunner has no ``mix_stderr`` any more)."""
    with deadline(timeout):
        return CliRunner().invoke(build_app(plugins()), [str(a) for a in args])


def describe(result: Result) -> str:
    """Everything a failed assertion should show."""
    return f"exit {result.exit_code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


# -- Redis namespaces ----------------------------------------------------------------------


@attrs.frozen
class Namespace:
    """A test's private Redis namespace (``CFGSTORE_REDIS_PREFIX`` is set to ``prefix``)."""

    url: str
    prefix: str

    @property
    def tag(self) -> str:
        return "{" + self.prefix + "}"

    def key(self, suffix: str) -> str:
        return f"{self.tag}:{suffix}"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.url,
            socket_timeout=REDIS_SOCKET_TIMEOUT_S,
            socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S,
        )

    def key_names(self) -> list[str]:
        with contextlib.closing(self.client()) as client:
            return sorted(k.decode() for k in client.scan_iter(match=f"{self.tag}:*", count=1000))

    def dump(self) -> dict[bytes, tuple[bytes, Any]]:
        """Every key of the namespace with its type and full value, as raw bytes.
        TTLs are not part of it (they tick)."""
        out: dict[bytes, tuple[bytes, Any]] = {}
        with contextlib.closing(self.client()) as client:
            for key in sorted(client.scan_iter(match=f"{self.tag}:*", count=1000)):
                kind = client.type(key)
                value: Any
                if kind == b"string":
                    value = client.get(key)
                elif kind == b"hash":
                    value = sorted(client.hgetall(key).items())
                elif kind == b"list":
                    value = client.lrange(key, 0, -1)
                elif kind == b"zset":
                    value = client.zrange(key, 0, -1, withscores=True)
                elif kind == b"set":
                    value = sorted(client.smembers(key))
                elif kind == b"none":  # expired between SCAN and TYPE
                    continue
                else:
                    value = client.dump(key)
                out[key] = (kind, value)
        return out

    def drop(self) -> None:
        """Delete every key of the namespace (tests leave nothing behind on a shared
        ``CFGSTORE_TEST_REDIS_URL``)."""
        with contextlib.closing(self.client()) as client:
            keys = list(client.scan_iter(match=f"{self.tag}:*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])

    def pttl(self, suffix: str) -> int:
        with contextlib.closing(self.client()) as client:
            return int(client.pttl(self.key(suffix)))

    def settings(self) -> Settings:
        return Settings(
            configs_dir=Path("unused"),
            backends=("redis",),  # as cfgctl itself: the backend alone
            redis_url=self.url,
            redis_prefix=self.prefix,
            reset_counters_on_start=False,
            watch_interval_ms=0,
        )

    def run(self, action: Callable[[Store], Any]) -> Any:
        """``asyncio.run`` an ``async def action(store)`` on a Store over this namespace."""

        async def go() -> Any:
            async with Store.open(self.settings(), plugins=plugins()) as store:
                result = await action(store)
                await store.flush()
                return result

        with deadline(CLI_TIMEOUT_S):
            return asyncio.run(go())


@contextlib.contextmanager
def private_namespace(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Namespace]:
    """A fresh namespace, made the environment's (``CFGSTORE_REDIS_PREFIX``), dropped after."""
    prefix = f"cli-{uuidlib.uuid4().hex[:16]}"
    monkeypatch.setenv("CFGSTORE_REDIS_PREFIX", prefix)
    namespace = Namespace(redis_url, prefix)
    try:
        yield namespace
    finally:
        namespace.drop()


def dump_diff(before: dict[bytes, Any], after: dict[bytes, Any]) -> list[str]:
    """Human-readable list of keys that appeared, vanished or changed."""
    out = [f"new key {k!r}" for k in after.keys() - before.keys()]
    out += [f"removed key {k!r}" for k in before.keys() - after.keys()]
    for key in before.keys() & after.keys():
        if before[key] != after[key]:
            out.append(f"changed {key!r}: {before[key]!r} -> {after[key]!r}")
    return sorted(out)


# -- what a store serves (SC-005) ----------------------------------------------------------


def file_settings(configs: Path, cwd: Path | None = None) -> Settings:
    return Settings(
        configs_dir=configs,
        cwd=cwd,
        backends=("file",),
        reset_counters_on_start=False,
        watch_interval_ms=0,
    )


async def served(store: Store) -> dict[str, Any]:
    """Everything a store serves, as plain JSON-comparable values."""
    pools = await store.pools.list()
    credentials: dict[str, Any] = {}
    for provider_type, node in pools:
        credential = await store.credentials.get(provider_type, node.uuid)
        if credential is None:
            continue
        credentials[f"{provider_type}/{node.uuid}"] = {
            "document": credential.document,
            "bytes": jsjson.dumps(credential.document),
            "source_path": credential.source_path,
            "token_format": credential.token_format.value,
            "siblings": credential.siblings,
            "effective": credential.effective(),
            "carrier": credential_path_of(provider_type, node),
        }
    refs = sorted((r.provider_type, r.uuid, r.source_path) for r in await store.credentials.list())
    config = await store.config.get()
    plugin_config = await store.plugin_config.get()
    usage = await store.usage_cache.get()
    return {
        "types": list(pools.types),
        "pools": {t: [node_to_json(n) for n in nodes] for t, nodes in pools.types.items()},
        "pools_bytes": jsjson.dumps(
            {t: [node_to_json(n) for n in nodes] for t, nodes in pools.types.items()}
        ),
        "credentials": credentials,
        "credential_refs": refs,
        "config": config.document,
        "config_bytes": jsjson.dumps(config.document),
        "plugins": plugin_config.to_json(),
        "custom_models": [m.to_json() for m in await store.custom_models.list()],
        "system_prompt": await store.system_prompt.get(),
        "password": await store.password.get_stored(),
        "usage_cache": None if usage is None else usage.to_json(),
    }


def served_by_files(configs: Path, cwd: Path | None = None) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with Store.open(file_settings(configs, cwd), plugins=plugins()) as store:
            return await served(store)

    with deadline(CLI_TIMEOUT_S):
        return asyncio.run(go())
