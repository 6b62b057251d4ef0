"""Credentials: looked up by (type, uuid), one per token file (nodes naming one file share
it), compare-and-set, follow their node on rename (``cfgstore.hookspecs.credentials``)."""

from __future__ import annotations

import asyncio
import copy

import attrs
import pytest

from cfgstore.adapters import Store
from cfgstore.adapters.backend import FOLDER_SIBLINGS
from cfgstore.errors import InvalidData, NotFound, VersionConflict
from cfgstore.model.credentials import Credential, TokenFormat, apply_refresh, credential_path_of
from cfgstore.model.pools import node_to_json
from cfgstore.model.versions import ANY_VERSION
from cfgstore.testing.builders import make_node
from cfgstore.testing.deployment import Deployment
from cfgstore.testing.fixtures import deployment_fixture, store_fixture  # noqa: F401
from cfgstore.testing.rules import rule, rule_raises
from cfgstore.testing.waiting import until

pytestmark = pytest.mark.asyncio  # every test here is a coroutine

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
    with rule("cfgstore_credentials_get", "None when the node or its credential is absent"):
        assert await store.credentials.get(KIRO, "nobody") is None
        await store.pools.add_node(KIRO, make_node("k1"))
        assert await store.credentials.get(KIRO, "k1") is None
    with rule("cfgstore_credentials_list", "an empty store lists no credential"):
        assert await store.credentials.list() == []


async def test_create_read_and_compare_and_set(store: Store) -> None:
    await store.pools.add_node(KIRO, make_node("k1"))
    v1 = await store.credentials.put(Credential(KIRO, "k1", kiro_doc("A1")), None)
    cred = await store.credentials.get(KIRO, "k1")
    with rule(
        "cfgstore_credentials_get",
        "returns the document as stored (key order too) with the version put returned",
    ):
        assert cred is not None and cred.document == kiro_doc("A1") and cred.version == v1
        assert list(cred.document) == list(kiro_doc("A1"))
        assert cred.token_format is TokenFormat.KIRO

    with (
        rule(
            "cfgstore_credentials_put",
            "expected_version None when one exists raises VersionConflict",
        ),
        pytest.raises(VersionConflict),
    ):
        await store.credentials.put(Credential(KIRO, "k1", kiro_doc("X")), None)

    fresh = apply_refresh(cred.document, {"accessToken": "A2"}, cred.token_format)
    v2 = await store.credentials.put(Credential(KIRO, "k1", fresh), v1)
    with rule("cfgstore_credentials_put", "every write returns a new version"):
        assert v2 != v1
    with rule(
        "cfgstore_credentials_put",
        "a stale expected_version raises VersionConflict "
        "naming it (VersionConflict.expected) and writes nothing",
    ):
        with pytest.raises(VersionConflict) as info:
            await store.credentials.put(Credential(KIRO, "k1", kiro_doc("stale")), v1)
        assert info.value.expected == v1
        got = await store.credentials.get(KIRO, "k1")
        assert got is not None and got.document["accessToken"] == "A2"
        assert got.document["profileArn"] == kiro_doc("A1")["profileArn"]

    await store.credentials.put(Credential(KIRO, "k1", kiro_doc("forced")), ANY_VERSION)
    with rule("cfgstore_credentials_put", "ANY_VERSION overwrites unconditionally"):
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
    with rule("cfgstore_credentials_list", "every stored credential, in pool order"):
        refs = await store.credentials.list()
        assert [(r.provider_type, r.uuid) for r in refs] == [
            (KIRO, "k1"),
            (KIRO, "k2"),
            ("gemini-cli-oauth", "g1"),
        ]
    with rule("cfgstore_credentials_get", "each node's credential is its own"):
        g = await store.credentials.get("gemini-cli-oauth", "g1")
        assert g is not None and g.expiry_ms() == 1780131600000
        k2 = await store.credentials.get(KIRO, "k2")
        assert k2 is not None and k2.document["accessToken"] == "two"


async def test_credential_follows_node_rename(store: Store) -> None:
    await store.pools.add_node(KIRO, make_node("old"))
    await store.credentials.put(Credential(KIRO, "old", kiro_doc("mine")), None)
    await store.pools.rename_node(KIRO, "old", "new")
    with rule("cfgstore_pools_rename_node", "the stored credential moves with the node"):
        assert await store.credentials.get(KIRO, "old") is None
        moved = await store.credentials.get(KIRO, "new")
        assert moved is not None and moved.document["accessToken"] == "mine"


async def test_delete_credential(store: Store) -> None:
    await store.pools.add_node(KIRO, make_node("k1"))
    await store.credentials.put(Credential(KIRO, "k1", kiro_doc("x")), None)
    with rule("cfgstore_credentials_delete", "returns whether one existed; it is gone after"):
        assert await store.credentials.delete(KIRO, "k1") is True
        assert await store.credentials.delete(KIRO, "k1") is False
        assert await store.credentials.get(KIRO, "k1") is None


async def test_credential_for_missing_node_or_keyless_type_is_refused(store: Store) -> None:
    with rule_raises("cfgstore_credentials_put", "an absent node raises NotFound", NotFound):
        await store.credentials.put(Credential(KIRO, "ghost", kiro_doc("x")), None)
    await store.pools.add_node("openai-custom", make_node("api-key-node"))
    with (
        rule(
            "cfgstore_credentials_put",
            "a provider type that keeps no credential files (an API-key type) raises InvalidData",
        ),
        pytest.raises(InvalidData),
    ):
        doc = {"k": 1}
        await store.credentials.put(Credential("openai-custom", "api-key-node", doc), None)


async def test_refresh_lock_is_exclusive_and_released_by_its_holder(store: Store) -> None:
    await store.pools.add_node(KIRO, make_node("k1"))
    await store.pools.add_node(KIRO, make_node("k2"))
    with rule(
        "cfgstore_credentials_lock",
        "a free lock returns a token, a held one None; each credential has its own",
    ):
        token = await store.credentials.lock(KIRO, "k1", 60_000)
        assert token
        assert await store.credentials.lock(KIRO, "k1", 60_000) is None
        other = await store.credentials.lock(KIRO, "k2", 60_000)
        assert other and other != token
    with rule("cfgstore_credentials_unlock", "only the holder's token releases the lock, once"):
        assert await store.credentials.unlock(KIRO, "k1", "not-the-token") is False
        assert await store.credentials.lock(KIRO, "k1", 60_000) is None
        assert await store.credentials.unlock(KIRO, "k1", token) is True
        assert await store.credentials.unlock(KIRO, "k1", token) is False
    with rule("cfgstore_credentials_lock", "a released lock can be taken again (new token)"):
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
    with rule("cfgstore_credentials_lock", "a lock expires by itself after ttl_ms"):
        assert fresh and fresh != stale
    with rule("cfgstore_credentials_unlock", "an expired lock taken by someone else is left alone"):
        assert await store.credentials.unlock(KIRO, "k1", stale) is False
        assert await store.credentials.unlock(KIRO, "k1", fresh) is True


async def test_deleting_a_node_makes_its_credential_unreachable(store: Store) -> None:
    await store.pools.add_node(KIRO, make_node("gone", KIRO_OAUTH_CREDS_FILE_PATH="./k/g.json"))
    await store.pools.add_node(KIRO, make_node("kept"))
    await store.credentials.put(Credential(KIRO, "gone", kiro_doc("g")), None)
    await store.credentials.put(Credential(KIRO, "kept", kiro_doc("k")), None)
    assert await store.credentials.get(KIRO, "gone") is not None  # read (and cached) first
    await store.pools.delete_node(KIRO, "gone")
    with rule(
        "cfgstore_pools_delete_node",
        "the deleted node's credential is unreachable (get None, not listed)",
    ):
        assert await store.credentials.get(KIRO, "gone") is None
        assert [r.uuid for r in await store.credentials.list()] == ["kept"]


async def test_refresh_lock_stays_with_the_uuid_it_was_taken_for(store: Store) -> None:
    await store.pools.add_node(KIRO, make_node("before"))
    token = await store.credentials.lock(KIRO, "before", 60_000)
    assert token
    await store.pools.rename_node(KIRO, "before", "after")
    with rule(
        "cfgstore_pools_rename_node",
        "a refresh lock stays with the uuid it was taken for: its holder releases it by that name",
    ):
        assert await store.credentials.unlock(KIRO, "before", token) is True
        fresh = await store.credentials.lock(KIRO, "after", 60_000)
        assert fresh
        assert await store.credentials.unlock(KIRO, "after", fresh) is True


async def test_credentials_returned_are_copies(store: Store) -> None:
    await store.pools.add_node(KIRO, make_node("k1"))
    await store.credentials.put(Credential(KIRO, "k1", kiro_doc("mine")), None)
    got = await store.credentials.get(KIRO, "k1")
    assert got is not None
    got.document["accessToken"] = "poison"
    with rule(
        "cfgstore_credentials_get",
        "values returned are copies: mutating the document changes nothing in the store",
    ):
        again = await store.credentials.get(KIRO, "k1")
        assert again is not None and again.document["accessToken"] == "mine"


async def test_a_credential_put_for_a_node_without_a_path_gets_one(
    deployment: Deployment,
) -> None:
    """Checked on the bottom backend alone: it is the one that assigns the path."""
    async with deployment.open(backends=deployment.settings.chain[-1:]) as store:
        await store.pools.add_node(KIRO, make_node("k1"))
        await store.credentials.put(Credential(KIRO, "k1", kiro_doc("mine")), None)
        with rule(
            "cfgstore_credentials_put",
            "a node that names no token path is given one (new_credential_path), and the "
            "credential lists it as its source_path",
        ):
            node = await store.pools.get_node(KIRO, "k1")
            assert node is not None
            carrier = credential_path_of(KIRO, node)
            assert carrier is not None, f"the node names no token path: {node_to_json(node)}"
            [ref] = await store.credentials.list()
            assert ref.source_path == carrier[1]


# -- one token file, one credential ------------------------------------------------------

PATH_KEY = "KIRO_OAUTH_CREDS_FILE_PATH"
SPELLINGS = ("./configs/kiro/x/x.json", "configs/kiro/x/x.json", "configs\\kiro\\x\\x.json")
"""Three spellings of one file, as the Node service resolves them."""
ONE_FILE = "nodes naming one token file (any spelling) share one credential"


async def add_sharing(store: Store, *uuids: str) -> None:
    """Nodes ``uuids`` naming one token file, each in another spelling."""
    for uuid, spelling in zip(uuids, SPELLINGS, strict=False):
        await store.pools.add_node(KIRO, make_node(uuid, **{PATH_KEY: spelling}))


async def test_nodes_naming_one_file_share_one_credential(store: Store) -> None:
    await add_sharing(store, "a", "b", "c")
    await store.pools.add_node(KIRO, make_node("alone", **{PATH_KEY: "configs/kiro/y.json"}))
    assert await store.credentials.get(KIRO, "b") is None  # read (and cached) first
    v1 = await store.credentials.put(Credential(KIRO, "a", kiro_doc("A1")), None)
    with rule("cfgstore_credentials_get", f"{ONE_FILE}: the same document and version"):
        for uuid in ("a", "b", "c"):
            seen = await store.credentials.get(KIRO, uuid)
            assert seen is not None and seen.document == kiro_doc("A1") and seen.version == v1
            assert (seen.provider_type, seen.uuid) == (KIRO, uuid)
        assert await store.credentials.get(KIRO, "alone") is None

    with rule_raises("cfgstore_credentials_put", f"{ONE_FILE}: it exists", VersionConflict):
        await store.credentials.put(Credential(KIRO, "c", kiro_doc("X")), None)
    v2 = await store.credentials.put(Credential(KIRO, "b", kiro_doc("B2")), v1)
    with rule_raises(
        "cfgstore_credentials_put", f"{ONE_FILE}: a refresh that read v1 loses", VersionConflict
    ):
        await store.credentials.put(Credential(KIRO, "a", kiro_doc("stale")), v1)
    with rule("cfgstore_credentials_get", f"{ONE_FILE}: a write through one is read by all"):
        for uuid in ("a", "b", "c"):
            seen = await store.credentials.get(KIRO, uuid)
            assert seen is not None and seen.document == kiro_doc("B2") and seen.version == v2

    await store.credentials.put(Credential(KIRO, "alone", kiro_doc("Y")), None)
    with rule("cfgstore_credentials_list", "a shared credential once, under its first node"):
        refs = await store.credentials.list()
        assert [(r.provider_type, r.uuid) for r in refs] == [(KIRO, "a"), (KIRO, "alone")]
        assert refs[0].version == v2


async def test_a_refresh_through_one_node_reaches_another_instance_through_the_other(
    deployment: Deployment,
) -> None:
    """Instance two has read the credential through node B; a refresh through node A on
    instance one reaches it (its cache drops every node sharing the file). Without a
    ``change-feed`` (files: other processes' token edits are not watched), one instance."""
    async with deployment.open() as one, deployment.open() as two:
        if "change-feed" not in deployment.capabilities:
            two = one
        await add_sharing(one, "a", "b")
        await one.credentials.put(Credential(KIRO, "a", kiro_doc("before")), None)
        with rule("cfgstore_credentials_get", f"{ONE_FILE}, across instances"):
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
    with rule("cfgstore_credentials_lock", "the refresh lock is the file's, not the node's"):
        assert await store.credentials.lock(KIRO, "b", 60_000) is None  # the same file: held
        other = await store.credentials.lock(KIRO, "other", 60_000)
        assert other and await store.credentials.unlock(KIRO, "other", other) is True
    await store.pools.rename_node(KIRO, "a", "a2")  # the holder's node renamed meanwhile
    with rule("cfgstore_credentials_unlock", "the token releases the lock it was given for"):
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
    with rule("cfgstore_credentials_put", f"{ONE_FILE}: one compare-and-set winner"):
        assert len([r for r in results if r is not None]) == 1


async def test_a_shared_credential_outlives_all_but_the_last_of_its_nodes(store: Store) -> None:
    await add_sharing(store, "a", "b", "c")
    await store.credentials.put(Credential(KIRO, "a", kiro_doc("shared")), None)
    await store.pools.delete_node(KIRO, "a")
    with rule("cfgstore_pools_delete_node", "the other nodes keep the file's credential"):
        assert await store.credentials.get(KIRO, "a") is None
        await store.pools.rename_node(KIRO, "b", "b2")
        for uuid in ("b2", "c"):
            seen = await store.credentials.get(KIRO, uuid)
            assert seen is not None and seen.document["accessToken"] == "shared"
        assert [r.uuid for r in await store.credentials.list()] == ["b2"]
    changes = {"customName": "renamed", PATH_KEY: SPELLINGS[0]}  # another spelling, same file
    await store.pools.update_node(KIRO, "c", changes)
    with rule("cfgstore_pools_update_node", "another spelling of the same file keeps it"):
        seen = await store.credentials.get(KIRO, "c")
        assert seen is not None and seen.document["accessToken"] == "shared"

    with rule("cfgstore_credentials_delete", "a delete is the file's, for every node naming it"):
        assert await store.credentials.delete(KIRO, "c") is True
        assert await store.credentials.get(KIRO, "b2") is None
        assert await store.credentials.delete(KIRO, "b2") is False
        assert await store.credentials.list() == []


async def test_a_node_added_naming_a_stored_file_shares_its_credential(store: Store) -> None:
    await add_sharing(store, "a")
    version = await store.credentials.put(Credential(KIRO, "a", kiro_doc("first")), None)
    await store.pools.add_node(KIRO, make_node("late", **{PATH_KEY: SPELLINGS[1]}))
    with rule("cfgstore_pools_add_node", f"{ONE_FILE}, a node added later included"):
        late = await store.credentials.get(KIRO, "late")
        assert late is not None and late.document["accessToken"] == "first"
        assert late.version == version


async def test_a_kiro_credential_keeps_its_sibling_files(store: Store) -> None:
    """Kiro's IdC client registration lives in other ``*.json`` files of the token's folder
    (``Credential.siblings``): what export writes back beside the token."""
    await store.pools.add_node(KIRO, make_node("k1", **{PATH_KEY: "configs/kiro/s/s.json"}))
    siblings: dict[str, dict[str, object]] = {"client.json": {"clientId": "FAKE-client"}}
    await store.credentials.put(
        Credential(KIRO, "k1", kiro_doc("mine"), siblings=copy.deepcopy(siblings)), None
    )
    with rule("cfgstore_credentials_get", "a Kiro credential comes back with its siblings"):
        got = await store.credentials.get(KIRO, "k1")
        assert got is not None and got.siblings == siblings, got


FOLDER_FILES = "a token's siblings are the folder's current files"
REGISTRATION: dict[str, object] = {"clientId": "FAKE-client", "clientSecret": "FAKE-secret"}


async def _two_tokens_in_one_folder(store: Store) -> None:
    """Kiro tokens ``a`` and ``b`` in one folder beside the IDE's client registration, put
    as a migration puts them: each with the folder's other files as siblings."""
    for uuid in ("a", "b"):
        path = f"configs/kiro/f/{uuid}.json"
        await store.pools.add_node(KIRO, make_node(uuid, **{PATH_KEY: path}))
    for uuid, other in (("a", "b"), ("b", "a")):
        siblings = {f"{other}.json": kiro_doc(f"{other}0"), "client.json": dict(REGISTRATION)}
        # A store of files holds b once a's siblings are written beside it.
        held = await store.credentials.get(KIRO, uuid)
        await store.credentials.put(
            Credential(KIRO, uuid, kiro_doc(f"{uuid}0"), siblings=siblings),
            held.version if held is not None else None,
        )


async def _sees_b(store: Store, access: str) -> bool:
    """Whether token ``a`` sees ``b.json`` with ``access``, as the Node service would load
    it: b's current file is a sibling of a, merged over a's document."""
    seen = await store.credentials.get(KIRO, "a")
    assert seen is not None
    sibling = seen.siblings.get("b.json")
    return (
        sibling is not None
        and sibling.get("accessToken") == access
        and seen.effective()["accessToken"] == access
        and seen.siblings.get("client.json") == REGISTRATION
    )


def _folders_kept(deployment: Deployment) -> None:
    if FOLDER_SIBLINGS not in deployment.capabilities:
        pytest.skip(f"{deployment.name} does not declare the {FOLDER_SIBLINGS!r} capability")


async def _b_written_is_seen_by_a(deployment: Deployment, keeps_siblings: bool) -> None:
    """Kiro merges every other ``*.json`` of a token's folder into it (aiclient-formats
    §4.1), reading them anew at every load: once token ``b`` is written (a refresh handing
    back the siblings it read, or a put naming none), token ``a`` of the same folder sees
    b's new file, not the one it had when ``a`` was put."""
    _folders_kept(deployment)
    async with deployment.open() as store:
        await _two_tokens_in_one_folder(store)
        assert await _sees_b(store, "b0")  # a read (and cached) first
        current = await store.credentials.get(KIRO, "b")
        assert current is not None
        fresh = apply_refresh(current.document, {"accessToken": "b1"}, TokenFormat.KIRO)
        updated = (
            attrs.evolve(current, document=fresh)
            if keeps_siblings
            else Credential(KIRO, "b", fresh, token_format=TokenFormat.KIRO)
        )
        await store.credentials.put(updated, current.version)
        with rule(
            "cfgstore_credentials_put", f"{FOLDER_FILES}: a write of one is seen by the others"
        ):
            assert await _sees_b(store, "b1"), await store.credentials.get(KIRO, "a")
            back = await store.credentials.get(KIRO, "b")
            assert back is not None and back.document["accessToken"] == "b1"
            assert back.siblings == {"a.json": kiro_doc("a0"), "client.json": REGISTRATION}


async def test_a_token_refreshed_is_the_new_sibling_of_the_others_of_its_folder(
    deployment: Deployment,
) -> None:
    """A refresh of ``b`` (its write hands back the siblings it read) is seen by ``a``."""
    await _b_written_is_seen_by_a(deployment, keeps_siblings=True)


async def test_a_token_put_without_siblings_is_the_new_sibling_of_the_others_of_its_folder(
    deployment: Deployment,
) -> None:
    """An admin's put of ``b`` naming no siblings is seen by ``a`` too."""
    await _b_written_is_seen_by_a(deployment, keeps_siblings=False)


async def test_a_token_written_on_one_instance_is_the_new_sibling_on_another(
    deployment: Deployment,
) -> None:
    """As above across instances: instance two has read token ``a``; token ``b`` of its
    folder is refreshed on instance one; instance two's ``a`` sees b's new file."""
    _folders_kept(deployment)
    async with deployment.open() as one, deployment.open() as two:
        if "change-feed" not in deployment.capabilities:
            two = one
        await _two_tokens_in_one_folder(one)
        await until(lambda: _sees_b(two, "b0"), "instance two reads a beside b0")
        current = await one.credentials.get(KIRO, "b")
        assert current is not None
        fresh = apply_refresh(current.document, {"accessToken": "b1"}, TokenFormat.KIRO)
        await one.credentials.put(attrs.evolve(current, document=fresh), current.version)
        with rule("cfgstore_credentials_put", f"{FOLDER_FILES}, across instances"):
            await until(lambda: _sees_b(two, "b1"), "b's refresh seen in a's siblings")


async def test_a_token_deleted_is_no_sibling_of_the_others_of_its_folder(
    deployment: Deployment,
) -> None:
    """Deleting b's credential deletes b's file: token ``a`` of its folder no longer
    merges it (the registration stays)."""
    _folders_kept(deployment)
    async with deployment.open() as store:
        await _two_tokens_in_one_folder(store)
        assert await _sees_b(store, "b0")  # a read (and cached) first
        assert await store.credentials.delete(KIRO, "b") is True
        with rule("cfgstore_credentials_delete", f"{FOLDER_FILES}: a deleted file is none of them"):
            seen = await store.credentials.get(KIRO, "a")
            assert seen is not None and seen.siblings == {"client.json": REGISTRATION}, seen
            assert seen.effective()["accessToken"] == "a0"
