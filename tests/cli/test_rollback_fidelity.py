"""Rollback fidelity (issue 20): ``cfgctl migrate`` from a configs folder and ``cfgctl
export`` back lose nothing, and every refusal comes before the first write, naming the file
and the JSON path.

Every test copies the sample deployment into ``tmp_path`` and uses a Redis namespace of
its own (see :mod:`tests.cli.deployments`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import posixpath
import re
import shlex
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

from cfgstore.adapters import Store
from cfgstore.model import jsjson
from cfgstore.model.credentials import CREDENTIAL_PATH_KEYS, Credential
from cfgstore_gateway.refresh import Refresher
from tests.admin.conftest import Admin, admin_gateway
from tests.cli.deployments import (
    CLI_TIMEOUT_S,
    EXAMPLE,
    Namespace,
    cfgctl,
    copy_deployment,
    deadline,
    describe,
    edit_json,
    file_settings,
    read_json,
    tree_bytes,
)
from tests.gateway.token_stub import TokenStub

GEMINI_TOKEN = "configs/gemini/1773300000000_oauth_creds.json"
GEMINI_UUID = "d93de8e5-3628-4795-92ae-b8a6b8f17f66"
CUT_EMOJI = "Team \ud83d"
"""A name cut in the middle of an emoji: ``JSON.stringify`` writes ``"Team \\ud83d"``."""


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A private copy of ``examples/deployment`` (the Node cwd)."""
    return copy_deployment(EXAMPLE, tmp_path)


def migrate(ns: Namespace, configs: Path, *extra: str) -> Any:
    return cfgctl("migrate", "--configs", configs, "--redis-url", ns.url, *extra)


def export(ns: Namespace, to: Path, *extra: str) -> Any:
    return cfgctl("export", "--to", to, "--redis-url", ns.url, *extra)


# -- point 6: any JSON Node can write round-trips; refusals come first --------------------


def test_lone_surrogates_round_trip_byte_for_byte(
    example: Path, tmp_path: Path, ns: Namespace
) -> None:
    configs = example / "configs"

    def pools(doc: dict[str, Any]) -> None:
        node = doc["gemini-cli-oauth"][0]
        node["customName"] = CUT_EMOJI
        node[CUT_EMOJI] = "a key cut mid-emoji too"

    edit_json(configs / "provider_pools.json", pools)
    edit_json(configs / "config.json", lambda doc: doc.update({"NOTE": CUT_EMOJI}))
    edit_json(example / GEMINI_TOKEN, lambda doc: doc.update({"account": CUT_EMOJI}))
    edit_json(configs / "custom_models.json", lambda doc: doc[0].update({"name": CUT_EMOJI}))
    assert b"\\ud83d" in (configs / "provider_pools.json").read_bytes()

    migrated = migrate(ns, configs)
    assert migrated.exit_code == 0, describe(migrated)
    out = tmp_path / "out"
    exported = export(ns, out)
    assert exported.exit_code == 0, describe(exported)
    written, original = tree_bytes(out), tree_bytes(example)
    for name in (
        "configs/provider_pools.json",
        "configs/config.json",
        "configs/custom_models.json",
        GEMINI_TOKEN,
    ):
        assert written[name] == original[name], name
    verified = cfgctl("verify", "--configs", configs, "--redis-url", ns.url)
    assert verified.exit_code == 0, describe(verified)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (
            lambda doc: doc.update({"openai-custom:eu": []}),
            '$["openai-custom:eu"]',
        ),
        (
            lambda doc: doc["openai-custom"][0].update({"a\x1fb": 1}),
            '$["openai-custom"][0]["a\\u001fb"]',
        ),
    ],
    ids=["type-with-colon", "key-with-unit-separator"],
)
def test_names_the_store_cannot_hold_are_refused_before_any_write(
    change: Any, where: str, example: Path, ns: Namespace
) -> None:
    configs = example / "configs"
    edit_json(configs / "provider_pools.json", change)
    result = migrate(ns, configs)
    assert result.exit_code == 2, describe(result)
    assert str(configs / "provider_pools.json") in result.stderr, describe(result)
    assert where in result.stderr, describe(result)
    assert "nothing was written" in result.stderr
    assert ns.key_names() == []


# -- point 7: honest results ---------------------------------------------------------------


def test_a_half_migrated_namespace_is_shown_by_status_and_refused_by_export(
    example: Path, tmp_path: Path, ns: Namespace
) -> None:
    """A migration that stops halfway (here: Redis refuses one credential key, held by
    something else) leaves its marker; status says so and how to finish; export refuses."""
    configs = example / "configs"
    squatted = ns.key(f"cred:{GEMINI_TOKEN}")
    with contextlib.closing(ns.client()) as client:
        client.set(squatted, "not a credential hash")
    stopped = migrate(ns, configs)
    assert stopped.exit_code == 2, describe(stopped)
    with contextlib.closing(ns.client()) as client:
        client.delete(squatted)

    status = cfgctl("status", "--redis-url", ns.url)
    assert status.exit_code == 0, describe(status)
    assert "did not finish" in status.stdout, describe(status)
    assert "not initialised" not in status.stdout, describe(status)
    finish = status.stdout.split("finish it with: ", 1)[1].split(" (same Redis", 1)[0]
    assert shlex.split(finish)[:2] == ["cfgctl", "migrate"]

    out = tmp_path / "out"
    refused = export(ns, out)
    assert refused.exit_code == 2, describe(refused)
    assert "mid-migration" in refused.stderr and "--allow-incomplete" in refused.stderr
    assert not out.exists() or not any(out.iterdir())
    anyway = export(ns, tmp_path / "anyway", "--allow-incomplete")
    assert anyway.exit_code == 0, describe(anyway)

    finished = cfgctl(*shlex.split(finish)[1:], "--redis-url", ns.url)
    assert finished.exit_code == 0, describe(finished)
    assert "interrupted" in finished.stdout
    assert "did not finish" not in cfgctl("status", "--redis-url", ns.url).stdout
    assert export(ns, out).exit_code == 0


def test_a_never_initialised_namespace_is_refused_by_export(tmp_path: Path, ns: Namespace) -> None:
    out = tmp_path / "out"
    refused = export(ns, out)
    assert refused.exit_code == 2, describe(refused)
    assert "never initialised" in refused.stderr, describe(refused)
    assert not out.exists() or not any(out.iterdir())
    assert ns.key_names() == []
    anyway = export(ns, out, "--allow-incomplete")
    assert anyway.exit_code == 0, describe(anyway)


BAD_CONFIG = {"MAX_ERROR_COUNT": "three", "SERVER_PORT": "abc", "REQUEST_MAX_RETRIES": -5}


def test_config_values_the_admin_api_refuses_are_warned_and_refused_with_strict(
    example: Path, ns: Namespace
) -> None:
    configs = example / "configs"
    edit_json(configs / "config.json", lambda doc: doc.update(BAD_CONFIG))

    strict = migrate(ns, configs, "--strict")
    assert strict.exit_code == 2, describe(strict)
    assert str(configs / "config.json") in strict.stderr
    for key in BAD_CONFIG:
        assert f"$.{key}" in strict.stderr, describe(strict)
    assert "nothing was written" in strict.stderr
    assert ns.key_names() == []

    lenient = migrate(ns, configs)
    assert lenient.exit_code == 0, describe(lenient)
    warnings = [line for line in lenient.stdout.splitlines() if "warning:" in line]
    assert len(warnings) == len(BAD_CONFIG), describe(lenient)
    for key in BAD_CONFIG:
        assert any(f"$.{key}: " in w and "admin API would refuse" in w for w in warnings)


# -- point 8: export checks itself ---------------------------------------------------------


def test_export_reads_its_folder_back_and_lists_every_difference(
    example: Path, tmp_path: Path, ns: Namespace
) -> None:
    """A node whose token path names another file of the deployment cannot be exported
    faithfully: the export says so and exits 1 instead of claiming success."""
    assert migrate(ns, example / "configs").exit_code == 0

    async def collide(store: Store) -> None:
        changes = {"GEMINI_OAUTH_CREDS_FILE_PATH": "configs/plugins.json"}
        await store.pools.update_node("gemini-cli-oauth", GEMINI_UUID, changes)

    ns.run(collide)
    out = tmp_path / "out"
    result = export(ns, out)
    assert result.exit_code == 1, describe(result)
    assert "difference(s) between the written files and the store" in result.stdout
    assert f"credential gemini-cli-oauth/{GEMINI_UUID}" in result.stdout, describe(result)
    as_json = export(ns, tmp_path / "again", "--json")
    assert as_json.exit_code == 1
    assert any(GEMINI_UUID in d for d in json.loads(as_json.stdout)["differences"])


def test_a_faithful_export_says_nothing_differs(
    example: Path, tmp_path: Path, ns: Namespace
) -> None:
    assert migrate(ns, example / "configs", "--include", "usage-cache").exit_code == 0
    result = export(ns, tmp_path / "out", "--json")
    assert result.exit_code == 0, describe(result)
    assert json.loads(result.stdout)["differences"] == []


# -- point 5: byte-exact for every file ----------------------------------------------------


def four_spaces(path: Path) -> bytes:
    """Rewrite a JSON file by hand, as an operator's editor would (4-space indent, newline)."""
    data = (json.dumps(read_json(path), indent=4, ensure_ascii=False) + "\n").encode()
    path.write_bytes(data)
    return data


def test_files_not_in_the_node_writer_format_come_back_unchanged_until_modified(
    example: Path, tmp_path: Path, ns: Namespace
) -> None:
    configs = example / "configs"
    token = example / GEMINI_TOKEN
    token.write_bytes(token.read_bytes() + b"\n")  # stored verbatim from an upload
    hand_written = {
        name: four_spaces(configs / name)
        for name in ("config.json", "plugins.json", "custom_models.json", "provider_pools.json")
    }
    original = tree_bytes(example)
    assert migrate(ns, configs).exit_code == 0

    out = tmp_path / "out"
    result = export(ns, out)
    assert result.exit_code == 0, describe(result)
    written = tree_bytes(out)
    assert written[GEMINI_TOKEN] == original[GEMINI_TOKEN]
    for name, data in hand_written.items():
        assert written[f"configs/{name}"] == data, name

    async def modify(store: Store) -> None:
        config = await store.config.get()
        await store.config.put({**config.document, "MAX_ERROR_COUNT": 9}, config.version)
        credential = await store.credentials.get("gemini-cli-oauth", GEMINI_UUID)
        assert credential is not None
        refreshed = {**credential.document, "access_token": "ya29.refreshed"}
        await store.credentials.put(
            attrs.evolve(credential, document=refreshed), credential.version
        )

    ns.run(modify)
    again = export(ns, tmp_path / "again")
    assert again.exit_code == 0, describe(again)
    rewritten = tree_bytes(tmp_path / "again")
    assert rewritten["configs/config.json"] == jsjson.dump_bytes(
        {**read_json(configs / "config.json"), "MAX_ERROR_COUNT": 9}
    )
    assert rewritten[GEMINI_TOKEN] == jsjson.dump_bytes(
        {**read_json(token), "access_token": "ya29.refreshed"}
    )
    assert rewritten["configs/plugins.json"] == hand_written["plugins.json"]  # not modified


# -- point 4: a complete copy --------------------------------------------------------------

PLUGIN_DATA = {
    "configs/api-potluck-data.json": b'{"users":{"u1":{"quota":5}}}',
    "configs/model-usage-stats.json": b'{\n    "gpt-4o": 12\n}\n',
    "configs/fetch_system_prompt.txt": "Fetched prompt \u2014 with a trailing newline\n".encode(),
    "configs/gemini/unlinked_oauth_creds.json": b'{\n  "refresh_token": "1//unlinked"\n}',
    "configs/custom-plugin/state.bin": bytes(range(256)),
}


def test_plugin_data_and_unlinked_files_are_stored_and_exported(
    example: Path, tmp_path: Path, ns: Namespace
) -> None:
    for name, data in PLUGIN_DATA.items():
        (example / name).parent.mkdir(parents=True, exist_ok=True)
        (example / name).write_bytes(data)
    original = tree_bytes(example)
    migrated = migrate(ns, example / "configs")
    assert migrated.exit_code == 0, describe(migrated)
    not_migrated = [line for line in migrated.stdout.splitlines() if "not migrated" in line]
    assert len(not_migrated) == 1 and "token-store.json (live Web-UI sessions" in not_migrated[0]

    out = tmp_path / "out"
    result = export(ns, out)
    assert result.exit_code == 0, describe(result)
    written = tree_bytes(out)
    expected = {k: v for k, v in original.items() if k != "README.md"}
    expected["configs/token-store.json"] = jsjson.dump_bytes({"tokens": {}})
    assert sorted(written) == sorted(expected)
    for name, data in expected.items():
        assert written[name] == data, name

    verified = cfgctl("verify", "--configs", example / "configs", "--redis-url", ns.url)
    assert verified.exit_code == 0, describe(verified)
    (example / "configs/api-potluck-keys.json").write_bytes(b"{}")
    changed = cfgctl("verify", "--configs", example / "configs", "--redis-url", ns.url)
    assert changed.exit_code == 1
    assert "api-potluck keys: differ" in changed.stdout


# -- point 1: every credential has a file identity -----------------------------------------

QWEN_TOKEN = {"access_token": "qwen-up", "refresh_token": "qwen-r", "expiry_date": 1}
GEMINI_NEW = {"access_token": "ya29.new", "refresh_token": "1//new", "expiry_date": 2}
NODE_CONVENTION = re.compile(r"^\./configs/(gemini|qwen)/\d{13}_oauth_creds\.json$")


def admin_edits(ns: Namespace, edits: Any) -> dict[str, Any]:
    """Run ``async def edits(admin) -> dict`` against a gateway over the namespace."""

    async def go() -> dict[str, Any]:
        async with admin_gateway(ns.settings()) as anonymous:
            result: dict[str, Any] = await edits(await anonymous.login())
            await anonymous.store.flush()
            return result

    with deadline(CLI_TIMEOUT_S):
        return asyncio.run(go())


def test_accounts_added_through_the_admin_api_are_exported_with_their_tokens(
    example: Path, tmp_path: Path, ns: Namespace
) -> None:
    assert migrate(ns, example / "configs").exit_code == 0

    async def edits(admin: Admin) -> dict[str, Any]:
        status, added = await admin.call(
            "POST",
            "/api/providers",
            json={
                "providerType": "gemini-cli-oauth",
                "providerConfig": {"customName": "added"},
                "credential": GEMINI_NEW,
            },
        )
        assert status == 200, added
        form = aiohttp.FormData()
        form.add_field("file", json.dumps(QWEN_TOKEN).encode(), filename="t.json")
        form.add_field("provider", "openai-qwen-oauth")
        status, uploaded = await admin.call(
            "POST", "/api/cfgstore/upload-oauth-credentials", data=form
        )
        assert status == 200, uploaded
        moved = {"GEMINI_OAUTH_CREDS_FILE_PATH": "configs/gemini/moved_oauth_creds.json"}
        status, body = await admin.call(
            "PUT", f"/api/providers/gemini-cli-oauth/{GEMINI_UUID}", json={"providerConfig": moved}
        )
        assert status == 200, body
        return {"added": added["provider"]["uuid"], "uploaded": uploaded["provider"]["uuid"]}

    uuids = admin_edits(ns, edits)
    out = tmp_path / "out"
    result = export(ns, out)
    assert result.exit_code == 0, describe(result)
    assert "without a path" not in result.stdout
    pools = read_json(out / "configs/provider_pools.json")
    for provider_type, key, uuid, token in (
        ("gemini-cli-oauth", "GEMINI_OAUTH_CREDS_FILE_PATH", uuids["added"], GEMINI_NEW),
        ("openai-qwen-oauth", "QWEN_OAUTH_CREDS_FILE_PATH", uuids["uploaded"], QWEN_TOKEN),
    ):
        node = next(n for n in pools[provider_type] if n["uuid"] == uuid)
        assert NODE_CONVENTION.match(node[key]), node
        assert read_json(out / node[key]) == token
    original = read_json(example / GEMINI_TOKEN)
    assert read_json(out / "configs/gemini/moved_oauth_creds.json") == original
    assert not (out / GEMINI_TOKEN).exists()  # the node no longer names it


# -- point 2: one token file, one credential -----------------------------------------------

GEMINI = "gemini-cli-oauth"
GEMINI_KEY = "GEMINI_OAUTH_CREDS_FILE_PATH"
TWIN_UUID = "0f0e0d0c-0000-4000-8000-00000000000f"
"""A second Gemini node naming the example's token file in another spelling."""
REFRESHED = {"access_token": "ya29.refreshed-through-the-twin", "expires_in": 3599}


def add_twin(configs: Path) -> None:
    def pools(doc: dict[str, Any]) -> None:
        first = doc[GEMINI][0]
        assert first[GEMINI_KEY] == GEMINI_TOKEN
        doc[GEMINI].append({**first, "uuid": TWIN_UUID, GEMINI_KEY: f"./{GEMINI_TOKEN}"})

    edit_json(configs / "provider_pools.json", pools)


async def refresh_through(store: Store, uuid: str) -> Credential:
    """Refresh the Gemini credential through node ``uuid`` with the gateway's refresher,
    its token endpoint a local stub; returns what the refresher stored."""
    async with TokenStub(lambda received, n: (200, REFRESHED)) as stub:
        node = await store.pools.get_node(GEMINI, uuid)
        assert node is not None
        node.settings["GEMINI_OAUTH_TOKEN_URL"] = stub.url("/token")  # this call's only
        async with aiohttp.ClientSession() as http:
            refreshed = await Refresher(store, http).refresh(GEMINI, node, force=True)
        assert stub.count == 1
    assert refreshed.document["access_token"] == REFRESHED["access_token"]
    return refreshed


def test_nodes_naming_one_token_file_share_one_credential_from_migrate_to_export(
    example: Path, tmp_path: Path, ns: Namespace
) -> None:
    configs = example / "configs"
    add_twin(configs)
    migrated = migrate(ns, configs, "--json")
    assert migrated.exit_code == 0, describe(migrated)
    named = [
        posixpath.normpath(value)
        for nodes in read_json(configs / "provider_pools.json").values()
        for node in nodes
        for key, value in node.items()
        if key in CREDENTIAL_PATH_KEYS and (example / value).is_file()
    ]
    assert len(named) == len(set(named)) + 1  # the twin's file is the Gemini node's
    assert json.loads(migrated.stdout)["counts"]["credentials"] == len(set(named))
    with contextlib.closing(ns.client()) as client:
        stored = client.hgetall(ns.key(f"cred:{GEMINI_TOKEN}"))
    users = stored[b"users"].decode().split("\x1f")
    assert users == [f"{GEMINI}:{GEMINI_UUID}", f"{GEMINI}:{TWIN_UUID}"]

    async def refresh(store: Store) -> tuple[Credential, Credential | None, list[Any]]:
        refreshed = await refresh_through(store, TWIN_UUID)
        seen = await store.credentials.get(GEMINI, GEMINI_UUID)
        return refreshed, seen, await store.credentials.list()

    refreshed, seen, refs = ns.run(refresh)
    assert seen is not None and seen.document == refreshed.document
    assert seen.version == refreshed.version
    assert [r.uuid for r in refs if r.provider_type == GEMINI] == [GEMINI_UUID]

    out = tmp_path / "out"
    exported = export(ns, out, "--json")
    assert exported.exit_code == 0, describe(exported)
    written = json.loads(exported.stdout)["written"]
    assert [w for w in written if w.endswith(GEMINI_TOKEN)] == [str(out / GEMINI_TOKEN)]
    assert read_json(out / GEMINI_TOKEN) == refreshed.document
    pools = read_json(out / "configs/provider_pools.json")
    assert [n[GEMINI_KEY] for n in pools[GEMINI]] == [GEMINI_TOKEN, f"./{GEMINI_TOKEN}"]


def test_a_refresh_through_one_node_is_read_through_the_other_on_files(example: Path) -> None:
    """The file backend: the nodes name one file, so they share it by nature; the refresh
    writes it once and both nodes read it."""
    add_twin(example / "configs")
    settings = file_settings(example / "configs")

    async def go() -> tuple[Credential, Credential | None]:
        async with Store.open(settings) as store:
            refreshed = await refresh_through(store, TWIN_UUID)
            return refreshed, await store.credentials.get(GEMINI, GEMINI_UUID)

    with deadline(CLI_TIMEOUT_S):
        refreshed, seen = asyncio.run(go())
    assert seen is not None and seen.document == refreshed.document
    assert seen.version == refreshed.version
    assert read_json(example / GEMINI_TOKEN) == refreshed.document
