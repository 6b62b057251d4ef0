"""Credentials: looked up by (type, uuid), one per token file (nodes naming one file share
it), compare-and-set, follow their node on rename."""

from __future__ import annotations

import asyncio

import pytest

from cfgstore.adapters import Store
from cfgstore.errors import InvalidData, NotFound, VersionConflict
from cfgstore.model.credentials import Credential, TokenFormat, apply_refresh
from cfgstore.model.versions import ANY_VERSION
from tests.contract.conftest import Deployment
from tests.contract.helpers import make_node
from tests.support.waiting import until

KIRO = "claude-kiro-oauth"


def kiro_doc(access: str) -> dict[str, object]:
    return {
        "accessToken": access,
        "refreshToken": "FAKE-refresh",
        "profileArn": "arn:aws:codewhisperer:us-east-1:000000000000:profile/FAKE",
        "expiresAt": "2030-01-01T00:00:00.000Z",
        "authMethod": "social",
        "region": "us-east-1",
    }


async def test_absent_credential_is_none(store: Store) -> None:
    assert await store.credentials.get(KIRO, "nobody") is None
    await store.pools.add_node(KIRO, make_node("k1"))
    assert await store.credentials.get(KIRO, "k1") is None
    assert await store.credentials.list() == []


async def test_create_read_and_compare_and_set(store: Store) -> None:
    await store.pools.add_node(KIRO, make_node("k1"))
    v1 = await store.credentials.put(Credential(KIRO, "k1", kiro_doc("A1")), None)
    cred = await store.credentials.get(KIRO, "k1")
    assert cred is not None and cred.document == kiro_doc("A1") and cred.version == v1
    assert list(cred.document) == list(kiro_doc("A1"))
    assert cred.token_format is TokenFormat.KIRO

    with pytest.raises(VersionConflict):  # "create" when it exists
        await store.credentials.put(Credential(KIRO, "k1", kiro_doc("X")), None)

    fresh = apply_refresh(cred.document, {"accessToken": "A2"}, cred.token_format)
    v2 = await store.credentials.put(Credential(KIRO, "k1", fresh), v1)
    assert v2 != v1
    with pytest.raises(VersionConflict) as info:  # a second refresh that read v1 loses
        await store.credentials.put(Credential(KIRO, "k1", kiro_doc("stale")), v1)
    assert info.value.expected == v1
    got = await store.credentials.get(KIRO, "k1")
    assert got is not None and got.document["accessToken"] == "A2"
    assert got.document["profileArn"] == kiro_doc("A1")["profileArn"]  # merge kept fields

    await store.credentials.put(Credential(KIRO, "k1", kiro_doc("forced")), ANY_VERSION)
    got = await store.credentials.get(KIRO, "k1")
    assert got is not None and got.document["accessToken"] == "forced"


async def test_credentials_of_different_nodes_are_independent(store: Store) -> None:
    await store.pools.add_node(KIRO, make_node("k1"))
    await store.pools.add_node(KIRO, make_node("k2"))
    await store.pools.add_node("gemini-cli-oauth", make_node("g1", PROJECT_ID="p"))
    await store.credentials.put(Credential(KIRO, "k1", kiro_doc("one")), None)
    await store.credentials.put(Credential(KIRO, "k2", kiro_doc("two")), None)
    google = {"access_token": "ya29.FAKE", "refresh_token": "1//FAKE", "expiry_date": 1780131600000}
    await store.credentials.put(Credential("gemini-cli-oauth", "g1", google), None)
    refs = await store.credentials.list()
    assert [(r.provider_type, r.uuid) for r in refs] == [
        (KIRO, "k1"),
        (KIRO, "k2"),
        ("gemini-cli-oauth", "g1"),
    ]
    g = await store.credentials.get("gemini-cli-oauth", "g1")
    assert g is not None and g.expiry_ms() == 1780131600000
    k2 = await store.credentials.get(KIRO, "k2")
    assert k2 is not None and k2.document["accessToken"] == "two"


async def test_credential_follows_node_rename(store: Store) -> None:
    await store.pools.add_node(KIRO, make_node("old"))
    await store.credentials.put(Credential(KIRO, "old", kiro_doc("mine")), None)
    await store.pools.rename_node(KIRO, "old", "new")
    assert await store.credentials.get(KIRO, "old") is None
    moved = await store.credentials.get(KIRO, "new")
    assert moved is not None and moved.document["accessToken"] == "mine"


async def test_delete_credential(store: Store) -> None:
    await store.pools.add_node(KIRO, make_node("k1"))
    await store.credentials.put(Credential(KIRO, "k1", kiro_doc("x")), None)
    assert await store.credentials.delete(KIRO, "k1") is True
    assert await store.credentials.delete(KIRO, "k1") is False
    assert await store.credentials.get(KIRO, "k1") is None


async def test_credential_for_missing_node_or_keyless_type_is_refused(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.credentials.put(Credential(KIRO, "ghost", kiro_doc("x")), None)
    await store.pools.add_node("openai-custom", make_node("api-key-node"))
    with pytest.raises(InvalidData):
        await store.credentials.put(Credential("openai-custom", "api-key-node", {"k": 1}), None)


async def test_refresh_lock_is_exclusive_and_released_by_its_holder(store: Store) -> None:
    await store.pools.add_node(KIRO, make_node("k1"))
    await store.pools.add_node(KIRO, make_node("k2"))
    token = await store.credentials.lock(KIRO, "k1", 60_000)
    assert token
    assert await store.credentials.lock(KIRO, "k1", 60_000) is None  # held
    other = await store.credentials.lock(KIRO, "k2", 60_000)  # another account: independent
    assert other and other != token
    assert await store.credentials.unlock(KIRO, "k1", "not-the-token") is False
    assert await store.credentials.lock(KIRO, "k1", 60_000) is None  # still held
    assert await store.credentials.unlock(KIRO, "k1", token) is True
    assert await store.credentials.unlock(KIRO, "k1", token) is False
    again = await store.credentials.lock(KIRO, "k1", 60_000)
    assert again and again != token


async def test_refresh_lock_expires(store: Store) -> None:
    await store.pools.add_node(KIRO, make_node("k1"))
    stale = await store.credentials.lock(KIRO, "k1", 1)
    assert stale
    # A 1 ms lock is expired by the time the next call reaches the store (time moves on;
    # this waits for no event, it only needs the clock to have advanced one millisecond).
    fresh = None
    for _ in range(1000):
        fresh = await store.credentials.lock(KIRO, "k1", 60_000)
        if fresh:
            break
    assert fresh and fresh != stale
    assert await store.credentials.unlock(KIRO, "k1", stale) is False  # the old holder lost it
    assert await store.credentials.unlock(KIRO, "k1", fresh) is True


async def test_deleting_a_node_makes_its_credential_unreachable(store: Store) -> None:
    await store.pools.add_node(KIRO, make_node("gone", KIRO_OAUTH_CREDS_FILE_PATH="./k/g.json"))
    await store.pools.add_node(KIRO, make_node("kept"))
    await store.credentials.put(Credential(KIRO, "gone", kiro_doc("g")), None)
    await store.credentials.put(Credential(KIRO, "kept", kiro_doc("k")), None)
    assert await store.credentials.get(KIRO, "gone") is not None  # read (and cached) first
    await store.pools.delete_node(KIRO, "gone")
    assert await store.credentials.get(KIRO, "gone") is None
    assert [r.uuid for r in await store.credentials.list()] == ["kept"]


async def test_refresh_lock_stays_with_the_uuid_it_was_taken_for(store: Store) -> None:
    await store.pools.add_node(KIRO, make_node("before"))
    token = await store.credentials.lock(KIRO, "before", 60_000)
    assert token
    await store.pools.rename_node(KIRO, "before", "after")
    assert await store.credentials.unlock(KIRO, "before", token) is True
    fresh = await store.credentials.lock(KIRO, "after", 60_000)
    assert fresh
    assert await store.credentials.unlock(KIRO, "after", fresh) is True


# -- one token file, one credential ------------------------------------------------------

PATH_KEY = "KIRO_OAUTH_CREDS_FILE_PATH"
SPELLINGS = ("./configs/kiro/x/x.json", "configs/kiro/x/x.json", "configs\\kiro\\x\\x.json")
"""Three spellings of one file, as the Node service resolves them."""


async def add_sharing(store: Store, *uuids: str) -> None:
    """Nodes ``uuids`` naming one token file, each in another spelling."""
    for uuid, spelling in zip(uuids, SPELLINGS, strict=False):
        await store.pools.add_node(KIRO, make_node(uuid, **{PATH_KEY: spelling}))


async def test_nodes_naming_one_file_share_one_credential(store: Store) -> None:
    await add_sharing(store, "a", "b", "c")
    await store.pools.add_node(KIRO, make_node("alone", **{PATH_KEY: "configs/kiro/y.json"}))
    assert await store.credentials.get(KIRO, "b") is None  # read (and cached) first
    v1 = await store.credentials.put(Credential(KIRO, "a", kiro_doc("A1")), None)
    for uuid in ("a", "b", "c"):
        seen = await store.credentials.get(KIRO, uuid)
        assert seen is not None and seen.document == kiro_doc("A1") and seen.version == v1
        assert (seen.provider_type, seen.uuid) == (KIRO, uuid)
    assert await store.credentials.get(KIRO, "alone") is None

    with pytest.raises(VersionConflict):  # "create" through another node: it exists
        await store.credentials.put(Credential(KIRO, "c", kiro_doc("X")), None)
    v2 = await store.credentials.put(Credential(KIRO, "b", kiro_doc("B2")), v1)
    with pytest.raises(VersionConflict):  # a refresh through A that read v1 loses
        await store.credentials.put(Credential(KIRO, "a", kiro_doc("stale")), v1)
    for uuid in ("a", "b", "c"):
        seen = await store.credentials.get(KIRO, uuid)
        assert seen is not None and seen.document == kiro_doc("B2") and seen.version == v2

    await store.credentials.put(Credential(KIRO, "alone", kiro_doc("Y")), None)
    refs = await store.credentials.list()  # the shared credential once, under its first node
    assert [(r.provider_type, r.uuid) for r in refs] == [(KIRO, "a"), (KIRO, "alone")]
    assert refs[0].version == v2


async def test_a_refresh_through_one_node_reaches_another_instance_through_the_other(
    deployment: Deployment,
) -> None:
    """Instance two has read the credential through node B; a refresh through node A on
    instance one reaches it (its cache drops every node sharing the file)."""
    async with deployment.open() as one, deployment.open() as two:
        if "redis" not in deployment.settings.chain:
            two = one  # files: one process (other processes' token edits are not watched)
        await add_sharing(one, "a", "b")
        await one.credentials.put(Credential(KIRO, "a", kiro_doc("before")), None)
        await until(lambda: _access(two, "b", "before"), "instance two reads B")
        current = await one.credentials.get(KIRO, "a")
        assert current is not None
        await one.credentials.put(Credential(KIRO, "a", kiro_doc("after")), current.version)
        await until(lambda: _access(two, "b", "after"), "the refresh through A seen through B")


async def _access(store: Store, uuid: str, token: str) -> bool:
    seen = await store.credentials.get(KIRO, uuid)
    return seen is not None and seen.document["accessToken"] == token


async def test_the_refresh_lock_is_the_files(store: Store) -> None:
    await add_sharing(store, "a", "b")
    await store.pools.add_node(KIRO, make_node("other", **{PATH_KEY: "configs/kiro/o.json"}))
    token = await store.credentials.lock(KIRO, "a", 60_000)
    assert token
    assert await store.credentials.lock(KIRO, "b", 60_000) is None  # the same file: held
    other = await store.credentials.lock(KIRO, "other", 60_000)
    assert other and await store.credentials.unlock(KIRO, "other", other) is True
    await store.pools.rename_node(KIRO, "a", "a2")  # the holder's node renamed meanwhile
    assert await store.credentials.unlock(KIRO, "a", token) is True
    again = await store.credentials.lock(KIRO, "b", 60_000)
    assert again and await store.credentials.unlock(KIRO, "b", again) is True


async def test_concurrent_refreshes_through_sharing_nodes_have_one_winner(store: Store) -> None:
    await add_sharing(store, "a", "b", "c")
    version = await store.credentials.put(Credential(KIRO, "a", kiro_doc("0")), None)

    async def refresh(uuid: str) -> str | None:
        try:
            return await store.credentials.put(Credential(KIRO, uuid, kiro_doc(uuid)), version)
        except VersionConflict:
            return None

    results = await asyncio.wait_for(
        asyncio.gather(*(refresh(u) for u in ("a", "b", "c") * 3)), timeout=60
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1


async def test_a_shared_credential_outlives_all_but_the_last_of_its_nodes(store: Store) -> None:
    await add_sharing(store, "a", "b", "c")
    await store.credentials.put(Credential(KIRO, "a", kiro_doc("shared")), None)
    await store.pools.delete_node(KIRO, "a")
    assert await store.credentials.get(KIRO, "a") is None
    await store.pools.rename_node(KIRO, "b", "b2")
    for uuid in ("b2", "c"):
        seen = await store.credentials.get(KIRO, uuid)
        assert seen is not None and seen.document["accessToken"] == "shared"
    assert [r.uuid for r in await store.credentials.list()] == ["b2"]
    changes = {"customName": "renamed", PATH_KEY: SPELLINGS[0]}  # another spelling, same file
    await store.pools.update_node(KIRO, "c", changes)
    seen = await store.credentials.get(KIRO, "c")
    assert seen is not None and seen.document["accessToken"] == "shared"

    assert await store.credentials.delete(KIRO, "c") is True  # for every node naming it
    assert await store.credentials.get(KIRO, "b2") is None
    assert await store.credentials.delete(KIRO, "b2") is False
    assert await store.credentials.list() == []


async def test_a_node_added_naming_a_stored_file_shares_its_credential(store: Store) -> None:
    await add_sharing(store, "a")
    version = await store.credentials.put(Credential(KIRO, "a", kiro_doc("first")), None)
    await store.pools.add_node(KIRO, make_node("late", **{PATH_KEY: SPELLINGS[1]}))
    late = await store.credentials.get(KIRO, "late")
    assert late is not None and late.document["accessToken"] == "first"
    assert late.version == version
