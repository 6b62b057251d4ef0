"""JSON exactly as the Node service reads and writes it.

The Node service writes every file with ``JSON.stringify(value, null, 2)``: two-space indent,
raw UTF-8, no trailing newline. :func:`dumps` reproduces those bytes, including the places
where Python's ``json`` differs from JavaScript: integral floats print as integers (``1``,
not ``1.0``), tiny and huge numbers use JavaScript's exponent form (``1e-7``, ``1e+21``),
NaN and infinities become ``null``, lone surrogates are escaped, and keys that JavaScript
treats as array indices (``"0"``, ``"12"``) come first in numeric order, as in any
JavaScript object.

:func:`loads` parses with key order kept and integral numbers as ``int``; any syntax error
becomes :class:`~cfgstore.errors.InvalidData` naming the source and the line and column.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from cfgstore.errors import InvalidData

JSONValue = Any
"""A parsed JSON value: dict (ordered), list, str, int, float, bool or None."""

_SURROGATE = re.compile("[\ud800-\udfff]")

_MAX_EXACT_INT = 2**53
"""Every integer up to this magnitude is a double whose shortest digits are exact."""


class NestedTooDeeply(InvalidData):
    """The JSON text is nested deeper than the parser can follow (Python's JSON parser
    recurses once per level)."""


def loads(text: str | bytes, source: str) -> JSONValue:
    """Parse JSON text; raise :class:`InvalidData` (with line and column) when it is not JSON
    (:class:`NestedTooDeeply` when it is nested too deeply to parse).

    A UTF-8 byte-order mark is tolerated. Bytes that are not UTF-8 are invalid data too.
    """
    text = _as_text(text, source)
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise _syntax_error(source, exc) from None
    except RecursionError:
        raise NestedTooDeeply(source, "$", "nested too deeply") from None
    except ValueError as exc:  # from _reject_constant
        raise InvalidData(source, "$", str(exc)) from None


def loads_members(text: str | bytes, source: str) -> tuple[dict[str, JSONValue], list[str]]:
    """Parse a JSON object member by member: the object without the members whose values are
    nested too deeply to parse, and those members' keys. For a document :func:`loads`
    refused with :class:`NestedTooDeeply`, so that its other members can still be used;
    any other fault is :class:`InvalidData` as in :func:`loads`."""
    text = _as_text(text, source)
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    members: dict[str, JSONValue] = {}
    skipped: list[str] = []
    try:
        pos = _expect(text, _skip_space(text, 0), "{", source)
        closing = text.startswith("}", pos)
        while not closing:
            key, pos = decoder.raw_decode(text, pos)
            if not isinstance(key, str):
                raise InvalidData(source, f"char {pos}", "expected a member name")
            pos = _expect(text, _skip_space(text, pos), ":", source)
            try:
                members[key], pos = decoder.raw_decode(text, pos)
            except RecursionError:
                members.pop(key, None)
                skipped.append(key)
                pos = _skip_nested(text, pos, source)
            pos = _skip_space(text, pos)
            closing = text.startswith("}", pos)
            if not closing:
                pos = _expect(text, pos, ",", source)
        if text[pos + 1 :].strip(" \t\n\r"):
            raise InvalidData(source, f"char {pos + 1}", "extra data after the object")
    except json.JSONDecodeError as exc:
        raise _syntax_error(source, exc) from None
    except RecursionError:  # a member name nested too deeply: no object
        raise NestedTooDeeply(source, "$", "nested too deeply") from None
    except ValueError as exc:  # from _reject_constant
        raise InvalidData(source, "$", str(exc)) from None
    return members, skipped


_SPACE = re.compile(r"[ \t\n\r]*")
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def _skip_space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    return match.end() if match else pos


def _expect(text: str, pos: int, char: str, source: str) -> int:
    """The position after ``char`` (and the space after it) at ``pos``."""
    if not text.startswith(char, pos):
        raise InvalidData(source, f"char {pos}", f"expected {char!r}")
    return _skip_space(text, pos + 1)


def _skip_nested(text: str, pos: int, source: str) -> int:
    """The end of the array or object starting at ``pos``, found without parsing it."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text, pos):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
        elif token in ("]", "}"):
            depth -= 1
            if depth == 0:
                return match.end()
    raise InvalidData(source, f"char {pos}", "unterminated array or object")


def _as_text(text: str | bytes, source: str) -> str:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidData(source, f"byte {exc.start}", "not UTF-8 text") from None
    return text[1:] if text.startswith("\ufeff") else text


def _syntax_error(source: str, exc: json.JSONDecodeError) -> InvalidData:
    return InvalidData(source, f"line {exc.lineno} column {exc.colno}", exc.msg)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
"""What ``json.loads(text, parse_constant=…)`` builds on every call (a decoder and its
scanner, a few µs: a full read of a large pool parses several values per node)."""


def format_number(value: float) -> str:
    """Format a float the way JavaScript's ``Number.prototype.toString`` does."""
    if not math.isfinite(value):
        return "null"
    if value == 0:
        return "0"
    # repr() gives the shortest digits that round-trip, the same digits JavaScript picks;
    # only the placement of the decimal point and the exponent notation differ.
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    # Decimal exponent n such that value = 0.DIGITS × 10^n.
    n = len(int_part) + (int(exp_text) if exp_text else 0)
    if int_part == "0":
        n -= len(frac_part) - len(frac_part.lstrip("0")) + 1
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    sign = "-" if value < 0 else ""
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    exponent = n - 1
    exp_sign = "+" if exponent >= 0 else "-"
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{head}e{exp_sign}{abs(exponent)}"


def _normalise(value: JSONValue) -> tuple[JSONValue, bool]:
    """Return (value with JS-equivalent numbers, whether a slow-path float remains).

    Integral floats up to 2**53 become ints (JavaScript prints them without a fraction,
    and there every digit is exact) and non-finite floats become None. Other floats whose
    JavaScript text differs from Python's repr are left in place and reported, so the caller
    can take the exact (slower) writer; that includes integral floats above 2**53, which
    JavaScript prints as the shortest round-trip digits padded with zeros
    (``2.0**60`` → ``1152921504606847000``, not ``int(2.0**60)``'s exact digits).
    """
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, False
        if value.is_integer() and abs(value) <= _MAX_EXACT_INT:
            return int(value), False
        return value, format_number(value) != repr(value)
    if isinstance(value, dict):
        out: dict[str, JSONValue] = {}
        slow = False
        indexed = False
        for key, item in value.items():
            out[key], item_slow = _normalise(item)
            slow = slow or item_slow
            indexed = indexed or (isinstance(key, str) and "0" <= key[:1] <= "9")
        return (_js_key_order(out) if indexed else out), slow
    if isinstance(value, list):
        items = []
        slow = False
        for item in value:
            new, item_slow = _normalise(item)
            items.append(new)
            slow = slow or item_slow
        return items, slow
    return value, False


_MAX_ARRAY_INDEX = 2**32 - 2


def _array_index(key: str) -> int | None:
    """The integer of a key JavaScript treats as an array index (canonical decimal
    ``0`` … ``4294967294``), else ``None``."""
    if not key.isascii() or not key.isdigit() or (len(key) > 1 and key[0] == "0"):
        return None
    if len(key) > 10:
        return None
    number = int(key)
    return number if number <= _MAX_ARRAY_INDEX else None


def _js_key_order(obj: dict[str, JSONValue]) -> dict[str, JSONValue]:
    """Key order of a JavaScript object with these keys: array-index keys first in
    ascending numeric order, then the other keys in insertion order. (``JSON.parse`` of
    ``{"b":1,"1":2}`` followed by ``JSON.stringify`` gives ``{"1":2,"b":1}``.)"""
    indices = sorted(
        (number, key)
        for key in obj
        if isinstance(key, str) and (number := _array_index(key)) is not None
    )
    if not indices:
        return obj
    ordered = {key: obj[key] for _, key in indices}
    for key, item in obj.items():
        if key not in ordered:
            ordered[key] = item
    return ordered


def dumps(value: JSONValue) -> str:
    """Serialise like ``JSON.stringify(value, null, 2)`` (no trailing newline)."""
    normalised, slow = _normalise(value)
    text = (
        _dumps_exact(normalised, "")
        if slow
        else json.dumps(normalised, indent=2, ensure_ascii=False, allow_nan=False)
    )
    if _SURROGATE.search(text):
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def dump_bytes(value: JSONValue) -> bytes:
    """:func:`dumps` encoded as UTF-8: the exact bytes the Node service writes."""
    return dumps(value).encode("utf-8", "surrogatepass")


def _dumps_exact(value: JSONValue, indent: str) -> str:
    """Pure-Python writer used only when a float needs JavaScript's exponent notation."""
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = indent + "  "
        parts = [
            f"{inner}{json.dumps(k, ensure_ascii=False)}: {_dumps_exact(v, inner)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(parts) + "\n" + indent + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        inner = indent + "  "
        items = ",\n".join(inner + _dumps_exact(v, inner) for v in value)
        return "[\n" + items + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False)
