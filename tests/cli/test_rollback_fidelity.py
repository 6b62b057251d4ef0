"""Rollback fidelity (issue 20): ``cfgctl migrate`` from a configs folder and ``cfgctl
export`` back lose nothing, and every refusal comes before the first write, naming the file
and the JSON path.

Every test copies the sample deployment into ``tmp_path`` and uses a Redis namespace of
its own (see :mod:`tests.cli.deployments`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.deployments import (
    EXAMPLE,
    Namespace,
    cfgctl,
    copy_deployment,
    describe,
    edit_json,
    tree_bytes,
)

GEMINI_TOKEN = "configs/gemini/1773300000000_oauth_creds.json"
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
