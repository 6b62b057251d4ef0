"""cfgstore.model.jsjson: JSON byte-identical to Node's ``JSON.stringify(v, null, 2)``."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfgstore.errors import InvalidData
from cfgstore.model.jsjson import dump_bytes, dumps, format_number, loads

# Number#toString / JSON.stringify outputs, checked against Node 20 (`node -e`).
JS_NUMBERS: list[tuple[float, str]] = [
    (1e21, "1e+21"),
    (1e-7, "1e-7"),
    (0.000001, "0.000001"),
    (123e-20, "1.23e-18"),
    (-123e-20, "-1.23e-18"),
    (-0.0, "0"),
    (0.0, "0"),
    (5e-324, "5e-324"),
    (2.2250738585072014e-308, "2.2250738585072014e-308"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (0.1 + 0.2, "0.30000000000000004"),
    (0.1, "0.1"),
    (1 / 3, "0.3333333333333333"),
    (1e16, "10000000000000000"),
    (float(2**53), "9007199254740992"),
    (-float(2**53) - 2, "-9007199254740994"),
    (float(2**60), "1152921504606847000"),
    (1e20, "100000000000000000000"),
    (1.2345e20, "123450000000000000000"),
    (999999999999999900000.0, "999999999999999900000"),
    (1.2345678901234568e21, "1.2345678901234568e+21"),
    (1e300, "1e+300"),
    (1.5, "1.5"),
    (-1.5, "-1.5"),
    (100.0, "100"),
    (4.35, "4.35"),
    (123.456, "123.456"),
    (12345.6789e-3, "12.3456789"),
    (2.5e-5, "0.000025"),
    (1.5e-6, "0.0000015"),
    (0.9999e-6, "9.999e-7"),
    (1.5e-7, "1.5e-7"),
    (-1e-7, "-1e-7"),
    (1.7e-10, "1.7e-10"),
    (math.nan, "null"),
    (math.inf, "null"),
    (-math.inf, "null"),
]


@pytest.mark.parametrize(("value", "expected"), JS_NUMBERS, ids=[t for _, t in JS_NUMBERS])
def test_format_number_matches_javascript(value: float, expected: str) -> None:
    assert format_number(value) == expected


@pytest.mark.parametrize(("value", "expected"), JS_NUMBERS, ids=[t for _, t in JS_NUMBERS])
def test_dumps_number_matches_json_stringify(value: float, expected: str) -> None:
    # dumps() takes the fast json path or the exact writer; both must give JS's text.
    assert dumps(value) == expected
    assert dumps([value]) == f"[\n  {expected}\n]"
    assert dumps({"n": value}) == f'{{\n  "n": {expected}\n}}'


def test_dumps_layout_is_json_stringify_2() -> None:
    value = {
        "a": [],
        "b": {},
        "c": [1, {"d": None, "e": True}],
        "名字": "中文 ✓",
        "esc": 'q"\\\n\t\x01',
    }
    assert dumps(value) == (
        "{\n"
        '  "a": [],\n'
        '  "b": {},\n'
        '  "c": [\n'
        "    1,\n"
        "    {\n"
        '      "d": null,\n'
        '      "e": true\n'
        "    }\n"
        "  ],\n"
        '  "名字": "中文 ✓",\n'
        '  "esc": "q\\"\\\\\\n\\t\\u0001"\n'
        "}"
    )


def test_dump_bytes_raw_utf8_without_trailing_newline() -> None:
    data = dump_bytes({"customName": "Kiro 主账号"})
    assert data == '{\n  "customName": "Kiro 主账号"\n}'.encode()
    assert not data.endswith(b"\n")


def test_lone_surrogates_are_escaped_like_javascript() -> None:
    # JSON.stringify("\ud800") === '"\\ud800"' (well-formed JSON.stringify, ES2019).
    assert dumps("\ud800") == '"\\ud800"'
    assert dumps({"k": "a\udfffb"}) == '{\n  "k": "a\\udfffb"\n}'
    assert dump_bytes("\ud800") == b'"\\ud800"'


def test_array_index_keys_come_first_like_a_javascript_object() -> None:
    # node -e 'JSON.stringify(JSON.parse(`{"b":1,"2":2,"1":3,"01":4,...}`), null, 2)'
    doc = loads(
        '{"b":1,"2":2,"1":3,"01":4,"4294967294":5,"4294967295":6,"-1":7}',
        "keys.json",
    )
    assert list(json.loads(dumps(doc))) == ["1", "2", "4294967294", "b", "01", "4294967295", "-1"]


def test_integral_floats_dump_as_integers() -> None:
    expected = '{\n  "topP": 1,\n  "t": -3,\n  "x": 1000\n}'
    assert dumps({"topP": 1.0, "t": -3.0, "x": 1e3}) == expected


def test_loads_keeps_key_order_and_int_type() -> None:
    doc = loads('{"z": 1, "a": 2.5, "m": [3]}', "s")
    assert list(doc) == ["z", "a", "m"]
    assert type(doc["z"]) is int
    assert type(doc["m"][0]) is int


def test_loads_tolerates_a_utf8_bom() -> None:
    assert loads("\ufeff{}".encode(), "bom.json") == {}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{\n  "a": 1,\n  "b": \n}', "line 4 column 1"),
        ('{"a": 1,}', "line 1 column 9"),
        ("[1, 2", "line 1 column 6"),
        ("", "line 1 column 1"),
        ('{\n  "x": tru\n}', "line 2 column 8"),
        ("{} []", "line 1 column 4"),
    ],
)
def test_syntax_errors_name_line_and_column(text: str, where: str) -> None:
    with pytest.raises(InvalidData) as info:
        loads(text, "configs/provider_pools.json")
    assert info.value.source == "configs/provider_pools.json"
    assert info.value.where == where
    assert where in str(info.value)


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}'])
def test_non_json_constants_are_rejected(text: str) -> None:
    with pytest.raises(InvalidData) as info:
        loads(text, "c.json")
    assert info.value.where == "$"


def test_invalid_utf8_is_invalid_data() -> None:
    with pytest.raises(InvalidData) as info:
        loads(b'{"a": "\xff"}', "bin.json")
    assert info.value.where == "byte 7"


def test_very_deep_nesting_is_invalid_data_not_recursion_error() -> None:
    with pytest.raises(InvalidData):
        loads("[" * 100_000 + "]" * 100_000, "deep.json")


def test_huge_exponent_parses_to_null_like_javascript() -> None:
    # JSON.parse("1e400") is Infinity, which JSON.stringify writes as null.
    assert dumps(loads("[1e400, -1e400]", "big.json")) == "[\n  null,\n  null\n]"


# ----------------------------------------------------------------------------- properties

_KEYS = st.text(max_size=8) | st.sampled_from(
    ["0", "1", "7", "10", "01", "-1", "1.5", "4294967294", "4294967295", "__proto__x"]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_KEYS, children, max_size=5),
    max_leaves=25,
)
"""JSON values whose JavaScript reading is exact: integers within ±2**53, finite floats."""


@given(JSON_VALUES | st.floats())
def test_dumps_loads_dumps_is_stable(value: Any) -> None:
    text = dumps(value)
    assert dumps(loads(text, "prop")) == text
    assert dump_bytes(value) == text.encode("utf-8")


@given(st.floats())
def test_format_number_round_trips(value: float) -> None:
    text = format_number(value)
    if math.isfinite(value):
        assert float(text) == value
        assert "e" not in text or abs(value) >= 1e21 or abs(value) < 1e-6
    else:
        assert text == "null"


@given(st.text())
def test_loads_on_random_text_raises_only_invalid_data(text: str) -> None:
    with contextlib.suppress(InvalidData):
        loads(text, "random.txt")


@given(st.binary())
def test_loads_on_random_bytes_raises_only_invalid_data(data: bytes) -> None:
    with contextlib.suppress(InvalidData):
        loads(data, "random.bin")


@given(JSON_VALUES, st.data())
def test_truncated_documents_raise_only_invalid_data(value: Any, data: st.DataObject) -> None:
    raw = dump_bytes(value)
    cut = data.draw(st.integers(min_value=0, max_value=max(0, len(raw) - 1)))
    try:
        loads(raw[:cut], "truncated.json")
    except InvalidData as exc:
        assert exc.source == "truncated.json"


# ------------------------------------------------------------------- against real Node

_NODE = shutil.which("node")

_NODE_ECHO = r"""
const readline = require('readline');
const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on('line', (line) => {
  // One JSON document per line in; its JSON.stringify(v, null, 2), as a JSON string, out.
  process.stdout.write(JSON.stringify(JSON.stringify(JSON.parse(line), null, 2)) + '\n');
});
"""


class NodeStringify:
    """A Node process answering ``JSON.stringify(JSON.parse(line), null, 2)`` per line."""

    def __init__(self, node: str) -> None:
        self.proc = subprocess.Popen(
            [node, "-e", _NODE_ECHO],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def __call__(self, value: Any) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        # ensure_ascii: lone surrogates travel as \udXXX escapes, as JSON allows.
        self.proc.stdin.write(json.dumps(value, ensure_ascii=True) + "\n")
        self.proc.stdin.flush()
        result: str = json.loads(self.proc.stdout.readline())
        return result

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def node_stringify() -> Iterator[NodeStringify]:
    if _NODE is None:
        pytest.skip("node is not installed")
    echo = NodeStringify(_NODE)
    yield echo
    echo.close()


@pytest.mark.skipif(_NODE is None, reason="node is not installed")
def test_table_against_node(node_stringify: NodeStringify) -> None:
    finite = [v for v, _ in JS_NUMBERS if math.isfinite(v)]
    expected = [t for v, t in JS_NUMBERS if math.isfinite(v)]
    assert json.loads(node_stringify(finite)) == json.loads("[" + ",".join(expected) + "]")
    assert node_stringify(finite) == dumps(finite)


@pytest.mark.skipif(_NODE is None, reason="node is not installed")
@settings(max_examples=150, deadline=None)
@given(st.lists(JSON_VALUES, min_size=1, max_size=8))
def test_dumps_equals_node_json_stringify(node_stringify: NodeStringify, batch: list[Any]) -> None:
    assert dumps(batch) == node_stringify(batch)


@pytest.mark.skipif(_NODE is None, reason="node is not installed")
@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=50))
def test_float_formatting_equals_node(node_stringify: NodeStringify, batch: list[float]) -> None:
    assert dumps(batch) == node_stringify(batch)


@pytest.mark.skipif(_NODE is None, reason="node is not installed")
def test_lone_surrogates_against_node(node_stringify: NodeStringify) -> None:
    value = {"a": "\ud800", "b": "x\udfffy", "c": "ok"}
    assert dumps(value) == node_stringify(value)
