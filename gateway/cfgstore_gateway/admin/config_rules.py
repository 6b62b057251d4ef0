"""Validation of config changes from the admin API (aiclient-formats §2.2, §2.4).

:func:`field_errors` checks the keys the Node service knows and lets every other key
through (unknown keys are kept, as the store keeps them). ``None`` removes a key and is
always valid. The checks themselves are the model's (:mod:`cfgstore.model.config_rules`,
which also decide which stored values the service can use), here with the Web UI's
stricter ranges and policies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cfgstore.model.config_rules import Rule
from cfgstore.model.config_rules import boolean as _boolean
from cfgstore.model.config_rules import chain as _chain
from cfgstore.model.config_rules import health_check as _health_check
from cfgstore.model.config_rules import integer as _integer
from cfgstore.model.config_rules import model_mapping as _model_mapping
from cfgstore.model.config_rules import non_empty_string as _non_empty_string
from cfgstore.model.config_rules import objects as _objects
from cfgstore.model.config_rules import one_of as _one_of
from cfgstore.model.config_rules import string as _string
from cfgstore.model.config_rules import strings as _strings
from cfgstore.model.config_rules import url as _proxy_url


def _safe_path(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "expected a non-empty path"
    if ".." in value.replace("\\", "/").split("/") or "\0" in value:
        return "must not contain '..' segments"
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
