"""The file backend reads a Kiro token folder once for all its tokens
(``cfgstore_file.sibling_cache``) and still sees what changes there: a file created,
removed or written by the backend at once, a file rewritten in place by another program
(as the Node service writes) within ``RECHECK_S``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cfgstore.adapters import Store
from cfgstore.model.pools import node_from_json
from cfgstore.testing.waiting import until
from cfgstore_file.sibling_cache import RECHECK_S
from tests.file_backend.conftest import file_settings

KIRO = "claude-kiro-oauth"
TOKENS = 4


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """A deployment with ``TOKENS`` Kiro tokens and a client registration in one folder."""
    folder = tmp_path / "app" / "configs" / "kiro" / "tokens"
    folder.mkdir(parents=True)
    for i in range(TOKENS):
        (folder / f"t{i}.json").write_text(json.dumps({"accessToken": f"a{i}"}))
    (folder / "reg.json").write_text(json.dumps({"clientId": "c1"}))
    return tmp_path / "app"


async def add_nodes(store: Store) -> None:
    for i in range(TOKENS):
        path = f"./configs/kiro/tokens/t{i}.json"
        node = node_from_json({"uuid": f"k{i}", "KIRO_OAUTH_CREDS_FILE_PATH": path}, "test")
        await store.pools.add_node(KIRO, node)


async def siblings(store: Store, index: int) -> dict[str, object]:
    credential = await store.credentials.get(KIRO, f"k{index}")
    assert credential is not None
    return dict(credential.siblings)


async def test_each_token_has_the_others_and_sees_changes(cwd: Path) -> None:
    folder = cwd / "configs" / "kiro" / "tokens"
    async with Store.open(file_settings(cwd)) as store:
        await add_nodes(store)
        for i in range(TOKENS):
            got = await siblings(store, i)
            assert list(got) == sorted(
                n for n in [*(f"t{j}.json" for j in range(TOKENS)), "reg.json"] if n != f"t{i}.json"
            )
            assert got["reg.json"] == {"clientId": "c1"}

        # A new file (the folder changes) is seen at once.
        (folder / "new.json").write_text(json.dumps({"clientSecret": "s"}))
        assert (await siblings(store, 0))["new.json"] == {"clientSecret": "s"}

        # A token written through the backend is seen at once by the others.
        k1 = await store.credentials.get(KIRO, "k1")
        assert k1 is not None
        k1.document["accessToken"] = "refreshed"
        await store.credentials.put(k1, k1.version)
        assert (await siblings(store, 2))["t1.json"] == {"accessToken": "refreshed"}

        # A file rewritten in place by another program: seen within RECHECK_S.
        with open(folder / "reg.json", "r+", encoding="utf-8") as rewritten:
            rewritten.write(json.dumps({"clientId": "c2"}))

        async def seen() -> bool:
            return (await siblings(store, 3))["reg.json"] == {"clientId": "c2"}

        await until(seen, "the registration rewritten in place", within_s=RECHECK_S + 5)
