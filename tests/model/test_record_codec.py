"""Hot-path records as tagged JSON (cfgstore.model.record_codec): exact round trips, strict
reading."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cfgstore.errors import InvalidData
from cfgstore.model.record_codec import RECORD_TYPES, record_from_json, record_to_json
from cfgstore.model.records import (
    Cooldown,
    Failure,
    HealthCheckResult,
    NeedRefresh,
    NodeRecord,
    Recovered,
    Selected,
    Success,
)

SOURCE = "journal test.journal"
T0 = 1773576000000
TYPE = "openai-custom"
UUID = "5e0f3c1a-0000-4000-8000-000000000001"

_base: dict[str, st.SearchStrategy[Any]] = {
    "provider_type": st.text(),
    "uuid": st.text(),
    "at_ms": st.integers(),
}
_optional_text = st.none() | st.text()

RECORDS: st.SearchStrategy[NodeRecord] = st.one_of(
    st.builds(Selected, seq=st.integers(), **_base),
    st.builds(Success, **_base),
    st.builds(
        Failure,
        message=st.text(),
        max_error_count=st.integers(),
        immediate=st.booleans(),
        **_base,
    ),
    st.builds(
        Cooldown,
        message=st.text(),
        max_error_count=st.integers(),
        recovery_at_ms=st.integers(),
        **_base,
    ),
    st.builds(NeedRefresh, **_base),
    st.builds(Recovered, **_base),
    st.builds(
        HealthCheckResult,
        ok=st.booleans(),
        model=_optional_text,
        message=_optional_text,
        max_error_count=st.integers(),
        immediate=st.booleans(),
        reset_usage=st.booleans(),
        **_base,
    ),
)


def test_every_record_class_has_a_tag() -> None:
    assert set(RECORD_TYPES.values()) == set(NodeRecord.__subclasses__())


@given(RECORDS)
def test_round_trip_is_exact_through_json_text(record: NodeRecord) -> None:
    doc = record_to_json(record)
    text = json.dumps(doc, allow_nan=False)
    back = record_from_json(json.loads(text), SOURCE)
    assert type(back) is type(record)
    assert back == record
    assert record_to_json(back) == doc


@given(RECORDS)
def test_document_is_the_tag_then_every_field(record: NodeRecord) -> None:
    doc = record_to_json(record)
    keys = list(doc)
    assert keys[0] == "type"
    assert RECORD_TYPES[doc["type"]] is type(record)
    assert keys[1:] == [field.name for field in attrs.fields(type(record))]


def test_example_document() -> None:
    record = Failure(TYPE, UUID, T0, "500 Internal Server Error", 3)
    assert record_to_json(record) == {
        "type": "failure",
        "provider_type": TYPE,
        "uuid": UUID,
        "at_ms": T0,
        "message": "500 Internal Server Error",
        "max_error_count": 3,
        "immediate": False,
    }


def test_defaults_may_be_omitted_when_reading() -> None:
    doc = {"type": "failure", "provider_type": TYPE, "uuid": UUID, "at_ms": T0}
    doc |= {"message": "m", "max_error_count": 3}
    assert record_from_json(doc, SOURCE) == Failure(TYPE, UUID, T0, "m", 3)


GOOD = record_to_json(HealthCheckResult(TYPE, UUID, T0, False, "gpt-4o", "timeout", 3))


def _with(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        pytest.param([], "$", id="array"),
        pytest.param(None, "$", id="null"),
        pytest.param("success", "$", id="string"),
        pytest.param(_without("type"), "$.type", id="no-type"),
        pytest.param(_with(type=1), "$.type", id="type-number"),
        pytest.param(_with(type="Success"), "$.type", id="unknown-type"),
        pytest.param(_with(type="health_check_result"), "$.type", id="unknown-type-2"),
        pytest.param(_without("uuid"), "$.uuid", id="missing-uuid"),
        pytest.param(_without("at_ms"), "$.at_ms", id="missing-at"),
        pytest.param(_with(at_ms="1773576000000"), "$.at_ms", id="at-string"),
        pytest.param(_with(at_ms=True), "$.at_ms", id="at-bool"),
        pytest.param(_with(at_ms=1.5), "$.at_ms", id="at-float"),
        pytest.param(_with(ok=1), "$.ok", id="ok-number"),
        pytest.param(_with(ok=None), "$.ok", id="ok-null"),
        pytest.param(_with(model=7), "$.model", id="model-number"),
        pytest.param(_with(max_error_count=None), "$.max_error_count", id="max-null"),
        pytest.param(_with(provider_type=["x"]), "$.provider_type", id="type-array"),
        pytest.param(_with(extra=1), "$.extra", id="unknown-field"),
        pytest.param(_with(**{"odd key": 1}), '$["odd key"]', id="unknown-odd-field"),
        pytest.param(
            {"type": "selected", "provider_type": TYPE, "uuid": UUID, "at_ms": T0},
            "$.seq",
            id="selected-without-seq",
        ),
        pytest.param(
            {"type": "success", "provider_type": TYPE, "uuid": UUID, "at_ms": T0, "seq": 1},
            "$.seq",
            id="field-of-another-type",
        ),
    ],
)
def test_bad_documents_raise_invalid_data_with_the_path(doc: Any, where: str) -> None:
    with pytest.raises(InvalidData) as info:
        record_from_json(doc, SOURCE)
    assert info.value.source == SOURCE
    assert info.value.where == where


def test_path_prefix_names_the_record_inside_an_entry() -> None:
    with pytest.raises(InvalidData) as info:
        record_from_json(_with(at_ms="x"), SOURCE, "$.data[3]")
    assert info.value.where == "$.data[3].at_ms"


_values = st.none() | st.integers() | st.text() | st.booleans() | st.floats() | st.lists(st.none())
_keys = st.sampled_from(["provider_type", "uuid", "at_ms", "seq", "message", "ok"]) | st.text()


@given(st.sampled_from(sorted(RECORD_TYPES)), st.dictionaries(_keys, _values))
def test_arbitrary_objects_raise_only_invalid_data(tag: str, fields: dict[str, Any]) -> None:
    with contextlib.suppress(InvalidData):
        record = record_from_json({"type": tag, **fields}, SOURCE)
        assert type(record) is RECORD_TYPES[tag]


def test_writing_an_unknown_record_class_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        record_to_json(NodeRecord(TYPE, UUID, T0))
