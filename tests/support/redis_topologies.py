"""Small real Redis topologies for the tests: Sentinel (master, replica, three sentinels) and
Cluster (three masters), every member a private ``redis-server`` process.

No pytest in here (like :mod:`tests.support.redis_server`), so fixtures, benches and ad-hoc
scripts share it. Every member is a :class:`~tests.support.redis_server.RedisServerProcess` on
a free loopback port with its own temporary directory; nothing is daemonised and nothing is
persisted.

:class:`SentinelTopology`
    One master, one replica (``replicaof``) and three sentinels monitoring the master with
    quorum 2, a short ``down-after-milliseconds`` and ``failover-timeout``. :meth:`start
    <SentinelTopology.start>` returns once the replica is in sync and every sentinel knows the
    master, the replica and the two other sentinels (``SENTINEL CKQUORUM`` OK). For failover
    tests: :meth:`~SentinelTopology.kill_master` (SIGKILL of whichever node is master now) and
    :meth:`~SentinelTopology.wait_for_failover` (poll until all sentinels name a new master
    and that node answers ``ROLE`` as master).

:class:`ClusterTopology`
    Three cluster-enabled masters joined with ``redis-cli --cluster create … --cluster-replicas
    0``; :meth:`start <ClusterTopology.start>` returns once ``CLUSTER INFO`` says
    ``cluster_state:ok`` on every node.

Both are context managers; :meth:`stop` ends every process and removes the directories, and
an ``atexit`` hook stops whatever a crashed test run left behind. When something does not
come up in time the error names what was missing and carries the log tail of the process that
was waited for. Both also fit the :class:`~tests.support.redis_server.RedisTarget` protocol
(``url``, ``description``, ``close``).

URLs use cfgstore's schemes: ``redis+sentinel://h1:p1,h2:p2,h3:p3/<master_name>`` and
``redis+cluster://h1:p1,h2:p2,h3:p3``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import shutil
import subprocess
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.redis_server import (
    HOW_TO_GET_REDIS,
    RedisServerProcess,
    RedisServerUnavailable,
    RedisStartError,
    free_port,
)

__all__ = [
    "HOST",
    "Address",
    "ClusterTopology",
    "FailoverTimeoutError",
    "SentinelTopology",
    "TopologyStartError",
]

HOST = "127.0.0.1"

#: ``(host, port)`` of one member.
Address = tuple[str, int]

_START_DEADLINE_S = 20.0
_FAILOVER_DEADLINE_S = 20.0
_POLL_INTERVAL_S = 0.05
#: Socket timeouts of the harness's own probing connections (loopback: answers are instant).
_PROBE_TIMEOUT_S = 1.0
_LOG_TAIL_LINES = 25
_CLUSTER_CREATE_TIMEOUT_S = 15.0
_NODE_START_ATTEMPTS = 3

#: Options of every data node (master or replica) of a topology.
_DATA_NODE_ARGS: tuple[str, ...] = (
    # Default is 5 s of waiting for more replicas before a diskless full sync starts.
    "--repl-diskless-sync-delay", "0",
    # Bound the SIGTERM shutdown of a master that waits for lagging replicas (default 10 s).
    "--shutdown-timeout", "1",
)  # fmt: skip


class TopologyStartError(RedisStartError):
    """A topology did not come up in time (the message says what was missing, with log tails)."""


class FailoverTimeoutError(RuntimeError):
    """The sentinels did not complete a failover in time (the message carries their logs)."""


# ----------------------------------------------------------------------------------------
# helpers


def _probe(address: Address, timeout: float = _PROBE_TIMEOUT_S) -> redis.Redis:
    """A short-lived sync client for the harness's own checks: quick timeouts, no retries."""
    return redis.Redis(
        host=address[0],
        port=address[1],
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _command(address: Address, *args: str) -> Any:
    """Run one command on ``address`` over a fresh connection and return the reply."""
    with _probe(address) as client:
        return client.execute_command(*args)


def _as_mapping(entry: Any) -> dict[str, Any]:
    """A SENTINEL REPLICAS / SENTINELS entry as a dict (RESP2 sends flat key/value lists)."""
    if isinstance(entry, Mapping):
        return {str(k): v for k, v in entry.items()}
    items = list(entry)
    return {str(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _flags(entry: Mapping[str, Any]) -> set[str]:
    return set(str(entry.get("flags", "")).split(","))


def _address(node: RedisServerProcess) -> Address:
    return (HOST, node.port)


def _join(addresses: Iterable[Address]) -> str:
    return ",".join(f"{host}:{port}" for host, port in addresses)


def _tails(nodes: Iterable[tuple[str, RedisServerProcess]], lines: int = _LOG_TAIL_LINES) -> str:
    parts = []
    for label, node in nodes:
        with contextlib.suppress(RuntimeError):  # a member that never started has no dir
            parts.append(f"=== {label} ({node!r}) ===\n{node.log_tail(lines)}")
    return "\n".join(parts)


def _require_binary(name: str, binary: str | None) -> str:
    found = shutil.which(binary or name)
    if found is None:
        what = f"{binary} is not an executable" if binary else f"{name} is not on PATH"
        raise RedisServerUnavailable(f"{what}. " + HOW_TO_GET_REDIS)
    return found


class _Pending:
    """What a readiness check is still waiting for, and which member to show the logs of."""

    def __init__(self, reason: str, label: str, node: RedisServerProcess) -> None:
        self.reason = reason
        self.label = label
        self.node = node


def _wait_until(
    check: Callable[[], _Pending | None],
    deadline_s: float,
    *,
    what: str,
) -> None:
    """Poll ``check`` until it returns None; on timeout raise with the last reason and logs.

    A readiness condition has no event to await: the only way to see it is to ask, so this
    asks every ``_POLL_INTERVAL_S`` and gives up at a hard deadline.
    """
    deadline = time.monotonic() + deadline_s
    while True:
        pending = check()
        if pending is None:
            return
        if time.monotonic() >= deadline:
            raise TopologyStartError(
                f"{what} did not come up within {deadline_s:.0f}s: still waiting for "
                f"{pending.label}: {pending.reason}\n"
                + _tails([(pending.label, pending.node)], lines=2 * _LOG_TAIL_LINES)
            )
        time.sleep(_POLL_INTERVAL_S)


# ----------------------------------------------------------------------------------------
# common lifecycle

_LIVE: weakref.WeakSet[_Topology] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    """Last resort: never leave a topology's processes behind when the interpreter exits."""
    for topology in list(_LIVE):
        with contextlib.suppress(Exception):
            topology.stop()


class _Topology:
    """Shared lifecycle: members, stop/close, context manager, atexit registration."""

    kind = "topology"

    def __init__(self, *, binary: str | None, start_deadline: float) -> None:
        self.binary = _require_binary("redis-server", binary)
        self.start_deadline = start_deadline
        #: Wall-clock seconds the last :meth:`start` took (None before the first start).
        self.startup_seconds: float | None = None
        self._members: list[tuple[str, RedisServerProcess]] = []

    # -- to be provided by subclasses ------------------------------------------------------

    @property
    def url(self) -> str:
        raise NotImplementedError

    def _launch(self) -> None:
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------

    @property
    def members(self) -> list[tuple[str, RedisServerProcess]]:
        """``(label, process)`` of every member, in start order."""
        return list(self._members)

    @property
    def pids(self) -> list[int]:
        """Process ids of every member started so far (dead ones included)."""
        return [node.pid for _, node in self._members]

    @property
    def running(self) -> bool:
        return any(node.running for _, node in self._members)

    @property
    def description(self) -> str:
        return f"private redis {self.kind} at {self.url}"

    def log_tails(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The log tails of every member, for error messages and debugging."""
        return _tails(self._members, lines)

    def start(self) -> Self:
        """Start every member and wait until the topology is usable; on failure stop all."""
        if self.running:
            raise RuntimeError(f"already running: {self!r}")
        self._discard_members()
        began = time.monotonic()
        _LIVE.add(self)
        try:
            self._launch()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop every member (sentinels first, then replicas, then masters) and remove the
        temporary directories. Idempotent."""
        errors: list[BaseException] = []
        for _, node in reversed(self._members):
            try:
                node.close()
            except Exception as exc:  # keep going: the others must stop too
                errors.append(exc)
        _LIVE.discard(self)
        if errors:
            raise RuntimeError(f"{self!r}: some members did not stop cleanly: {errors!r}")

    def close(self) -> None:
        """Same as :meth:`stop` (the :class:`RedisTarget` spelling)."""
        self.stop()

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        ports = ",".join(str(node._port) for _, node in self._members)
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} ports={ports or '-'} {state}>"

    def _discard_members(self) -> None:
        for _, node in self._members:
            node.close()
        self._members = []

    def _add(self, label: str, node: RedisServerProcess) -> RedisServerProcess:
        """Register ``node`` (before starting it, so a failed start is still cleaned up)."""
        self._members.append((label, node))
        return node


# ----------------------------------------------------------------------------------------
# Sentinel


class SentinelTopology(_Topology):
    """One master, one replica and three sentinels (quorum 2) on loopback.

    ``with SentinelTopology() as topo:`` starts it and waits until it is fully wired (see
    the module docstring); ``topo.url`` is ``redis+sentinel://…/<master_name>``.
    """

    kind = "sentinel"
    sentinel_count = 3
    quorum = 2

    def __init__(
        self,
        master_name: str = "cfgstore-master",
        *,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        start_deadline: float = _START_DEADLINE_S,
        binary: str | None = None,
    ) -> None:
        super().__init__(binary=binary, start_deadline=start_deadline)
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        #: Wall-clock seconds from the last :meth:`kill_master` to the end of the last
        #: successful :meth:`wait_for_failover` (None until one happened).
        self.last_failover_seconds: float | None = None
        self._data_nodes: list[RedisServerProcess] = []
        self._sentinels: list[RedisServerProcess] = []
        self._killed: Address | None = None
        self._killed_at: float | None = None

    # -- identity -------------------------------------------------------------------------

    @property
    def sentinel_addresses(self) -> list[Address]:
        """``(host, port)`` of the three sentinels, for ``redis.sentinel.Sentinel(...)``."""
        return [_address(node) for node in self._require_started(self._sentinels)]

    @property
    def data_addresses(self) -> list[Address]:
        """``(host, port)`` of the master and the replica as started (roles change later)."""
        return [_address(node) for node in self._require_started(self._data_nodes)]

    @property
    def url(self) -> str:
        return f"redis+sentinel://{_join(self.sentinel_addresses)}/{self.master_name}"

    @property
    def data_nodes(self) -> list[RedisServerProcess]:
        """The master and the replica processes, in start order (roles change on failover)."""
        return list(self._data_nodes)

    @property
    def sentinels(self) -> list[RedisServerProcess]:
        return list(self._sentinels)

    def node_at(self, address: Address) -> RedisServerProcess:
        """The data node process listening on ``address``."""
        for node in self._data_nodes:
            if _address(node) == tuple(address):
                return node
        raise LookupError(f"{address!r} is not a data node of {self!r}")

    # -- failover tools -----------------------------------------------------------------

    def current_master(self) -> Address:
        """The master as a sentinel reports it (``SENTINEL GET-MASTER-ADDR-BY-NAME``)."""
        failures: list[str] = []
        for node in self._require_started(self._sentinels):
            if not node.running:
                continue
            try:
                return self._master_per(node)
            except (redis.exceptions.RedisError, OSError, ValueError) as exc:
                failures.append(f"{HOST}:{node.port}: {exc!r}")
        raise RuntimeError(f"no sentinel of {self!r} named a master: {failures}")

    def kill_master(self) -> Address:
        """SIGKILL the node that is master now (as the sentinels see it); returns its address.

        Its port and directory stay; :meth:`wait_for_failover` then waits for a new master.
        """
        address = self.current_master()
        self.node_at(address).kill()
        self._killed = address
        self._killed_at = time.monotonic()
        return address

    def wait_for_failover(
        self,
        timeout: float = _FAILOVER_DEADLINE_S,
        *,
        previous: Address | None = None,
    ) -> Address:
        """Poll until every running sentinel names the same master other than ``previous``
        (default: the one :meth:`kill_master` killed) and that node answers ``ROLE`` as
        master; return its address. Raise :class:`FailoverTimeoutError` after ``timeout``.

        There is no event for "failover done" that a test can await, so this asks every
        ``_POLL_INTERVAL_S`` and gives up at a hard deadline. Blocking: from a coroutine
        use :meth:`await_failover`.
        """
        old = previous if previous is not None else self._killed
        if old is None:
            raise RuntimeError("wait_for_failover needs previous= or an earlier kill_master()")
        deadline = time.monotonic() + timeout
        last: dict[str, str] = {}
        while True:
            found = self._failed_over(old, last)
            if found is not None:
                if self._killed_at is not None and old == self._killed:
                    self.last_failover_seconds = time.monotonic() - self._killed_at
                return found
            if time.monotonic() >= deadline:
                raise FailoverTimeoutError(
                    f"no failover away from {old[0]}:{old[1]} within {timeout:.0f}s; "
                    f"last answers: {last}\n"
                    + _tails((f"sentinel {HOST}:{n.port}", n) for n in self._sentinels)
                )
            time.sleep(_POLL_INTERVAL_S)

    async def await_failover(
        self,
        deadline: float = _FAILOVER_DEADLINE_S,
        *,
        previous: Address | None = None,
    ) -> Address:
        """:meth:`wait_for_failover` in a worker thread, so an event loop keeps running
        (``deadline`` is its ``timeout``)."""
        return await asyncio.to_thread(self.wait_for_failover, deadline, previous=previous)

    # -- internals ------------------------------------------------------------------------

    def _require_started(self, nodes: Sequence[RedisServerProcess]) -> Sequence[RedisServerProcess]:
        if not nodes:
            raise RuntimeError(f"{self!r} has not been started")
        return nodes

    def _master_per(self, sentinel: RedisServerProcess) -> Address:
        reply = _command(
            _address(sentinel), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
        )
        if not reply:
            raise ValueError(f"sentinel does not know {self.master_name!r}")
        host, port = reply
        return (str(host), int(port))

    def _failed_over(self, old: Address, last: dict[str, str]) -> Address | None:
        named: set[Address] = set()
        for sentinel in self._sentinels:
            if not sentinel.running:
                continue
            key = f"sentinel {HOST}:{sentinel.port}"
            try:
                host, port = self._master_per(sentinel)
            except (redis.exceptions.RedisError, OSError, ValueError) as exc:
                last[key] = repr(exc)
                return None
            named.add((host, port))
            last[key] = f"names {host}:{port}"
        if len(named) != 1:
            return None
        (candidate,) = named
        if candidate == old:
            return None
        try:
            role = _command(candidate, "ROLE")
        except (redis.exceptions.RedisError, OSError) as exc:
            last["candidate"] = f"{candidate[0]}:{candidate[1]} ROLE failed: {exc!r}"
            return None
        last["candidate"] = f"{candidate[0]}:{candidate[1]} ROLE {role[0]!r}"
        return candidate if role and role[0] == "master" else None

    def _sentinel_config(self, master_port: int) -> str:
        name = self.master_name
        return "\n".join(
            [
                # Plain IPs everywhere: no DNS, and sentinels announce what they bind.
                "sentinel resolve-hostnames no",
                "sentinel announce-hostnames no",
                f"sentinel monitor {name} {HOST} {master_port} {self.quorum}",
                f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {name} 1",
                "",
            ]
        )

    def _launch(self) -> None:
        self._data_nodes = []
        self._sentinels = []
        self._killed = None
        self._killed_at = None
        self.last_failover_seconds = None

        master = self._add("master", RedisServerProcess(self.binary, extra_args=_DATA_NODE_ARGS))
        master.start()
        self._data_nodes.append(master)
        replica = self._add(
            "replica",
            RedisServerProcess(
                self.binary,
                extra_args=(*_DATA_NODE_ARGS, "--replicaof", HOST, str(master.port)),
            ),
        )
        replica.start()
        self._data_nodes.append(replica)
        for i in range(self.sentinel_count):
            sentinel = self._add(
                f"sentinel {i + 1}",
                RedisServerProcess(
                    self.binary,
                    config_text=self._sentinel_config(master.port),
                    extra_args=("--sentinel",),
                ),
            )
            sentinel.start()
            self._sentinels.append(sentinel)

        _wait_until(
            lambda: self._not_ready(master, replica),
            self.start_deadline,
            what=f"sentinel topology {self.url}",
        )

    def _not_ready(
        self, master: RedisServerProcess, replica: RedisServerProcess
    ) -> _Pending | None:
        try:
            return self._check_ready(master, replica)
        except (redis.exceptions.RedisError, OSError) as exc:
            return _Pending(f"probe failed: {exc!r}", "a member", master)

    def _check_ready(
        self, master: RedisServerProcess, replica: RedisServerProcess
    ) -> _Pending | None:
        for label, node in (("master", master), ("replica", replica)):
            if not node.running:
                return _Pending(f"process exited with {node.returncode}", label, node)
        info = _command(_address(replica), "INFO", "replication")
        if info.get("master_link_status") != "up" or info.get("master_sync_in_progress"):
            return _Pending(
                f"replica link to master not up yet (master_link_status="
                f"{info.get('master_link_status')!r})",
                f"replica {HOST}:{replica.port}",
                replica,
            )
        others_expected = self.sentinel_count - 1
        for sentinel in self._sentinels:
            label = f"sentinel {HOST}:{sentinel.port}"
            if not sentinel.running:
                return _Pending(f"process exited with {sentinel.returncode}", label, sentinel)
            addr = _address(sentinel)
            if self._master_per(sentinel) != _address(master):
                return _Pending("does not name the master yet", label, sentinel)
            replicas = [
                _as_mapping(e)
                for e in _command(addr, "SENTINEL", "REPLICAS", self.master_name) or []
            ]
            if not any(
                int(r.get("port", -1)) == replica.port
                and not _flags(r) & {"s_down", "o_down", "disconnected"}
                for r in replicas
            ):
                return _Pending(f"does not see the replica yet ({replicas})", label, sentinel)
            peers = _command(addr, "SENTINEL", "SENTINELS", self.master_name) or []
            if len(peers) < others_expected:
                return _Pending(
                    f"knows {len(peers)} of {others_expected} other sentinels", label, sentinel
                )
            try:
                _command(addr, "SENTINEL", "CKQUORUM", self.master_name)
            except redis.exceptions.ResponseError as exc:
                return _Pending(f"CKQUORUM: {exc}", label, sentinel)
        return None


# ----------------------------------------------------------------------------------------
# Cluster


class ClusterTopology(_Topology):
    """Three cluster-enabled masters (no replicas) joined with ``redis-cli --cluster create``.

    ``with ClusterTopology() as cluster:`` starts it and waits for ``cluster_state:ok`` on
    every node; ``cluster.startup_nodes`` feeds ``RedisCluster``, ``cluster.url`` is
    ``redis+cluster://…``.
    """

    kind = "cluster"

    def __init__(
        self,
        masters: int = 3,
        *,
        node_timeout_ms: int = 1000,
        start_deadline: float = _START_DEADLINE_S,
        create_timeout: float = _CLUSTER_CREATE_TIMEOUT_S,
        binary: str | None = None,
        cli_binary: str | None = None,
    ) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        super().__init__(binary=binary, start_deadline=start_deadline)
        self.cli = _require_binary("redis-cli", cli_binary)
        self.master_count = masters
        self.node_timeout_ms = node_timeout_ms
        self.create_timeout = create_timeout
        self._nodes: list[RedisServerProcess] = []

    @property
    def nodes(self) -> list[RedisServerProcess]:
        return list(self._nodes)

    @property
    def startup_nodes(self) -> list[Address]:
        """``(host, port)`` of every node, for ``RedisCluster(startup_nodes=...)``."""
        if not self._nodes:
            raise RuntimeError(f"{self!r} has not been started")
        return [_address(node) for node in self._nodes]

    @property
    def url(self) -> str:
        return f"redis+cluster://{_join(self.startup_nodes)}"

    def _launch(self) -> None:
        self._nodes = []
        for i in range(self.master_count):
            self._nodes.append(self._start_node(f"node {i + 1}"))
        self._create()
        _wait_until(self._not_ready, self.start_deadline, what=f"cluster {self.url}")

    def _start_node(self, label: str) -> RedisServerProcess:
        """One cluster node; a fresh bus port on every attempt (it may get taken too)."""
        failures: list[str] = []
        for _ in range(_NODE_START_ATTEMPTS):
            node = RedisServerProcess(
                self.binary,
                extra_args=(
                    *_DATA_NODE_ARGS,
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(self.node_timeout_ms),
                    # Explicit bus port: the default (port + 10000) can exceed 65535.
                    "--cluster-port", str(free_port()),
                ),
            )  # fmt: skip
            try:
                node.start()
            except RedisStartError as exc:
                failures.append(str(exc))
                node.close()
                continue
            return self._add(label, node)
        raise TopologyStartError(
            f"cluster {label} did not start after {_NODE_START_ATTEMPTS} attempts:\n"
            + "\n".join(failures)
        )

    def _create(self) -> None:
        command = [
            self.cli,
            "--cluster", "create",
            *(f"{host}:{port}" for host, port in self.startup_nodes),
            "--cluster-replicas", "0",
            "--cluster-yes",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.create_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"") + (exc.stderr or b"")
            raise TopologyStartError(
                f"`{' '.join(command)}` did not finish within {self.create_timeout:.0f}s:\n"
                f"{_decode(output)}\n{self.log_tails()}"
            ) from exc
        if done.returncode != 0:
            raise TopologyStartError(
                f"`{' '.join(command)}` exited with {done.returncode}:\n"
                f"{_decode(done.stdout + done.stderr)}\n{self.log_tails()}"
            )

    def _not_ready(self) -> _Pending | None:
        for label, node in self._members:
            where = f"{label} {HOST}:{node.port}"
            if not node.running:
                return _Pending(f"process exited with {node.returncode}", where, node)
            try:
                info = _command(_address(node), "CLUSTER", "INFO")
            except (redis.exceptions.RedisError, OSError) as exc:
                return _Pending(f"CLUSTER INFO failed: {exc!r}", where, node)
            fields = _cluster_info(info)
            if (
                fields.get("cluster_state") != "ok"
                or fields.get("cluster_known_nodes") != str(self.master_count)
                or fields.get("cluster_slots_ok") != "16384"
            ):
                return _Pending(f"CLUSTER INFO says {fields}", where, node)
        return None


def _cluster_info(reply: Any) -> dict[str, str]:
    """``CLUSTER INFO`` as a dict (redis-py may hand over the raw text or a parsed dict)."""
    if isinstance(reply, Mapping):
        return {str(k): str(v) for k, v in reply.items()}
    fields: dict[str, str] = {}
    for line in str(reply).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _decode(output: bytes) -> str:
    text = output.decode("utf-8", errors="replace").strip()
    return "\n".join(text.splitlines()[-2 * _LOG_TAIL_LINES :]) or "<no output>"
