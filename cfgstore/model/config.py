"""``config.json`` (aiclient-formats §2): the stored document plus typed access with the
Node service's defaults.

A stored config may hold values the service cannot use: nested too deeply for Python to
parse or copy (stored before the admin API limited documents, or written by hand), or
not what the key needs (a string for a port). Such keys never fail the read: every backend
reads the config through :func:`config_from_text` / :func:`config_from_json`, which name
them in :attr:`MainConfig.problems`, and :meth:`MainConfig.get` answers their default.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from cfgstore.errors import InvalidData
from cfgstore.model import jsjson
from cfgstore.model.config_rules import STORED_RULES
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.limits import MAX_DOCUMENT_DEPTH, depth_of, too_deep
from cfgstore.model.versions import ABSENT_VERSION

DEFAULTS: dict[str, JSONValue] = {
    "REQUIRED_API_KEY": "123456",
    "SERVER_PORT": 3000,
    "HOST": "0.0.0.0",
    "MODEL_PROVIDER": "gemini-cli-oauth",
    "SYSTEM_PROMPT_FILE_PATH": "configs/input_system_prompt.txt",
    "SYSTEM_PROMPT_MODE": "append",
    "SYSTEM_PROMPT_REPLACEMENTS": [],
    "PROMPT_LOG_BASE_NAME": "prompt_log",
    "PROMPT_LOG_MODE": "none",
    "REQUEST_MAX_RETRIES": 3,
    "REQUEST_BASE_DELAY": 1000,
    "CREDENTIAL_SWITCH_MAX_RETRIES": 5,
    "RATE_LIMIT_COOLDOWN_ENABLED": False,
    "RATE_LIMIT_COOLDOWN_MS": 30000,
    "RATE_LIMIT_COOLDOWN_JITTER_MS": 5000,
    "RATE_LIMIT_COOLDOWN_MAX_MS": 300000,
    "CRON_NEAR_MINUTES": 15,
    "CRON_REFRESH_TOKEN": False,
    "LOGIN_EXPIRY": 3600,
    "LOGIN_MAX_ATTEMPTS": 5,
    "LOGIN_LOCKOUT_DURATION": 1800,
    "LOGIN_MIN_INTERVAL": 5000,
    "TRUST_PROXY": False,
    "TRUSTED_PROXY_IPS": ["127.0.0.1", "::1"],
    "PROVIDER_POOLS_FILE_PATH": None,
    "CUSTOM_MODELS_FILE_PATH": None,
    "MAX_ERROR_COUNT": 10,
    "WARMUP_TARGET": 0,
    "REFRESH_CONCURRENCY_PER_PROVIDER": 1,
    "REFRESH_CONCURRENCY_GLOBAL": 2,
    "REFRESH_BUFFER_DELAY": 5000,
    "REFRESH_TASK_TIMEOUT_MS": 60000,
    "SCHEDULED_HEALTH_CHECK": {"enabled": False, "interval": 600000, "startupRun": False},
    "providerFallbackChain": {},
    "PROXY_URL": None,
    "PROXY_ENABLED_PROVIDERS": [],
    "UI_ENABLED": True,
}
"""Code defaults of the Node service, used for keys the document lacks."""

UNUSABLE_VALUE_READS_AS: dict[str, JSONValue] = {"REQUIRED_API_KEY": ""}
"""What a key with an unusable stored value reads as, where that is not its default: an
unusable client API key refuses every request (the default ``123456`` would let anyone
in)."""

DEFAULT_PROVIDER_POOLS_PATH = "configs/provider_pools.json"
DEFAULT_CUSTOM_MODELS_PATH = "configs/custom_models.json"


@attrs.define
class MainConfig:
    """The stored ``config.json`` document (verbatim, unknown keys kept) and its version."""

    document: dict[str, JSONValue] = attrs.Factory(dict)
    version: str = ABSENT_VERSION
    problems: dict[str, str] = attrs.Factory(dict)
    """Stored keys whose values are unusable (key → what is wrong); :meth:`get` answers
    their default. A value nested too deeply is also left out of :attr:`document` (nothing
    could copy it); any other stays there, so an edit of other keys keeps it as it was."""

    def get(self, key: str) -> Any:
        """A key's value, falling back to the Node service's default (shallow, like
        ``Object.assign``: nested objects are replaced, not merged) when the document lacks
        the key or its value is unusable (:attr:`problems`)."""
        if key in self.problems:
            return UNUSABLE_VALUE_READS_AS.get(key, DEFAULTS.get(key))
        return self.document[key] if key in self.document else DEFAULTS.get(key)

    def int_value(self, key: str) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            default = DEFAULTS.get(key, 0)
            return int(default) if isinstance(default, int) else 0
        try:
            return int(value)
        except ValueError:
            default = DEFAULTS.get(key, 0)
            return int(default) if isinstance(default, int) else 0

    @property
    def max_error_count(self) -> int:
        return self.int_value("MAX_ERROR_COUNT")

    @property
    def provider_pools_path(self) -> str:
        value = self.document.get("PROVIDER_POOLS_FILE_PATH")
        return value if isinstance(value, str) and value else DEFAULT_PROVIDER_POOLS_PATH

    @property
    def custom_models_path(self) -> str:
        value = self.document.get("CUSTOM_MODELS_FILE_PATH")
        return value if isinstance(value, str) and value else DEFAULT_CUSTOM_MODELS_PATH

    @property
    def system_prompt_path(self) -> str:
        value = self.document.get("SYSTEM_PROMPT_FILE_PATH")
        return value if isinstance(value, str) and value else "configs/input_system_prompt.txt"


def config_from_json(
    doc: JSONValue, source: str, version: str, *, unparsed: Iterable[str] = ()
) -> MainConfig:
    """The config of a parsed document, its unusable keys in ``problems`` (``unparsed``:
    keys whose values were too deeply nested to parse). Only a document that is not an
    object is refused (:class:`InvalidData`)."""
    if not isinstance(doc, dict):
        raise InvalidData(source, "$", "config.json must be a JSON object")
    problems = dict.fromkeys(unparsed, too_deep())
    document: dict[str, JSONValue] = {}
    for key, value in doc.items():
        if depth_of(value, stop_after=MAX_DOCUMENT_DEPTH - 1) >= MAX_DOCUMENT_DEPTH:
            problems[key] = too_deep()  # the document would pass the limit
            continue
        document[key] = value
        rule = STORED_RULES.get(key)
        problem = rule(value) if rule is not None and value is not None else None
        if problem is not None:
            problems[key] = problem
    return MainConfig(document, version, problems)


def config_from_text(text: str | bytes, source: str, version: str) -> MainConfig:
    """The config of stored JSON text, as :func:`config_from_json`; members nested too
    deeply to parse are left out and named in ``problems`` instead of failing the read."""
    try:
        doc = jsjson.loads(text, source)
    except jsjson.NestedTooDeeply:
        members, unparsed = jsjson.loads_members(text, source)
        return config_from_json(members, source, version, unparsed=unparsed)
    return config_from_json(doc, source, version)
