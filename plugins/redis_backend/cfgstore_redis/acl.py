"""The least-privilege Redis ACL the service needs (documented in ``redis-keys.md``).

``acl_setuser_line("cfgstore", "aiclient")`` gives the ``ACL SETUSER`` command for an
operator to run (with a password added); tests apply it and run the store as that user.
"""

from __future__ import annotations

COMMANDS = (
    # connection and start-up checks (redis-py's CLIENT SETINFO may be refused: it is
    # optional, and Redis 7.0 does not have it)
    "ping",
    "hello",
    "auth",
    "client|setname",
    "info",
    "config|get",
    # plain values, hashes, lists, sorted sets
    "get",
    "mget",
    "set",
    "del",
    "exists",
    "hget",
    "hmget",
    "hset",
    "hsetnx",
    "hgetall",
    "hdel",
    "hexists",
    "hincrby",
    "lrange",
    "llen",
    "lpos",
    "rpush",
    "lrem",
    "lset",
    "rename",
    "incr",
    "zadd",
    "zrem",
    "zcount",
    "zrangebyscore",
    "zremrangebyscore",
    # scripts, transactions, change feed
    "evalsha",
    "eval",
    "script|load",
    "multi",
    "exec",
    "discard",
    "publish",
    "subscribe",
    "unsubscribe",
    # Redis Cluster topology discovery
    "cluster|slots",
    "cluster|shards",
    "cluster|nodes",
    "readonly",
    "command",
)


def acl_rules(prefix: str) -> str:
    """Key pattern, channel and command rules (no user name, no password)."""
    tag = "{" + prefix + "}"
    commands = " ".join("+" + c for c in COMMANDS)
    return f"resetkeys ~{tag}:* resetchannels &{tag}:changes -@all {commands}"


def acl_setuser_line(user: str, prefix: str) -> str:
    return f"ACL SETUSER {user} on >CHANGE-ME {acl_rules(prefix)}"
