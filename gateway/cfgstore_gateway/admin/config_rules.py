"""Validation of config changes from the admin API (aiclient-formats §2.2, §2.4).

:func:`field_errors` checks the keys the Node service knows and lets every other key
through (unknown keys are kept, as the store keeps them). ``None`` removes a key and is
always valid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Rule = Callable[[Any], str | None]


def _integer(low: int | None = None, high: int | None = None) -> Rule:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return "expected an integer"
        if low is not None and value < low:
            return f"must be at least {low}"
        if high is not None and value > high:
            return f"must be at most {high}"
        return None

    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else "expected a string"


def _non_empty_string(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "expected a non-empty string"


def _one_of(*choices: str) -> Rule:
    def check(value: Any) -> str | None:
        return None if value in choices else f"expected one of {', '.join(choices)}"

    return check


def _safe_path(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "expected a non-empty path"
    if ".." in value.replace("\\", "/").split("/") or "\0" in value:
        return "must not contain '..' segments"
    return None


def _strings(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return "expected a list of strings"
    return None


def _objects(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        return "expected a list of objects"
    return None


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else "expected an object"


def _chain(value: Any) -> str | None:
    if not isinstance(value, dict) or not all(
        isinstance(v, list) and all(isinstance(t, str) for t in v) for v in value.values()
    ):
        return "expected an object of provider type → list of provider types"
    return None


def _model_mapping(value: Any) -> str | None:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        return "expected an object of model → {targetProviderType, targetModel}"
    return None


def _proxy_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return "expected a URL string"
    if value and not value.startswith(("http://", "https://", "socks5://", "socks5h://")):
        return "expected an http://, https:// or socks5:// URL"
    return None


def _health_check(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "expected an object"
    if "enabled" in value and not isinstance(value["enabled"], bool):
        return "enabled: expected true or false"
    interval = value.get("interval")
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, int)):
        return "interval: expected milliseconds (an integer)"
    types = value.get("providerTypes")
    if types is not None and _strings(types) is not None:
        return "providerTypes: expected a list of strings"
    return None


_NON_NEGATIVE = _integer(0)
_POSITIVE = _integer(1)

RULES: Mapping[str, Rule] = {
    "REQUIRED_API_KEY": _non_empty_string,
    "SERVER_PORT": _integer(1, 65535),
    "HOST": _non_empty_string,
    "MODEL_PROVIDER": _non_empty_string,
    "SYSTEM_PROMPT_FILE_PATH": _safe_path,
    "SYSTEM_PROMPT_MODE": _one_of("append", "overwrite"),
    "SYSTEM_PROMPT_REPLACEMENTS": _objects,
    "PROMPT_LOG_BASE_NAME": _string,
    "PROMPT_LOG_MODE": _one_of("none", "console", "file"),
    "REQUEST_MAX_RETRIES": _integer(0, 100),
    "REQUEST_BASE_DELAY": _NON_NEGATIVE,
    "CREDENTIAL_SWITCH_MAX_RETRIES": _integer(0, 100),
    "RATE_LIMIT_COOLDOWN_ENABLED": _boolean,
    "RATE_LIMIT_COOLDOWN_MS": _NON_NEGATIVE,
    "RATE_LIMIT_COOLDOWN_JITTER_MS": _NON_NEGATIVE,
    "RATE_LIMIT_COOLDOWN_MAX_MS": _NON_NEGATIVE,
    "CRON_NEAR_MINUTES": _POSITIVE,
    "CRON_REFRESH_TOKEN": _boolean,
    "LOGIN_EXPIRY": _POSITIVE,
    "LOGIN_MAX_ATTEMPTS": _POSITIVE,
    "LOGIN_LOCKOUT_DURATION": _POSITIVE,
    "LOGIN_MIN_INTERVAL": _NON_NEGATIVE,
    "TRUST_PROXY": _boolean,
    "TRUSTED_PROXY_IPS": _strings,
    "TRUSTED_PROXY_HOPS": _POSITIVE,
    "PROVIDER_POOLS_FILE_PATH": _safe_path,
    "CUSTOM_MODELS_FILE_PATH": _safe_path,
    "LOG_DIR": _safe_path,
    "MAX_ERROR_COUNT": _POSITIVE,
    "WARMUP_TARGET": _NON_NEGATIVE,
    "REFRESH_CONCURRENCY_PER_PROVIDER": _POSITIVE,
    "REFRESH_CONCURRENCY_GLOBAL": _POSITIVE,
    "REFRESH_BUFFER_DELAY": _NON_NEGATIVE,
    "REFRESH_TASK_TIMEOUT_MS": _POSITIVE,
    "SCHEDULED_HEALTH_CHECK": _health_check,
    "providerFallbackChain": _chain,
    "modelFallbackMapping": _model_mapping,
    "PROXY_URL": _proxy_url,
    "PROXY_ENABLED_PROVIDERS": _strings,
    "HEALTH_ALERT_WEBHOOK_URL": _proxy_url,
    "UI_ENABLED": _boolean,
    "TLS_SIDECAR_ENABLED": _boolean,
    "TLS_SIDECAR_ENABLED_PROVIDERS": _strings,
    "TLS_SIDECAR_PORT": _integer(1, 65535),
}
"""Key → check returning a problem or ``None``. Keys not listed take any JSON value."""

NOT_REMOVABLE = frozenset({"REQUIRED_API_KEY"})
MAX_KEY_LENGTH = 128
MAX_PROMPT_BYTES = 1024 * 1024


def field_errors(changes: Mapping[str, Any]) -> dict[str, str]:
    """Problems per key of ``changes`` (empty when every change is acceptable)."""
    errors: dict[str, str] = {}
    for key, value in changes.items():
        if not key or len(key) > MAX_KEY_LENGTH:
            errors[key or "(empty key)"] = f"a key is 1 to {MAX_KEY_LENGTH} characters"
            continue
        if value is None:
            if key in NOT_REMOVABLE:
                errors[key] = "cannot be removed (its default would let anyone in)"
            continue
        if key == "systemPrompt":
            if not isinstance(value, str):
                errors[key] = "expected a string"
            elif len(value.encode()) > MAX_PROMPT_BYTES:
                errors[key] = f"larger than {MAX_PROMPT_BYTES} bytes"
            continue
        rule = RULES.get(key)
        problem = rule(value) if rule is not None else None
        if problem is not None:
            errors[key] = problem
    return errors
