"""``cfgctl export`` never writes outside ``--to`` (issue 20, point 3).

A credential or config path leading out of the export folder (``../…``, or absolute) has
its file written under ``--to/relocated/`` (``up-<n>/…`` or ``absolute/…``) and listed; the
export exits 1 naming each path, because the exported pools and config still name the
outside ones — unless ``--relocate-paths`` makes them name the relocated files, and the
folder is then a deployment of its own (migrate → verify → export gives it back). A folder
of ``--to`` that is a symlink leading elsewhere is refused before anything is written.
Files outside ``--to`` are checked byte for byte before and after.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs
import pytest

from cfgstore.errors import InvalidData
from cfgstore.model import jsjson
from tests.cli.deployments import (
    EMPTY_TOKEN_STORE,
    EXAMPLE,
    Namespace,
    cfgctl,
    copy_deployment,
    describe,
    edit_json,
    private_namespace,
    read_json,
    tree_bytes,
)

GEMINI_UUID = "d93de8e5-3628-4795-92ae-b8a6b8f17f66"
GEMINI_TOKEN = "configs/gemini/1773300000000_oauth_creds.json"
GEMINI_KEY = "GEMINI_OAUTH_CREDS_FILE_PATH"
QWEN_UUID = "6b6ec415-26d2-490d-bc62-fa8bdfc8f3c2"
QWEN_TOKEN = "configs/qwen/1773320000000_oauth_creds.json"
QWEN_KEY = "QWEN_OAUTH_CREDS_FILE_PATH"
CODEX_UUID = "ddf666e3-f84a-48e1-b010-8d11ddbb7a2b"
CODEX_TOKEN = "configs/codex/1773340000000_codex-bob@example.com_oauth_creds.json"
CODEX_KEY = "CODEX_OAUTH_CREDS_FILE_PATH"
NOT_JSON = b"the operator's own file, newer than the migration: not JSON\n"


@attrs.define
class Escaping:
    """A copy of the sample deployment (``tmp/in``, the Node cwd) whose gemini token lives
    at ``../outside/gemini-token.json`` and qwen token at an absolute path
    (``tmp/abs/qwen-token.json``), both allowed by ``CFGSTORE_CREDENTIAL_ROOTS``; export
    goes to ``tmp/out``, so ``../outside`` from there is the very same file."""

    tmp: Path
    root: Path
    gemini: Path
    qwen: Path
    gemini_bytes: bytes
    qwen_bytes: bytes

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def outside_files(self) -> dict[str, bytes]:
        """Every file under ``tmp`` but outside the export folders ``out*`` (links
        followed for files)."""
        return {k: v for k, v in tree_bytes(self.tmp).items() if not k.startswith("out")}


def set_node_path(pools_file: Path, provider_type: str, uuid: str, key: str, path: str) -> None:
    def change(pools: dict[str, Any]) -> None:
        (node,) = [n for n in pools[provider_type] if n["uuid"] == uuid]
        node[key] = path

    edit_json(pools_file, change)


@pytest.fixture
def escaping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Escaping:
    root = copy_deployment(EXAMPLE, tmp_path)
    gemini = tmp_path / "outside" / "gemini-token.json"
    qwen = tmp_path / "abs" / "qwen-token.json"
    for folder in (gemini.parent, qwen.parent):
        folder.mkdir()
    monkeypatch.setenv(
        "CFGSTORE_CREDENTIAL_ROOTS", os.pathsep.join(str(p.parent) for p in (gemini, qwen))
    )
    (root / GEMINI_TOKEN).rename(gemini)
    (root / QWEN_TOKEN).rename(qwen)
    pools = root / "configs" / "provider_pools.json"
    set_node_path(
        pools, "gemini-cli-oauth", GEMINI_UUID, GEMINI_KEY, "../outside/gemini-token.json"
    )
    set_node_path(pools, "openai-qwen-oauth", QWEN_UUID, QWEN_KEY, str(qwen))
    return Escaping(tmp_path, root, gemini, qwen, gemini.read_bytes(), qwen.read_bytes())


def migrate(ns: Namespace, configs: Path) -> None:
    result = cfgctl("migrate", "--configs", configs, "--redis-url", ns.url)
    assert result.exit_code == 0, describe(result)
    assert "missing credential" not in result.stdout, describe(result)


def export(ns: Namespace, to: Path, *extra: str) -> Any:
    return cfgctl("export", "--to", to, "--redis-url", ns.url, *extra)


def gemini_relocated() -> str:
    return "relocated/up-1/outside/gemini-token.json"


def qwen_relocated(setup: Escaping) -> str:
    return "relocated/absolute/" + str(setup.qwen).lstrip("/")


def test_paths_leading_outside_are_written_under_the_folder_and_export_exits_1(
    escaping: Escaping, ns: Namespace
) -> None:
    migrate(ns, escaping.root / "configs")
    # The originals change after the migration: the export must neither overwrite them
    # nor read them back (they are not even JSON now).
    escaping.gemini.write_bytes(NOT_JSON)
    escaping.qwen.write_bytes(NOT_JSON)
    before = escaping.outside_files()

    result = export(ns, escaping.out)
    assert result.exit_code == 1, describe(result)
    assert escaping.outside_files() == before  # nothing outside --to written
    written = tree_bytes(escaping.out)
    assert written[gemini_relocated()] == escaping.gemini_bytes
    assert written[qwen_relocated(escaping)] == escaping.qwen_bytes
    gemini_line = (
        f"provider_pools.json gemini-cli-oauth/{GEMINI_UUID} {GEMINI_KEY}: "
        f"../outside/gemini-token.json → {gemini_relocated()}"
    )
    qwen_line = (
        f"provider_pools.json openai-qwen-oauth/{QWEN_UUID} {QWEN_KEY}: "
        f"{escaping.qwen} → {qwen_relocated(escaping)}"
    )
    assert gemini_line in result.stdout and qwen_line in result.stdout, describe(result)
    assert "../outside/gemini-token.json" in result.stderr, describe(result)
    assert str(escaping.qwen) in result.stderr and "--relocate-paths" in result.stderr
    # The read-back compared the relocated files (the outside ones hold no JSON now).
    assert "difference" not in result.stdout, describe(result)
    # Without the flag the files stay as the store has them: the pools name the originals.
    pools = "configs/provider_pools.json"
    assert written[pools] == (escaping.root / pools).read_bytes()
    expected = tree_bytes(escaping.root)
    expected["configs/token-store.json"] = EMPTY_TOKEN_STORE
    expected.pop("README.md", None)
    assert {k: v for k, v in written.items() if not k.startswith("relocated/")} == expected

    as_json = export(ns, escaping.tmp / "out-json", "--json")
    assert as_json.exit_code == 1, describe(as_json)
    report = json.loads(as_json.stdout)
    assert sorted(report["relocated"]) == sorted([gemini_line, qwen_line])
    assert report["paths_rewritten"] is False and report["differences"] == []


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("SYSTEM_PROMPT_FILE_PATH", "input_system_prompt.txt"),
        ("PROVIDER_POOLS_FILE_PATH", "provider_pools.json"),
    ],
    ids=["prompt", "pools"],
)
def test_relocate_paths_makes_a_deployment_of_its_own(
    key: str,
    name: str,
    escaping: Escaping,
    ns: Namespace,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Besides the two tokens, a file ``config.json`` names lives at an absolute path."""
    elsewhere = escaping.tmp / "abs" / name
    (escaping.root / "configs" / name).rename(elsewhere)
    edit_json(
        escaping.root / "configs" / "config.json", lambda doc: doc.update({key: str(elsewhere)})
    )
    moved_bytes = elsewhere.read_bytes()
    migrate(ns, escaping.root / "configs")
    for original in (escaping.gemini, escaping.qwen, elsewhere):
        original.write_bytes(NOT_JSON)
    before = escaping.outside_files()

    result = export(ns, escaping.out, "--relocate-paths")
    assert result.exit_code == 0, describe(result)
    assert escaping.outside_files() == before
    out = escaping.out
    relocated = "relocated/absolute/" + str(elsewhere).lstrip("/")
    assert f"config.json {key}: {elsewhere} → {relocated}" in result.stdout, describe(result)
    config = read_json(out / "configs" / "config.json")
    assert config[key] == relocated
    pools_moved = key == "PROVIDER_POOLS_FILE_PATH"
    if not pools_moved:  # (the pools file names the relocated tokens now: compared below)
        assert (out / relocated).read_bytes() == moved_bytes
    assert not (out / "configs" / name).exists()
    pools = read_json(out / relocated if pools_moved else out / "configs" / "provider_pools.json")
    (gemini,) = [n for n in pools["gemini-cli-oauth"] if n["uuid"] == GEMINI_UUID]
    (qwen,) = [n for n in pools["openai-qwen-oauth"] if n["uuid"] == QWEN_UUID]
    assert gemini[GEMINI_KEY] == gemini_relocated()
    assert qwen[QWEN_KEY] == qwen_relocated(escaping)
    assert (out / gemini_relocated()).read_bytes() == escaping.gemini_bytes
    assert (out / qwen_relocated(escaping)).read_bytes() == escaping.qwen_bytes
    # Only the path strings changed.
    original_pools = jsjson.loads(
        moved_bytes
        if pools_moved
        else (escaping.root / "configs" / "provider_pools.json").read_bytes(),
        "pools",
    )
    gemini[GEMINI_KEY] = "../outside/gemini-token.json"
    qwen[QWEN_KEY] = str(escaping.qwen)
    assert pools == original_pools
    # Without the flag: the same places, config.json and the pools as the store has them.
    plain = export(ns, escaping.tmp / "out-plain")
    assert plain.exit_code == 1, describe(plain)
    assert str(elsewhere) in plain.stderr, describe(plain)
    assert escaping.outside_files() == before
    config_file = "configs/config.json"
    assert (escaping.tmp / "out-plain" / config_file).read_bytes() == (
        escaping.root / config_file
    ).read_bytes()
    assert (escaping.tmp / "out-plain" / relocated).read_bytes() == moved_bytes

    # The folder stands alone: nothing outside it is allowed or needed any more.
    monkeypatch.delenv("CFGSTORE_CREDENTIAL_ROOTS")
    first = tree_bytes(out)
    with private_namespace(redis_url, monkeypatch) as fresh:
        migrate(fresh, out / "configs")
        verified = cfgctl("verify", "--configs", out / "configs", "--redis-url", fresh.url)
        assert verified.exit_code == 0, describe(verified)
        again = export(fresh, escaping.tmp / "again")
        assert again.exit_code == 0, describe(again)
        assert "outside the folder" not in again.stdout, describe(again)
        assert tree_bytes(escaping.tmp / "again") == first


@pytest.mark.parametrize("link", ["configs", "configs/qwen", "relocated", "relocated/up-1"])
def test_a_folder_of_to_linking_outside_is_refused_before_any_write(
    link: str, escaping: Escaping, ns: Namespace
) -> None:
    migrate(ns, escaping.root / "configs")
    victim = escaping.tmp / "victim"
    (victim / "outside").mkdir(parents=True)
    (victim / "outside" / "gemini-token.json").write_bytes(b"victim")
    (victim / "config.json").write_bytes(b"victim")
    (victim / "1773320500000_oauth_creds.json").write_bytes(b"victim")
    linked = escaping.out / link
    linked.parent.mkdir(parents=True)
    linked.symlink_to(victim, target_is_directory=True)
    before = escaping.outside_files()
    in_out = sorted(escaping.out.rglob("*"))

    for extra in ((), ("--relocate-paths",)):
        result = export(ns, escaping.out, "--force", *extra)
        assert result.exit_code == 2, describe(result)
        assert "refusing to write outside" in result.stderr, describe(result)
        assert str(victim) in result.stderr, describe(result)
        assert escaping.outside_files() == before
        assert sorted(escaping.out.rglob("*")) == in_out  # nothing written inside either


def test_a_file_link_in_to_is_replaced_not_written_through(tmp_path: Path, ns: Namespace) -> None:
    root = copy_deployment(EXAMPLE, tmp_path)
    migrate(ns, root / "configs")
    victim = tmp_path / "victim.json"
    victim.write_bytes(b"victim")
    out = tmp_path / "out"
    (out / "configs").mkdir(parents=True)
    (out / "configs" / "config.json").symlink_to(victim)

    result = export(ns, out, "--force")
    assert result.exit_code == 0, describe(result)
    assert victim.read_bytes() == b"victim"
    written = out / "configs" / "config.json"
    assert not written.is_symlink()
    assert written.read_bytes() == (root / "configs" / "config.json").read_bytes()


def test_a_relocation_place_taken_by_the_deployment_moves_to_the_next_folder(
    escaping: Escaping, ns: Namespace, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node of the deployment itself names ``relocated/up-1/outside/gemini-token.json``
    (a file inside): the gemini token from ``../outside`` goes to ``relocated-2``."""
    taken = gemini_relocated()
    codex_bytes = (escaping.root / CODEX_TOKEN).read_bytes()
    (escaping.root / taken).parent.mkdir(parents=True)
    (escaping.root / CODEX_TOKEN).rename(escaping.root / taken)
    pools_file = escaping.root / "configs" / "provider_pools.json"
    set_node_path(pools_file, "openai-codex-oauth", CODEX_UUID, CODEX_KEY, taken)
    migrate(ns, escaping.root / "configs")

    result = export(ns, escaping.out, "--relocate-paths")
    assert result.exit_code == 0, describe(result)
    out = escaping.out
    assert (out / taken).read_bytes() == codex_bytes
    moved = "relocated-2/up-1/outside/gemini-token.json"
    assert (out / moved).read_bytes() == escaping.gemini_bytes
    assert (out / "relocated-2/absolute" / str(escaping.qwen).lstrip("/")).is_file()
    pools = read_json(out / "configs" / "provider_pools.json")
    (codex,) = [n for n in pools["openai-codex-oauth"] if n["uuid"] == CODEX_UUID]
    (gemini,) = [n for n in pools["gemini-cli-oauth"] if n["uuid"] == GEMINI_UUID]
    assert (codex[CODEX_KEY], gemini[GEMINI_KEY]) == (taken, moved)

    monkeypatch.delenv("CFGSTORE_CREDENTIAL_ROOTS")
    with private_namespace(redis_url, monkeypatch) as fresh:
        migrate(fresh, out / "configs")
        verified = cfgctl("verify", "--configs", out / "configs", "--redis-url", fresh.url)
        assert verified.exit_code == 0, describe(verified)


def test_spellings_of_one_outside_file_share_one_relocated_file(
    escaping: Escaping, ns: Namespace, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two qwen nodes name the absolute token file, spelled differently: the store holds
    one credential, the export writes one relocated file and both nodes name it."""
    other = "f6651ee4-714b-4962-823b-549fcdfcb4e4"
    spelling = f"{escaping.qwen.parent}/./../{escaping.qwen.parent.name}//{escaping.qwen.name}"
    pools_file = escaping.root / "configs" / "provider_pools.json"
    set_node_path(pools_file, "openai-qwen-oauth", other, QWEN_KEY, spelling)
    migrate(ns, escaping.root / "configs")

    result = export(ns, escaping.out, "--relocate-paths")
    assert result.exit_code == 0, describe(result)
    assert f"{spelling} → {qwen_relocated(escaping)}" in result.stdout, describe(result)
    relocated = [k for k in tree_bytes(escaping.out) if "qwen" in k and "relocated" in k]
    assert relocated == [qwen_relocated(escaping)]
    pools = read_json(escaping.out / "configs" / "provider_pools.json")
    assert [n[QWEN_KEY] for n in pools["openai-qwen-oauth"]] == [qwen_relocated(escaping)] * 2

    monkeypatch.delenv("CFGSTORE_CREDENTIAL_ROOTS")
    with private_namespace(redis_url, monkeypatch) as fresh:
        migrate(fresh, escaping.out / "configs")
        verified = cfgctl("verify", "--configs", escaping.out / "configs", "--redis-url", fresh.url)
        assert verified.exit_code == 0, describe(verified)


def test_a_relocated_kiro_token_keeps_its_sibling_files(
    escaping: Escaping, ns: Namespace, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Kiro IDE keeps its client registration beside the token: both are relocated."""
    cache = escaping.tmp / "abs" / "ide-cache"
    (escaping.root / "configs" / "kiro" / "ide-cache").rename(cache)
    originals = tree_bytes(cache)
    pools_file = escaping.root / "configs" / "provider_pools.json"
    uuid = "299f53b6-db17-48a2-a3e6-5754f00925e7"
    token = str(cache / "kiro-auth-token.json")
    set_node_path(pools_file, "claude-kiro-oauth", uuid, "KIRO_OAUTH_CREDS_FILE_PATH", token)
    migrate(ns, escaping.root / "configs")

    result = export(ns, escaping.out, "--relocate-paths")
    assert result.exit_code == 0, describe(result)
    relocated = escaping.out / "relocated" / "absolute" / str(cache).lstrip("/")
    assert tree_bytes(relocated) == originals
    assert tree_bytes(cache) == originals

    monkeypatch.delenv("CFGSTORE_CREDENTIAL_ROOTS")
    with private_namespace(redis_url, monkeypatch) as fresh:
        migrate(fresh, escaping.out / "configs")
        verified = cfgctl("verify", "--configs", escaping.out / "configs", "--redis-url", fresh.url)
        assert verified.exit_code == 0, describe(verified)


def test_a_stored_sibling_name_leading_outside_is_refused_before_any_write(
    tmp_path: Path, ns: Namespace
) -> None:
    """Whoever can write the Redis keys names a Kiro sibling file ``../../escape.json``
    (the store API refuses such a name): export refuses (exit 2) before writing anything,
    and the file outside is not created."""
    root = copy_deployment(EXAMPLE, tmp_path)
    migrate(ns, root / "configs")

    async def plant_through_the_api(store: Any) -> None:
        credential = await store.credentials.get("gemini-cli-oauth", GEMINI_UUID)
        credential.siblings = {"../../../escape.json": {"planted": True}}
        with pytest.raises(InvalidData, match="plain"):
            await store.credentials.put(credential, credential.version)

    ns.run(plant_through_the_api)
    folder = ns.key("folder:configs/kiro/ide-cache")  # the example's Kiro token folder
    with ns.client() as client:
        assert client.exists(folder)
        client.hset(folder, "../../../escape.json", json.dumps({"planted": True}))
        client.hincrby(folder, "@ver", 1)
    out = tmp_path / "out"
    result = export(ns, out)
    assert result.exit_code == 2, describe(result)
    assert "refusing to write outside" in result.stderr, describe(result)
    assert not (tmp_path / "escape.json").exists()
    assert not out.exists() or not any(out.rglob("*"))
