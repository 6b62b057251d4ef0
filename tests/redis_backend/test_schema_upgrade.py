"""A namespace written by schema 1 (one credential hash per node, ``{p}:cred:<type>:<uuid>``)
is upgraded in place when a store opens it: every credential is found again through its
node, nodes naming one file share one, nothing is lost, and a run interrupted halfway is
finished by the next open. The namespaces here are written with raw Redis commands, as the
schema-1 code wrote them (node hashes without ``@cred``, ``meta`` ``schema`` ``"1"``)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid as uuidlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cfgstore.adapters import Settings, Store
from cfgstore.model.credentials import Credential, same_file_key
from cfgstore.model.versions import SCHEMA_VERSION
from cfgstore_redis.acl import acl_rules
from cfgstore_redis.keys import Keys
from tests.cli.deployments import Namespace, cfgctl, describe, private_namespace
from tests.redis_backend.namespaces import CHAINS
from tests.support.redis_server import RedisServerProcess

KIRO, GEMINI = "claude-kiro-oauth", "gemini-cli-oauth"
KIRO_KEY, GEMINI_KEY = "KIRO_OAUTH_CREDS_FILE_PATH", "GEMINI_OAUTH_CREDS_FILE_PATH"
SHARED = "configs/kiro/shared/token.json"
SPELLINGS = {"a": f"./{SHARED}", "b": SHARED.replace("/", "\\")}
GEMINI_PATH = "./configs/gemini/g_oauth_creds.json"


def kiro_doc(access: str, expires: str) -> dict[str, Any]:
    return {"accessToken": access, "refreshToken": "FAKE", "expiresAt": expires}


OLD_CREDENTIALS: dict[tuple[str, str], tuple[dict[str, Any], str | None, str]] = {
    # (type, uuid) → (document, source, format). a and b name one file; b's expires last.
    (KIRO, "a"): (kiro_doc("a-older", "2030-01-01T00:00:00.000Z"), SPELLINGS["a"], "kiro"),
    (KIRO, "b"): (kiro_doc("b-newer", "2031-01-01T00:00:00.000Z"), SPELLINGS["b"], "kiro"),
    (KIRO, "c"): (kiro_doc("c-pathless", "2030-06-01T00:00:00.000Z"), None, "kiro"),
    (GEMINI, "g"): ({"access_token": "g", "expiry_date": 1900000000000}, GEMINI_PATH, "google"),
}
NODES: dict[str, dict[str, dict[str, str]]] = {
    # type → uuid → settings (besides uuid); h has no credential yet
    KIRO: {"a": {KIRO_KEY: SPELLINGS["a"]}, "b": {KIRO_KEY: SPELLINGS["b"]}, "c": {}},
    GEMINI: {"g": {GEMINI_KEY: GEMINI_PATH}, "h": {GEMINI_KEY: "configs/gemini/h.json"}},
}


def write_schema_1(client: redis.Redis, prefix: str, *, skip: frozenset[str] = frozenset()) -> None:
    """The layout schema 1 wrote; credentials of the uuids in ``skip`` are left out."""
    tag = "{" + prefix + "}"
    client.hset(
        f"{tag}:meta",
        mapping={
            "schema": "1",
            "namespace": uuidlib.uuid4().hex,
            "initialized_at": "2026-11-01T00:00:00.000Z",
        },
    )
    client.hset(f"{tag}:config", mapping={"doc": json.dumps({"REQUIRED_API_KEY": "k"}), "ver": "1"})
    client.set(f"{tag}:rev", 41)
    for provider_type, nodes in NODES.items():
        client.rpush(f"{tag}:types", provider_type)
        for uuid, settings in nodes.items():
            client.rpush(f"{tag}:nodes:{provider_type}", uuid)
            layout = ["uuid", *settings, "isHealthy", "usageCount"]
            client.hset(
                f"{tag}:node:{provider_type}:{uuid}",
                mapping={
                    "@doc": json.dumps(settings),
                    "@layout": "\x1f".join(layout),
                    "isHealthy": "true",
                    "usageCount": "5",
                    "@ver": "7",
                    "@docver": "2",
                },
            )
    for (provider_type, uuid), (document, source, token_format) in OLD_CREDENTIALS.items():
        if uuid in skip:
            continue
        fields = {"doc": json.dumps(document), "ver": "3", "format": token_format}
        if source is not None:
            fields["source"] = source
        client.hset(f"{tag}:cred:{provider_type}:{uuid}", mapping=fields)


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    name = f"up{uuidlib.uuid4().hex[:12]}"
    yield name
    Namespace(redis_url, name).drop()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def settings(redis_url: str, prefix: str, chain: str, tmp_path: Path) -> Settings:
    return Settings(
        configs_dir=Path("unused"),
        backends=CHAINS[chain],
        redis_url=redis_url,
        redis_prefix=prefix,
        state_dir=tmp_path / f"state-{uuidlib.uuid4().hex[:8]}",
    )


@pytest.fixture(params=sorted(CHAINS))
async def opened(
    request: pytest.FixtureRequest, redis_url: str, prefix: str, raw: redis.Redis, tmp_path: Path
) -> AsyncIterator[Store]:
    write_schema_1(raw, prefix)
    async with Store.open(settings(redis_url, prefix, request.param, tmp_path)) as store:
        yield store


async def access(store: Store, provider_type: str, uuid: str) -> str | None:
    credential = await store.credentials.get(provider_type, uuid)
    if credential is None:
        return None
    return str(credential.document.get("accessToken", credential.document.get("access_token")))


def legacy_keys(raw: redis.Redis, prefix: str) -> list[str]:
    keys = Keys(prefix)
    return [
        key
        for provider_type, uuid in OLD_CREDENTIALS
        if raw.exists(key := keys.legacy_credential(provider_type, uuid))
    ]


async def test_every_credential_is_read_again_through_its_node(
    opened: Store, raw: redis.Redis, prefix: str
) -> None:
    store = opened
    assert await access(store, KIRO, "a") == "b-newer"  # one file: the one expiring last
    assert await access(store, KIRO, "b") == "b-newer"
    a, b = await store.credentials.get(KIRO, "a"), await store.credentials.get(KIRO, "b")
    assert a is not None and b is not None and a.version == b.version
    assert await access(store, KIRO, "c") == "c-pathless"
    assert await access(store, GEMINI, "g") == "g"
    assert await access(store, GEMINI, "h") is None
    c_node = await store.pools.get_node(KIRO, "c")
    assert c_node is not None
    c_path = str(c_node.settings[KIRO_KEY])  # given one, in the Node upload convention
    assert c_path.startswith("./configs/kiro/") and c_path.endswith("_kiro-auth-token.json")
    refs = await store.credentials.list()
    assert len(refs) == 3  # the shared file once

    keys = Keys(prefix)
    assert raw.hget(keys.meta, "schema") == str(SCHEMA_VERSION) == "3"
    assert legacy_keys(raw, prefix) == []
    assert raw.hget(keys.credential(SHARED), "users") == f"{KIRO}:a\x1f{KIRO}:b"
    assert raw.hget(keys.node(KIRO, "a"), "@cred") == SHARED
    assert raw.hget(keys.node(GEMINI, "h"), "@cred") == "configs/gemini/h.json"

    # The upgraded namespace takes writes: a shared refresh is seen through both nodes, and
    # a node that had no credential gets its first.
    await store.credentials.put(
        Credential(KIRO, "a", kiro_doc("refreshed", "2032-01-01T00:00:00.000Z")), a.version
    )
    assert await access(store, KIRO, "b") == "refreshed"
    await store.credentials.put(Credential(GEMINI, "h", {"access_token": "h"}), None)
    assert await access(store, GEMINI, "h") == "h"


async def test_a_second_open_changes_nothing(
    opened: Store, raw: redis.Redis, prefix: str, redis_url: str, tmp_path: Path
) -> None:
    keys = Keys(prefix)
    revision = raw.get(keys.revision)
    async with Store.open(settings(redis_url, prefix, "redis", tmp_path)) as again:
        assert await access(again, KIRO, "a") == "b-newer"
    assert raw.get(keys.revision) == revision


@pytest.mark.parametrize("moved_first", ["a", "b"])
async def test_an_interrupted_upgrade_is_finished_by_the_next_open(
    moved_first: str, redis_url: str, prefix: str, raw: redis.Redis, tmp_path: Path
) -> None:
    """Half the nodes moved (by hand, as an interrupted run leaves them: one of the two
    sharing a file, and g), the schema still 1: the next open moves the rest, and the
    shared file keeps the credential expiring last whichever was moved first."""
    write_schema_1(raw, prefix)
    keys = Keys(prefix)
    for provider_type, uuid, file_key in ((KIRO, moved_first, SHARED), (GEMINI, "g", None)):
        file_key = file_key or same_file_key(GEMINI_PATH)
        old = raw.hgetall(keys.legacy_credential(provider_type, uuid))
        raw.hset(
            keys.credential(file_key),
            mapping={**old, "ver": "42", "users": f"{provider_type}:{uuid}"},
        )
        raw.hset(keys.node(provider_type, uuid), "@cred", file_key)
        raw.delete(keys.legacy_credential(provider_type, uuid))
    # c was given a path (and joined its file), its credential not moved yet.
    c_path = "./configs/kiro/17_kiro-auth-token/17_kiro-auth-token.json"
    c_node = keys.node(KIRO, "c")
    raw.hset(c_node, mapping={"@doc": json.dumps({KIRO_KEY: c_path}), "@docver": "3"})
    raw.hset(c_node, "@layout", raw.hget(c_node, "@layout") + f"\x1f{KIRO_KEY}")
    raw.hset(c_node, "@cred", same_file_key(c_path))
    raw.hset(keys.credential(same_file_key(c_path)), "users", f"{KIRO}:c")
    async with Store.open(settings(redis_url, prefix, "redis", tmp_path)) as store:
        c = await store.pools.get_node(KIRO, "c")
        assert c is not None and c.settings[KIRO_KEY] == c_path  # kept, not given another
        assert await access(store, KIRO, "a") == "b-newer"
        assert await access(store, KIRO, "b") == "b-newer"
        assert await access(store, KIRO, "c") == "c-pathless"
        assert await access(store, GEMINI, "g") == "g"
    assert raw.hget(keys.meta, "schema") == "3"
    assert legacy_keys(raw, prefix) == []
    assert sorted(raw.hget(keys.credential(SHARED), "users").split("\x1f")) == [
        f"{KIRO}:a",
        f"{KIRO}:b",
    ]


async def test_an_open_waits_for_the_instance_holding_the_upgrade_lock(
    redis_url: str, prefix: str, raw: redis.Redis, tmp_path: Path
) -> None:
    write_schema_1(raw, prefix)
    keys = Keys(prefix)
    raw.set(keys.upgrade_lock, "another-instance", px=30_000)

    async def open_and_read() -> str | None:
        async with Store.open(settings(redis_url, prefix, "redis", tmp_path)) as store:
            return await access(store, KIRO, "a")

    opening = asyncio.create_task(open_and_read())
    done, _ = await asyncio.wait({opening}, timeout=0.5)
    assert not done and raw.hget(keys.meta, "schema") == "1"  # nothing moved meanwhile
    raw.delete(keys.upgrade_lock)  # that instance stopped
    assert await asyncio.wait_for(opening, 30) == "b-newer"
    assert raw.hget(keys.meta, "schema") == "3"


def test_cfgctl_export_and_status_over_a_schema_1_namespace(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with private_namespace(redis_url, monkeypatch) as ns:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            write_schema_1(client, ns.prefix)
        finally:
            client.close()
        out = tmp_path / "out"
        result = cfgctl("export", "--to", out, "--redis-url", redis_url)
        assert result.exit_code == 0, describe(result)
        shared = json.loads((out / SHARED).read_text("utf-8"))
        assert shared["accessToken"] == "b-newer"
        gemini = json.loads((out / GEMINI_PATH).read_text("utf-8"))
        assert gemini["access_token"] == "g"
        tokens = [json.loads(p.read_text("utf-8")) for p in (out / "configs/kiro").rglob("*.json")]
        assert sorted(t["accessToken"] for t in tokens) == ["b-newer", "c-pathless"]
        status = cfgctl("status", "--redis-url", redis_url)
        assert status.exit_code == 0, describe(status)
        assert "schema: 3" in [line.strip() for line in status.stdout.splitlines()], status.stdout


async def test_a_namespace_holding_no_schema_1_credential_is_only_marked(
    redis_url: str, prefix: str, raw: redis.Redis, tmp_path: Path
) -> None:
    """Without any schema-1 credential (a namespace the current layout wrote, still marked
    1), the upgrade only marks the schema."""
    write_schema_1(raw, prefix, skip=frozenset({"a", "b", "c", "g"}))
    async with Store.open(settings(redis_url, prefix, "redis", tmp_path)) as store:
        assert await store.credentials.list() == []
    assert raw.hget(Keys(prefix).meta, "schema") == "3"


async def test_the_upgrade_runs_as_the_documented_least_privileged_user(
    redis_server_process: RedisServerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The documented ACL grants everything the upgrade sends (a refusal would be in
    ``ACL LOG``), and the upgrade says what it did in one line."""
    admin = redis.Redis.from_url(redis_server_process.url, decode_responses=True)
    try:
        admin.execute_command(
            "ACL", "SETUSER", "cfgstore", "on", ">s3cret-acl-pw", *acl_rules("upns").split()
        )
        write_schema_1(admin, "upns")
        url = f"redis://cfgstore:s3cret-acl-pw@127.0.0.1:{redis_server_process.port}/0"
        with caplog.at_level(logging.INFO, logger="cfgstore.redis"):
            async with Store.open(settings(url, "upns", "memory+redis", tmp_path)) as store:
                assert await access(store, KIRO, "c") == "c-pathless"
        assert admin.hget("{upns}:meta", "schema") == "3"
        refused = [e["object"] for e in admin.execute_command("ACL", "LOG")]
        assert [r for r in refused if r != "client|setinfo"] == []
    finally:
        admin.close()
    [summary] = [r.getMessage() for r in caplog.records if "upgraded namespace" in r.getMessage()]
    assert "5 nodes linked" in summary and "3 credentials moved" in summary
    assert "1 duplicates" in summary and "1 token paths" in summary
