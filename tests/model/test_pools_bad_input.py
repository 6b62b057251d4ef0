"""Malformed input: every parser raises InvalidData naming the file and where, nothing else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfgstore.errors import InvalidData
from cfgstore.model.config import config_from_json
from cfgstore.model.custom_models import custom_models_from_json
from cfgstore.model.jsjson import loads
from cfgstore.model.plugin_config import plugin_config_from_json
from cfgstore.model.pools import node_from_settings, pools_from_json
from cfgstore.model.sessions import sessions_from_json
from cfgstore.model.usage_cache import usage_cache_from_json

SOURCE = "configs/provider_pools.json"


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        pytest.param([], "$", id="top-level-array"),
        pytest.param("pools", "$", id="top-level-string"),
        pytest.param({"openai-custom": {}}, '$["openai-custom"]', id="type-value-object"),
        pytest.param({"grok-web": None}, '$["grok-web"]', id="type-value-null"),
        pytest.param({"openai-custom": [1]}, '$["openai-custom"][0]', id="node-number"),
        pytest.param(
            {"openai-custom": [{"uuid": "a"}, []]}, '$["openai-custom"][1]', id="node-array"
        ),
        pytest.param(
            {"openai-custom": [{"OPENAI_API_KEY": "k"}]},
            '$["openai-custom"][0].uuid',
            id="missing-uuid",
        ),
        pytest.param({"x": [{"uuid": ""}]}, "$.x[0].uuid", id="empty-uuid"),
        pytest.param({"x": [{"uuid": 7}]}, "$.x[0].uuid", id="uuid-number"),
        pytest.param(
            {"claude-kiro-oauth": [{"uuid": "a"}, {"uuid": "b"}, {"uuid": "a"}]},
            '$["claude-kiro-oauth"][2].uuid',
            id="duplicate-uuid",
        ),
        pytest.param(
            {"openai-custom": [{"uuid": "a", "usageCount": "5"}]},
            '$["openai-custom"][0].usageCount',
            id="usageCount-string",
        ),
        pytest.param(
            {"openai-custom": [{"uuid": "a", "isHealthy": "yes"}]},
            '$["openai-custom"][0].isHealthy',
            id="isHealthy-string",
        ),
        pytest.param(
            {"openai-custom": [{"uuid": "a", "usageCount": True}]},
            '$["openai-custom"][0].usageCount',
            id="usageCount-bool",
        ),
        pytest.param(
            {"x": [{"uuid": "a", "errorCount": 1.5}]}, "$.x[0].errorCount", id="errorCount-float"
        ),
        pytest.param(
            {"x": [{"uuid": "a", "isDisabled": 0}]}, "$.x[0].isDisabled", id="isDisabled-zero"
        ),
        pytest.param(
            {"x": [{"uuid": "a", "lastUsed": 1773576000000}]},
            "$.x[0].lastUsed",
            id="lastUsed-number",
        ),
        pytest.param(
            {"x": [{"uuid": "a", "lastRefreshTime": "1773576000000"}]},
            "$.x[0].lastRefreshTime",
            id="lastRefreshTime-string",
        ),
        pytest.param(
            {"x": [{"uuid": "a", "_lastSelectionSeq": [1]}]},
            "$.x[0]._lastSelectionSeq",
            id="seq-array",
        ),
    ],
)
def test_bad_pool_shapes_name_the_json_path(doc: Any, where: str) -> None:
    with pytest.raises(InvalidData) as info:
        pools_from_json(doc, SOURCE)
    assert info.value.source == SOURCE
    assert info.value.where == where
    assert str(info.value).startswith(f"{SOURCE}: {where}: ")


def test_null_counters_count_as_unset() -> None:
    # JavaScript treats null counters as unset ("|| 0", "!== false"); so does the model.
    pools = pools_from_json(
        {"x": [{"uuid": "a", "usageCount": None, "isHealthy": None, "needsRefresh": None}]},
        SOURCE,
    )
    node = pools.types["x"][0]
    assert node.state.usage_count == 0
    assert node.state.is_healthy is True
    assert node.state.needs_refresh is False


def test_node_from_settings_reports_bad_fields() -> None:
    with pytest.raises(InvalidData) as info:
        node_from_settings({"usageCount": "5"}, "u-1", "api")
    assert info.value.source == "api"
    assert info.value.where == "$.usageCount"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{\n  "openai-custom": [\n    {\n      "uuid": "a",\n    }\n  ]\n}', "line 5 column 5"),
        ('{\n  "x": [\n', "line 3 column 1"),
        ('{"x": [] "y": []}', "line 1 column 10"),
    ],
)
def test_syntax_errors_name_line_and_column(text: str, where: str) -> None:
    with pytest.raises(InvalidData) as info:
        pools_from_json(loads(text, SOURCE), SOURCE)
    assert info.value.source == SOURCE
    assert info.value.where == where


@pytest.mark.parametrize(
    ("parse", "doc", "where"),
    [
        (lambda d, s: config_from_json(d, s, "v"), [], "$"),
        (sessions_from_json, [], "$"),
        (sessions_from_json, {"tokens": []}, "$.tokens"),
        (
            sessions_from_json,
            {"tokens": {"t": {"username": "admin", "loginTime": "1", "expiryTime": 2}}},
            "$.tokens.t.loginTime",
        ),
        (sessions_from_json, {"tokens": {"t": {"loginTime": 1, "expiryTime": 2}}}, "$.tokens.t"),
        (plugin_config_from_json, {"plugins": []}, "$.plugins"),
        (plugin_config_from_json, {"plugins": {"a": 1}}, "$.plugins.a"),
        (plugin_config_from_json, {"plugins": {"a-b": {"enabled": "no"}}}, '$.plugins["a-b"]'),
        (usage_cache_from_json, {"providers": []}, "$.providers"),
        (usage_cache_from_json, {"timestamp": 5}, "$.timestamp"),
        (custom_models_from_json, {}, "$"),
        (custom_models_from_json, [{"name": "no id"}], "$[0].id"),
        (custom_models_from_json, [{"id": "a"}, "b"], "$[1]"),
        (custom_models_from_json, [{"id": "a"}, {"id": "a"}], "$[1].id"),
    ],
)
def test_other_formats_raise_invalid_data_with_path(
    parse: Callable[[Any, str], Any], doc: Any, where: str
) -> None:
    with pytest.raises(InvalidData) as info:
        parse(doc, "f.json")
    assert info.value.source == "f.json"
    assert info.value.where.startswith(where)


# ----------------------------------------------------------------------------- properties

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
_HOT_KEYS = st.sampled_from(
    [
        "uuid",
        "isHealthy",
        "isDisabled",
        "usageCount",
        "errorCount",
        "lastUsed",
        "lastErrorTime",
        "lastErrorMessage",
        "needsRefresh",
        "refreshCount",
        "lastRefreshTime",
        "_lastSelectionSeq",
        "scheduledRecoveryTime",
        "tokens",
        "plugins",
        "providers",
        "timestamp",
        "id",
        "enabled",
        "username",
        "loginTime",
        "expiryTime",
    ]
)
JSON_ANY = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_HOT_KEYS | st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=20,
)
"""Random JSON values, biased towards the keys the parsers look at."""

NODE_LIKE = st.fixed_dictionaries(
    {"uuid": st.text(max_size=3) | st.integers()},
    optional={
        "isHealthy": _SCALARS,
        "usageCount": _SCALARS,
        "lastUsed": _SCALARS,
        "lastRefreshTime": _SCALARS,
        "_lastSelectionSeq": _SCALARS,
        "customName": _SCALARS,
    },
)
POOLS_LIKE = st.dictionaries(st.text(max_size=10), st.lists(NODE_LIKE | JSON_ANY, max_size=3))


def _config(doc: Any, source: str) -> Any:
    return config_from_json(doc, source, "v")


PARSERS: list[Callable[[Any, str], Any]] = [
    pools_from_json,
    _config,
    sessions_from_json,
    plugin_config_from_json,
    usage_cache_from_json,
    custom_models_from_json,
]


@pytest.mark.parametrize("parse", PARSERS, ids=lambda p: p.__name__)
@settings(max_examples=60)
@given(doc=JSON_ANY | POOLS_LIKE)
def test_random_values_parse_or_raise_invalid_data(
    parse: Callable[[Any, str], Any], doc: Any
) -> None:
    try:
        parse(doc, "random.json")
    except InvalidData as exc:
        assert exc.source == "random.json"
        assert exc.where.startswith("$")


@given(POOLS_LIKE)
def test_random_pools_either_parse_or_report_a_path_inside_the_document(doc: Any) -> None:
    try:
        pools = pools_from_json(doc, SOURCE)
    except InvalidData as exc:
        assert exc.where.startswith("$")
    else:
        assert pools.node_count() == sum(len(nodes) for nodes in doc.values())
