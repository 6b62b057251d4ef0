"""The least-privilege ACL that ``redis-keys.md`` documents, end to end, on a private Redis
whose default user has a ``requirepass`` and whose ``masterauth`` is set.

The ``ACL SETUSER`` line is read out of the document itself (only the password is filled
in), so the document and this test cannot drift apart. As that user, and nothing else:

* every ``cfgctl`` command an operator runs on Redis: ``migrate`` of the sample deployment,
  ``verify``, ``status`` (text and JSON), ``export``, ``journal replay``, ``init`` and
  ``restore`` (from the snapshot the gateway left);
* a real ``cfgctl serve`` process (memory fallback over Redis: heartbeat, replication,
  change feed, scripts) signs an admin in, points a node at a local upstream stub, serves
  chat requests that are counted in Redis, and reports ``GET /api/storage/status``;
* the server's ``ACL LOG`` shows not one refusal of the service;
* what would make that user an administrator is refused (``NOPERM``): ``CONFIG GET
  requirepass`` / ``masterauth`` (also from inside a Lua script), ``CONFIG SET``, ``ACL``,
  ``FLUSHALL``, ``KEYS``, ``SCAN``, keys and channels of other namespaces.

And when the server will not tell (a user refused ``INFO``), ``cfgctl status`` and the
storage status say ``unknown`` instead of failing or staying silent.

The server's ``requirepass`` is set with ``CONFIG SET`` once it runs: the harness waits for
an unauthenticated ``PING`` before handing the server out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
import redis
from typer.testing import Result

from cfgstore.adapters import Settings
from cfgstore.model.credentials import Credential, TokenFormat
from cfgstore.model.records import Success
from cfgstore_memory.replay import CREDENTIAL, RECORDS, credential_data, records_data
from tests.admin.conftest import Admin
from tests.cli.deployments import EXAMPLE, cfgctl, describe, edit_json
from tests.cli.test_journal_restore import write_orphan
from tests.gateway.conftest import running_gateway
from tests.gateway.processes import start_gateway
from tests.gateway.upstream_stub import UpstreamStub
from tests.support.redis_server import RedisServerProcess
from tests.support.waiting import until

DOC = Path(__file__).resolve().parents[2] / "plugins/redis_backend/redis-keys.md"
PREFIX = "aiclient"
"""The prefix the documented line names (the default one: no setting needed)."""
USER = "cfgstore"
USER_PASSWORD = "acl-user-pw-5c1e9b"
REQUIREPASS = "default-user-requirepass-0e7d2a"
MASTERAUTH = "replication-masterauth-93fa61"
ADMIN_UI_PASSWORD = "example-admin-password"  # the sample deployment's (its README)
GATEWAY_KEY = "sk-FAKE-example-gateway-key"
OPENAI = ("openai-custom", "dccb18cf-3859-4edd-b146-a98dd0c4dc28")
KIRO = ("claude-kiro-oauth", "67ab4112-97a0-4660-9808-3f9ad194c93b")
SET_ASIDE_AT_MS = 1773576000123
GATEWAY_S = 180.0
"""Bound of the whole gateway part (process start, requests, graceful stop)."""
WAIT_S = 30.0
"""Bound of one wait or request (generous; the happy path takes milliseconds)."""
SOCKET_TIMEOUT_S = 5.0
IGNORED_REFUSALS = frozenset({"client|setinfo"})
"""redis-py names itself with ``CLIENT SETINFO`` on Redis 7.2+; it ignores a refusal and
the ACL does not grant it (Redis 7.0 rejects the rule: it has no such subcommand)."""


def documented_acl() -> list[str]:
    """The ``ACL SETUSER`` command of the doc's "Least-privilege ACL" section, split as
    ``redis-cli`` splits it, with the password filled in."""
    section = DOC.read_text("utf-8").split("## Least-privilege ACL", 1)[1]
    block = section.split("```", 2)[1]
    [line] = [line for line in block.splitlines() if line.startswith("ACL SETUSER ")]
    words = shlex.split(line)
    assert words[2] == USER and ">CHANGE-ME" in words, line
    assert f"~{{{PREFIX}}}:*" in words, line
    return [f">{USER_PASSWORD}" if word == ">CHANGE-ME" else word for word in words]


@attrs.frozen
class AclServer:
    """A private server with a ``requirepass``, a ``masterauth`` and the documented user."""

    server: RedisServerProcess

    @property
    def user_url(self) -> str:
        return f"redis://{USER}:{USER_PASSWORD}@127.0.0.1:{self.server.port}/0"

    def admin(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.server.port,
            password=REQUIREPASS,
            socket_timeout=SOCKET_TIMEOUT_S,
            decode_responses=True,
        )

    def as_user(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.user_url, socket_timeout=SOCKET_TIMEOUT_S, decode_responses=True
        )

    def refusals(self) -> list[dict[str, Any]]:
        """``ACL LOG`` entries of the documented user (the ignorable one left out)."""
        with contextlib.closing(self.admin()) as admin:
            entries = admin.execute_command("ACL", "LOG")
        return [e for e in entries if e["username"] == USER and e["object"] not in IGNORED_REFUSALS]


@pytest.fixture
def acl_server(redis_server_process: RedisServerProcess) -> Iterator[AclServer]:
    open_server = redis.Redis(
        host="127.0.0.1", port=redis_server_process.port, socket_timeout=SOCKET_TIMEOUT_S
    )
    open_server.config_set("masterauth", MASTERAUTH)
    open_server.config_set("requirepass", REQUIREPASS)
    open_server.close()
    served = AclServer(redis_server_process)
    with contextlib.closing(served.admin()) as admin:
        assert admin.execute_command(*documented_acl()) == "OK"
        admin.execute_command("ACL", "LOG", "RESET")
    yield served


def run(*args: str | Path) -> Result:
    result = cfgctl(*args)
    assert result.exit_code == 0, describe(result)
    for secret in (USER_PASSWORD, REQUIREPASS, MASTERAUTH):
        assert secret not in result.output
    return result


# -- the service as the documented user --------------------------------------------------------


def test_every_command_and_the_gateway_run_as_the_documented_user(
    acl_server: AclServer, tmp_path: Path
) -> None:
    url = acl_server.user_url
    deployment = tmp_path / "deployment"
    shutil.copytree(EXAMPLE, deployment)
    configs = deployment / "configs"
    # Nothing in the background may call the sample's real token or upstream endpoints.
    edit_json(configs / "config.json", _quiet)

    migrated = run("migrate", "--configs", configs, "--redis-url", url)
    assert "nodes: 16" in migrated.stdout, describe(migrated)
    run("verify", "--configs", configs, "--redis-url", url)
    namespace_id = _status_reports_everything(acl_server)

    served = asyncio.run(_serve_and_count(acl_server, tmp_path / "gateway"))
    exported = tmp_path / "exported"
    run("export", "--to", exported, "--redis-url", url)
    pools = json.loads((exported / "configs" / "provider_pools.json").read_bytes())
    [openai] = pools[OPENAI[0]]
    assert openai["OPENAI_BASE_URL"] == served.upstream_url
    assert openai["usageCount"] == served.usage

    orphan = write_orphan(
        tmp_path / "journals",
        namespace_id,
        [
            (
                RECORDS,
                records_data([Success(*OPENAI, SET_ASIDE_AT_MS + i) for i in range(3)]),
                "o1",
            ),
            (CREDENTIAL, credential_data(_kiro_credential(), None), "o2"),
        ],
    )
    run("journal", "replay", "--journal", orphan, "--redis-url", url)
    assert _usage_in_redis(acl_server) == served.usage + 3

    # The namespace is emptied (an operator's mistake, an admin's FLUSHALL); the documented
    # user initialises it and restores the gateway's last snapshot over that.
    with contextlib.closing(acl_server.admin()) as admin:
        admin.flushall()
    run("init", "--redis-url", url)
    run("restore", "--snapshot", served.snapshot, "--force", "--redis-url", url)
    restored = json.loads(run("status", "--json", "--redis-url", url).stdout)
    [backend] = restored["backends"]
    assert backend["counts"]["nodes"] == 16 and backend["details"]["namespace id"] == namespace_id

    assert acl_server.refusals() == []


def _quiet(config: dict[str, Any]) -> None:
    config["CRON_REFRESH_TOKEN"] = False
    config["SCHEDULED_HEALTH_CHECK"] = {"enabled": False, "providerTypes": []}


def _kiro_credential() -> Credential:
    return Credential(
        *KIRO,
        {"accessToken": "FAKE-acl-access", "refreshToken": "FAKE-acl-refresh"},
        source_path="./configs/kiro/acl/kiro-auth-token.json",
        token_format=TokenFormat.KIRO,
    )


def _status_reports_everything(acl_server: AclServer) -> str:
    """``cfgctl status`` as the user: server facts known, no warning; the namespace id."""
    url = acl_server.user_url
    text = run("status", "--redis-url", url).stdout
    assert "  maxmemory-policy: noeviction" in text.splitlines(), text
    assert "unknown" not in text and "warning" not in text, text
    report = json.loads(run("status", "--json", "--redis-url", url).stdout)
    [backend] = report["backends"]
    assert backend["warnings"] == [] and backend["counts"]["nodes"] == 16
    assert backend["details"]["redis version"] == _server_version(acl_server)
    namespace_id: str = backend["details"]["namespace id"]
    return namespace_id


@attrs.frozen
class Served:
    upstream_url: str
    usage: int
    snapshot: Path


async def _serve_and_count(acl_server: AclServer, workdir: Path) -> Served:
    requests = 3
    async with (
        asyncio.timeout(GATEWAY_S),
        UpstreamStub() as upstream,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_S)) as client,
    ):
        gateway = await start_gateway(
            workdir,
            name="acl-gateway",
            redis_url=acl_server.user_url,
            redis_prefix=PREFIX,
            client=client,
        )
        try:
            api = Api(client, gateway.url)
            status, body = await api.call(
                "POST", "/api/login", json={"password": ADMIN_UI_PASSWORD}
            )
            assert status == 200, body
            # After the success (a wrong one first would hold the next for
            # LOGIN_MIN_INTERVAL): the lockout counter's scripts run as the user too.
            status, _ = await api.call("POST", "/api/login", json={"password": "wrong"})
            assert status == 401
            api = attrs.evolve(api, token=body["token"])
            status, body = await api.call(
                "PUT",
                f"/api/providers/{OPENAI[0]}/{OPENAI[1]}",
                json={"providerConfig": {"OPENAI_BASE_URL": upstream.base_url}},
            )
            assert status == 200, body
            before = await asyncio.to_thread(_usage_in_redis, acl_server)
            for _ in range(requests):
                status, body = await api.chat()
                assert status == 200, body
            assert len(upstream.chat_requests()) == requests

            async def counted() -> bool:
                usage = await asyncio.to_thread(_usage_in_redis, acl_server)
                return usage == before + requests

            await until(counted, "the gateway's usage counts in Redis", within_s=WAIT_S)
            await _storage_status_reports_everything(api, acl_server)
        finally:
            code = await gateway.terminate()
        assert code == 0, gateway.log_tail()
        assert not gateway.log_lines(r"(?i)no permissions|NOPERM|could not be checked")
    [snapshot] = list(gateway.state_dir.rglob("snapshot.json"))
    return Served(upstream.base_url, before + requests, snapshot)


@attrs.frozen
class Api:
    """HTTP calls to a gateway process: its admin API (signed in with ``token``) and chat."""

    client: aiohttp.ClientSession
    url: str
    token: str | None = None

    async def call(self, method: str, path: str, *, json: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.client.request(
            method, self.url + path, json=json, headers=headers
        ) as response:
            return response.status, await response.json(content_type=None)

    async def chat(self) -> tuple[int, Any]:
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {GATEWAY_KEY}", "model-provider": OPENAI[0]}
        async with self.client.post(
            f"{self.url}/v1/chat/completions", json=body, headers=headers
        ) as response:
            return response.status, await response.json(content_type=None)


async def _storage_status_reports_everything(api: Api, acl_server: AclServer) -> None:
    async def heartbeat_listed() -> bool:
        _, body = await api.call("GET", "/api/storage/status")
        return [i["instance_id"] for i in body["instances"]] == [body["instance"]]

    await until(heartbeat_listed, "the gateway's heartbeat in the storage status")
    status, body = await api.call("GET", "/api/storage/status")
    assert status == 200, body
    assert body["mode"] == "redis" and body["degraded"] is False
    version = await asyncio.to_thread(_server_version, acl_server)
    assert body["redis"] == {"version": version, "maxmemoryPolicy": "noeviction"}
    assert all(layer["warnings"] == [] for layer in body["layers"]), body["layers"]


def _usage_in_redis(acl_server: AclServer) -> int:
    with contextlib.closing(acl_server.admin()) as admin:
        value = admin.hget(f"{{{PREFIX}}}:node:{OPENAI[0]}:{OPENAI[1]}", "usageCount")
    return int(value or 0)


def _server_version(acl_server: AclServer) -> str:
    with contextlib.closing(acl_server.admin()) as admin:
        return str(admin.info("server")["redis_version"])


# -- what the documented user may not do -------------------------------------------------------


REFUSED: tuple[tuple[str, ...], ...] = (
    ("CONFIG", "GET", "requirepass"),
    ("CONFIG", "GET", "masterauth"),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "requirepass", ""),
    ("CONFIG", "REWRITE"),
    ("ACL", "LIST"),
    ("ACL", "GETUSER", "default"),
    ("ACL", "SETUSER", USER, "+@all", "~*"),
    ("ACL", "LOG"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("SELECT", "1"),
    ("CLIENT", "LIST"),
    ("CLIENT", "KILL", "USER", "default"),
    ("MONITOR",),
    ("REPLICAOF", "127.0.0.1", "1"),
    ("MODULE", "LIST"),
    ("EVAL", "return 1", "0"),
    ("SCRIPT", "FLUSH"),
    ("SHUTDOWN", "NOSAVE"),
    ("GET", "{other}:config"),
    ("HGETALL", "{other}:config"),
    ("PUBLISH", "{other}:changes", "x"),
    ("PUBLISH", f"{{{PREFIX}}}:other-channel", "x"),
)


def test_the_documented_user_cannot_reach_secrets_admin_commands_or_other_data(
    acl_server: AclServer,
) -> None:
    with contextlib.closing(acl_server.as_user()) as user:
        assert user.ping() is True
        allowed = []
        for command in REFUSED:
            try:
                user.execute_command(*command)
            except redis.exceptions.NoPermissionError:
                continue
            allowed.append(" ".join(command))
        assert allowed == [], "the documented user may run these"
        # Scripts run with the caller's rights: the escape hatch stays shut (CONFIG and
        # ACL are not allowed in scripts at all).
        for body in (
            "return redis.call('FLUSHALL')",
            "return redis.call('KEYS', '*')",
            "return redis.call('GET', '{other}:config')",
        ):
            sha = user.script_load(body)
            with pytest.raises(redis.exceptions.ResponseError, match="user executing the script"):
                user.evalsha(sha, 1, f"{{{PREFIX}}}:meta")
    with contextlib.closing(acl_server.admin()) as admin:
        assert admin.config_get("requirepass") == {"requirepass": REQUIREPASS}  # still set
        rules = admin.execute_command("ACL", "GETUSER", USER)
    assert "config" not in str(rules["commands"]), rules["commands"]


# -- when the server will not tell -------------------------------------------------------------


def test_status_says_unknown_when_the_server_refuses_info(
    acl_server: AclServer, tmp_path: Path
) -> None:
    """A user refused ``INFO`` too (some managed services forbid it): the server facts are
    ``unknown`` — in ``cfgctl status`` and the storage status — never a failure, never
    silently absent; the start-up check says it could not check the memory policy."""
    with contextlib.closing(acl_server.admin()) as admin:
        admin.execute_command("ACL", "SETUSER", USER, "-info")
    url = acl_server.user_url
    run("init", "--redis-url", url)

    text = run("status", "--redis-url", url).stdout.splitlines()
    assert "  redis version: unknown" in text and "  maxmemory-policy: unknown" in text, text
    assert any(
        line.startswith("  warning: maxmemory-policy could not be checked (INFO memory: ")
        for line in text
    ), text
    report = json.loads(run("status", "--json", "--redis-url", url).stdout)
    details = report["backends"][0]["details"]
    assert (details["redis version"], details["maxmemory-policy"]) == ("unknown", "unknown")

    settings = Settings(
        configs_dir=tmp_path / "no-configs",
        redis_url=url,
        redis_prefix=PREFIX,
        state_dir=tmp_path / "state",
    )
    asyncio.run(_storage_status_says_unknown(settings))


async def _storage_status_says_unknown(settings: Settings) -> None:
    async with asyncio.timeout(WAIT_S), running_gateway(settings) as gateway:
        await gateway.store.password.put_stored(ADMIN_UI_PASSWORD)
        admin = await Admin(gateway.client, gateway.store).login(ADMIN_UI_PASSWORD)
        status, body = await admin.call("GET", "/api/storage/status")
    assert status == 200, body
    assert body["redis"] == {"version": "unknown", "maxmemoryPolicy": "unknown"}
    [redis_layer] = [layer for layer in body["layers"] if layer["name"] == "redis"]
    assert any("could not be checked" in w for w in redis_layer["warnings"]), redis_layer
