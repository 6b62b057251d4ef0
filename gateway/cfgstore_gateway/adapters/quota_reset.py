"""When an account's quota comes back, from what an upstream said (for adapters setting a
reply's ``quota_reset_ms``, :mod:`cfgstore_gateway.adapters`).

:func:`quota_reset_ms` reads the Node service's sources (aiclient-protocols §1.6, "after a
failure" step 1), first found wins:

1. the ``Retry-After`` header: seconds, or an HTTP date;
2. the body's ``retryAfter`` / ``retry_after``: the same forms;
3. the body's ``retryDelay`` / ``retry_delay`` / ``retryAfterMs``: a duration;
4. each of the body's ``error.details[]``: ``retryDelay`` (Google's ``RetryInfo``), else
   ``metadata.quotaResetDelay``: a duration;
5. the body's (or its ``error``'s) ``resets_at`` (Codex: an epoch in seconds, or ms, or an
   ISO time), else ``resets_in_seconds``;
6. "after N s" / "after N ms" in the body's ``error.message``.

A duration is a number of ms, or text: ``"300ms"``, ``"12s"``, ``"1.5s"``, Google's
``"3600s"``, or compound ``"10h56m41.66s"`` (Gemini's ``quotaResetDelay``); text without
a unit is ms (as the Node service reads it). An epoch below ``1e10`` is in seconds.
The answer is an epoch in ms (``now_ms`` plus a delay), ``None`` when nothing says.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from cfgstore.model.timefmt import parse_time_ms

__all__ = ["duration_ms", "epoch_ms", "quota_reset_ms", "retry_after_ms"]

_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|h|m|s)?", re.IGNORECASE)
_UNIT_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0, "": 1.0}
_AFTER = re.compile(r"after\s+(\d+(?:\.\d+)?)\s*(ms|s)?\b", re.IGNORECASE)


def duration_ms(value: object) -> int | None:
    """A duration in ms (see the module docstring), ``None`` when unreadable or negative."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return round(value) if math.isfinite(value) and value >= 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip().replace(" ", "")
    if not text:
        return None
    total, position = 0.0, 0
    units: list[str] = []
    for match in _PART.finditer(text):
        if match.start() != position:
            return None
        unit = (match.group(2) or "").lower()
        if not unit and units:  # a bare number only alone ("300" = 300 ms)
            return None
        units.append(unit)
        total += float(match.group(1)) * _UNIT_MS[unit]
        position = match.end()
    if position != len(text) or not units:
        return None
    return round(total)


def epoch_ms(value: object) -> int | None:
    """An epoch in ms from seconds (below ``1e10``), ms, a digit string or an ISO time."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            return None
        return int(value * 1000) if value < 1e10 else int(value)
    moment = parse_time_ms(value)
    if moment is None or moment <= 0:
        return None
    return moment * 1000 if moment < 10_000_000_000 else moment


def retry_after_ms(value: object, now_ms: int) -> int | None:
    """``Retry-After``'s delay in ms: seconds (a number or its text), or an HTTP date (0 once
    past); ``None`` when absent, negative, not finite or unreadable. The gateway's 429
    cooldown reads the header with this too (:func:`cfgstore_gateway.proxy.cooldown_until`)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value * 1000) if math.isfinite(value) and value >= 0 else None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        return max(0, int(moment.timestamp() * 1000) - now_ms)
    return int(seconds * 1000) if math.isfinite(seconds) and seconds >= 0 else None


def _document(body: object) -> Mapping[str, Any] | None:
    if isinstance(body, bytes | bytearray):
        try:
            body = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
    elif isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    return body if isinstance(body, Mapping) else None


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def quota_reset_ms(
    *, now_ms: int, headers: Mapping[str, str] | None = None, body: object = None
) -> int | None:
    """The epoch ms at which the quota comes back per ``headers`` and ``body`` (JSON bytes,
    text or an already parsed object), ``None`` when neither says (module docstring)."""
    delay = retry_after_ms(_header(headers, "retry-after"), now_ms)
    if delay is not None:
        return now_ms + delay
    document = _document(body)
    if document is None:
        return None
    for key in ("retryAfter", "retry_after"):
        delay = retry_after_ms(document.get(key), now_ms)
        if delay is not None:
            return now_ms + delay
    for key in ("retryDelay", "retry_delay", "retryAfterMs"):
        delay = duration_ms(document.get(key))
        if delay is not None:
            return now_ms + delay
    error = document.get("error")
    error = error if isinstance(error, Mapping) else {}
    details = error.get("details")
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, Mapping):
            continue
        metadata = detail.get("metadata")
        reset = metadata.get("quotaResetDelay") if isinstance(metadata, Mapping) else None
        delay = duration_ms(detail.get("retryDelay") or reset)
        if delay is not None:
            return now_ms + delay
    for where in (document, error):
        moment = epoch_ms(where.get("resets_at"))
        if moment is not None:
            return moment
        seconds = where.get("resets_in_seconds")
        if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0:
            return now_ms + int(seconds * 1000)
    message = error.get("message")
    if isinstance(message, str):
        found = _AFTER.search(message)
        if found:
            amount = float(found.group(1))
            unit = (found.group(2) or "s").lower()
            return now_ms + round(amount if unit == "ms" else amount * 1000)
    return None
