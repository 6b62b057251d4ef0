"""``cfgctl migrate`` takes Node's ``configs/model-usage-stats.json`` into the store's model
usage statistics (issue 19.3) and ``cfgctl export`` writes it back byte for byte; counts
added after the migration are exported in Node's format; a file not in Node's shape stays
a kept file, unchanged (see test_rollback_fidelity for the other files)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cfgstore.adapters import Store
from cfgstore.model import jsjson
from cfgstore.testing.test_usage_stats import NODE_FILE
from tests.cli.deployments import EXAMPLE, Namespace, cfgctl, copy_deployment, describe, tree_bytes

STATS = "configs/model-usage-stats.json"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    return copy_deployment(EXAMPLE, tmp_path)


def migrate(ns: Namespace, example: Path) -> None:
    result = cfgctl("migrate", "--configs", example / "configs", "--redis-url", ns.url)
    assert result.exit_code == 0, describe(result)


def export(ns: Namespace, out: Path) -> dict[str, bytes]:
    result = cfgctl("export", "--to", out, "--redis-url", ns.url, "--json")
    assert result.exit_code == 0, describe(result)
    assert json.loads(result.stdout)["differences"] == []
    return tree_bytes(out)


def test_node_statistics_migrate_into_the_store_and_export_byte_for_byte(
    example: Path, tmp_path: Path, ns: Namespace
) -> None:
    node_bytes = jsjson.dump_bytes(NODE_FILE)  # what Node's JSON.stringify(stats, null, 2) writes
    (example / STATS).write_bytes(node_bytes)
    migrate(ns, example)

    async def stored(store: Store) -> dict[str, Any]:
        return await store.usage_stats.read(live=False)

    assert ns.run(stored) == NODE_FILE  # in the entity, not a kept file
    assert STATS.encode() not in ns.client().hkeys(ns.key("files"))
    assert export(ns, tmp_path / "out")[STATS] == node_bytes

    async def count(store: Store) -> None:
        store.usage_stats.record("openai-custom", "zeta-model", prompt_tokens=4, at_ms=1)

    ns.run(count)
    expected = copy.deepcopy(NODE_FILE)
    written = json.loads(export(ns, tmp_path / "again")[STATS])
    assert written["summary"]["requestCount"] == expected["summary"]["requestCount"] + 1
    assert written["providers"]["openai-custom"]["models"]["zeta-model"]["promptTokens"] == 94
    assert list(written["daily"]) == [*expected["daily"], "1970-01-01"]
    again = (tmp_path / "again" / STATS).read_bytes()
    assert again == jsjson.dump_bytes(written)  # Node's format


def test_hand_formatted_statistics_come_back_as_they_were(
    example: Path, tmp_path: Path, ns: Namespace
) -> None:
    hand = (json.dumps(NODE_FILE, indent=4) + "\n").encode()
    (example / STATS).write_bytes(hand)
    migrate(ns, example)
    assert export(ns, tmp_path / "out")[STATS] == hand
