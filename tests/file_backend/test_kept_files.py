"""The file backend keeps files as bytes by writing them (``cfgstore_file.kept_file_ops``),
and a new Kiro token file brings its sibling files along: what lets ``cfgctl migrate``
copy a deployment into another folder through the Store API."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cfgstore.adapters import Settings, Store
from cfgstore.errors import CredentialPathOutside, InvalidData
from cfgstore.model import jsjson
from cfgstore.model.credentials import Credential, TokenFormat
from cfgstore.model.pools import node_from_json
from cfgstore.model.versions import ABSENT_VERSION, ANY_VERSION, content_version
from tests.file_backend.conftest import file_settings, snapshot

KIRO = "claude-kiro-oauth"


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """An empty deployment: the working directory, with an empty ``configs`` folder."""
    (tmp_path / "app" / "configs").mkdir(parents=True)
    return tmp_path / "app"


def memory_over_files(cwd: Path) -> Settings:
    return file_settings(cwd, backends=("memory", "file"))


async def test_kept_files_are_written_listed_and_replaced_as_a_set(cwd: Path) -> None:
    configs = cwd / "configs"
    async with Store.open(file_settings(cwd)) as store:
        assert await store.kept_files.get() == {}
        first = {"configs/api-potluck-keys.json": b"{ }\n", "configs/data/blob.bin": b"\x00\x01"}
        await store.kept_files.put(first)
        assert await store.kept_files.get() == first
        assert (configs / "data" / "blob.bin").read_bytes() == b"\x00\x01"
        assert stat.S_IMODE((configs / "api-potluck-keys.json").stat().st_mode) == 0o600

        await store.kept_files.put({"configs/api-potluck-keys.json": b"[]"})
        assert await store.kept_files.get() == {"configs/api-potluck-keys.json": b"[]"}
        assert not (configs / "data" / "blob.bin").exists()  # no longer kept: removed

    async with Store.open(file_settings(cwd)) as store:  # another process reads the same
        assert await store.kept_files.get() == {"configs/api-potluck-keys.json": b"[]"}


@pytest.mark.parametrize(
    "key",
    [
        "../outside.json",
        "/etc/passwd",
        "configs/pwd",
        "configs/token-store.json",
        "configs/.cfgstore-kept.json",
    ],
)
async def test_a_kept_file_the_backend_must_not_write_is_refused_and_nothing_is_written(
    cwd: Path, key: str
) -> None:
    before = snapshot(cwd)
    async with Store.open(file_settings(cwd)) as store:
        with pytest.raises(InvalidData):
            await store.kept_files.put({"configs/fine.json": b"{}", key: b"x"})
    assert snapshot(cwd) == before


async def test_a_kept_file_through_a_symlink_outside_is_refused(cwd: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (cwd / "configs" / "escape").symlink_to(outside)
    async with Store.open(file_settings(cwd)) as store:
        with pytest.raises(CredentialPathOutside):
            await store.kept_files.put({"configs/escape/x.json": b"{}"})
    assert list(outside.iterdir()) == []


async def test_an_original_kept_for_a_modelled_file_replaces_its_bytes_and_the_cache_sees_it(
    cwd: Path,
) -> None:
    """``config.json`` in another indent: the entity is unchanged, the file holds the
    original bytes, and the memory layer's cached version follows (its change event)."""
    async with Store.open(memory_over_files(cwd)) as store:
        document = {"REQUIRED_API_KEY": "k", "SERVER_PORT": 3000}
        await store.config.put(document, ABSENT_VERSION)
        assert (await store.config.get()).document == document  # cached now
        original = b'{"REQUIRED_API_KEY": "k",\n "SERVER_PORT": 3000}\n'
        await store.kept_files.put({"configs/config.json": original})
        config = await store.config.get()
        assert config.document == document
        assert config.version == content_version(original)
        assert (cwd / "configs" / "config.json").read_bytes() == original
        await store.config.put({**document, "SERVER_PORT": 3001}, config.version)  # no conflict


async def test_a_new_kiro_token_file_brings_its_siblings_but_never_overwrites_one(
    cwd: Path,
) -> None:
    token_path = "configs/kiro/ide/kiro-auth-token.json"
    folder = cwd / "configs" / "kiro" / "ide"
    async with Store.open(file_settings(cwd)) as store:
        node = node_from_json({"uuid": "k1", "KIRO_OAUTH_CREDS_FILE_PATH": token_path}, "test")
        await store.pools.add_node(KIRO, node)
        siblings = {"client.json": {"clientId": "c1"}}
        credential = Credential(
            KIRO, "k1", {"accessToken": "a"}, token_path, TokenFormat.KIRO, siblings=siblings
        )
        await store.credentials.put(credential, None)
        assert (folder / "client.json").read_bytes() == jsjson.dump_bytes({"clientId": "c1"})
        stored = await store.credentials.get(KIRO, "k1")
        assert stored is not None and stored.siblings == siblings

        (folder / "client.json").write_bytes(b'{"clientId": "changed by the IDE"}')
        await store.credentials.put(credential, ANY_VERSION)  # a refresh: the file exists
        assert (folder / "client.json").read_bytes() == b'{"clientId": "changed by the IDE"}'

        bad = Credential(
            KIRO,
            "k1",
            {"accessToken": "b"},
            token_path,
            TokenFormat.KIRO,
            siblings={"../x.json": {}},
        )
        with pytest.raises(InvalidData):
            await store.credentials.put(bad, ANY_VERSION)
        assert not (cwd / "configs" / "kiro" / "x.json").exists()
