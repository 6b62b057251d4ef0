"""Secrets in admin answers: which values are secret and how they are shown.

A value is secret when its key names one (``apiKey``, ``OPENAI_API_KEY``, ``token``,
``secret``, ``password``, ``cookie``, ``authorization``, base64 credential blobs, and what
the Node service masks: ``ACCESS_KEY``, ``CLEARANCE``, ``SSO``, ``credentials``) or when
it is a URL with a password in it. A secret string is shown as ``abcd****wxyz`` (``****``
when 8 characters or fewer); the client API key reads as ``******``. A value containing
``****`` that comes back in an update is a masked echo and is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "****"
API_KEY_MASK = "******"
_SECRET_KEY = re.compile(
    r"(api[_-]?key|token|secret|password|passwd|cookie|authorization|creds_base64|private[_-]?key"
    r"|access[_-]?key|clearance|sso|credentials)",  # the Node service masks these too
    re.IGNORECASE,
)
_PATH_KEY = re.compile(r"(_PATH|_FILE|_DIR|_REGION)$", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """Whether values under ``key`` are secret (file paths never are: they name, not hold)."""
    return bool(_SECRET_KEY.search(key)) and not _PATH_KEY.search(key)


def mask_value(value: str) -> str:
    if len(value) <= 8:
        return MASK
    return f"{value[:4]}{MASK}{value[-4:]}"


def is_masked_echo(value: Any) -> bool:
    return isinstance(value, str) and MASK in value


def mask_url(value: str) -> str:
    """A URL with its password (if any) masked; anything else unchanged."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if parts.password is None:
        return value
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))


def masked(document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a flat settings object with every secret value masked (nested objects
    and lists are walked)."""
    return {key: _masked_entry(key, value) for key, value in document.items()}


def _masked_entry(key: str, value: Any) -> Any:
    if isinstance(value, str):
        if is_secret_key(key):
            return mask_value(value)
        return mask_url(value) if "://" in value else value
    if isinstance(value, Mapping):
        return masked(value)
    if isinstance(value, list):
        return [_masked_entry(key, item) for item in value]
    return value


def without_masked_echoes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` minus the values that are masked echoes of what an answer showed."""
    return {key: value for key, value in changes.items() if not is_masked_echo(value)}
