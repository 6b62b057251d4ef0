"""Real Sentinel and Cluster topologies (tests/support/redis_topologies.py) with redis-py.

Every topology is a set of private ``redis-server`` processes on loopback; the tests skip when
``redis-server`` or ``redis-cli`` is not on PATH. Each fixture checks on teardown that no
process of its topology survived.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from tests.support.redis_server import RedisServerUnavailable, pid_exists
from tests.support.redis_topologies import (
    ClusterTopology,
    SentinelTopology,
    TopologyStartError,
)

_MISSING = [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]

pytestmark = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"Sentinel/Cluster topology tests need {' and '.join(_MISSING)} on PATH "
    "(Debian/Ubuntu: apt-get install redis-server redis-tools)",
)

#: Client socket timeouts: loopback answers at once, so a hang fails fast.
CLIENT_TIMEOUT_S = 2.0
FAILOVER_DEADLINE_S = 20.0

SET_BOTH_AND_READ_BACK = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}
"""


def _assert_all_gone(pids: list[int]) -> None:
    survivors = [pid for pid in pids if pid_exists(pid)]
    assert not survivors, f"topology processes still alive after stop(): {survivors}"


# ---------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def sentinel_topology() -> Iterator[SentinelTopology]:
    """A fresh master + replica + 3 sentinels per test (failover tests destroy it)."""
    topology = SentinelTopology()
    with topology:
        yield topology
    _assert_all_gone(topology.pids)


@pytest_asyncio.fixture
async def sentinel(sentinel_topology: SentinelTopology) -> AsyncIterator[Sentinel]:
    # redis-py leaves Sentinel.__init__ unannotated.
    client = Sentinel(  # type: ignore[no-untyped-call]
        sentinel_topology.sentinel_addresses,
        sentinel_kwargs={
            "socket_timeout": CLIENT_TIMEOUT_S,
            "socket_connect_timeout": CLIENT_TIMEOUT_S,
        },
        socket_timeout=CLIENT_TIMEOUT_S,
        socket_connect_timeout=CLIENT_TIMEOUT_S,
    )
    try:
        yield client
    finally:
        for connection in client.sentinels:
            await connection.aclose()


@pytest.fixture(scope="module")
def cluster_topology() -> Iterator[ClusterTopology]:
    """One 3-master cluster for the module (the tests only add keys of their own)."""
    topology = ClusterTopology()
    with topology:
        yield topology
    _assert_all_gone(topology.pids)


@pytest_asyncio.fixture
async def cluster_client(cluster_topology: ClusterTopology) -> AsyncIterator[RedisCluster]:
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_topology.startup_nodes],
        socket_timeout=CLIENT_TIMEOUT_S,
        socket_connect_timeout=CLIENT_TIMEOUT_S,
    )
    try:
        await client.initialize()
        yield client
    finally:
        await client.aclose()


def _node_client(host: str, port: int) -> Redis:
    """A plain client on one node: no cluster routing, no retries."""
    return Redis(
        host=host,
        port=port,
        socket_timeout=CLIENT_TIMEOUT_S,
        socket_connect_timeout=CLIENT_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )


# ---------------------------------------------------------------------------------------
# Sentinel


async def test_sentinel_topology_shape_and_url(sentinel_topology: SentinelTopology) -> None:
    addresses = sentinel_topology.sentinel_addresses
    assert len(addresses) == 3
    assert all(host == "127.0.0.1" for host, _ in addresses)
    assert len({port for _, port in addresses}) == 3
    joined = ",".join(f"127.0.0.1:{port}" for _, port in addresses)
    assert sentinel_topology.url == f"redis+sentinel://{joined}/{sentinel_topology.master_name}"
    master, _replica = sentinel_topology.data_addresses
    assert sentinel_topology.current_master() == master


async def test_sentinel_master_for_set_get(
    sentinel_topology: SentinelTopology, sentinel: Sentinel
) -> None:
    name = sentinel_topology.master_name
    assert await sentinel.discover_master(name) == sentinel_topology.current_master()
    master = sentinel.master_for(name)
    replica = sentinel.slave_for(name)
    try:
        assert await master.set("topology:sentinel:key", "värde") is True
        assert await master.get("topology:sentinel:key") == "värde".encode()
        assert await master.execute_command("WAIT", 1, 1000) == 1
        assert await replica.get("topology:sentinel:key") == "värde".encode()
    finally:
        await master.aclose()
        await replica.aclose()


async def test_sentinel_failover_promotes_the_replica_with_acknowledged_data(
    sentinel_topology: SentinelTopology, sentinel: Sentinel
) -> None:
    name = sentinel_topology.master_name
    before = sentinel.master_for(name)
    try:
        assert await before.set("topology:failover:key", "before") is True
        # The replica acknowledged the write, so the failover cannot lose it.
        assert await before.execute_command("WAIT", 1, 1000) == 1
    finally:
        await before.aclose()

    killed = await asyncio.to_thread(sentinel_topology.kill_master)
    assert not sentinel_topology.node_at(killed).running
    promoted = await sentinel_topology.await_failover(FAILOVER_DEADLINE_S)

    assert promoted != killed
    assert promoted in sentinel_topology.data_addresses
    assert sentinel_topology.current_master() == promoted
    assert await sentinel.discover_master(name) == promoted
    after = sentinel.master_for(name)
    try:
        assert await after.get("topology:failover:key") == b"before"
        assert await after.set("topology:failover:new", "after") is True
        assert await after.get("topology:failover:new") == b"after"
        role = await after.execute_command("ROLE")
        assert role[0] in (b"master", "master")
    finally:
        await after.aclose()


def test_sentinel_start_timeout_names_the_laggard_and_cleans_up() -> None:
    # Sentinels find each other through hello messages every 2 s: 0.3 s is never enough.
    topology = SentinelTopology(start_deadline=0.3)
    with pytest.raises(TopologyStartError) as caught:
        topology.start()
    message = str(caught.value)
    assert "did not come up within" in message
    assert "still waiting for" in message
    assert "redis.log ---" in message  # the log tail of the member that was waited for
    assert topology.pids, "members were started before the deadline hit"
    _assert_all_gone(topology.pids)
    assert not topology.running


def test_cluster_without_redis_cli_is_a_clear_error() -> None:
    with pytest.raises(RedisServerUnavailable, match="redis-cli-does-not-exist"):
        ClusterTopology(cli_binary="redis-cli-does-not-exist")


# ---------------------------------------------------------------------------------------
# Cluster


def test_cluster_topology_shape_and_url(cluster_topology: ClusterTopology) -> None:
    nodes = cluster_topology.startup_nodes
    assert len(nodes) == 3
    joined = ",".join(f"{host}:{port}" for host, port in nodes)
    assert cluster_topology.url == f"redis+cluster://{joined}"


async def test_cluster_set_get_across_slots_and_nodes(
    cluster_topology: ClusterTopology, cluster_client: RedisCluster
) -> None:
    # Pick keys until every master owns at least one, so all three nodes are exercised.
    by_node: dict[str, str] = {}
    for i in range(1000):
        key = f"topology:cluster:{i}"
        owner = cluster_client.get_node_from_key(key)
        assert owner is not None, f"no node owns the slot of {key!r}"
        by_node.setdefault(owner.name, key)
        if len(by_node) == 3:
            break
    assert len(by_node) == 3
    keys = list(by_node.values())
    assert len({cluster_client.keyslot(key) for key in keys}) == 3

    for key in keys:
        assert await cluster_client.set(key, f"value of {key}") is True
    for key in keys:
        assert await cluster_client.get(key) == f"value of {key}".encode()

    # The data really is spread out: each key lives on the node that owns its slot.
    for node_name, key in by_node.items():
        host, _, port = node_name.rpartition(":")
        direct = _node_client(host, int(port))
        try:
            assert await direct.get(key) == f"value of {key}".encode()
        finally:
            await direct.aclose()


async def test_cluster_hash_tag_keys_share_a_slot_and_multi_key_eval_works(
    cluster_topology: ClusterTopology, cluster_client: RedisCluster
) -> None:
    a, b = "{aiclient}:a", "{aiclient}:b"
    slot = cluster_client.keyslot(a)
    assert cluster_client.keyslot(b) == slot == cluster_client.keyslot("aiclient")

    result = await cluster_client.eval(SET_BOTH_AND_READ_BACK, 2, a, b, "1", "2")
    assert result == [b"1", b"2"]
    assert await cluster_client.get(a) == b"1"
    assert await cluster_client.get(b) == b"2"

    # Without the shared tag the cluster itself refuses the same script (CROSSSLOT; redis-py
    # drops the error code from the message).
    untagged = ("topology:untagged:a", "topology:untagged:b")
    assert cluster_client.keyslot(untagged[0]) != cluster_client.keyslot(untagged[1])
    host, port = cluster_topology.startup_nodes[0]
    direct = _node_client(host, port)
    try:
        with pytest.raises(redis.exceptions.ResponseError, match="same slot"):
            await direct.eval(SET_BOTH_AND_READ_BACK, 2, *untagged, "1", "2")
    finally:
        await direct.aclose()
