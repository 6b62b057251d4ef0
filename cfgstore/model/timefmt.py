"""Times as the Node service stores them: ISO text from ``Date.toISOString()`` and epoch ms."""

from __future__ import annotations

import functools
import math
import time
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso_ms(ms: int) -> str:
    """Epoch ms → ``2026-05-30T07:59:58.120Z`` (always UTC, always milliseconds)."""
    return _iso_second(ms // 1000) + _MS_SUFFIX[ms % 1000]


_MS_SUFFIX = tuple(f".{ms:03d}Z" for ms in range(1000))
"""``.000Z`` … ``.999Z``: formatting the milliseconds (``:03d``) cost more than the
rest of :func:`iso_ms`, called a few times per applied record."""


@functools.lru_cache(maxsize=256)
def _iso_second(seconds: int) -> str:
    # Formatting a datetime costs microseconds and every hot-path record needs one or two;
    # records of one burst share their second.
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_time_ms(value: object) -> int | None:
    """Read a stored time: ms number, digit string, ISO text or ``YYYY-MM-DD HH:mm``.

    Returns ``None`` for anything unreadable (callers treat that as "unknown", as the Node
    service does with ``NaN``).
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        # JSON text such as 1e400 parses to infinity: an invalid date, as in JavaScript.
        return int(value) if math.isfinite(value) else None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # str.isdigit() alone accepts "²", which int() rejects
        try:
            return int(text)
        except ValueError:  # more digits than Python converts (sys.int_info.str_digits_check)
            return None
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
