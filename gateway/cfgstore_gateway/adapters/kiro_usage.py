"""Kiro's ``getUsageLimits`` answer as the Node service's usage object (aiclient-protocols
§4.2): ``{"summary": {usedPercent, status, resetAt, plan, planClass, unit, totalUsed,
totalLimit}, "user": {"email"}, "items": [...], "raw": <the answer>}``.

Items: each ``usageBreakdownList`` (or ``usageBreakdown``) entry, its ``bonuses`` and its
``freeTrialInfo``, each only when its reset/expiry lies within 90 days of now (or has none).
``…WithPrecision`` values win over the plain ones. Percentages are capped at 100; status is
``danger`` above 90 %, ``warning`` above 70 %, else ``normal`` (an expired bonus or trial is
``danger``). Totals count the items not expired. The plan is
``subscriptionInfo.subscriptionTitle`` (or ``subscription.title``, else ``FREE``) without a
leading ``KIRO``. Timestamps below 1e10 are seconds; times are given as ISO strings
(``…Z``, milliseconds). Status, times and plan class are the shared ones of
:mod:`~cfgstore_gateway.adapters.usage_format`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cfgstore_gateway.adapters.usage_format import iso_time, plan_class, status_of

WINDOW_MS = 90 * 24 * 3600 * 1000


def _number(entry: Mapping[str, Any], key: str, default: float | None = 0) -> Any:
    precise = entry.get(f"{key}WithPrecision")
    if isinstance(precise, int | float) and not isinstance(precise, bool):
        return precise
    plain = entry.get(key)
    if isinstance(plain, int | float) and not isinstance(plain, bool):
        return plain
    return default


def _percent(used: Any, limit: Any) -> float:
    if isinstance(used, int | float) and isinstance(limit, int | float) and limit > 0:
        return min(100.0, used / limit * 100)
    return 0


def _item(
    item_id: object, label: object, used: Any, limit: Any, reset: object, *, expired: bool
) -> dict[str, Any]:
    """One item counted in tokens: a usage breakdown, a bonus or a free trial (``danger``
    once expired)."""
    percent = _percent(used, limit)
    return {
        "id": item_id,
        "label": label,
        "used": used,
        "limit": limit,
        "percent": percent,
        "unit": "tokens",
        "status": "danger" if expired else status_of(percent),
        "resetAt": iso_time(reset),
        "isExpired": expired,
    }


def format_usage(raw: dict[str, Any], now_ms: int | None = None) -> dict[str, Any]:
    now = now_ms if now_ms is not None else int(time.time() * 1000)

    def within(value: object) -> bool:
        if not value:
            return True
        if isinstance(value, int | float) and not isinstance(value, bool):
            ms = value * 1000 if value < 1e10 else value
        elif isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return True
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            ms = parsed.timestamp() * 1000
        else:
            return True
        return abs(ms - now) <= WINDOW_MS

    breakdowns = raw.get("usageBreakdownList") or raw.get("usageBreakdown") or []
    items: list[dict[str, Any]] = []
    for entry in breakdowns if isinstance(breakdowns, list) else []:
        if not isinstance(entry, Mapping):
            continue
        if within(entry.get("nextDateReset")):
            used, limit = _number(entry, "currentUsage", None), _number(entry, "usageLimit", None)
            items.append(
                _item(
                    entry.get("resourceType"),
                    entry.get("displayName"),
                    used,
                    limit,
                    entry.get("nextDateReset"),
                    expired=False,
                )
            )
        bonuses = entry.get("bonuses")
        for bonus in bonuses if isinstance(bonuses, list) else []:
            if not isinstance(bonus, Mapping) or not within(bonus.get("expiresAt")):
                continue
            expired = bonus.get("status") == "EXPIRED"
            items.append(
                _item(
                    f"bonus_{bonus.get('bonusCode') or bonus.get('displayName')}",
                    f"Bonus: {bonus.get('displayName')}" + (" (Expired)" if expired else ""),
                    _number(bonus, "currentUsage"),
                    _number(bonus, "usageLimit"),
                    bonus.get("expiresAt"),
                    expired=expired,
                )
            )
        trial = entry.get("freeTrialInfo")
        if isinstance(trial, Mapping) and within(trial.get("freeTrialExpiry")):
            expired = trial.get("freeTrialStatus") == "EXPIRED"
            items.append(
                _item(
                    f"freetrial_{entry.get('resourceType')}",
                    "Free Trial" + (" (Expired)" if expired else ""),
                    _number(trial, "currentUsage"),
                    _number(trial, "usageLimit"),
                    trial.get("freeTrialExpiry"),
                    expired=expired,
                )
            )
    active = [item for item in items if not item["isExpired"]]
    total_used = sum(item["used"] or 0 for item in active)
    total_limit = sum(item["limit"] or 0 for item in active)
    used_percent = _percent(total_used, total_limit)
    subscription = raw.get("subscriptionInfo")
    legacy = raw.get("subscription")
    plan = (
        (subscription.get("subscriptionTitle") if isinstance(subscription, Mapping) else None)
        or (legacy.get("title") if isinstance(legacy, Mapping) else None)
        or "FREE"
    )
    plan = str(plan)
    plan = re.sub(r"^KIRO\s+", "", plan, flags=re.IGNORECASE)
    user = raw.get("userInfo")
    return {
        "summary": {
            "usedPercent": used_percent,
            "status": status_of(used_percent),
            "resetAt": iso_time(raw.get("nextDateReset")),
            "plan": plan,
            "planClass": plan_class(plan),
            "unit": items[0]["unit"] if items else "tokens",
            "totalUsed": total_used,
            "totalLimit": total_limit,
        },
        "user": {"email": user.get("email") if isinstance(user, Mapping) else None},
        "items": items,
        "raw": raw,
    }
