"""Kiro sibling files are stored once per folder (schema 3, ``redis-keys.md``): the tokens
of one folder, each with the others as siblings, cost one copy of each file, not one per
credential; the folder goes with its last credential; a schema-2 namespace (a copy per
credential) is upgraded in place. Checked on a real Redis, through the Store API, with
the raw keys inspected."""

from __future__ import annotations

import json
import posixpath
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cfgstore.adapters import Settings, Store
from cfgstore.errors import InvalidData
from cfgstore.model.credentials import Credential, TokenFormat
from cfgstore.model.pools import node_from_json, pools_from_json
from cfgstore.model.versions import ANY_VERSION, SCHEMA_VERSION
from cfgstore_redis.keys import Keys
from tests.cli.deployments import Namespace
from tests.redis_backend.namespaces import CHAINS
from tests.redis_backend.test_schema_upgrade import SHARED, write_schema_1

KIRO = "claude-kiro-oauth"
FOLDER = "configs/kiro/tokens"
TOKENS = 5
REGISTRATION = {"clientId": "FAKE-client", "clientSecret": "FAKE-secret", "expiresAt": "x"}


def name(index: int) -> str:
    return f"t{index}.json"


def token(index: int) -> dict[str, Any]:
    return {"accessToken": f"a{index}", "refreshToken": f"r{index}", "expiresAt": "2030"}


def folder_files() -> dict[str, dict[str, Any]]:
    """Every file of the folder: the tokens and the IDE's client registration."""
    files = {name(i): token(i) for i in range(TOKENS)}
    return {"client.json": REGISTRATION, **files}


def siblings_of(index: int) -> dict[str, dict[str, Any]]:
    return {n: d for n, d in sorted(folder_files().items()) if n != name(index)}


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    value = f"sib{uuidlib.uuid4().hex[:12]}"
    yield value
    Namespace(redis_url, value).drop()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def settings(redis_url: str, prefix: str, tmp_path: Path, chain: str = "redis") -> Settings:
    return Settings(
        configs_dir=Path("unused"),
        backends=CHAINS[chain],
        redis_url=redis_url,
        redis_prefix=prefix,
        state_dir=tmp_path / f"state-{uuidlib.uuid4().hex[:8]}",
    )


async def seed(store: Store) -> None:
    """``TOKENS`` Kiro nodes with their token files in one folder, as a migration writes
    them: each credential with every other file of the folder as a sibling."""
    nodes = [
        {"KIRO_OAUTH_CREDS_FILE_PATH": f"./{FOLDER}/{name(i)}", "uuid": f"k{i}"}
        for i in range(TOKENS)
    ]
    await store.pools.import_all(pools_from_json({KIRO: nodes}, "test"), keep_live_state=False)
    for i in range(TOKENS):
        credential = Credential(KIRO, f"k{i}", token(i), f"./{FOLDER}/{name(i)}", TokenFormat.KIRO)
        credential.siblings = siblings_of(i)
        await store.credentials.put(credential, ANY_VERSION)


def credential_keys(keys: Keys) -> list[str]:
    return [keys.credential(f"{FOLDER}/{name(i)}") for i in range(TOKENS)]


async def test_the_files_of_a_folder_are_stored_once(
    redis_url: str, prefix: str, raw: redis.Redis, tmp_path: Path
) -> None:
    keys = Keys(prefix)
    async with Store.open(settings(redis_url, prefix, tmp_path)) as store:
        await seed(store)
        for i in range(TOKENS):
            got = await store.credentials.get(KIRO, f"k{i}")
            assert got is not None and got.document == token(i)
            assert got.siblings == siblings_of(i)
            assert list(got.siblings) == sorted(got.siblings)  # directory order
            assert got.effective()["clientId"] == "FAKE-client"
    stored = raw.hgetall(keys.folder(FOLDER))
    files = {k: json.loads(v) for k, v in stored.items() if not k.startswith("@")}
    assert files == folder_files()  # every file once, each token's own too
    assert stored["@refs"] == str(TOKENS)
    for key in credential_keys(keys):
        fields = raw.hgetall(key)
        assert "siblings" not in fields  # no copy per credential
        assert fields["folder"] == f"{FOLDER}\x1f{key.rsplit('/', 1)[1]}"


async def test_a_second_process_sees_a_sibling_changed_through_another_credential(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """One folder, one set of files: the registration rewritten through k0 is what k1
    reads, also in a process that had read the folder before (its copy is checked by the
    folder's version)."""
    async with (
        Store.open(settings(redis_url, prefix, tmp_path)) as writer,
        Store.open(settings(redis_url, prefix, tmp_path)) as reader,
    ):
        await seed(writer)
        before = await reader.credentials.get(KIRO, "k1")
        assert before is not None and before.siblings["client.json"] == REGISTRATION
        k0 = await writer.credentials.get(KIRO, "k0")
        assert k0 is not None
        k0.siblings["client.json"] = {"clientId": "FAKE-new", "clientSecret": "FAKE-s2"}
        del k0.siblings[name(4)]
        await writer.credentials.put(k0, k0.version)
        after = await reader.credentials.get(KIRO, "k1")
        assert after is not None
        assert after.siblings["client.json"] == {"clientId": "FAKE-new", "clientSecret": "FAKE-s2"}
        assert name(4) not in after.siblings
        assert name(0) in after.siblings  # k0's own file stays a sibling of the others
        unchanged = await reader.credentials.get(KIRO, "k2")
        assert unchanged is not None and unchanged.siblings["client.json"]["clientId"] == (
            "FAKE-new"
        )


async def test_a_write_from_a_process_holding_an_older_folder_reads_it_again(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """A process whose copy of the folder is older than Redis's (another one changed a
    file since) has its write refused by the folder's version, reads the folder again and
    writes what it was given: the folder's other files are then exactly those (the last
    writer's, as for files on disk), for both processes."""
    async with (
        Store.open(settings(redis_url, prefix, tmp_path)) as first,
        Store.open(settings(redis_url, prefix, tmp_path)) as second,
    ):
        await seed(first)
        k3 = await second.credentials.get(KIRO, "k3")  # second's copy: the seeded folder
        assert k3 is not None
        k0 = await first.credentials.get(KIRO, "k0")
        assert k0 is not None
        k0.siblings["client.json"] = {"clientId": "FAKE-by-first"}
        await first.credentials.put(k0, k0.version)

        k3.document = {**k3.document, "accessToken": "refreshed"}
        k3.siblings["client.json"] = {"clientId": "FAKE-by-second"}
        version = await second.credentials.put(k3, k3.version)
        for store in (first, second):
            got = await store.credentials.get(KIRO, "k3")
            assert got is not None and got.version == version
            assert got.document["accessToken"] == "refreshed"
            assert got.siblings == k3.siblings
            other = await store.credentials.get(KIRO, "k1")
            assert other is not None
            assert other.siblings["client.json"] == {"clientId": "FAKE-by-second"}


async def test_the_folder_goes_with_its_last_credential(
    redis_url: str, prefix: str, raw: redis.Redis, tmp_path: Path
) -> None:
    keys = Keys(prefix)
    async with Store.open(settings(redis_url, prefix, tmp_path)) as store:
        await seed(store)
        assert await store.credentials.delete(KIRO, "k0")
        await store.pools.delete_node(KIRO, "k1")  # the last node naming its file
        assert raw.hget(keys.folder(FOLDER), "@refs") == str(TOKENS - 2)
        for i in range(2, TOKENS):
            await store.pools.delete_node(KIRO, f"k{i}")
    assert not raw.exists(keys.folder(FOLDER))


async def test_a_sibling_name_that_is_no_plain_json_file_name_is_refused(
    redis_url: str, prefix: str, raw: redis.Redis, tmp_path: Path
) -> None:
    async with Store.open(settings(redis_url, prefix, tmp_path)) as store:
        await seed(store)
        k0 = await store.credentials.get(KIRO, "k0")
        assert k0 is not None
        k0.siblings["../escape.json"] = {"x": 1}
        with pytest.raises(InvalidData, match="plain"):
            await store.credentials.put(k0, k0.version)
        again = await store.credentials.get(KIRO, "k0")
        assert again is not None and again.version == k0.version  # nothing written


def to_schema_2(raw: redis.Redis, prefix: str) -> None:
    """Rewrite a namespace as schema 2 kept it: a copy of the siblings (JSON, name →
    document) in every credential, no folder hashes."""
    keys = Keys(prefix)
    files = {k: json.loads(v) for k, v in raw.hgetall(keys.folder(FOLDER)).items() if k[0] != "@"}
    for key in credential_keys(keys):
        own = key.rsplit("/", 1)[1]
        copy = {n: d for n, d in sorted(files.items()) if n != own}
        raw.hset(key, "siblings", json.dumps(copy))
        raw.hdel(key, "folder")
    raw.delete(keys.folder(FOLDER))
    raw.hset(keys.meta, mapping={"schema": "2", "namespace": uuidlib.uuid4().hex})


@pytest.mark.parametrize("chain", sorted(CHAINS))
async def test_a_schema_2_namespace_is_upgraded_in_place(
    chain: str, redis_url: str, prefix: str, raw: redis.Redis, tmp_path: Path
) -> None:
    keys = Keys(prefix)
    async with Store.open(settings(redis_url, prefix, tmp_path)) as store:
        await seed(store)
    to_schema_2(raw, prefix)
    versions = {key: raw.hget(key, "ver") for key in credential_keys(keys)}
    async with Store.open(settings(redis_url, prefix, tmp_path, chain)) as store:
        for i in range(TOKENS):
            got = await store.credentials.get(KIRO, f"k{i}")
            assert got is not None and got.siblings == siblings_of(i)
            assert got.document == token(i)
    assert raw.hget(keys.meta, "schema") == str(SCHEMA_VERSION) == "3"
    stored = raw.hgetall(keys.folder(FOLDER))
    assert {k: json.loads(v) for k, v in stored.items() if k[0] != "@"} == folder_files()
    assert stored["@refs"] == str(TOKENS)
    for key in credential_keys(keys):
        assert not raw.hexists(key, "siblings")
        assert raw.hget(key, "ver") == versions[key]  # the documents were not rewritten
    # A second open finds nothing to do.
    async with Store.open(settings(redis_url, prefix, tmp_path)) as store:
        assert await store.credentials.get(KIRO, "k0") is not None
    assert raw.hget(keys.folder(FOLDER), "@refs") == str(TOKENS)


async def test_a_schema_1_namespace_with_sibling_copies_reaches_schema_3(
    redis_url: str, prefix: str, raw: redis.Redis, tmp_path: Path
) -> None:
    """Schema 1 kept the sibling copy in the node's credential: the upgrade moves it to the
    file's credential (1 → 2), then into the folder (2 → 3), in one open."""
    write_schema_1(raw, prefix)
    registration = {"clientId": "FAKE-reg", "clientSecret": "FAKE-reg-secret"}
    kept = Keys(prefix).legacy_credential(KIRO, "b")  # the one kept for the shared file
    raw.hset(kept, "siblings", json.dumps({"reg.json": registration}))
    async with Store.open(settings(redis_url, prefix, tmp_path)) as store:
        for uuid in ("a", "b"):
            got = await store.credentials.get(KIRO, uuid)
            assert got is not None and got.siblings == {"reg.json": registration}
            assert got.effective()["clientId"] == "FAKE-reg"
    keys = Keys(prefix)
    assert raw.hget(keys.meta, "schema") == "3"
    folder = keys.folder(posixpath.dirname(SHARED))
    assert json.loads(raw.hget(folder, "reg.json") or "null") == registration
    assert raw.hget(folder, "@refs") == "1"
    assert not raw.hexists(keys.credential(SHARED), "siblings")


async def test_a_token_written_updates_the_folders_copy_of_its_file_once(
    redis_url: str, prefix: str, raw: redis.Redis, tmp_path: Path
) -> None:
    """A token of a shared folder written without siblings (a refresh) sets the folder's
    copy of its file in the same script: still one copy of each file. A token alone in its
    folder beside its registration costs no copy, and its refresh leaves the folder as it
    was (no new folder version: the other credentials' caches keep it)."""
    keys = Keys(prefix)
    async with Store.open(settings(redis_url, prefix, tmp_path)) as store:
        await seed(store)
        k1 = await store.credentials.get(KIRO, "k1")
        assert k1 is not None
        fresh = {**k1.document, "accessToken": "refreshed"}
        await store.credentials.put(Credential(KIRO, "k1", fresh), k1.version)
        stored = raw.hgetall(keys.folder(FOLDER))
        files = {k: json.loads(v) for k, v in stored.items() if not k.startswith("@")}
        assert files == {**folder_files(), name(1): fresh}
        k2 = await store.credentials.get(KIRO, "k2")
        assert k2 is not None and k2.siblings[name(1)] == fresh

        alone = "configs/kiro/alone"
        node = {"KIRO_OAUTH_CREDS_FILE_PATH": f"{alone}/t.json", "uuid": "solo"}
        await store.pools.add_node(KIRO, node_from_json(node, "t"))
        solo = Credential(KIRO, "solo", token(9), siblings={"client.json": REGISTRATION})
        version = await store.credentials.put(solo, None)
        before = raw.hgetall(keys.folder(alone))
        assert set(before) == {"client.json", "@ver", "@refs"}
        await store.credentials.put(Credential(KIRO, "solo", token(10)), version)
        assert raw.hgetall(keys.folder(alone)) == before
