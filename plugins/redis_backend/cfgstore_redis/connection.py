"""From :class:`~cfgstore.adapters.settings.Settings` to a connected redis-py client (DESIGN §4).

* :func:`parse_target` reads ``redis_url`` (``redis://``, ``rediss://``,
  ``redis[s]+sentinel://``, ``redis[s]+cluster://``) and lets the discrete ``redis_*``
  settings override the matching parts.
* :func:`build_connection` makes the client without any I/O; :func:`connect` also PINGs it.
* :func:`classify` maps redis-py exceptions onto :class:`~cfgstore.errors.StorageUnavailable`
  (an outage: retry later) and :class:`~cfgstore.errors.StorageServerError` (the server
  answered with an error an operator must fix).

Client policy, the same for standalone, Sentinel and Cluster:

* **No hidden retries.** redis-py retries commands by itself unless told not to (10 times
  for ``Redis(host=...)``); a retried ``HINCRBY`` can count twice. Every client and pool
  gets ``Retry(NoBackoff(), 0)``; the callers (the group-commit writer) re-send what is
  idempotent.
* **RESP2, and maintenance notifications off.** With redis-py 8's default RESP3, the pool
  turns "maintenance notifications" on and then skips its liveness check when it hands out
  a pooled connection, so after a server restart the first command on every old connection
  fails with "Connection closed by server" (redis/redis-py#4252). RESP2 keeps that code
  path off; the explicit ``MaintNotificationsConfig(enabled=False)`` keeps it off even if
  someone switches to RESP3 later. RESP2 also works through proxies and managed services
  that do not speak ``HELLO`` (a server that does not know ``HELLO`` echoes its arguments,
  ``AUTH <user> <password>`` included, in the error).
* **Explicit timeouts** from the settings, and a PING health check before a command on a
  connection idle for :data:`HEALTH_CHECK_INTERVAL_S`: a half-open connection then fails
  on that PING, before a non-idempotent command is written to it.
* **A blocking pool** of ``redis_max_connections`` for standalone and Sentinel: when every
  connection is busy a caller waits up to the socket timeout for one instead of failing at
  once with ``MaxConnectionsError`` (half the commands of 200 concurrent callers did on
  redis-py's default pool, DESIGN §4); after that wait it gets ``StorageUnavailable``.
  redis-py's Cluster client has no blocking pool: ``redis_max_connections`` is per node and
  an exhausted node fails at once (also ``StorageUnavailable``).
* **No connection from before an outage is used after it.** A connection reset (``RST``:
  a proxy, a load balancer, a NAT flush) leaves idle pooled connections that the pool's
  checkout cannot tell from healthy ones; each would fail on first use, seconds after the
  instance recovered. Every outage error starts a new pool epoch, and a connection made in
  an earlier epoch is reconnected when it is next checked out (:class:`_OutageEpochs`).
  (redis-py's Cluster client has no such pool hook; it drops a node's connections itself
  when that node fails.)
* **Never a password in a message or a log line**: :meth:`RedisTarget.describe` and every
  error built here hide it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import SplitResult, unquote, urlsplit

import attrs
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
)
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    ExternalAuthProviderError,
    MasterDownError,
    MaxConnectionsError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from cfgstore.adapters.settings import Settings
from cfgstore.errors import CfgStoreError, InvalidData, StorageServerError, StorageUnavailable

__all__ = [
    "HEALTH_CHECK_INTERVAL_S",
    "RESP_PROTOCOL",
    "RedisClient",
    "RedisConnection",
    "RedisNode",
    "RedisTarget",
    "TargetKind",
    "build_connection",
    "classify",
    "connect",
    "parse_target",
]

logger = logging.getLogger("cfgstore.redis")

#: Seconds a pooled connection may sit idle before the next command is preceded by a PING.
HEALTH_CHECK_INTERVAL_S = 10
#: RESP version of every connection (see the module docstring for why not RESP3).
RESP_PROTOCOL = 2

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379

URL_SOURCE = "CFGSTORE_REDIS_URL"
SETTINGS_SOURCE = "redis settings"

TargetKind = Literal["standalone", "sentinel", "cluster"]
CertReqs = Literal["required", "optional", "none"]
RedisClient = Redis | RedisCluster

_SCHEMES: dict[str, tuple[TargetKind, bool]] = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
_QUERY_OPTIONS = (
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
    "sentinel_username",
    "sentinel_password",
)
_CERT_REQS: tuple[CertReqs, ...] = ("required", "optional", "none")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_ENCODING_HINT = "characters such as @ / ? # : in a user name or password must be percent-encoded"


# ----------------------------------------------------------------------------------------
# the target


@attrs.frozen
class RedisNode:
    """One ``host:port`` (a server, a sentinel or a cluster seed node)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@attrs.frozen
class RedisTarget:
    """Where and how to connect, parsed and validated; no I/O, no client.

    ``nodes`` is the server (standalone), the sentinels, or the cluster seed nodes.
    ``username``/``password`` authenticate to the data nodes; ``sentinel_username``/
    ``sentinel_password`` to the sentinels (no sentinel auth when unset). ``tls`` applies to
    every connection, sentinels included.
    """

    kind: TargetKind
    nodes: tuple[RedisNode, ...]
    db: int = 0
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    master: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = attrs.field(default=None, repr=False)
    tls: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: CertReqs = "required"
    ssl_check_hostname: bool = True

    @property
    def secrets(self) -> tuple[str, ...]:
        """The passwords in this target, for scrubbing text that might echo them."""
        return tuple(s for s in (self.password, self.sentinel_password) if s)

    def describe(self) -> str:
        """A log-safe description: passwords appear as ``***``."""
        nodes = ",".join(str(node) for node in self.nodes)
        if self.kind == "standalone":
            scheme = "rediss" if self.tls else "redis"
            user = self.username or ""
            if self.password:
                userinfo = f"{user}:***@"
            elif user:
                userinfo = f"{user}@"
            else:
                userinfo = ""
            return f"{scheme}://{userinfo}{nodes}/{self.db}"
        extras: list[str] = []
        if self.username:
            extras.append(f"user {self.username}")
        if self.password:
            extras.append("password ***")
        if self.kind == "sentinel":
            if self.sentinel_username:
                extras.append(f"sentinel user {self.sentinel_username}")
            if self.sentinel_password:
                extras.append("sentinel password ***")
        if self.tls:
            extras.append("TLS")
        tail = f" ({', '.join(extras)})" if extras else ""
        if self.kind == "sentinel":
            return f"sentinel master {self.master} db {self.db} via {nodes}{tail}"
        return f"redis cluster via {nodes}{tail}"


def parse_target(settings: Settings) -> RedisTarget:
    """The Redis ``settings`` point at: ``redis_url`` first, then each discrete ``redis_*``
    setting overrides the matching part (``redis_host`` replaces the URL's whole node list
    with that one host). With no URL, ``redis_host`` means a standalone server. Any TLS file
    setting (or ``ssl_*`` URL option) turns TLS on.

    Raises :class:`InvalidData` (source ``CFGSTORE_REDIS_URL`` or ``redis settings``) for a
    bad URL or setting; the message never contains a password, nor any other part of the
    URL that could hold one.
    """
    secrets = [s for s in (settings.redis_password,) if s]
    try:
        if settings.redis_url:
            fields = _parse_url(settings.redis_url, secrets)
        elif settings.redis_host:
            fields = {"kind": "standalone", "nodes": (), "tls": False}
        else:
            raise InvalidData(
                SETTINGS_SOURCE,
                "redis_url",
                "no Redis configured: set CFGSTORE_REDIS_URL or CFGSTORE_REDIS_HOST",
            )
        _apply_overrides(fields, settings)
        return RedisTarget(**fields)
    except InvalidData as exc:
        if any(secret in str(exc) for secret in secrets):
            raise InvalidData(
                exc.source, _scrub(exc.where, secrets), _scrub(exc.problem, secrets)
            ) from None
        raise


def _url_error(where: str, problem: str) -> InvalidData:
    return InvalidData(URL_SOURCE, where, problem)


def _parse_url(url: str, secrets: list[str]) -> dict[str, Any]:
    head, sep, _ = url.partition("://")
    scheme = head.lower()
    if not sep or scheme not in _SCHEMES:
        expected = ", ".join(f"{name}://" for name in _SCHEMES)
        if sep and scheme.replace("+", "").isalnum():
            raise _url_error("scheme", f"unknown scheme {scheme!r}; expected one of {expected}")
        raise _url_error("scheme", f"no scheme; expected one of {expected}")
    kind, tls = _SCHEMES[scheme]
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _url_error("host", f"the URL cannot be parsed ({_ENCODING_HINT})") from None

    userinfo, at, hostlist = parts.netloc.rpartition("@")
    if not at and _looks_like_misplaced_userinfo(parts):
        raise _url_error("user info", f"'@' after the host part: {_ENCODING_HINT}")
    if parts.fragment:
        raise _url_error("fragment", f"a Redis URL has no '#fragment' ({_ENCODING_HINT})")
    fields: dict[str, Any] = {"kind": kind, "tls": tls}
    if at:
        user, colon, password = userinfo.partition(":")
        if colon and password:
            secrets.append(unquote(password))
            secrets.append(password)
            fields["password"] = unquote(password)
        if user:
            fields["username"] = unquote(user)

    default_port = DEFAULT_SENTINEL_PORT if kind == "sentinel" else DEFAULT_PORT
    fields["nodes"] = _parse_nodes(hostlist, default_port)
    if kind == "standalone" and len(fields["nodes"]) > 1:
        raise _url_error(
            "host",
            f"{scheme}:// names one server; use redis+sentinel:// or redis+cluster:// "
            "to name several nodes",
        )
    fields.update(_parse_path(kind, parts.path))
    fields.update(_parse_query(kind, parts.query))
    return fields


def _looks_like_misplaced_userinfo(parts: SplitResult) -> bool:
    """``redis://user:pa/ss@host`` splits inside the password: '@' lands in the path."""
    query_head = parts.query.split("=", 1)[0]
    return "@" in parts.path or "@" in parts.fragment or "@" in query_head


def _parse_nodes(hostlist: str, default_port: int) -> tuple[RedisNode, ...]:
    if not hostlist:
        raise _url_error("host", "no host in the URL")
    nodes: list[RedisNode] = []
    for index, item in enumerate(hostlist.split(","), start=1):
        where = f"node {index}" if "," in hostlist else "host"
        if item.startswith("["):
            host, bracket, rest = item[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise _url_error(where, "malformed [IPv6] address")
            port_text = rest[1:] if rest else None
        else:
            host, colon, port_text_raw = item.partition(":")
            port_text = port_text_raw if colon else None
        if not host:
            raise _url_error(where, "empty host name")
        port = default_port if port_text is None else _port(port_text, URL_SOURCE, where)
        nodes.append(RedisNode(unquote(host), port))
    return tuple(nodes)


def _port(text: str, source: str, where: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise InvalidData(source, where, "port is not a number between 1 and 65535")
    return int(text)


def _db(text: str, where: str) -> int:
    if not text.isdigit():
        raise _url_error(where, "database is not a non-negative integer")
    return int(text)


def _parse_path(kind: TargetKind, path: str) -> dict[str, Any]:
    segments = path.split("/")[1:] if path else []
    if segments and segments[-1] == "" and len(segments) > 1:
        segments.pop()  # one trailing slash is harmless
    if kind == "sentinel":
        if not segments or not segments[0]:
            raise _url_error(
                "path",
                "missing master name: redis+sentinel://host:port[,host:port]/<master>[/db]",
            )
        if len(segments) > 2:
            raise _url_error("path", "expected /<master>[/db]")
        fields: dict[str, Any] = {"master": unquote(segments[0])}
        if len(segments) == 2 and segments[1]:
            fields["db"] = _db(segments[1], "db")
        return fields
    if len(segments) > 1:
        raise _url_error("path", "expected at most /<db>")
    if not segments or not segments[0]:
        return {}
    db = _db(segments[0], "db")
    if kind == "cluster" and db != 0:
        raise _url_error("db", "Redis Cluster has only database 0")
    return {"db": db}


def _parse_query(kind: TargetKind, query: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if not query:
        return fields
    for item in query.split("&"):
        if not item:
            continue
        name, eq, raw = item.partition("=")
        shown = name if name.isidentifier() else "<option>"
        if not eq:
            raise _url_error("query", f"option {shown} has no '=value' ({_ENCODING_HINT})")
        if name not in _QUERY_OPTIONS:
            raise _url_error(
                "query", f"unknown option {shown}; supported: {', '.join(_QUERY_OPTIONS)}"
            )
        if name in fields:
            raise _url_error(f"query option {name}", "given twice")
        value = unquote(raw)
        if name.startswith("sentinel_") and kind != "sentinel":
            raise _url_error(f"query option {name}", "only for redis+sentinel:// URLs")
        if name == "ssl_cert_reqs":
            if value.lower() not in _CERT_REQS:
                raise _url_error(f"query option {name}", f"expected one of {_CERT_REQS}")
            fields[name] = value.lower()
        elif name == "ssl_check_hostname":
            if value.lower() not in _TRUE + _FALSE:
                raise _url_error(f"query option {name}", "expected true or false")
            fields[name] = value.lower() in _TRUE
        else:
            fields[name] = value or None
        if name.startswith("ssl_") and value:
            fields["tls"] = True
    return fields


def _apply_overrides(fields: dict[str, Any], settings: Settings) -> None:
    kind: TargetKind = fields["kind"]
    default_port = DEFAULT_SENTINEL_PORT if kind == "sentinel" else DEFAULT_PORT
    nodes: tuple[RedisNode, ...] = fields["nodes"]
    if settings.redis_port is not None:
        _port(str(settings.redis_port), SETTINGS_SOURCE, "redis_port")
    if settings.redis_host:
        host = settings.redis_host.strip()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host or any(c in host for c in "/@,? "):
            raise InvalidData(SETTINGS_SOURCE, "redis_host", "expected one host name")
        port = settings.redis_port or (nodes[0].port if len(nodes) == 1 else default_port)
        nodes = (RedisNode(host, port),)
    elif settings.redis_port is not None:
        if len(nodes) != 1:
            raise InvalidData(
                SETTINGS_SOURCE,
                "redis_port",
                f"the URL names {len(nodes)} nodes; put their ports in the URL "
                "or set redis_host too",
            )
        nodes = (RedisNode(nodes[0].host, settings.redis_port),)
    fields["nodes"] = nodes
    if settings.redis_username:
        fields["username"] = settings.redis_username
    if settings.redis_password:
        fields["password"] = settings.redis_password
    if settings.redis_db is not None:
        if settings.redis_db < 0:
            raise InvalidData(SETTINGS_SOURCE, "redis_db", "must be a non-negative integer")
        if kind == "cluster" and settings.redis_db != 0:
            raise InvalidData(SETTINGS_SOURCE, "redis_db", "Redis Cluster has only database 0")
        fields["db"] = settings.redis_db
    for name, value in (
        ("ssl_ca_certs", settings.redis_tls_ca_certs),
        ("ssl_certfile", settings.redis_tls_certfile),
        ("ssl_keyfile", settings.redis_tls_keyfile),
    ):
        if value:
            fields[name] = value
            fields["tls"] = True


# ----------------------------------------------------------------------------------------
# the client


class _OutageEpochs(ConnectionPool):
    """A pool mixin: :meth:`outage` starts a new epoch, and a connection made in an earlier
    one is dropped (and reconnected) when it is next checked out."""

    epoch = 0

    def outage(self) -> None:
        self.epoch += 1

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        made_in = getattr(connection, _EPOCH_ATTR, None)
        if made_in is not None and made_in != self.epoch:
            await connection.disconnect()
        setattr(connection, _EPOCH_ATTR, self.epoch)
        await super().ensure_connection(connection)


_EPOCH_ATTR = "_cfgstore_epoch"


class _BlockingPool(_OutageEpochs, BlockingConnectionPool):
    """The standalone pool: blocking checkout, outage epochs."""


class _BlockingSentinelConnectionPool(
    _OutageEpochs, SentinelConnectionPool, BlockingConnectionPool
):
    """Sentinel's master pool with :class:`BlockingConnectionPool`'s wait-for-a-connection.

    MRO: outage epochs, Sentinel's address discovery and connection class, the blocking
    pool's ``get_connection``/``release``, then the base pool (liveness check on checkout).
    """


@attrs.define(eq=False)
class RedisConnection:
    """A redis-py client plus what it connects to; made by :func:`build_connection`.

    ``client`` is a ``redis.asyncio.Redis`` (standalone, Sentinel master) or a
    ``redis.asyncio.cluster.RedisCluster``. It never retries a command by itself.
    """

    client: RedisClient
    target: RedisTarget
    connect_budget_s: float
    _sentinel: Sentinel | None = None
    _up: bool | None = attrs.field(default=None, init=False)  # None: never reached yet
    _closed: bool = attrs.field(default=False, init=False)

    def describe(self) -> str:
        return self.target.describe()

    def classify(self, exc: BaseException) -> Exception:
        """:func:`classify` with this target's passwords scrubbed; logs a lost connection
        (once, until :meth:`note_ok`) when the error is an outage."""
        err = classify(exc, secrets=self.target.secrets)
        if isinstance(err, StorageUnavailable):
            pool = getattr(self.client, "connection_pool", None)
            if isinstance(pool, _OutageEpochs):
                pool.outage()
        if isinstance(err, StorageUnavailable) and self._up:
            self._up = False
            logger.warning("lost connection to %s: %s", self.describe(), err)
        return err

    def note_ok(self) -> None:
        """A command succeeded: log ``re-established`` if :meth:`classify` saw an outage."""
        if self._up is False:
            logger.info("connection to %s re-established", self.describe())
        self._up = True

    async def ping(self) -> None:
        """PING within :attr:`connect_budget_s`.

        Raises :class:`StorageUnavailable` (``cannot reach …``) or
        :class:`StorageServerError` (auth, ACL, bad database).
        """
        try:
            async with asyncio.timeout(self.connect_budget_s):
                await self.client.ping()
        except TimeoutError as exc:  # asyncio.timeout's own; redis-py's is a RedisError
            self.classify(exc)
            raise StorageUnavailable(
                f"cannot reach {self.describe()}: no answer within {self.connect_budget_s:.1f}s"
            ) from exc
        except Exception as exc:
            classified = self.classify(exc)
            if isinstance(classified, StorageUnavailable):
                raise StorageUnavailable(f"cannot reach {self.describe()}: {classified}") from exc
            if isinstance(classified, StorageServerError):
                raise StorageServerError(f"{self.describe()}: {classified}") from exc
            raise
        self.note_ok()

    async def server_warnings(self) -> list[str]:
        """Start-up warnings about the server's configuration (empty when all is well).

        Checks ``maxmemory-policy`` (:meth:`maxmemory_policy`): anything but ``noeviction``
        can evict credentials, and a policy that cannot be read is a warning too. On a
        cluster every primary is checked. Raises :class:`StorageUnavailable` when the
        server cannot be reached.
        """
        warnings: list[str] = []
        try:
            if isinstance(self.client, RedisCluster):
                await self.client.initialize()
                for node in self.client.get_primaries():
                    warning = await self._policy_warning(node)
                    if warning:
                        warnings.append(f"{node.name}: {warning}")
            else:
                warning = await self._policy_warning(None)
                if warning:
                    warnings.append(warning)
        except Exception as exc:
            err = self.classify(exc)
            if err is exc:
                raise
            raise err from exc
        return warnings

    async def server_version(self) -> str | None:
        """``redis_version`` from ``INFO server``; None when the server does not report it.

        Raises redis-py's ``ResponseError`` (``NOPERM``) when ``INFO`` is refused.
        """
        return _find_value(await self.client.info("server"), "redis_version")

    async def maxmemory_policy(self, node: ClusterNode | None = None) -> str | None:
        """``maxmemory_policy`` from ``INFO memory`` (of ``node`` on a cluster); None when
        the server does not report it.

        Never ``CONFIG GET``: the documented ACL does not grant it, because it also reads
        ``requirepass`` and ``masterauth``. Raises redis-py's ``ResponseError``
        (``NOPERM``) when ``INFO`` is refused.
        """
        route: dict[str, Any] = {} if node is None else {"target_nodes": node}
        return _find_value(await self.client.info("memory", **route), "maxmemory_policy")

    async def _policy_warning(self, node: ClusterNode | None) -> str | None:
        try:
            policy = await self.maxmemory_policy(node)
        except ResponseError as exc:
            why = f"INFO memory: {_scrub(str(exc), self.target.secrets)}"
        else:
            if policy == "noeviction":
                return None
            if policy is not None:
                return f"maxmemory-policy {policy} can evict credentials; set noeviction"
            why = "the server did not report it"
        return (
            f"maxmemory-policy could not be checked ({why}): make sure it is noeviction, "
            "or Redis can evict credentials"
        )

    async def close(self) -> None:
        """Close the client (and the sentinel clients). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.client.aclose()
        finally:
            if self._sentinel is not None:
                await self._sentinel.aclose()
            logger.info("closed connection to %s", self.describe())


def build_connection(
    settings: Settings, target: RedisTarget | None = None, *, decode_responses: bool = False
) -> RedisConnection:
    """The client for ``settings`` (or an already parsed ``target``), without any I/O.

    Raises :class:`InvalidData` for bad settings. Nothing is connected until the first
    command; :func:`connect` also verifies the server with a PING.
    """
    target = target if target is not None else parse_target(settings)
    socket_s = _positive_ms(settings.redis_socket_timeout_ms, "redis_socket_timeout_ms")
    connect_s = _positive_ms(settings.redis_connect_timeout_ms, "redis_connect_timeout_ms")
    if settings.redis_max_connections < 1:
        raise InvalidData(SETTINGS_SOURCE, "redis_max_connections", "must be at least 1")

    common: dict[str, Any] = {
        "username": target.username,
        "password": target.password,
        "socket_timeout": socket_s,
        "socket_connect_timeout": connect_s,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry": _no_retry(),
        "protocol": RESP_PROTOCOL,
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
        "decode_responses": decode_responses,
        # No CLIENT SETINFO on connect: the documented ACL cannot grant it on Redis 7.0
        # (the rule is refused there), so on 7.2+ it would fill ACL LOG with refusals.
        "driver_info": None,
        # JSON that Node writes may hold lone surrogates (a name cut mid-emoji): they travel
        # as their CESU bytes and decode back to the same string, in names and documents.
        "encoding_errors": "surrogatepass",
    }
    tls = _tls_kwargs(target)
    # A sentinel answers in one round trip per sentinel tried; a cluster seeds from its
    # nodes one after the other: allow each node a connect and a reply, plus the data node.
    budget = (connect_s + socket_s) * (len(target.nodes) + 1)

    if target.kind == "standalone":
        node = target.nodes[0]
        pool = _BlockingPool(
            max_connections=settings.redis_max_connections,
            timeout=socket_s,
            connection_class=SSLConnection if target.tls else Connection,
            host=node.host,
            port=node.port,
            db=target.db,
            **common,
            **tls,
        )
        return RedisConnection(Redis.from_pool(pool), target, budget)

    if target.kind == "sentinel":
        sentinel_kwargs: dict[str, Any] = {
            "username": target.sentinel_username,
            "password": target.sentinel_password,
            "socket_timeout": socket_s,
            "socket_connect_timeout": connect_s,
            "retry": _no_retry(),
            "protocol": RESP_PROTOCOL,
            "maint_notifications_config": MaintNotificationsConfig(enabled=False),
        }
        if target.tls:
            sentinel_kwargs.update(ssl=True, **tls)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            [(n.host, n.port) for n in target.nodes], sentinel_kwargs=sentinel_kwargs
        )
        client = sentinel.master_for(
            target.master or "",
            redis_class=Redis,
            connection_pool_class=_BlockingSentinelConnectionPool,
            max_connections=settings.redis_max_connections,
            timeout=socket_s,
            db=target.db,
            ssl=target.tls,
            **common,
            **tls,
        )
        return RedisConnection(client, target, budget, sentinel)

    cluster = RedisCluster(
        startup_nodes=[ClusterNode(n.host, n.port) for n in target.nodes],
        max_connections=settings.redis_max_connections,
        ssl=target.tls,
        **common,
        **tls,
    )
    return RedisConnection(cluster, target, budget)


async def connect(settings: Settings, *, decode_responses: bool = False) -> RedisConnection:
    """:func:`build_connection`, then PING the server (bounded by the timeouts).

    Raises :class:`InvalidData` (bad settings), :class:`StorageUnavailable` (``cannot reach
    <describe>: <reason>``) or :class:`StorageServerError` (authentication, ACL, bad db).
    """
    connection = build_connection(settings, decode_responses=decode_responses)
    try:
        await connection.ping()
    except BaseException as exc:
        logger.warning("could not connect: %s", exc)
        await connection.close()
        raise
    logger.info("connected to %s", connection.describe())
    return connection


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def _positive_ms(value: int, name: str) -> float:
    if value <= 0:
        raise InvalidData(SETTINGS_SOURCE, name, "must be a positive number of milliseconds")
    return value / 1000


def _tls_kwargs(target: RedisTarget) -> dict[str, Any]:
    if not target.tls:
        return {}
    return {
        "ssl_ca_certs": target.ssl_ca_certs,
        "ssl_certfile": target.ssl_certfile,
        "ssl_keyfile": target.ssl_keyfile,
        "ssl_cert_reqs": target.ssl_cert_reqs,
        # Python refuses hostname checks without certificate checks.
        "ssl_check_hostname": target.ssl_check_hostname and target.ssl_cert_reqs != "none",
    }


def _find_value(reply: object, key: str) -> str | None:
    """``key``'s value in an INFO reply, also inside per-node dicts (Cluster)."""
    if not isinstance(reply, Mapping):
        return None
    for name, value in reply.items():
        if _text(name) == key:
            return _text(value)
    for value in reply.values():
        found = _find_value(value, key)
        if found is not None:
            return found
    return None


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# ----------------------------------------------------------------------------------------
# errors


def classify(exc: BaseException, *, secrets: Iterable[str] = ()) -> Exception:
    """The cfgstore error for a redis-py exception; raise it with ``from exc``.

    * :class:`StorageUnavailable` (an outage; retrying later may work): connection errors,
      timeouts, an exhausted pool, ``LOADING``, ``BUSY``, ``READONLY``, ``MASTERDOWN``,
      ``TRYAGAIN``, ``CLUSTERDOWN`` and other cluster reconfiguration states;
    * :class:`StorageServerError` (an operator must act): ``OOM``, ``WRONGTYPE``,
      ``NOAUTH``/``WRONGPASS``, ``NOPERM``, a rejected TLS certificate, and any other error
      reply.

    A cfgstore error, and any exception that is not a Redis or socket error (a bug), is
    returned unchanged. ``secrets`` are replaced by ``***`` in the message (redis-py's
    messages hold none, but a server may echo a command's arguments).
    """
    if isinstance(exc, CfgStoreError):
        return exc
    if not isinstance(exc, Exception):
        return RuntimeError(f"{type(exc).__name__} is not a storage error")
    kind, message = _classify(exc)
    if kind is None:
        return exc
    return kind(_scrub(message, secrets))


def _classify(exc: Exception) -> tuple[type[CfgStoreError] | None, str]:
    detail = str(exc) or type(exc).__name__
    code = _error_code(exc)
    if isinstance(exc, MaxConnectionsError) or (
        isinstance(exc, RedisConnectionError) and "No connection available" in detail
    ):
        return StorageUnavailable, (
            "no free Redis connection: every pooled connection stayed busy for the whole "
            "wait (raise CFGSTORE_REDIS_MAX_CONNECTIONS or lower the concurrency)"
        )
    if isinstance(exc, AuthenticationError | AuthorizationError | ExternalAuthProviderError) or (
        code in ("NOAUTH", "WRONGPASS")
    ):
        return StorageServerError, _auth_message(code, detail)
    if _certificate_rejected(exc):
        return StorageServerError, (
            "the TLS certificate of Redis was rejected (check the CA file, "
            f"CFGSTORE_REDIS_TLS_CA_CERTS or ?ssl_ca_certs=, and the host name): {detail}"
        )
    if isinstance(exc, MasterNotFoundError):
        return _master_not_found(detail)
    if isinstance(exc, BusyLoadingError) or code == "LOADING":
        return StorageUnavailable, "Redis is loading its dataset into memory (LOADING)"
    if isinstance(exc, RedisConnectionError):
        return StorageUnavailable, f"Redis connection error: {detail}"
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        return StorageUnavailable, f"Redis did not answer in time: {detail}"
    if isinstance(exc, OSError):
        return StorageUnavailable, f"Redis connection error: {detail}"
    if code == "BUSY":
        return StorageUnavailable, "Redis is busy running a script or function (BUSY)"
    if isinstance(exc, ReadOnlyError) or code == "READONLY":
        return StorageUnavailable, (
            "Redis answered from a read-only replica (READONLY): a failover is probably in progress"
        )
    if isinstance(exc, MasterDownError) or code == "MASTERDOWN":
        return StorageUnavailable, "Redis replica lost its master (MASTERDOWN)"
    if isinstance(exc, TryAgainError) or code == "TRYAGAIN":
        return StorageUnavailable, "Redis Cluster is moving slots, try again (TRYAGAIN)"
    if isinstance(exc, ClusterDownError) or code == "CLUSTERDOWN":
        return StorageUnavailable, f"Redis Cluster is down (CLUSTERDOWN): {detail}"
    if isinstance(exc, OutOfMemoryError) or code == "OOM":
        return StorageServerError, (
            "Redis is out of memory (maxmemory reached with noeviction): the write was refused"
        )
    if isinstance(exc, NoPermissionError) or code == "NOPERM":
        return StorageServerError, f"Redis ACL denied the command (NOPERM): {detail}"
    if code == "WRONGTYPE":
        return StorageServerError, f"Redis key holds the wrong type (WRONGTYPE): {detail}"
    if isinstance(exc, ResponseError):
        shown = detail if detail.startswith(code) or not code else f"{code} {detail}"
        return StorageServerError, f"Redis refused the command: {shown}"
    if isinstance(exc, SlotNotCoveredError | ClusterError):
        return StorageUnavailable, f"Redis Cluster is reconfiguring: {detail}"
    if isinstance(exc, RedisClusterException):
        if "cannot be connected" in detail:
            return StorageUnavailable, f"Redis Cluster connection error: {detail}"
        return StorageServerError, f"Redis Cluster error: {detail}"
    if isinstance(exc, RedisError):
        return StorageServerError, f"Redis client error: {type(exc).__name__}: {detail}"
    return None, detail


def _master_not_found(detail: str) -> tuple[type[CfgStoreError], str]:
    """redis-py lists each sentinel's failure as ``<client repr> - <kind>:<ErrorClass>``;
    keep the head and the kinds, not the long reprs."""
    head = detail.split(" : ", 1)[0]
    failures = re.findall(r" - (\w+:\w+)", detail)
    summary = f"{head} (sentinel errors: {', '.join(failures)})" if failures else head
    if failures and all(f.startswith("auth:") for f in failures):
        return StorageServerError, (
            f"the sentinels refused the credentials (sentinel_username/sentinel_password): "
            f"{summary}"
        )
    return StorageUnavailable, f"Redis Sentinel: {summary}"


def _certificate_rejected(exc: BaseException) -> bool:
    """A TLS certificate check failed: configuration, not an outage. redis-py wraps the
    :class:`ssl.SSLCertVerificationError` in a ConnectionError (as its ``__context__``)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _error_code(exc: Exception) -> str:
    """The error reply's code (``OOM``, ``WRONGTYPE`` …): redis-py strips the codes it maps
    to a class into ``status_code`` and leaves the others at the start of the message."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, str) and status:
        return status
    first = str(exc).split(" ", 1)[0]
    return first if first.isalpha() and first.isupper() else ""


def _auth_message(code: str, detail: str) -> str:
    if code == "NOAUTH":
        return (
            "Redis requires authentication (NOAUTH): set the password in the URL or "
            "CFGSTORE_REDIS_PASSWORD"
        )
    if "no password is set" in detail or "without any password configured" in detail:
        return "Redis has no password configured but one was sent: remove it from the settings"
    if code == "WRONGPASS" or "invalid" in detail.lower():
        return "Redis rejected the user name or password (WRONGPASS)"
    return f"Redis authentication failed: {detail}"


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
