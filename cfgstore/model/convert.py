"""Strict cattrs structuring for the typed fields of each format.

cattrs' default hooks coerce (``int("5")``, ``bool("false")``); file data must instead be
rejected with the JSON path of the bad field. :func:`structure` turns cattrs' grouped
errors into one :class:`~cfgstore.errors.InvalidData` naming the source and path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.v import transform_error

from cfgstore.errors import InvalidData
from cfgstore.model import jsjson

T = TypeVar("T")


def _strict(kind: type) -> Any:
    def hook(value: Any, _: type) -> Any:
        # bool is an int subclass in Python but not a number in JSON.
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}, got a boolean")
        if not isinstance(value, kind):
            raise TypeError(f"expected {_json_type_name(kind)}, got {_json_type_name(type(value))}")
        return value

    return hook


def _json_type_name(kind: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        dict: "an object",
        list: "an array",
        type(None): "null",
    }.get(kind, kind.__name__)


def make_converter() -> cattrs.Converter:
    """A converter whose scalar hooks check types instead of coercing them."""
    converter = cattrs.Converter(forbid_extra_keys=False)
    for kind in (str, int, bool):
        converter.register_structure_hook(kind, _strict(kind))
    return converter


converter = make_converter()


def structure(
    data: Any, cls: type[T], source: str, path: str = "$", keys: Mapping[str, str] | None = None
) -> T:
    """Structure ``data`` into ``cls`` or raise :class:`InvalidData` at the first bad field.

    ``keys`` maps attribute names to the JSON keys they were renamed from, so the error
    names the field as it appears in the file."""
    try:
        return converter.structure(data, cls)
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError) as exc:
        # transform_error gives "problem @ $.path.attribute"
        problem, _, where = transform_error(exc, path=path)[0].partition(" @ ")
        head, dot, attribute = where.rpartition(".")
        if keys and dot and attribute in keys:
            where = f"{head}.{keys[attribute]}"
        raise InvalidData(source, where or path, problem) from None
    except (TypeError, ValueError) as exc:
        raise InvalidData(source, path, str(exc)) from None


def json_path(*parts: str | int) -> str:
    """Build a JSON path such as ``$["openai-custom"][0].usageCount``."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{jsjson.dumps(part)}]"  # control characters and surrogates escaped
    return out
