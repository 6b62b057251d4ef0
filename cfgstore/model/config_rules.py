"""Checks of ``config.json`` values (aiclient-formats §2.2, §2.4): each returns a problem
or ``None``. One module, so the service, the admin API and ``cfgctl migrate`` cannot drift.

* :data:`STORED_RULES` is what a stored value must be for the service to use it at all: the
  types of §2.2, as loose as the Node service and this gateway's readers are (a number may
  be a numeric string, ``MODEL_PROVIDER`` a list, ``MAX_ERROR_COUNT`` 0). The stored config
  is read through it (:func:`cfgstore.model.config.config_from_json`: a key that fails is
  ignored and its default used).
* :data:`RULES` and :func:`field_errors` are stricter (ranges, non-empty values, safe
  paths): the admin API refuses a change that fails them with 422, and ``cfgctl migrate``
  warns about such a value in a folder (``--strict`` refuses it). ``None`` removes a key and
  is always valid, except for the keys in :data:`NOT_REMOVABLE`.

Keys not listed take any JSON value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

Rule = Callable[[Any], str | None]


def integer(low: int | None = None, high: int | None = None) -> Rule:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return "expected an integer"
        if low is not None and value < low:
            return f"must be at least {low}"
        if high is not None and value > high:
            return f"must be at most {high}"
        return None

    return check


def number(value: Any) -> str | None:
    """A number, or a string of an integer (what ``MainConfig.int_value`` reads)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return "expected a number"
    if isinstance(value, float) and not math.isfinite(value):
        return "expected a finite number"
    if isinstance(value, str):
        try:
            int(value)
        except ValueError:
            return "expected a number"
    return None


def port(value: Any) -> str | None:
    problem = number(value)
    if problem is None and not 1 <= int(value) <= 65535:
        return "expected a port number (1 to 65535)"
    return problem


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def string(value: Any) -> str | None:
    return None if isinstance(value, str) else "expected a string"


def string_or_strings(value: Any) -> str | None:
    if isinstance(value, str) or strings(value) is None:
        return None
    return "expected a string or a list of strings"


def non_empty_string(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "expected a non-empty string"


def one_of(*choices: str) -> Rule:
    def check(value: Any) -> str | None:
        return None if value in choices else f"expected one of {', '.join(choices)}"

    return check


def strings(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return "expected a list of strings"
    return None


def objects(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        return "expected a list of objects"
    return None


def chain(value: Any) -> str | None:
    if not isinstance(value, dict) or not all(
        isinstance(v, list) and all(isinstance(t, str) for t in v) for v in value.values()
    ):
        return "expected an object of provider type → list of provider types"
    return None


def model_mapping(value: Any) -> str | None:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        return "expected an object of model → {targetProviderType, targetModel}"
    return None


def url(value: Any) -> str | None:
    if not isinstance(value, str):
        return "expected a URL string"
    if value and not value.startswith(("http://", "https://", "socks5://", "socks5h://")):
        return "expected an http://, https:// or socks5:// URL"
    return None


def health_check(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "expected an object"
    if "enabled" in value and not isinstance(value["enabled"], bool):
        return "enabled: expected true or false"
    interval = value.get("interval")
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, int)):
        return "interval: expected milliseconds (an integer)"
    types = value.get("providerTypes")
    if types is not None and strings(types) is not None:
        return "providerTypes: expected a list of strings"
    return None


STORED_RULES: Mapping[str, Rule] = {
    "REQUIRED_API_KEY": string,
    "SERVER_PORT": port,
    "HOST": string,
    "MODEL_PROVIDER": string_or_strings,
    "SYSTEM_PROMPT_FILE_PATH": string,
    "SYSTEM_PROMPT_MODE": one_of("append", "overwrite"),
    "SYSTEM_PROMPT_REPLACEMENTS": objects,
    "PROMPT_LOG_BASE_NAME": string,
    "PROMPT_LOG_MODE": one_of("none", "console", "file", ""),  # "": the Node form unset
    **dict.fromkeys(
        (
            "REQUEST_MAX_RETRIES",
            "REQUEST_BASE_DELAY",
            "CREDENTIAL_SWITCH_MAX_RETRIES",
            "RATE_LIMIT_COOLDOWN_MS",
            "RATE_LIMIT_COOLDOWN_JITTER_MS",
            "RATE_LIMIT_COOLDOWN_MAX_MS",
            "CRON_NEAR_MINUTES",
            "LOGIN_EXPIRY",
            "LOGIN_MAX_ATTEMPTS",
            "LOGIN_LOCKOUT_DURATION",
            "LOGIN_MIN_INTERVAL",
            "MAX_ERROR_COUNT",
            "WARMUP_TARGET",
            "REFRESH_CONCURRENCY_PER_PROVIDER",
            "REFRESH_CONCURRENCY_GLOBAL",
            "REFRESH_BUFFER_DELAY",
            "REFRESH_TASK_TIMEOUT_MS",
            "USAGE_REFRESH_INTERVAL_MS",
        ),
        number,
    ),
    "RATE_LIMIT_COOLDOWN_ENABLED": boolean,
    "CRON_REFRESH_TOKEN": boolean,
    "TRUST_PROXY": boolean,
    "TRUSTED_PROXY_IPS": strings,
    "TRUSTED_PROXY_HOPS": number,
    "PROVIDER_POOLS_FILE_PATH": string,
    "CUSTOM_MODELS_FILE_PATH": string,
    "LOG_DIR": string,
    "SCHEDULED_HEALTH_CHECK": health_check,
    "providerFallbackChain": chain,
    "modelFallbackMapping": model_mapping,
    "PROXY_URL": url,
    "PROXY_ENABLED_PROVIDERS": strings,
    "HEALTH_ALERT_WEBHOOK_URL": url,
    "UI_ENABLED": boolean,
    "METRICS_REQUIRE_API_KEY": boolean,
    "TLS_SIDECAR_ENABLED": boolean,
    "TLS_SIDECAR_ENABLED_PROVIDERS": strings,
    "TLS_SIDECAR_PORT": port,
}
"""Key → check of a stored value. ``null`` is not checked: every reader treats it as unset."""


def _safe_path(value: Any) -> str | None:
    """A path the service opens for reading or writing (prompt, pools, logs): relative to
    the working directory and staying inside it, so an admin edit cannot point the service
    at a file elsewhere (``/etc/…``, ``C:\\…``, ``../…``)."""
    if not isinstance(value, str) or not value.strip():
        return "expected a non-empty path"
    if ".." in value.replace("\\", "/").split("/") or "\0" in value:
        return "must not contain '..' segments"
    if PurePosixPath(value).is_absolute() or PureWindowsPath(value).anchor:
        return "must be relative to the working directory (an absolute path is refused)"
    return None


def _providers(value: Any) -> str | None:
    """``MODEL_PROVIDER``: a string (comma-separated allowed) or an array (§2.1 step 4)."""
    if isinstance(value, list) and value and all(non_empty_string(v) is None for v in value):
        return None
    if non_empty_string(value) is None:
        return None
    return "expected a non-empty string or a list of non-empty strings"


_NON_NEGATIVE = integer(0)
_POSITIVE = integer(1)

RULES: Mapping[str, Rule] = {
    **STORED_RULES,  # then the Web UI's stricter ranges and policies:
    "REQUIRED_API_KEY": non_empty_string,
    "SERVER_PORT": integer(1, 65535),
    "HOST": non_empty_string,
    "MODEL_PROVIDER": _providers,
    "SYSTEM_PROMPT_FILE_PATH": _safe_path,
    "SYSTEM_PROMPT_MODE": one_of("append", "overwrite"),
    "PROMPT_LOG_MODE": one_of("none", "console", "file", ""),  # "": the Node form unset
    "REQUEST_MAX_RETRIES": integer(0, 100),
    "REQUEST_BASE_DELAY": _NON_NEGATIVE,
    "CREDENTIAL_SWITCH_MAX_RETRIES": integer(0, 100),
    "RATE_LIMIT_COOLDOWN_MS": _NON_NEGATIVE,
    "RATE_LIMIT_COOLDOWN_JITTER_MS": _NON_NEGATIVE,
    "RATE_LIMIT_COOLDOWN_MAX_MS": _NON_NEGATIVE,
    "CRON_NEAR_MINUTES": _POSITIVE,
    "LOGIN_EXPIRY": _POSITIVE,
    "LOGIN_MAX_ATTEMPTS": _POSITIVE,
    "LOGIN_LOCKOUT_DURATION": _POSITIVE,
    "LOGIN_MIN_INTERVAL": _NON_NEGATIVE,
    "TRUSTED_PROXY_HOPS": _POSITIVE,
    "PROVIDER_POOLS_FILE_PATH": _safe_path,
    "CUSTOM_MODELS_FILE_PATH": _safe_path,
    "LOG_DIR": _safe_path,
    "MAX_ERROR_COUNT": _POSITIVE,
    "WARMUP_TARGET": _NON_NEGATIVE,
    "USAGE_REFRESH_INTERVAL_MS": _NON_NEGATIVE,
    "REFRESH_CONCURRENCY_PER_PROVIDER": _POSITIVE,
    "REFRESH_CONCURRENCY_GLOBAL": _POSITIVE,
    "REFRESH_BUFFER_DELAY": _NON_NEGATIVE,
    "REFRESH_TASK_TIMEOUT_MS": _POSITIVE,
    "TLS_SIDECAR_PORT": integer(1, 65535),
}
"""Key → check of a change (admin API) or of a value ``cfgctl migrate`` takes in: every key
of :data:`STORED_RULES`, stricter where the Web UI is. Keys not listed take any JSON value."""

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
