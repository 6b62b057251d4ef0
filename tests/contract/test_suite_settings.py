"""How the contract suite builds the settings of the store under test: its defaults, then
the environment's ``CFGSTORE_*``, then ``--cfgstore-setting``, with ``{tmp}``/``{unique}``."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfgstore.errors import InvalidData
from cfgstore.testing.deployment import parse_chain, parse_setting, suite_settings


def test_the_environment_overrides_the_defaults_and_the_options_override_both(
    tmp_path: Path,
) -> None:
    environ = {
        "CFGSTORE_WRITE_DEBOUNCE_MS": "7",
        "CFGSTORE_MYSTORE_URL": "from-env",
        "CFGSTORE_TEST_SCALE": "9",  # the harness's own variables are not settings
        "HOME": "/root",
    }
    settings = suite_settings(
        ("memory", "mystore"),
        tmp_path,
        "abc123",
        environ,
        ["mystore_url=db://{unique}", "CFGSTORE_MYSTORE_DIR={tmp}/data", "Redis_Prefix=t{unique}"],
    )
    assert settings.chain == ("memory", "mystore")
    assert settings.configs_dir == tmp_path / "configs" and settings.configs_dir.is_dir()
    assert settings.reset_counters_on_start is False and settings.watch_interval_ms == 0
    assert settings.write_debounce_ms == 7
    assert settings.redis_prefix == "tabc123"
    assert settings.extra == {"mystore_url": "db://abc123", "mystore_dir": f"{tmp_path}/data"}


def test_malformed_chains_and_settings_are_refused() -> None:
    assert parse_chain("memory+file") == parse_chain(" memory , file ") == ("memory", "file")
    with pytest.raises(InvalidData, match="expected backend names"):
        parse_chain(" , ")
    with pytest.raises(InvalidData, match="expected KEY=VALUE"):
        parse_setting("no-equals-sign")
    assert parse_setting("dict_path=a=b") == ("CFGSTORE_DICT_PATH", "a=b")


def test_a_badly_typed_setting_names_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidData, match="write_debounce_ms"):
        suite_settings(("file",), tmp_path, "u", {}, ["write_debounce_ms=soon"])
