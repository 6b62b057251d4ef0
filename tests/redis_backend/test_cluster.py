"""The Redis backend on a real Redis Cluster (three masters, private ``redis-server`` processes).

* The whole backend contract suite (:mod:`cfgstore.testing`: hot path, pools, credentials,
  documents, sessions) runs unchanged against the cluster: every contract test coroutine is
  called directly with a :class:`~cfgstore.testing.deployment.Deployment` (or a store opened
  from it) whose settings name ``redis+cluster://…``. The hot-path part includes exact
  concurrent increments (sized by ``CFGSTORE_TEST_SCALE``), two OS processes incrementing
  one account, a health update beside usage on another node, an admin edit during the hot
  path, records for deleted nodes, rename keeping the position and credential
  compare-and-set.
* Cluster-specific checks: every key a store writes lives in the slot of its ``{prefix}``
  hash tag, on the one node that owns that slot (``CLUSTER KEYSLOT`` asked of the server),
  and the data really landed in the cluster (node hashes read back with a plain
  ``RedisCluster`` client); prefixes whose slots sit on each of the three masters all
  work, concurrently; the change feed reaches another instance through the cluster; all of
  that as the documented least-privilege ACL user, with no refusal on any node.

The topology is started once per module (about 2 s); each test gets a fresh prefix, so tests
never see each other's keys. Skipped when ``redis-server`` or ``redis-cli`` is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cfgstore.adapters import Settings, Store
from cfgstore.errors import VersionConflict
from cfgstore.model.credentials import Credential
from cfgstore.model.sessions import UiSession
from cfgstore.model.timefmt import now_ms
from cfgstore.model.versions import ABSENT_VERSION
from cfgstore.testing import (
    test_credentials,
    test_documents,
    test_hot_path,
    test_pools,
    test_sessions,
)
from cfgstore.testing.builders import make_node
from cfgstore.testing.deployment import Deployment
from cfgstore_redis.acl import acl_rules
from tests.file_backend.observer import watch
from tests.support.redis_server import pid_exists
from tests.support.redis_topologies import ClusterTopology

_MISSING = [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]

pytestmark = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"Redis Cluster tests need {' and '.join(_MISSING)} on PATH "
    "(Debian/Ubuntu: apt-get install redis-server redis-tools)",
)

SCALE = float(os.environ.get("CFGSTORE_TEST_SCALE", "1"))
#: Every contract test finishes well within this on the cluster, or fails instead of hanging.
CONTRACT_DEADLINE_S = 120.0
#: Deadline of the cluster-specific tests below.
TEST_DEADLINE_S = 60.0
#: Socket timeouts of the plain verification clients (loopback answers at once).
CLIENT_TIMEOUT_S = 2.0

KIRO = "claude-kiro-oauth"
HOT_TYPE = "openai-custom"

CONTRACT_MODULES = (test_hot_path, test_pools, test_credentials, test_documents, test_sessions)
#: The arguments a contract test may take (the contract conftest's fixtures).
CONTRACT_ARGUMENTS = frozenset({"deployment", "store"})

ContractTest = Callable[..., Coroutine[Any, Any, None]]


def _contract_tests() -> Iterator[Any]:
    for module in CONTRACT_MODULES:
        short = module.__name__.rsplit(".", 1)[-1]
        for name, function in vars(module).items():
            if name.startswith("test_") and inspect.iscoroutinefunction(function):
                yield pytest.param(function, id=f"{short}.{name}")


# ---------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterTopology]:
    """Three cluster masters for the whole module; no process survives it."""
    topology = ClusterTopology()
    with topology:
        yield topology
    survivors = [pid for pid in topology.pids if pid_exists(pid)]
    assert not survivors, f"cluster processes still alive after stop(): {survivors}"


def _deployment(cluster: ClusterTopology, tmp_path: Path, prefix: str | None = None) -> Deployment:
    settings = Settings(
        configs_dir=tmp_path / "configs",
        backends=("redis",),
        redis_url=cluster.url,
        redis_prefix=prefix or f"t{uuidlib.uuid4().hex[:12]}",
    )
    return Deployment(settings, tmp_path)


@pytest.fixture
def deployment(cluster: ClusterTopology, tmp_path: Path) -> Deployment:
    """A namespace of its own (fresh ``{prefix}``) on the module's cluster."""
    return _deployment(cluster, tmp_path)


@pytest_asyncio.fixture
async def plain(cluster: ClusterTopology) -> AsyncIterator[RedisCluster]:
    """A plain redis-py cluster client (not cfgstore's) for checking what landed where."""
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.startup_nodes],
        socket_timeout=CLIENT_TIMEOUT_S,
        socket_connect_timeout=CLIENT_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    try:
        await client.initialize()
        yield client
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _node_clients(cluster: ClusterTopology) -> AsyncIterator[dict[int, Redis]]:
    """One plain standalone client per cluster node, by port."""
    clients = {
        port: Redis(
            host=host,
            port=port,
            socket_timeout=CLIENT_TIMEOUT_S,
            socket_connect_timeout=CLIENT_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        for host, port in cluster.startup_nodes
    }
    try:
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


# ---------------------------------------------------------------------------------------
# the contract suite on the cluster


@pytest.mark.parametrize("contract_test", list(_contract_tests()))
async def test_contract_on_cluster(contract_test: ContractTest, deployment: Deployment) -> None:
    """One contract test, unchanged, against the cluster."""
    wanted = set(inspect.signature(contract_test).parameters)
    if not wanted <= CONTRACT_ARGUMENTS:
        pytest.fail(
            f"{contract_test.__name__} takes {sorted(wanted - CONTRACT_ARGUMENTS)}: teach "
            "tests/redis_backend/test_cluster.py to provide it"
        )
    async with contextlib.AsyncExitStack() as stack:
        kwargs: dict[str, Any] = {}
        if "deployment" in wanted:
            kwargs["deployment"] = deployment
        if "store" in wanted:
            kwargs["store"] = await stack.enter_async_context(deployment.open())
        async with asyncio.timeout(CONTRACT_DEADLINE_S):
            await contract_test(**kwargs)


# ---------------------------------------------------------------------------------------
# cluster-specific checks


async def _workload(store: Store, callers: int, per_caller: int) -> None:
    """Nodes, concurrent hot-path records, a rename, a credential (CAS), a refresh lock,
    the config and a session: something in every kind of key the backend writes."""
    await store.pools.add_node(HOT_TYPE, make_node("hot"))
    await store.pools.add_node(HOT_TYPE, make_node("old-name"))
    await store.pools.add_node(KIRO, make_node("k1"))

    async def caller() -> None:
        for _ in range(per_caller):
            await store.pools.record_success(HOT_TYPE, "hot")
            await asyncio.sleep(0)

    await asyncio.gather(*(caller() for _ in range(callers)))
    await store.pools.record_failure(KIRO, "k1", "boom", max_error_count=5)
    await store.pools.rename_node(HOT_TYPE, "old-name", "new-name")
    version = await store.credentials.put(Credential(KIRO, "k1", _kiro_doc("A1")), None)
    await store.credentials.put(Credential(KIRO, "k1", _kiro_doc("A2")), version)
    with pytest.raises(VersionConflict):
        await store.credentials.put(Credential(KIRO, "k1", _kiro_doc("stale")), version)
    token = await store.credentials.lock(KIRO, "k1", 60_000)
    assert token
    await store.config.put({"REQUIRED_API_KEY": "k"}, ABSENT_VERSION)
    now = now_ms()
    await store.sessions.add("ab" * 32, UiSession("admin", now, now + 3_600_000))
    await store.flush()


def _kiro_doc(access: str) -> dict[str, object]:
    return {
        "accessToken": access,
        "refreshToken": "FAKE-refresh",
        "expiresAt": "2030-01-01T00:00:00.000Z",
        "authMethod": "social",
        "region": "us-east-1",
    }


async def _keys_per_node(nodes: dict[int, Redis], prefix: str) -> dict[int, list[str]]:
    """Every key of ``prefix`` on each node (``SCAN`` of each node on its own)."""
    found: dict[int, list[str]] = {}
    for port, client in nodes.items():
        keys = [key async for key in client.scan_iter(match=f"{{{prefix}}}*", count=1000)]
        if keys:
            found[port] = sorted(keys)
    return found


async def test_all_keys_of_a_store_share_one_slot_on_one_node(
    cluster: ClusterTopology, deployment: Deployment, plain: RedisCluster
) -> None:
    prefix = deployment.settings.redis_prefix
    callers, per_caller = 20, max(5, int(50 * SCALE))
    async with asyncio.timeout(TEST_DEADLINE_S):
        async with deployment.open() as store:
            await _workload(store, callers, per_caller)

        async with _node_clients(cluster) as nodes:
            per_node = await _keys_per_node(nodes, prefix)
            assert len(per_node) == 1, f"keys of {{{prefix}}} spread over nodes: {per_node}"
            [(port, keys)] = per_node.items()
            # Something of every kind was written (the hash tag wraps the whole prefix).
            kinds = {key.split(":", 2)[1] for key in keys}
            assert {"types", "nodes", "node", "cred", "lock", "config", "rev", "sessions"} <= kinds
            # The writer's batch ids leave no key per batch; its mark goes when it closes.
            assert not any(":op:" in key for key in keys), "an operation id key per batch"
            assert f"{{{prefix}}}:batches" not in keys

            # The server's own slot computation: one slot for every key, the tag's slot.
            owner = nodes[port]
            tag_slot = await owner.execute_command("CLUSTER", "KEYSLOT", f"{{{prefix}}}")
            slots = {await owner.execute_command("CLUSTER", "KEYSLOT", key) for key in keys}
            assert slots == {tag_slot}
            assert await owner.execute_command("CLUSTER", "COUNTKEYSINSLOT", tag_slot) >= len(keys)
            # ... and that slot belongs to the node that holds the keys, in the cluster's map.
            for key in (keys[0], keys[-1]):
                assert plain.get_node_from_key(key).port == port

        # The data is in the cluster, readable by any client that is not cfgstore.
        hot = f"{{{prefix}}}:node:{HOT_TYPE}:hot"
        assert await plain.hget(hot, "usageCount") == str(callers * per_caller)
        assert await plain.lrange(f"{{{prefix}}}:nodes:{HOT_TYPE}", 0, -1) == ["hot", "new-name"]
        assert await plain.exists(f"{{{prefix}}}:node:{HOT_TYPE}:old-name") == 0
        kiro = await plain.hgetall(f"{{{prefix}}}:node:{KIRO}:k1")
        assert kiro["errorCount"] == "1" and kiro["lastErrorMessage"] == '"boom"'
        # The credential is its token file's, reached through the node's @cred.
        assert kiro["@cred"].startswith("configs/kiro/")
        credential = await plain.hgetall(f"{{{prefix}}}:cred:{kiro['@cred']}")
        assert json.loads(credential["doc"])["accessToken"] == "A2"
        assert credential["users"] == f"{KIRO}:k1"


async def _prefixes_on_every_master(
    cluster: ClusterTopology, nodes: dict[int, Redis], plain: RedisCluster
) -> list[str]:
    """One fresh prefix per master: each hash tag's slot is owned by a different master."""
    any_node = next(iter(nodes.values()))
    wanted = {port for _, port in cluster.startup_nodes}
    chosen: dict[int, str] = {}
    for _ in range(200):  # each master owns a third of the slots: a few tries suffice
        prefix = f"t{uuidlib.uuid4().hex[:12]}"
        slot = int(await any_node.execute_command("CLUSTER", "KEYSLOT", f"{{{prefix}}}"))
        chosen.setdefault(plain.nodes_manager.get_node_from_slot(slot).port, prefix)
        if set(chosen) == wanted:
            return [chosen[port] for port in sorted(chosen)]
    raise AssertionError(f"no prefix found for every master; got {chosen}")


async def test_stores_on_every_master_work_concurrently(
    cluster: ClusterTopology, tmp_path: Path, plain: RedisCluster
) -> None:
    """Three instances, each namespace on another master, hot path and admin edits at once."""
    callers, per_caller = 20, max(5, int(50 * SCALE))
    async with asyncio.timeout(TEST_DEADLINE_S), _node_clients(cluster) as nodes:
        prefixes = await _prefixes_on_every_master(cluster, nodes, plain)

        async def instance(prefix: str) -> None:
            async with _deployment(cluster, tmp_path, prefix).open() as store:
                await _workload(store, callers, per_caller)

        await asyncio.gather(*(instance(prefix) for prefix in prefixes))

        owners: set[int] = set()
        for prefix in prefixes:
            per_node = await _keys_per_node(nodes, prefix)
            assert len(per_node) == 1, f"keys of {{{prefix}}} spread over nodes: {per_node}"
            owners.update(per_node)
            hot = f"{{{prefix}}}:node:{HOT_TYPE}:hot"
            assert await plain.hget(hot, "usageCount") == str(callers * per_caller)
        assert len(owners) == 3, f"namespaces were not on three different masters: {owners}"


async def test_change_feed_reaches_another_instance(deployment: Deployment) -> None:
    """An admin edit in one instance is announced to another through cluster pub/sub."""
    async with asyncio.timeout(TEST_DEADLINE_S):
        async with deployment.open() as writer, deployment.open() as reader:
            waiter = watch(reader)
            await writer.pools.add_node(HOT_TYPE, make_node("announced"))
            event = await waiter.wait_for("pools", remote=True, within=10)
            assert f"{HOT_TYPE}/announced" in event.ids
            node = await reader.pools.get_node(HOT_TYPE, "announced")
            assert node is not None


async def test_the_documented_acl_is_enough_on_a_cluster(
    cluster: ClusterTopology, deployment: Deployment
) -> None:
    """The workload and the change feed as the least-privilege user (``redis-keys.md``),
    created on every node: not one refusal anywhere, the memory policy read from ``INFO``,
    and the cluster-only rules (slot map, command table) really used."""
    settings = attrs.evolve(
        deployment.settings, redis_username="cfgstore", redis_password="acl-cluster-pw"
    )
    async with asyncio.timeout(TEST_DEADLINE_S), _node_clients(cluster) as nodes:
        rules = acl_rules(settings.redis_prefix).split()
        for client in nodes.values():
            await client.execute_command(
                "ACL", "SETUSER", "cfgstore", "on", ">acl-cluster-pw", *rules
            )
            await client.execute_command("ACL", "LOG", "RESET")
            await client.config_resetstat()
        try:
            async with Store.open(settings) as store, Store.open(settings) as reader:
                waiter = watch(reader)
                await _workload(store, 2, 5)
                await waiter.wait_for("pools", remote=True, within=10)
                [status] = await store.status()
            assert status.details["maxmemory-policy"] == "noeviction"
            assert status.warnings == ()
            refused = {
                port: [entry["object"] for entry in await client.execute_command("ACL", "LOG")]
                for port, client in nodes.items()
            }
            assert refused == {port: [] for port in nodes}
            sent: set[str] = set()
            for client in nodes.values():
                stats = await client.info("commandstats")
                sent |= {name.removeprefix("cmdstat_") for name, s in stats.items() if s["calls"]}
            assert {"cluster|slots", "command", "evalsha", "subscribe"} <= sent
        finally:
            for client in nodes.values():
                await client.execute_command("ACL", "DELUSER", "cfgstore")
