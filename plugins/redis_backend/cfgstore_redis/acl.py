"""The least-privilege Redis ACL the service needs (documented in ``redis-keys.md``).

``acl_setuser_line("cfgstore", "aiclient")`` gives the ``ACL SETUSER`` command for an
operator to run (with a password added); tests apply it and run the store as that user.

Every command here is one the service sends, from Python or from its Lua scripts (a script
runs with the caller's rights), and nothing else: in particular no ``CONFIG`` (``CONFIG
GET`` reads ``requirepass`` and ``masterauth``, which would make the user the server's
administrator), no ``EVAL`` (scripts are loaded with ``SCRIPT LOAD`` and run by digest), no
``KEYS``/``SCAN``, no ``FLUSH*``. ``AUTH`` and ``HELLO`` need no rule: Redis lets every
connection authenticate.
"""

from __future__ import annotations

COMMANDS = (
    # liveness (the start-up check, health checks of pooled and pub/sub connections)
    "ping",
    # server facts: version, maxmemory-policy (INFO reveals no password)
    "info",
    # strings, hashes, lists, sorted sets (from Python and from the scripts)
    "get",
    "mget",
    "set",
    "del",
    "exists",
    "incr",
    "rename",
    "hget",
    "hmget",
    "hset",
    "hgetall",
    "hdel",
    "hexists",
    "hincrby",
    "pexpireat",  # the traffic buckets expire (a day after their minute)
    "lrange",
    "llen",
    "lpush",  # plugin logs: LPUSH + LTRIM in one MULTI
    "ltrim",
    "lpos",
    "rpush",
    "lrem",
    "lset",
    "zadd",
    "zrem",
    "zcount",
    "zrangebyscore",
    "zremrangebyscore",
    # scripts (redis-py loads a script when the server answers NOSCRIPT), transactions
    "evalsha",
    "script|load",
    "multi",
    "exec",
    # the change feed
    "publish",
    "subscribe",
    # Redis Cluster: slot map and command table at start, ASK redirects while a slot moves
    "cluster|slots",
    "command",
    "asking",
)


def acl_rules(prefix: str, db: int = 0) -> str:
    """Key pattern, channel and command rules (no user name, no password).

    ``db``: the database the service's URL names; other than 0, redis-py selects it on every
    new connection, so ``SELECT`` is granted for that one database only.
    """
    tag = "{" + prefix + "}"
    commands = " ".join("+" + c for c in COMMANDS)
    select = f" +select|{db}" if db else ""
    return f"resetkeys ~{tag}:* resetchannels &{tag}:changes -@all {commands}{select}"


def acl_setuser_line(user: str, prefix: str) -> str:
    return f"ACL SETUSER {user} on >CHANGE-ME {acl_rules(prefix)}"
