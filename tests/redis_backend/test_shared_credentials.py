"""One token file, one credential, in the Redis key schema (``redis-keys.md``): the node's
``@cred`` and the credential's ``users`` stay in step through every pool edit, a re-pointed
node's credential follows it, and the last node naming a file takes its credential along.
The store-level contract (every backend) is in ``tests/contract/test_credentials.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from cfgstore.adapters import Store
from cfgstore.errors import VersionConflict
from cfgstore.model.credentials import Credential
from cfgstore.model.pools import ProviderPools
from cfgstore_redis.keys import Keys
from tests.contract.helpers import make_node
from tests.redis_backend.namespaces import Spec, settings_of

KIRO = "claude-kiro-oauth"
PATH_KEY = "KIRO_OAUTH_CREDS_FILE_PATH"
X, Y = "configs/kiro/x/x.json", "configs/kiro/y/y.json"


def doc(access: str) -> dict[str, object]:
    return {"accessToken": access, "refreshToken": "FAKE", "expiresAt": "2030-01-01T00:00:00Z"}


@pytest.fixture
async def store(spec: Spec) -> AsyncIterator[Store]:
    async with Store.open(settings_of(spec)) as opened:
        yield opened


@pytest.fixture
async def raw(spec: Spec) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(spec["redis_url"], decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def users(raw: aioredis.Redis, spec: Spec, file_key: str) -> list[str]:
    value = await raw.hget(Keys(spec["redis_prefix"]).credential(file_key), "users")
    return value.split("\x1f") if value else []


async def add(store: Store, uuid: str, path: str) -> None:
    await store.pools.add_node(KIRO, make_node(uuid, **{PATH_KEY: path}))


async def access(store: Store, uuid: str) -> str | None:
    credential = await store.credentials.get(KIRO, uuid)
    return None if credential is None else str(credential.document["accessToken"])


async def test_links_follow_adds_renames_and_deletes(
    store: Store, raw: aioredis.Redis, spec: Spec
) -> None:
    keys = Keys(spec["redis_prefix"])
    await add(store, "a", f"./{X}")
    await add(store, "b", X.replace("/", "\\"))
    assert await raw.hget(keys.node(KIRO, "a"), "@cred") == X
    assert await raw.hget(keys.node(KIRO, "b"), "@cred") == X
    assert await users(raw, spec, X) == [f"{KIRO}:a", f"{KIRO}:b"]
    await store.credentials.put(Credential(KIRO, "a", doc("shared")), None)

    await store.pools.rename_node(KIRO, "a", "a2")
    assert await users(raw, spec, X) == [f"{KIRO}:a2", f"{KIRO}:b"]
    await store.pools.delete_node(KIRO, "b")
    assert await users(raw, spec, X) == [f"{KIRO}:a2"]
    assert await access(store, "a2") == "shared"
    await store.pools.delete_node(KIRO, "a2")  # the last node: the credential goes along
    assert await raw.exists(keys.credential(X)) == 0


async def test_a_re_pointed_node_takes_its_credential_along(
    store: Store, raw: aioredis.Redis, spec: Spec
) -> None:
    await add(store, "a", X)
    await add(store, "b", X)
    await store.credentials.put(Credential(KIRO, "a", doc("shared")), None)

    # X stays B's; A's credential is copied to Y, which held none: two credentials now.
    await store.pools.update_node(KIRO, "a", {PATH_KEY: Y})
    assert await users(raw, spec, X) == [f"{KIRO}:b"]
    assert await users(raw, spec, Y) == [f"{KIRO}:a"]
    moved = await store.credentials.get(KIRO, "a")
    kept = await store.credentials.get(KIRO, "b")
    assert moved is not None and kept is not None
    assert moved.document == kept.document and moved.version != kept.version
    assert moved.source_path == Y
    await store.credentials.put(Credential(KIRO, "a", doc("a's own")), moved.version)
    assert await access(store, "b") == "shared"

    # B moves to Y, which holds a credential: B shares it; X, named by nobody, goes.
    await store.pools.update_node(KIRO, "b", {PATH_KEY: f"./{Y}"})
    assert await access(store, "b") == "a's own"
    assert await raw.exists(Keys(spec["redis_prefix"]).credential(X)) == 0
    assert await users(raw, spec, Y) == [f"{KIRO}:a", f"{KIRO}:b"]


async def test_a_write_read_before_its_node_was_re_pointed_is_refused(
    store: Store, raw: aioredis.Redis, spec: Spec
) -> None:
    """Versions are never reused across files: a refresh that read X, finishing after its
    node was pointed at Y, does not land in Y."""
    await add(store, "a", X)
    await add(store, "y", Y)
    read = await store.credentials.put(Credential(KIRO, "a", doc("x")), None)
    await store.credentials.put(Credential(KIRO, "y", doc("y")), None)
    await store.pools.update_node(KIRO, "a", {PATH_KEY: Y})
    with pytest.raises(VersionConflict):
        await store.credentials.put(Credential(KIRO, "a", doc("x refreshed")), read)
    assert await access(store, "a") == "y"


async def test_an_import_keeps_a_file_named_before_and_after(
    store: Store, raw: aioredis.Redis, spec: Spec
) -> None:
    """Node ``old`` is replaced by ``new`` naming the same file: the credential stays."""
    await add(store, "old", X)
    await add(store, "gone", Y)
    await store.credentials.put(Credential(KIRO, "old", doc("kept")), None)
    await store.credentials.put(Credential(KIRO, "gone", doc("dropped")), None)
    pools = ProviderPools({KIRO: [make_node("new", **{PATH_KEY: f"./{X}"})]})
    for keep in (True, False):
        await store.pools.import_all(pools, keep_live_state=keep)
        assert await access(store, "new") == "kept"
        assert await users(raw, spec, X) == [f"{KIRO}:new"]
        assert await raw.exists(Keys(spec["redis_prefix"]).credential(Y)) == 0
