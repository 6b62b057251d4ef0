"""The usage object of the admin UI (aiclient-protocols §4.2), as the Node service's usage
service formats an account's limits: ``{"summary", "user", "items", "raw"}``.

:func:`percent_usage` is the Gemini / Antigravity shape: one item per model, its percent
used ``(1 − remaining fraction)·100``, the summary their mean, the latest reset, the plan
read from ``tierId`` (``FREE`` when absent) and the e-mail from ``account``. The helpers
(:func:`status_of`, :func:`iso_time`, :func:`plan_class`) are the service's, for any type:
every adapter's usage object (Kiro's, Codex's, Code Assist's) uses these, so the statuses,
reset times and plan classes read alike across account types. :func:`percent_item` and
:func:`percent_object` build the items and the object of quotas counted in percent
(Gemini, Antigravity, Codex's rate-limit windows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any


def status_of(percent: float) -> str:
    return "danger" if percent > 90 else "warning" if percent > 70 else "normal"


def iso_time(value: object) -> str | None:
    """An ISO timestamp (ms, ``Z``) from a number (s below 1e10, else ms) or a date text
    (one without an offset is UTC); ``None`` for an absent, boolean or unreadable value."""
    if not value:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        ms = value * 1000 if value < 10_000_000_000 else value
        stamp = datetime.fromtimestamp(ms / 1000, UTC)
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
    else:
        return None
    return stamp.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plan_of(tier: object) -> str:
    """The plan name shown for a tier id (the Node service's reading)."""
    if not tier:
        return "FREE"
    if not isinstance(tier, str):
        return str(tier)
    if "-" in tier:
        return tier
    words = tier.split()
    if len(words) >= 2 and words[-2].lower() == "for":
        return " ".join(words[max(0, len(words) - 3) :])
    return words[-1] if words else "FREE"


PLAN_CLASSES = (
    ("ultra", "plan-ultra"),
    ("team", "plan-team"),
    ("ent", "plan-team"),
    ("pro+", "plan-pro-plus"),
    ("pro +", "plan-pro-plus"),
    ("pro", "plan-pro"),
    ("plus", "plan-plus"),
    ("+", "plan-plus"),
    ("free", "plan-free"),
    ("basic", "plan-basic"),
    ("super", "plan-super"),
    ("heavy", "plan-heavy"),
    ("standard", "plan-standard"),
)
"""The CSS class of a plan: the first needle its lower-cased name contains wins."""


def plan_class(plan: str) -> str:
    p = plan.lower()
    for needle, name in PLAN_CLASSES:
        if needle in p:
            return name
    return "plan-default"


def percent_item(item_id: str, label: str, percent: float, reset_at: str | None) -> dict[str, Any]:
    """One item of a quota counted in percent (a limit of 100), ``reset_at`` already ISO."""
    return {
        "id": item_id,
        "label": label,
        "used": percent,
        "limit": 100,
        "percent": percent,
        "unit": "percent",
        "status": status_of(percent),
        "resetAt": reset_at,
    }


def percent_object(
    used: float,
    reset_at: str | None,
    plan: str,
    items: list[dict[str, Any]],
    raw: Mapping[str, Any],
) -> dict[str, Any]:
    """The usage object of quotas counted in percent: ``used`` and ``reset_at`` (ISO) as
    the summary, the plan and its class, the e-mail from ``raw``'s ``account``, a copy of
    ``raw``."""
    return {
        "summary": {
            "usedPercent": used,
            "status": status_of(used),
            "resetAt": reset_at,
            "plan": plan,
            "planClass": plan_class(plan),
            "unit": "percent",
        },
        "user": {"email": raw.get("account") or None},
        "items": items,
        "raw": dict(raw),
    }


def percent_usage(
    quotas: Iterable[tuple[str, float, object]], raw: Mapping[str, Any]
) -> dict[str, Any]:
    """The usage object (aiclient-protocols §4.2) from ``(model id, remaining fraction,
    reset time)`` per model and the raw answer (with ``tierId`` and ``account`` added):
    per-model percent used, the mean as the summary, the latest reset."""
    items: list[dict[str, Any]] = []
    latest: object = None
    for model, remaining, reset in quotas:
        percent = (1 - remaining) * 100
        if reset and (latest is None or str(reset) > str(latest)):
            latest = reset
        items.append(percent_item(model, model, percent, iso_time(reset)))
    items.sort(key=lambda item: item["id"])
    mean = sum(i["percent"] for i in items) / len(items) if items else 0
    return percent_object(mean, iso_time(latest), plan_of(raw.get("tierId")), items, raw)


def fraction(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
