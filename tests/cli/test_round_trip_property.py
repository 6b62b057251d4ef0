"""Property (issue 20): any deployment the Node service could have written — lone
surrogates, JavaScript number edge cases, unicode and empty keys, nodes sharing token files
under different spellings, files in another writer's format, plugin data — comes back from
``cfgctl migrate`` + ``cfgctl export`` byte for byte; or migrate refuses it before writing
anything, naming the file.

Each example is a fresh folder and a fresh Redis namespace. ``CFGSTORE_TEST_SCALE``
scales the number of examples (20 at scale 1).
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cfgstore.adapters import Store
from cfgstore.model import jsjson
from cfgstore.model.credentials import (
    CREDENTIAL_PATH_KEYS,
    credential_path_of,
    path_keys_for,
    same_file_key,
)
from cfgstore.model.password import hash_password
from cfgstore.model.pools import HOT_KEYS
from tests.cli.deployments import (
    EMPTY_TOKEN_STORE,
    cfgctl,
    describe,
    private_namespace,
    tree_bytes,
)

SCALE = float(os.environ.get("CFGSTORE_TEST_SCALE", "1"))
EXAMPLES = max(5, int(20 * SCALE))

HASHED_PWD = hash_password("a stored admin password").encode()
"""``pwd`` as cfgstore stores it (a plaintext one comes back hashed: the documented
exception to byte-for-byte)."""

# -- JSON values Node writes ---------------------------------------------------------------

JS_NUMBERS = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e21, 1e-7, 5e-324, 1.7976931348623157e308, 0.1 + 0.2, 2.0**60, -0.0]),
)
SPECIALS = ["\ud83d", "\udc00", "\x1f", ":", "\\", '"', "\u2028", "\x00"]
CHARS = st.one_of(*[st.characters(codec="utf-8")] * 3, st.sampled_from(SPECIALS))
TEXT = st.text(CHARS, max_size=8)
"""Strings JavaScript can hold: any unicode, lone surrogates (a name cut mid-emoji),
control characters, and the characters some stores give a meaning (``:``, ``\\x1f``)."""

SCALARS = st.one_of(st.none(), st.booleans(), JS_NUMBERS, TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=8,
)


def node_format(value: Any) -> bytes:
    """What ``JSON.stringify(value, null, 2)`` writes for the value as Node holds it (a
    high and a low surrogate side by side are one character to JavaScript)."""
    return jsjson.dump_bytes(jsjson.loads(jsjson.dump_bytes(value), "generated"))


def another_writer(value: Any) -> bytes:
    """The same value as an operator's editor writes it (4-space indent, final newline)."""
    return (json.dumps(jsjson.loads(node_format(value), "generated"), indent=4) + "\n").encode()


# -- deployments ---------------------------------------------------------------------------


KIRO = "claude-kiro-oauth"
OAUTH_TYPES = ["gemini-cli-oauth", "openai-qwen-oauth", "openai-codex-oauth", KIRO]
NAMES = st.text(CHARS, min_size=1, max_size=8).filter(lambda t: "\x1f" not in t)
"""Node uuids and type names any store holds: non-empty, without ``\\x1f``."""
TYPES = st.one_of(
    *[st.sampled_from([*OAUTH_TYPES, "openai-custom"])] * 3,
    NAMES.filter(lambda t: ":" not in t),
)
SETTING_KEYS = st.one_of(st.just(""), NAMES).filter(
    lambda k: k not in HOT_KEYS and k != "uuid" and "PATH" not in k
)
TOKEN_FILES = 2
"""Token files per folder: few, so that nodes often share one."""
DEFECTS = st.sampled_from([None] * 16 + ["type", "key", "counter", "token"])
"""What makes a deployment one no store can hold (``None``: nothing, most of the time)."""


@st.composite
def token_path(draw: st.DrawFn, provider_type: str, relative: str | None = None) -> str:
    """A path string naming ``relative`` (by default one of a few token files: nodes
    share files), in any spelling the Node service resolves to it."""
    if relative is None:
        index = draw(st.integers(0, TOKEN_FILES - 1))
        relative = (
            f"configs/kiro/t{index}/t{index}.json"
            if provider_type == KIRO
            else f"configs/tokens/t{index}.json"
        )
    spelling = draw(st.sampled_from(["as-is", "dot", "windows", "windows-dot"]))
    if spelling == "dot":
        return f"./{relative}"
    if spelling == "windows":
        return relative.replace("/", "\\")
    if spelling == "windows-dot":
        return ".\\" + relative.replace("/", "\\")
    return relative


@st.composite
def pools(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    doc: dict[str, list[dict[str, Any]]] = {}
    for provider_type in draw(st.lists(TYPES, min_size=1, max_size=3, unique=True)):
        nodes = []
        for uuid in draw(st.lists(NAMES, max_size=3, unique=True)):
            node: dict[str, Any] = {"uuid": uuid}
            keys = path_keys_for(provider_type)
            if keys and draw(st.integers(0, 4)):
                node[keys[0]] = draw(token_path(provider_type))
            node.update(draw(st.dictionaries(SETTING_KEYS, VALUES, max_size=3)))
            if draw(st.booleans()):
                node["isHealthy"] = draw(st.booleans())
                node["usageCount"] = draw(st.integers(0, 2**31))
            nodes.append(node)
        doc[provider_type] = nodes
    named = [(t, n) for t, nodes in doc.items() for n in nodes if set(n) & CREDENTIAL_PATH_KEYS]
    if named and draw(st.booleans()):  # a second node naming a token file, spelt otherwise
        provider_type, node = draw(st.sampled_from(named))
        (key,) = set(node) & CREDENTIAL_PATH_KEYS
        relative = posixpath.normpath(node[key].replace("\\", "/"))
        uuid = draw(NAMES.filter(lambda u: all(n["uuid"] != u for n in doc[provider_type])))
        twin = {**node, "uuid": uuid, key: draw(token_path(provider_type, relative))}
        doc[provider_type].append(twin)
    return doc


def break_it(defect: str, pools_doc: dict[str, Any], files: dict[str, bytes]) -> None:
    """Make the deployment one no store can hold (migrate refuses it)."""
    nodes = [n for nodes in pools_doc.values() for n in nodes]
    if defect == "type" or not nodes:
        pools_doc["openai-custom:eu"] = []  # ':' joins Redis key names
    elif defect == "key":
        nodes[0]["bad\x1fkey"] = 1  # \x1f joins a node's key order
    elif defect == "counter":
        nodes[0]["errorCount"] = "three"
    else:  # a token file a node names that is no JSON
        path = next((v for n in nodes for k, v in n.items() if k in CREDENTIAL_PATH_KEYS), None)
        name = posixpath.normpath(path.replace("\\", "/")) if path else "configs/tokens/t0.json"
        files[name] = b"{not json"


FILE_NAMES = st.text(
    st.characters(codec="utf-8", exclude_characters="/\\\x00", exclude_categories=["Cs"]),
    min_size=1,
    max_size=6,
).filter(lambda n: not n.startswith(".") and n.strip() == n and n.strip())


@st.composite
def deployment(draw: st.DrawFn) -> dict[str, bytes]:
    """A deployment folder: relative path → bytes."""
    files: dict[str, bytes] = {}

    def json_file(name: str, value: Any) -> None:
        raw = draw(st.booleans()) and draw(st.booleans())  # a quarter: another writer
        files[name] = another_writer(value) if raw else node_format(value)

    config = draw(st.dictionaries(TEXT.filter(lambda k: "PATH" not in k), VALUES, max_size=4))
    json_file("configs/config.json", config)
    pools_doc = draw(pools())
    token_paths = {f"configs/tokens/t{i}.json" for i in range(TOKEN_FILES)}
    token_paths |= {f"configs/kiro/t{i}/t{i}.json" for i in range(TOKEN_FILES)}
    for path in sorted(token_paths):
        if draw(st.integers(0, 5)):  # mostly present; missing ones are reported, not fatal
            json_file(path, draw(st.dictionaries(TEXT, VALUES, max_size=4)))
        if "/kiro/" in path and draw(st.booleans()):
            # The Kiro IDE's client registration beside the token (merged in by the
            # adapter), or a file there that is no JSON object (the adapter skips it).
            sibling = path.rsplit("/", 1)[0] + "/registration.json"
            if draw(st.integers(0, 3)):
                json_file(sibling, draw(st.dictionaries(TEXT, VALUES, max_size=3)))
            else:
                files[sibling] = draw(st.binary(max_size=8))
    defect = draw(DEFECTS)
    if defect is not None:
        break_it(defect, pools_doc, files)
    named = [n for nodes in pools_doc.values() for n in nodes if set(n) & CREDENTIAL_PATH_KEYS]
    if named and draw(st.integers(0, 7)) == 0:  # a token file outside the deployment
        (key,) = set(named[0]) & CREDENTIAL_PATH_KEYS
        named[0][key] = draw(st.sampled_from([OUTSIDE, OUTSIDE.replace("/", "\\")]))
        json_file(OUTSIDE, draw(st.dictionaries(TEXT, VALUES, max_size=2)))
    json_file("configs/provider_pools.json", pools_doc)
    plugins = draw(st.dictionaries(TEXT, st.dictionaries(TEXT, VALUES, max_size=2), max_size=3))
    for entry in plugins.values():
        entry.pop("enabled", None)
        if draw(st.booleans()):
            entry["enabled"] = draw(st.booleans())
    json_file("configs/plugins.json", {"plugins": plugins})
    models = draw(st.lists(st.dictionaries(TEXT, VALUES, max_size=2), max_size=3))
    json_file(
        "configs/custom_models.json",
        [{"id": f"model-{i}", **m} for i, m in enumerate(models)],
    )
    if draw(st.booleans()):
        prompt = draw(st.text(st.characters(codec="utf-8"), max_size=20))
        files["configs/input_system_prompt.txt"] = prompt.encode()
    if draw(st.booleans()):
        files["configs/pwd"] = HASHED_PWD
    for name, data in draw(st.dictionaries(FILE_NAMES, st.binary(max_size=16), max_size=2)).items():
        files[f"configs/plugin-data/{name}"] = data  # plugin data: opaque bytes
    if draw(st.booleans()):  # kept as bytes (typed only with --include usage-cache)
        json_file("configs/usage-cache.json", draw(VALUES))
    files["configs/token-store.json"] = EMPTY_TOKEN_STORE
    return files


OUTSIDE = "../outside/token.json"
"""A token path escaping the working directory: no store may take (or export write) it."""


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(files=deployment(), refresh=st.integers(0, 3).map(bool))
def test_migrate_then_export_gives_the_same_bytes_or_a_refusal_before_any_write(
    files: dict[str, bytes], refresh: bool, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``refresh``, a token is refreshed between migrate and export, through the last
    of the nodes naming its file: the export has the refreshed token there (one file, one
    credential, whichever node refreshed it) and everything else unchanged."""
    with (
        tempfile.TemporaryDirectory() as folder,
        private_namespace(redis_url, monkeypatch) as ns,
    ):
        root = Path(folder) / "in"
        write_tree(root, files)
        migrated = cfgctl("migrate", "--configs", root / "configs", "--redis-url", ns.url)
        event(f"migrate exit {migrated.exit_code}")
        escaping = OUTSIDE in files
        if escaping:  # refused: the file outside is neither stored nor touched
            event("a token path escaping the working directory")
            assert migrated.exit_code == 2, describe(migrated)
            assert (root / OUTSIDE).read_bytes() == files[OUTSIDE]
        if migrated.exit_code != 0:
            assert migrated.exit_code == 2, describe(migrated)
            assert "nothing was written" in migrated.stderr, describe(migrated)
            assert str(root / "configs") in migrated.stderr, describe(migrated)
            assert ns.key_names() == [], describe(migrated)
            return
        expected = dict(files)
        if refresh:
            expected.update(ns.run(refresh_a_shared_token))
        out = Path(folder) / "out"
        exported = cfgctl("export", "--to", out, "--redis-url", ns.url)
        assert exported.exit_code == 0, describe(exported)
        written = tree_bytes(out)
        assert sorted(written) == sorted(expected)
        differing = [name for name in expected if written[name] != expected[name]]
        assert differing == [], describe(exported)


async def refresh_a_shared_token(store: Store) -> dict[str, bytes]:
    """Refresh the token of the file most nodes name, through the last node naming it
    (``{}`` when no node names a stored token); return the file's new expected bytes."""
    sharers: dict[str, list[tuple[str, str]]] = {}
    for provider_type, node in await store.pools.list():
        carrier = credential_path_of(provider_type, node)
        if carrier is not None and await store.credentials.get(provider_type, node.uuid):
            sharers.setdefault(same_file_key(carrier[1]), []).append((provider_type, node.uuid))
    if not sharers:
        event("refreshed no token: no node names a stored one")
        return {}
    file_key, nodes = max(sharers.items(), key=lambda item: len(item[1]))
    event(f"refreshed a token {len(nodes)} node(s) name")
    provider_type, uuid = nodes[-1]
    current = await store.credentials.get(provider_type, uuid)
    assert current is not None
    document = {**current.document, "access_token": "refreshed"}
    await store.credentials.put(attrs.evolve(current, document=document), current.version)
    for other_type, other in nodes:  # every node naming the file reads the refresh
        seen = await store.credentials.get(other_type, other)
        assert seen is not None and seen.document == document
    return {file_key: jsjson.dump_bytes(document)}
