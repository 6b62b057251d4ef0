"""``cfgctl verify``: exit 0 when the files and Redis hold the same configuration, exit 1
listing every difference otherwise. Live counters and health are not configuration."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cfgstore.adapters import Store
from cfgstore.model.password import is_hashed
from tests.cli.deployments import (
    EXAMPLE,
    VARIANTS,
    Namespace,
    cfgctl,
    copy_deployment,
    deployment_sources,
    describe,
    dump_diff,
    edit_json,
    make_legacy_root,
)

SAME = "the files and the store hold the same configuration"
OPENAI_CUSTOM = ("openai-custom", "dccb18cf-3859-4edd-b146-a98dd0c4dc28")
GEMINI = ("gemini-cli-oauth", "d93de8e5-3628-4795-92ae-b8a6b8f17f66")
KIRO_SOCIAL = ("claude-kiro-oauth", "67ab4112-97a0-4660-9808-3f9ad194c93b")
KIRO_IDE = ("claude-kiro-oauth", "299f53b6-db17-48a2-a3e6-5754f00925e7")


@pytest.fixture
def migrated(tmp_path: Path, ns: Namespace) -> Path:
    """A private copy of the example deployment, migrated into ``ns``; its configs folder."""
    configs = copy_deployment(EXAMPLE, tmp_path) / "configs"
    result = cfgctl("migrate", "--configs", configs, "--redis-url", ns.url)
    assert result.exit_code == 0, describe(result)
    return configs


def verify(ns: Namespace, configs: Path, *extra: str) -> Any:
    return cfgctl("verify", "--configs", configs, "--redis-url", ns.url, *extra)


def difference_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines()[1:]]


@pytest.mark.parametrize("source", deployment_sources())
def test_same_data_exits_0_and_writes_nothing(source: Path, tmp_path: Path, ns: Namespace) -> None:
    configs = copy_deployment(source, tmp_path) / "configs"
    assert cfgctl("migrate", "--configs", configs, "--redis-url", ns.url).exit_code == 0
    before = ns.dump()
    result = verify(ns, configs)
    assert result.exit_code == 0, describe(result)
    assert result.stdout.strip() == SAME
    as_json = verify(ns, configs, "--json")
    assert as_json.exit_code == 0, describe(as_json)
    assert json.loads(as_json.stdout) == {"same": True, "differences": []}
    assert dump_diff(before, ns.dump()) == []


# -- changes in the files ----------------------------------------------------------------


def _node_setting(configs: Path) -> None:
    def change(pools: dict[str, Any]) -> None:
        pools["openai-custom"][0]["concurrencyLimit"] = 99

    edit_json(configs / "provider_pools.json", change)


def _credential_field(configs: Path) -> None:
    edit_json(
        configs / "gemini" / "1773300000000_oauth_creds.json",
        lambda token: token.update(refresh_token="1//FAKE-changed"),
    )


def _kiro_sibling(configs: Path) -> None:
    edit_json(
        configs / "kiro" / "ide-cache" / "28890a7ab216cb7a67d9e6205acfecc2f4d9640f.json",
        lambda sibling: sibling.update(clientSecret="FAKE-changed"),
    )


def _config_key(configs: Path) -> None:
    edit_json(configs / "config.json", lambda config: config.update(MAX_ERROR_COUNT=7))


def _plugin_toggle(configs: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["plugins"]["ai-monitor"]["enabled"] = True

    edit_json(configs / "plugins.json", change)


def _custom_model(configs: Path) -> None:
    edit_json(configs / "custom_models.json", lambda models: models[0].update(temperature=0.2))


def _system_prompt(configs: Path) -> None:
    path = configs / "input_system_prompt.txt"
    path.write_bytes(path.read_bytes() + b"one more line\n")


def _node_added(configs: Path) -> None:
    def change(pools: dict[str, Any]) -> None:
        pools["claude-custom-spare"].append({"uuid": "new-node", "CLAUDE_API_KEY": "FAKE"})

    edit_json(configs / "provider_pools.json", change)


def _token_file_removed(configs: Path) -> None:
    (configs / "gemini" / "1773300000000_oauth_creds.json").unlink()


def _password(configs: Path) -> None:
    (configs / "pwd").write_bytes(b"another-password")


FILE_CHANGES: list[Any] = [
    pytest.param(_node_setting, f"node {'/'.join(OPENAI_CUSTOM)}: settings differ", id="node"),
    pytest.param(_credential_field, f"credential {'/'.join(GEMINI)}: differs", id="credential"),
    pytest.param(
        _kiro_sibling, f"credential {'/'.join(KIRO_IDE)}: sibling files differ", id="sibling"
    ),
    pytest.param(_config_key, "config: MAX_ERROR_COUNT differ", id="config"),
    pytest.param(_plugin_toggle, "plugins: differ", id="plugin"),
    pytest.param(_custom_model, "custom models: differ", id="custom-model"),
    pytest.param(_system_prompt, "system prompt: differs", id="system-prompt"),
    pytest.param(_node_added, "node claude-custom-spare/new-node: not in the store", id="new"),
    pytest.param(
        _token_file_removed, f"credential {'/'.join(GEMINI)}: only in the store", id="token-gone"
    ),
    pytest.param(_password, "UI password: differs", id="password"),
]


@pytest.mark.parametrize(("change", "expected"), FILE_CHANGES)
def test_a_change_in_the_files_exits_1_and_is_listed(
    change: Callable[[Path], None], expected: str, migrated: Path, ns: Namespace
) -> None:
    change(migrated)
    before = ns.dump()
    result = verify(ns, migrated)
    assert result.exit_code == 1, describe(result)
    assert result.stdout.startswith("1 difference(s):"), describe(result)
    assert difference_lines(result.stdout) == [expected]
    as_json = verify(ns, migrated, "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout) == {"same": False, "differences": [expected]}
    assert dump_diff(before, ns.dump()) == []


def test_several_changes_are_all_listed(migrated: Path, ns: Namespace) -> None:
    _node_setting(migrated)
    _config_key(migrated)
    _plugin_toggle(migrated)
    result = verify(ns, migrated)
    assert result.exit_code == 1, describe(result)
    assert result.stdout.startswith("3 difference(s):"), describe(result)
    assert sorted(difference_lines(result.stdout)) == sorted(
        [
            "config: MAX_ERROR_COUNT differ",
            f"node {'/'.join(OPENAI_CUSTOM)}: settings differ",
            "plugins: differ",
        ]
    )


# -- changes in Redis --------------------------------------------------------------------


def test_a_change_made_in_redis_is_a_difference(migrated: Path, ns: Namespace) -> None:
    async def edit(store: Store) -> None:
        await store.pools.update_node(*OPENAI_CUSTOM, {"customName": "edited in the UI"})
        await store.plugin_config.set_enabled("ai-monitor", True)

    ns.run(edit)
    result = verify(ns, migrated)
    assert result.exit_code == 1, describe(result)
    assert sorted(difference_lines(result.stdout)) == [
        f"node {'/'.join(OPENAI_CUSTOM)}: settings differ",
        "plugins: differ",
    ]


def test_live_counters_and_health_in_redis_are_no_difference(migrated: Path, ns: Namespace) -> None:
    async def traffic(store: Store) -> None:
        for _ in range(5):
            await store.pools.record_success(*OPENAI_CUSTOM)
        await store.pools.record_selected(*KIRO_SOCIAL, seq=42)
        await store.pools.record_failure(*GEMINI, "503", max_error_count=3, immediate=True)
        await store.pools.record_cooldown(
            *KIRO_SOCIAL, "429", max_error_count=3, recovery_at_ms=4_102_444_800_000
        )
        await store.pools.record_need_refresh(*KIRO_IDE)
        await store.pools.record_health_check(
            "openai-custom-deepseek",
            "f604aa24-2ac7-40b8-9309-cfe199e9f7e0",
            ok=True,
            model="deepseek-chat",
            max_error_count=3,
        )

    ns.run(traffic)

    async def node(store: Store) -> Any:
        return await store.pools.get_node(*GEMINI)

    assert ns.run(node).state.is_healthy is False  # the traffic really landed
    result = verify(ns, migrated)
    assert result.exit_code == 0, describe(result)
    assert result.stdout.strip() == SAME


def test_counters_changed_in_the_files_are_no_difference(migrated: Path, ns: Namespace) -> None:
    def change(pools: dict[str, Any]) -> None:
        node = pools["openai-custom"][0]
        node["usageCount"] += 100
        node["errorCount"] = 2
        node["lastUsed"] = "2026-03-16T00:00:00.000Z"
        node["isHealthy"] = False

    edit_json(migrated / "provider_pools.json", change)
    result = verify(ns, migrated)
    assert result.exit_code == 0, describe(result)


def test_plaintext_password_in_the_files_matches_its_hash_in_redis(
    tmp_path: Path, ns: Namespace
) -> None:
    configs = copy_deployment(EXAMPLE, tmp_path) / "configs"
    (configs / "pwd").write_bytes((VARIANTS / "pwd.plaintext-with-newline").read_bytes())
    assert cfgctl("migrate", "--configs", configs, "--redis-url", ns.url).exit_code == 0

    async def stored(store: Store) -> str | None:
        return await store.password.get_stored()

    value = ns.run(stored)
    assert value is not None and is_hashed(value)  # Redis holds the hash, not the text
    result = verify(ns, configs)
    assert result.exit_code == 0, describe(result)
    (configs / "pwd").write_bytes(b"legacy-plain-password-2\n")
    changed = verify(ns, configs)
    assert changed.exit_code == 1, describe(changed)
    assert difference_lines(changed.stdout) == ["UI password: differs"]


def test_verify_against_an_empty_namespace_lists_everything(tmp_path: Path, ns: Namespace) -> None:
    configs = copy_deployment(EXAMPLE, tmp_path) / "configs"
    result = verify(ns, configs)
    assert result.exit_code == 1, describe(result)
    lines = difference_lines(result.stdout)
    assert any(line.startswith("provider types not in the store") for line in lines)
    assert sum(line.startswith("credential ") for line in lines) == 11
    assert ns.key_names() == []


def test_verify_with_unreachable_redis_exits_2(migrated: Path) -> None:
    result = cfgctl("verify", "--configs", migrated, "--redis-url", "redis://127.0.0.1:1/0")
    assert result.exit_code == 2, describe(result)
    assert len(result.stderr.strip().splitlines()) == 1, describe(result)


def test_verify_of_malformed_files_exits_2(migrated: Path, ns: Namespace) -> None:
    path = migrated / "provider_pools.json"
    path.write_bytes(path.read_bytes()[:-2])
    result = verify(ns, migrated)
    assert result.exit_code == 2, describe(result)
    assert "provider_pools.json" in result.stderr and "line" in result.stderr


def test_verify_legacy_root_layout(tmp_path: Path, ns: Namespace) -> None:
    root = tmp_path / "legacy"
    make_legacy_root(copy_deployment(EXAMPLE, tmp_path), root)
    migrated = cfgctl("migrate", "--configs", root, "--legacy-root", "--redis-url", ns.url)
    assert migrated.exit_code == 0, describe(migrated)
    result = verify(ns, root, "--legacy-root")
    assert result.exit_code == 0, describe(result)
    # Read as the modern layout (paths against the parent), no credential is found.
    modern = verify(ns, root)
    assert modern.exit_code == 1, describe(modern)
    lines = difference_lines(modern.stdout)
    assert sum(x.startswith("credential ") and "only in the store" in x for x in lines) == 11
