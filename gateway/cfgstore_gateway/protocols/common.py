"""Small helpers the converters share: ids, JSON arguments, data URLs, numbers."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cfgstore_gateway.protocols.neutral import Image, dropped


class StreamFailed(Exception):
    """The upstream stream reported an error instead of (the rest of) its answer; the
    message is the upstream's, for the client's protocol-shaped stream error."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def now_s() -> int:
    return int(time.time())


def parse_arguments(text: str, protocol: str) -> dict[str, Any]:
    """Tool-call arguments as an object, for a protocol that sends objects. Text that is not
    a JSON object (a model's broken output) becomes ``{}`` with a debug line: a converter
    never fails a request on it."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        dropped(protocol, f"tool arguments that are not JSON ({text[:40]!r})")
        return {}
    if not isinstance(value, dict):
        dropped(protocol, "tool arguments that are not a JSON object")
        return {}
    return value


def dump_arguments(value: Any) -> str:
    return json.dumps(value if value is not None else {}, ensure_ascii=False, separators=(",", ":"))


_DATA_URL = re.compile(r"^data:(?P<type>[\w.+/-]+);base64,(?P<data>.*)$", re.DOTALL)


def image_from_url(url: str) -> Image:
    """A ``data:`` URL as an inline image, any other URL as a reference."""
    match = _DATA_URL.match(url)
    if match:
        return Image(media_type=match["type"], data=match["data"])
    return Image(url=url)


def as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def as_dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def pick(obj: Mapping[str, Any], *names: str) -> Any:
    """The first of ``names`` present in ``obj`` (a protocol accepting both spellings,
    ``camelCase`` and ``snake_case``)."""
    for name in names:
        if name in obj:
            return obj[name]
    return None


def effort_budget(effort: Any) -> int | None:
    """A reasoning effort word as a thinking budget in tokens (the Node service's table:
    low 2048, medium 8192, high 20000)."""
    return {"minimal": 1024, "low": 2048, "medium": 8192, "high": 20000}.get(as_str(effort))


def budget_effort(budget: int | None) -> str | None:
    if budget is None:
        return None
    return "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"
