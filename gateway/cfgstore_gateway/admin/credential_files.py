"""Which provider a credential file under ``configs/`` belongs to, told from its path, and
what the Node service reports about such a file (``GET /api/upload-configs``).

The facts are the Node service's (``PROVIDER_MAPPINGS`` and ``detectProviderFromPath`` in
``src/utils/provider-utils.js``, ``analyzeOAuthFile`` in ``src/ui-modules/config-scanner.js``):
the first mapping one of whose patterns the lower-cased, ``/``-separated path contains
wins. A listing never shows a secret: where the Node service previews the file's first
100 characters, the preview here is of the document with its secrets masked, and a file
that is not JSON (a key, a certificate) is not previewed.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from cfgstore.model import jsjson
from cfgstore.model.timefmt import iso_ms, parse_time_ms
from cfgstore_gateway.admin.masking import masked


@attrs.frozen
class FileKind:
    """One of the Node service's provider mappings."""

    dir_name: str
    patterns: tuple[str, ...]
    provider_type: str
    path_key: str
    check_model: str
    display_name: str
    check_health: bool = False

    @property
    def short(self) -> str:
        """The ``provider`` a listing names (``kiro``, ``gemini``…)."""
        return self.dir_name


KINDS: tuple[FileKind, ...] = (
    FileKind(
        "kiro",
        ("configs/kiro/", "/kiro/", "kiro-auth-token"),
        "claude-kiro-oauth",
        "KIRO_OAUTH_CREDS_FILE_PATH",
        "claude-haiku-4-5",
        "Claude Kiro OAuth",
    ),
    FileKind(
        "gemini",
        ("configs/gemini/", "/gemini/", "/.gemini/", "configs/gemini-cli/"),
        "gemini-cli-oauth",
        "GEMINI_OAUTH_CREDS_FILE_PATH",
        "gemini-2.5-flash",
        "Gemini CLI OAuth",
    ),
    FileKind(
        "qwen",
        ("configs/qwen/", "/qwen/"),
        "openai-qwen-oauth",
        "QWEN_OAUTH_CREDS_FILE_PATH",
        "qwen3-coder-plus",
        "Qwen OAuth",
        check_health=True,
    ),
    FileKind(
        "antigravity",
        ("configs/antigravity/", "/antigravity/", "/.antigravity/"),
        "gemini-antigravity",
        "ANTIGRAVITY_OAUTH_CREDS_FILE_PATH",
        "gemini-2.5-computer-use-preview-10-2025",
        "Gemini Antigravity",
    ),
    FileKind(
        "iflow",
        ("configs/iflow/", "/iflow/"),
        "openai-iflow",
        "IFLOW_TOKEN_FILE_PATH",
        "gpt-4o",
        "iFlow API",
    ),
    FileKind(
        "codex",
        ("configs/codex/", "/codex/", "/.codex/"),
        "openai-codex-oauth",
        "CODEX_OAUTH_CREDS_FILE_PATH",
        "gpt-5.2-codex",
        "OpenAI Codex OAuth",
    ),
)
"""The Node service's mappings, in its order (Grok's, whose "path" is a cookie, is left
out: it names no file)."""

USAGE_LABELS = {
    "GEMINI_OAUTH_CREDS_FILE_PATH": "Gemini OAuth credentials",
    "KIRO_OAUTH_CREDS_FILE_PATH": "Kiro OAuth credentials",
    "QWEN_OAUTH_CREDS_FILE_PATH": "Qwen OAuth credentials",
    "ANTIGRAVITY_OAUTH_CREDS_FILE_PATH": "Antigravity OAuth credentials",
    "IFLOW_TOKEN_FILE_PATH": "iFlow Token",
    "CODEX_OAUTH_CREDS_FILE_PATH": "Codex OAuth credentials",
}
"""The path keys a listing looks for in the config and the nodes, with the words the Node
service's ``usageInfo`` uses for them."""

_MAIN_LABELS = {
    "GEMINI_OAUTH_CREDS_FILE_PATH": "Gemini OAuth credentials file path",
    "KIRO_OAUTH_CREDS_FILE_PATH": "Kiro OAuth credentials file path",
    "QWEN_OAUTH_CREDS_FILE_PATH": "Qwen OAuth credentials file path",
    "IFLOW_TOKEN_FILE_PATH": "iFlow Token file path",
    "CODEX_OAUTH_CREDS_FILE_PATH": "Codex OAuth credentials file path",
}

LISTED_EXTENSIONS = (".json", ".oauth", ".creds", ".key", ".pem", ".txt")
"""Files a listing shows (the Node scanner's)."""
MAX_LISTED_PARTS = 4
"""``configs/kiro/<folder>/<file>``: the Node scanner goes no deeper."""
PREVIEW_CHARS = 100


def kind_of(path: str) -> FileKind | None:
    """The mapping ``path`` matches (Node's ``detectProviderFromPath``), or ``None``."""
    lowered = path.replace("\\", "/").lower()
    for kind in KINDS:
        if any(pattern in lowered for pattern in kind.patterns):
            return kind
    return None


def normal_path(path: str) -> str:
    """``path`` as a comparable relative posix path: ``./configs/a.json``,
    ``configs\\a.json`` and ``configs/a.json`` are one."""
    text = path.strip().replace("\\", "/")
    return posixpath.normpath(text) if text else text


def system_path(path: str) -> str:
    """How the Node service writes a linked path into a node: ``./`` first."""
    text = normal_path(path)
    return text if text.startswith(("./", "/")) else "./" + text


def is_listed(path: str) -> bool:
    parts = normal_path(path).split("/")
    return (
        parts[0] == "configs"
        and 1 < len(parts) <= MAX_LISTED_PARTS
        and posixpath.splitext(parts[-1])[1].lower() in LISTED_EXTENSIONS
    )


@attrs.frozen
class Holder:
    """A node naming a file: its type, its index in the pool and the node's answer."""

    provider_type: str
    index: int
    key: str
    node: Mapping[str, Any]


def usage_info(path: str, config: Mapping[str, Any], holders: Sequence[Holder]) -> dict[str, Any]:
    """The Node service's ``usageInfo`` of a file: who names it (``main_config``,
    ``provider_pool``, or ``multiple``)."""
    details: list[dict[str, Any]] = []
    usage_type = None
    for key, label in _MAIN_LABELS.items():
        value = config.get(key)
        if isinstance(value, str) and value.strip() and normal_path(value) == path:
            usage_type = "main_config"
            details.append({"type": "Main Config", "location": label, "configKey": key})
    for holder in holders:
        usage_type = "provider_pool"
        node = holder.node
        details.append(
            {
                "type": "Provider Pool",
                "location": f"{USAGE_LABELS[holder.key]} (node {holder.index + 1})",
                "providerType": holder.provider_type,
                "providerIndex": holder.index,
                "nodeName": node.get("customName"),
                "uuid": node.get("uuid"),
                "isHealthy": node.get("isHealthy") is not False,
                "isDisabled": node.get("isDisabled") is True,
                "configKey": holder.key,
            }
        )
    if len(details) > 1:
        usage_type = "multiple"
    return {"isUsed": bool(details), "usageType": usage_type, "usageDetails": details}


def masked_text(content: bytes, path: str) -> str:
    """A file's text as an answer may show it: a JSON object with its secrets masked
    (indented, as the Node service writes token files), anything else withheld (``""``)."""
    try:
        document = jsjson.loads(content, path)
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    return json.dumps(masked(document), indent=2, ensure_ascii=False)


def describe(path: str, content: bytes, usage: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """A listing entry in the Node service's shape (``analyzeOAuthFile``); ``modified``
    is ``None``: the store keeps no file times."""
    name = posixpath.basename(path)
    extension = posixpath.splitext(name)[1].lower()
    kind = kind_of(path)
    provider = kind.short if kind is not None else "unknown"
    file_type = _type_by_name(name.lower())
    valid, problem, preview = True, "", ""
    expires: int | None = None
    text = content.decode("utf-8", "replace")
    if extension == ".json":
        try:
            document = jsjson.loads(content, path)
        except ValueError as exc:
            valid, problem = False, f"JSON Parse Error: {exc}"
        else:
            if isinstance(document, dict):
                file_type, provider = _by_content(document, file_type, provider)
                expires = _expiry_ms(document)
                shown = masked_text(content, path)
                preview = shown[:PREVIEW_CHARS] + ("..." if len(shown) > PREVIEW_CHARS else "")
    elif extension in (".key", ".pem"):
        if "-----BEGIN" in text and "PRIVATE KEY-----" in text:
            provider = "private_key"
    elif extension == ".txt" and ("api_key" in text or "apikey" in text):
        file_type = "api-key" if file_type == "oauth" else file_type
        provider = "api_key" if provider == "unknown" else provider
    return {
        "name": name,
        "path": path,
        "size": len(content),
        "type": file_type,
        "provider": provider,
        "extension": extension,
        "modified": None,
        "expiresAt": iso_ms(expires) if expires is not None else None,
        "expiresIn": math.floor((expires - now_ms) / 1000) if expires is not None else None,
        "isValid": valid,
        "errorMessage": problem,
        "isUsed": bool(usage["isUsed"]),
        "usageInfo": dict(usage),
        "preview": preview,
    }


_NAMED_TYPES = {
    "provider_pools.json": "provider-pool",
    "provider-pools.json": "provider-pool",
    "plugins.json": "plugins",
    "usage-cache.json": "usage",
    "config.json": "config",
    "token-store.json": "oauth",
}


def _type_by_name(lowered: str) -> str:
    if lowered in _NAMED_TYPES:
        return _NAMED_TYPES[lowered]
    if "system_prompt" in lowered or "system-prompt" in lowered:
        return "system-prompt"
    if "potluck-keys" in lowered:
        return "api-key"
    if "potluck-data" in lowered:
        return "database"
    return "oauth"


def _by_content(document: Mapping[str, Any], file_type: str, provider: str) -> tuple[str, str]:
    if file_type == "oauth":
        if "providerPools" in document or "provider_pools" in document:
            file_type = "provider-pool"
        elif document.get("apiKey") or document.get("api_key"):
            file_type = "api-key"
    if provider == "unknown":
        if document.get("client_id") or document.get("client_secret"):
            provider = "oauth2"
        elif document.get("access_token") or document.get("refresh_token"):
            provider = "token_based"
        elif document.get("credentials"):
            provider = "service_account"
        elif document.get("apiKey") or document.get("api_key"):
            provider = "api_key"
    base = document.get("base_url") or document.get("endpoint")
    if isinstance(base, str):
        lowered = base.lower()
        for needle, name in (
            ("openai.com", "openai"),
            ("anthropic.com", "claude"),
            ("googleapis.com", "gemini"),
        ):
            if needle in lowered:
                provider = name
                break
    return file_type, provider


_EXPIRY_KEYS = ("expiry_date", "expiresAt", "expires_at", "expiry", "expired")


def _expiry_ms(document: Mapping[str, Any]) -> int | None:
    """The latest expiry any of the usual fields names (seconds read as milliseconds below
    1e10), as the Node scanner takes it."""
    stamps: list[int] = []
    sources = [document] + [
        document[k] for k in ("tokens", "credentials", "auth") if isinstance(document.get(k), dict)
    ]
    for source in sources:
        for key in _EXPIRY_KEYS:
            stamp = _stamp(source.get(key))
            if stamp:
                stamps.append(stamp * 1000 if stamp < 10_000_000_000 else stamp)
        lifetime = source.get("expires_in", source.get("expiresIn"))
        issued = _stamp(source.get("issued_at", source.get("issuedAt")))
        if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) and issued:
            issued_ms = issued * 1000 if issued < 10_000_000_000 else issued
            stamps.append(int(issued_ms + lifetime * 1000))
    return max(stamps) if stamps else None


def _stamp(value: Any) -> int | None:
    return None if value == "" else parse_time_ms(value)
