"""Reading a stored ``config.json`` with unusable values: the other keys are used, the bad
ones read as their defaults and are named in ``problems``; what the Node service accepts
is never flagged; a document that is not JSON still fails clearly."""

from __future__ import annotations

from typing import Any

import pytest

from cfgstore.errors import InvalidData
from cfgstore.model.config import DEFAULTS, config_from_text
from cfgstore.model.jsjson import loads_members
from cfgstore.model.limits import MAX_DOCUMENT_DEPTH
from tests.support.deep_json import nested


def read(text: str) -> Any:
    return config_from_text(text, "config.json", "v1")


@pytest.mark.parametrize("depth", [MAX_DOCUMENT_DEPTH, 700, 20_000])
def test_a_value_nested_too_deeply_is_left_out_and_named(depth: int) -> None:
    config = read(f'{{"A": 1, "DEEP": {nested(depth)}, "MAX_ERROR_COUNT": 4, "Z": "x]}}"}}')
    assert config.document == {"A": 1, "MAX_ERROR_COUNT": 4, "Z": "x]}"}
    assert set(config.problems) == {"DEEP"} and "32 levels" in config.problems["DEEP"]
    assert config.max_error_count == 4 and config.get("DEEP") is None


def test_a_value_within_the_depth_limit_is_kept() -> None:
    config = read(f'{{"DEEP": {nested(MAX_DOCUMENT_DEPTH - 1)}}}')
    assert config.problems == {} and "DEEP" in config.document


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("SERVER_PORT", '"http"'),
        ("SERVER_PORT", "70000"),
        ("REQUEST_MAX_RETRIES", '"three"'),
        ("REQUEST_MAX_RETRIES", "1e400"),
        ("UI_ENABLED", '"false"'),
        ("SCHEDULED_HEALTH_CHECK", '"daily"'),
        ("MODEL_PROVIDER", "5"),
        ("providerFallbackChain", '{"a": "b"}'),
        ("PROXY_URL", '"ftp://proxy"'),
    ],
)
def test_a_wrongly_typed_value_reads_as_its_default_and_stays_in_the_document(
    key: str, text: str
) -> None:
    config = read(f'{{"{key}": {text}}}')
    assert set(config.problems) == {key}
    assert config.get(key) == DEFAULTS.get(key)
    assert key in config.document  # an edit of other keys writes it back as it was


def test_an_unusable_api_key_refuses_everyone_rather_than_read_as_the_default() -> None:
    assert read('{"REQUIRED_API_KEY": 123456}').get("REQUIRED_API_KEY") == ""
    assert read(f'{{"REQUIRED_API_KEY": {nested(5000)}}}').get("REQUIRED_API_KEY") == ""


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("MODEL_PROVIDER", '["claude-kiro-oauth", "openai-custom"]'),
        ("MODEL_PROVIDER", '"gemini-cli-oauth,openai-custom"'),
        ("MAX_ERROR_COUNT", "0"),
        ("SERVER_PORT", '"3001"'),
        ("REQUEST_BASE_DELAY", "1500.5"),
        ("PROVIDER_POOLS_FILE_PATH", "null"),
        ("PROVIDER_POOLS_FILE_PATH", '"../shared/provider_pools.json"'),
        ("REQUIRED_API_KEY", '""'),
        ("MY_OWN_KEY", '{"anything": [1, "two"]}'),
    ],
)
def test_what_the_node_service_accepts_is_not_flagged(key: str, value: str) -> None:
    assert read(f'{{"{key}": {value}}}').problems == {}


@pytest.mark.parametrize(
    "text",
    [
        "{nope",
        "[]",
        '{"a": 1',
        '{"a" 1, "deep": ' + nested(5000) + "}",
        '{"a": 1, "deep": ' + "[" * 5000,
        '{"deep": ' + nested(5000) + "} extra",
        '{"deep": ' + nested(5000) + ', "n": NaN}',
    ],
)
def test_a_document_that_is_not_a_json_object_is_still_refused(text: str) -> None:
    with pytest.raises(InvalidData):
        read(text)


def test_members_parse_one_by_one_around_the_deep_ones() -> None:
    text = '\ufeff { "a" : 1 , "d": ' + nested(3000) + ', "s": "\\"]" }\n'
    assert loads_members(text, "t") == ({"a": 1, "s": '"]'}, ["d"])
    assert loads_members(b"{}", "t") == ({}, [])
