"""Default documents for a fresh store (``cfgctl init``): ``config.json`` and
``plugins.json`` as the Node service would have them on a first start.

The config document holds the keys the Web UI saves, in the order it saves them
(aiclient-formats §2.4), with the Node service's code defaults (§2.2). The other keys
(``LOGIN_MAX_ATTEMPTS``, ``UI_ENABLED``…) stay absent: their code defaults apply, exactly as
after a save from the Web UI. ``REQUIRED_API_KEY`` is never the well-known ``"123456"``:
the caller passes a fresh random key.
"""

from __future__ import annotations

import copy
import secrets

from cfgstore.model.config import DEFAULTS
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.plugin_config import PluginConfig

UI_CONFIG_KEYS: tuple[str, ...] = (
    "REQUIRED_API_KEY",
    "SERVER_PORT",
    "HOST",
    "MODEL_PROVIDER",
    "SYSTEM_PROMPT_FILE_PATH",
    "SYSTEM_PROMPT_MODE",
    "SYSTEM_PROMPT_REPLACEMENTS",
    "PROMPT_LOG_BASE_NAME",
    "PROMPT_LOG_MODE",
    "REQUEST_MAX_RETRIES",
    "REQUEST_BASE_DELAY",
    "CREDENTIAL_SWITCH_MAX_RETRIES",
    "RATE_LIMIT_COOLDOWN_ENABLED",
    "RATE_LIMIT_COOLDOWN_MS",
    "RATE_LIMIT_COOLDOWN_JITTER_MS",
    "RATE_LIMIT_COOLDOWN_MAX_MS",
    "CRON_NEAR_MINUTES",
    "CRON_REFRESH_TOKEN",
    "LOGIN_EXPIRY",
    "TRUST_PROXY",
    "TRUSTED_PROXY_IPS",
    "PROVIDER_POOLS_FILE_PATH",
    "MAX_ERROR_COUNT",
    "WARMUP_TARGET",
    "REFRESH_CONCURRENCY_PER_PROVIDER",
    "providerFallbackChain",
    "modelFallbackMapping",
    "PROXY_URL",
    "PROXY_ENABLED_PROVIDERS",
    "LOG_ENABLED",
    "LOG_OUTPUT_MODE",
    "LOG_LEVEL",
    "LOG_DIR",
    "LOG_INCLUDE_REQUEST_ID",
    "LOG_INCLUDE_TIMESTAMP",
    "LOG_MAX_FILE_SIZE",
    "LOG_MAX_FILES",
    "TLS_SIDECAR_ENABLED",
    "TLS_SIDECAR_ENABLED_PROVIDERS",
    "TLS_SIDECAR_PORT",
    "TLS_SIDECAR_PROXY_URL",
    "SCHEDULED_HEALTH_CHECK",
)
"""The keys a Web-UI save writes, in its order (aiclient-formats §2.4)."""

UI_DEFAULTS: dict[str, JSONValue] = {
    # Absent in the Node service means "no mapping"; the UI writes the empty object.
    "modelFallbackMapping": {},
    "LOG_ENABLED": True,
    "LOG_OUTPUT_MODE": "all",
    "LOG_LEVEL": "info",
    "LOG_DIR": "logs",
    "LOG_INCLUDE_REQUEST_ID": True,
    "LOG_INCLUDE_TIMESTAMP": True,
    "LOG_MAX_FILE_SIZE": 10485760,
    "LOG_MAX_FILES": 10,
    "TLS_SIDECAR_ENABLED": False,
    "TLS_SIDECAR_ENABLED_PROVIDERS": [],
    "TLS_SIDECAR_PORT": 9090,
    "TLS_SIDECAR_PROXY_URL": None,
    # The UI writes all four fields; the code default lacks providerTypes (empty ⇒ none).
    "SCHEDULED_HEALTH_CHECK": {
        "enabled": False,
        "startupRun": False,
        "interval": 600000,
        "providerTypes": [],
    },
}
"""Defaults of the UI keys that :data:`~cfgstore.model.config.DEFAULTS` lacks or that the
UI writes in a fuller shape."""

WELL_KNOWN_API_KEY = DEFAULTS["REQUIRED_API_KEY"]
"""``"123456"``: the Node service's default client key, which a fresh store never gets."""

BUILTIN_PLUGINS: dict[str, tuple[bool, str]] = {
    "ai-monitor": (
        False,
        "Records requests and responses across protocol conversion, for debugging.",
    ),
    "api-potluck": (False, "Shared API keys with per-key daily limits and usage accounting."),
    "default-auth": (True, "Checks the client API key (REQUIRED_API_KEY) on every request."),
    "model-usage-stats": (False, "Counts requests and tokens per provider and model."),
}
"""The Node service's built-in plugins: name → (enabled by default, short description).
Disabled by default: ``api-potluck``, ``ai-monitor``, ``model-usage-stats`` (§6.1)."""


def generate_api_key() -> str:
    """A random client API key: 48 hex characters, safe in headers and query strings."""
    return secrets.token_hex(24)


def generate_admin_password() -> str:
    """A random web-UI admin password: 24 URL-safe characters (144 bits)."""
    return secrets.token_urlsafe(18)


def default_config(api_key: str) -> dict[str, JSONValue]:
    """A full ``config.json`` document with the given client API key."""
    if not api_key or api_key == WELL_KNOWN_API_KEY:
        raise ValueError("a fresh config needs its own API key, not the well-known default")
    document: dict[str, JSONValue] = {}
    for key in UI_CONFIG_KEYS:
        value = UI_DEFAULTS[key] if key in UI_DEFAULTS else DEFAULTS[key]
        document[key] = copy.deepcopy(value)
    document["REQUIRED_API_KEY"] = api_key
    return document


def default_plugin_config() -> PluginConfig:
    """``plugins.json`` as the Node service writes it on a first start with no user plugins."""
    return PluginConfig(
        {
            name: {"enabled": enabled, "description": description}
            for name, (enabled, description) in BUILTIN_PLUGINS.items()
        }
    )
