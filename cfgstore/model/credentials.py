"""OAuth credential documents (aiclient-formats §4) and how nodes point at them (§3.2, §1).

A credential is the JSON document of one account's token file, kept verbatim (every field,
key order). What differs per provider, the *format*, is described by :class:`TokenFormat`:
where the expiry lives and how it is encoded, and whether a refresh merges into the
document (Kiro) or replaces it (everyone else).
"""

from __future__ import annotations

import enum
import ntpath
import posixpath
from collections.abc import Mapping
from pathlib import Path

import attrs

from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import ProviderNode, ProviderPools
from cfgstore.model.timefmt import parse_time_ms


class TokenFormat(enum.Enum):
    """Token document shapes and their refresh-write policy."""

    KIRO = "kiro"  # camelCase, expiresAt ISO, refresh merges
    GOOGLE = "google"  # Gemini CLI / Antigravity: expiry_date ms, refresh replaces
    QWEN = "qwen"  # expiry_date ms (or expires_in before the first refresh), replaces
    IFLOW = "iflow"  # expiry_date ms (camelCase aliases accepted), replaces
    CODEX = "codex"  # expired ISO, refresh rewrites the 8 canonical fields
    UNKNOWN = "unknown"

    @property
    def refresh_merges(self) -> bool:
        return self is TokenFormat.KIRO


# Type prefix → (path keys in lookup order, token format). Suffixed types
# (``openai-custom-x``) share the entry of their prefix.
_CREDENTIAL_CARRIERS: tuple[tuple[str, tuple[str, ...], TokenFormat], ...] = (
    ("claude-kiro-oauth", ("KIRO_OAUTH_CREDS_FILE_PATH",), TokenFormat.KIRO),
    ("gemini-cli-oauth", ("GEMINI_OAUTH_CREDS_FILE_PATH",), TokenFormat.GOOGLE),
    ("gemini-antigravity", ("ANTIGRAVITY_OAUTH_CREDS_FILE_PATH",), TokenFormat.GOOGLE),
    ("openai-qwen-oauth", ("QWEN_OAUTH_CREDS_FILE_PATH",), TokenFormat.QWEN),
    ("openai-iflow", ("IFLOW_TOKEN_FILE_PATH", "IFLOW_OAUTH_CREDS_FILE_PATH"), TokenFormat.IFLOW),
    ("openai-codex-oauth", ("CODEX_OAUTH_CREDS_FILE_PATH",), TokenFormat.CODEX),
)

CREDENTIAL_PATH_KEYS: frozenset[str] = frozenset(
    key for _, keys, _ in _CREDENTIAL_CARRIERS for key in keys
)


def _carrier(provider_type: str) -> tuple[tuple[str, ...], TokenFormat] | None:
    for prefix, keys, token_format in _CREDENTIAL_CARRIERS:
        if provider_type == prefix or provider_type.startswith(prefix + "-"):
            return keys, token_format
    return None


def path_keys_for(provider_type: str) -> tuple[str, ...]:
    """The node keys that may name this type's token file (empty: the type has none)."""
    carrier = _carrier(provider_type)
    return carrier[0] if carrier else ()


def token_format_for(provider_type: str) -> TokenFormat:
    carrier = _carrier(provider_type)
    return carrier[1] if carrier else TokenFormat.UNKNOWN


def credential_path_of(provider_type: str, node: ProviderNode) -> tuple[str, str] | None:
    """The ``(key, path string)`` naming the node's token file, or ``None`` when it has none.

    iFlow nodes may carry ``IFLOW_TOKEN_FILE_PATH`` (what the adapter reads) or the UI
    form's ``IFLOW_OAUTH_CREDS_FILE_PATH``; the first present non-empty one is used.
    """
    carrier = _carrier(provider_type)
    if carrier is None:
        return None
    for key in carrier[0]:
        value = node.settings.get(key)
        if isinstance(value, str) and value.strip():
            return key, value
    return None


OAUTH_DIRS = {
    "claude-kiro-oauth": "kiro",
    "gemini-cli-oauth": "gemini",
    "gemini-antigravity": "antigravity",
    "openai-qwen-oauth": "qwen",
    "openai-iflow": "iflow",
    "openai-codex-oauth": "codex",
}
"""Provider type prefix → the ``configs/`` sub-folder its token files go to."""


def same_file_key(path_string: str) -> str:
    """One spelling of a node's path string per file, as the Node service resolves it
    (``./configs/x.json``, ``configs/x.json`` and ``configs\\x.json`` are one file):
    compare these to tell whether two nodes name the same token file."""
    text = path_string.strip()
    if "\\" in text and not text.startswith("/"):
        text = text.replace("\\", "/")
    return posixpath.normpath(text) if text else text


def credential_file_key(provider_type: str, node: ProviderNode) -> str | None:
    """The identity of the token file the node names (:func:`same_file_key` of its path
    string), or ``None`` when it names none. Nodes with equal keys share one credential."""
    carrier = credential_path_of(provider_type, node)
    return same_file_key(carrier[1]) if carrier is not None else None


def new_credential_path(
    provider_type: str, pools: ProviderPools, at_ms: int, configs: str = "./configs"
) -> str | None:
    """The path string the Node service's upload/OAuth flow gives a new token file of
    ``provider_type`` (aiclient-formats §3, §7): ``<configs>/<provider>/<ts>_oauth_creds.json``,
    Kiro ``<configs>/kiro/<ts>_kiro-auth-token/<ts>_kiro-auth-token.json``, ``ts`` the epoch
    ms ``at_ms`` moved on until no node of ``pools`` names that file. ``configs`` is the
    configs folder relative to the working directory. ``None``: the type keeps no files."""
    folder = next(
        (
            f
            for p, f in OAUTH_DIRS.items()
            if provider_type == p or provider_type.startswith(p + "-")
        ),
        None,
    )
    if folder is None:
        return None
    taken = {
        same_file_key(carrier[1])
        for node_type, node in pools
        if (carrier := credential_path_of(node_type, node)) is not None
    }
    ts = at_ms
    while True:
        name = (
            f"{ts}_kiro-auth-token/{ts}_kiro-auth-token.json"
            if folder == "kiro"
            else f"{ts}_oauth_creds.json"
        )
        path = f"{configs}/{folder}/{name}"
        if same_file_key(path) not in taken:
            return path
        ts += 1


def resolve_path(path_string: str, cwd: Path) -> Path:
    """Resolve a node's path string the way the Node service does (aiclient-formats §1).

    Relative paths are relative to the process working directory ``cwd`` (never to the
    configs folder); Windows ``.\\configs\\x`` becomes ``configs/x``; absolute paths stay.
    """
    text = path_string.strip()
    if "\\" in text and not text.startswith("/"):
        drive, rest = ntpath.splitdrive(text)
        if drive:
            return Path(drive + rest.replace("\\", "/"))
        text = text.replace("\\", "/")
    text = posixpath.normpath(text) if text else text
    path = Path(text)
    return path if path.is_absolute() else cwd / path


@attrs.define
class Credential:
    """The token document of the file a node names (one per file: every node naming it
    reads the same document at the same version; ``provider_type``/``uuid`` are the node
    it was read or is written through).

    ``source_path`` is a path string naming the file (kept verbatim for export);
    ``version`` is the opaque version it was read at (``None`` for one not yet stored).
    ``siblings`` holds, for Kiro, the other ``*.json`` files of the token's folder (the
    IDE keeps its client registration there): file name → document, in directory order;
    kept so that an export can write them back (the file backend writes them beside a new
    token file, never over an existing one). The tokens of one folder are each other's
    siblings, and backends keep each file once (the file backend reads a folder once for
    all its tokens, Redis stores it once, schema 3): the sibling *documents* returned may
    be shared by the credentials of a folder and by later reads, so they are read-only —
    to change one, put a new dict in its place (``siblings[name] = {...}``).
    """

    provider_type: str
    uuid: str
    document: dict[str, JSONValue]
    source_path: str | None = None
    token_format: TokenFormat = TokenFormat.UNKNOWN
    version: str | None = None
    siblings: dict[str, dict[str, JSONValue]] = attrs.Factory(dict)

    def effective(self) -> dict[str, JSONValue]:
        """The fields a provider adapter uses (Kiro's directory merge, aiclient-formats §4.1).

        As in the Node adapter, the sibling files are merged *over* the document (a sibling
        value wins), except ``expiresAt``, which is always the document's own: the adapter
        overwrites each sibling's ``expiresAt`` with the merged one before merging, so a
        document without ``expiresAt`` yields none at all. Keys keep the document's order,
        new sibling keys follow."""
        merged = dict(self.document)
        for sibling in self.siblings.values():
            merged.update((k, v) for k, v in sibling.items() if k != "expiresAt")
        return merged

    def expiry_ms(self) -> int | None:
        """Expiry in epoch ms per the format's field (§4.7), or ``None`` when unknown."""
        return expiry_ms(self.effective(), self.token_format)


@attrs.frozen
class CredentialRef:
    """A listing entry: which credential, where it came from, at which version."""

    provider_type: str
    uuid: str
    source_path: str | None
    version: str


def expiry_ms(document: Mapping[str, JSONValue], token_format: TokenFormat) -> int | None:
    match token_format:
        case TokenFormat.KIRO:
            return parse_time_ms(document.get("expiresAt"))
        case TokenFormat.CODEX:
            return parse_time_ms(document.get("expired"))
        case TokenFormat.IFLOW:
            return parse_time_ms(document.get("expiry_date", document.get("expiryDate")))
        case _:
            for key in ("expiry_date", "expiry", "expires_at", "expiresAt"):
                if key in document:
                    return parse_time_ms(document[key])
            return None


def apply_refresh(
    current: Mapping[str, JSONValue], fresh: Mapping[str, JSONValue], token_format: TokenFormat
) -> dict[str, JSONValue]:
    """The document a refresh writes: Kiro merges ``fresh`` over ``current`` (existing
    fields kept, key order kept); every other format replaces the document with ``fresh``."""
    if token_format.refresh_merges:
        return {**current, **fresh}
    return dict(fresh)
