"""Per-format OAuth refresh calls: which endpoint, which body, and what the answer writes.

Everything here but :func:`post_token_request` is a pure function of its inputs
(credential document, node/config settings, the answer, the current time), so each format
is testable without a network. Formats are those of ``aiclient-formats.md`` §4:

=====================  ==============================================================
Format                 Request → stored document
=====================  ==============================================================
Kiro, social           POST JSON ``{"refreshToken"}`` to ``KIRO_REFRESH_URL``
                       (default ``https://prod.{region}.auth.desktop.kiro.dev/refreshToken``).
                       Answer ``{accessToken, refreshToken?, expiresIn?, profileArn?}``;
                       **merged** over the document: ``accessToken``, ``refreshToken``
                       (the answer's, else the old one), ``expiresAt`` = now + ``expiresIn``
                       (default 3600 s) as ISO text, ``profileArn`` when the answer has a
                       non-empty one. Every other field stays, in place (§4.1).
Kiro, builder-id/IdC   POST JSON ``{"refreshToken", "clientId", "clientSecret",
                       "grantType": "refresh_token"}`` (the AWS SSO-OIDC ``CreateToken``
                       call) to ``KIRO_REFRESH_IDC_URL`` (default
                       ``https://oidc.{idcRegion}.amazonaws.com/token``); same answer
                       mapping. ``authMethod`` ``"social"`` is social, any other value is
                       IdC; absent, it is IdC when ``clientId`` and ``clientSecret`` are
                       present (the IDE's sibling registration file counts).
Gemini / Antigravity   OAuth2 ``refresh_token`` grant (form). The document is **replaced**
                       by google-auth-library's credential object: every answer field in
                       answer order except ``expires_in``, then ``expiry_date`` (ms) and
                       ``refresh_token`` (the answer's, else carried over) (§4.2).
Qwen                   OAuth2 grant (form); replaced by exactly ``{access_token,
                       token_type, refresh_token, resource_url, expiry_date}`` (§4.3 b);
                       ``token_type``/``refresh_token``/``resource_url`` fall back to the
                       old document's.
iFlow                  OAuth2 grant (form, plus HTTP Basic client authentication when both
                       client id and secret are configured, as upstream); replaced by
                       exactly ``{access_token, refresh_token, expiry_date, token_type,
                       scope, apiKey}`` (§4.4). ``apiKey`` is the answer's ``apiKey`` /
                       ``api_key`` when it has one, else the old document's (upstream gets
                       it from a second, user-info call that is not made here).
Codex                  OAuth2 grant (form, ``scope=openid profile email``); rewritten as
                       exactly the 8 fields ``{id_token, access_token, refresh_token,
                       account_id, last_refresh, email, type: "codex", expired}`` (§4.5):
                       ``account_id`` from the id token's claim
                       ``https://api.openai.com/auth`` → ``chatgpt_account_id`` (fallback
                       ``sub``, then the old value), ``email`` from its ``email`` claim
                       (fallback the old value), ``last_refresh`` now, ``expired`` now +
                       ``expires_in`` (ISO).
=====================  ==============================================================

Settings (URLs, OAuth client ids) are looked up by :class:`SettingLookup` with the Node
service's precedence (§3.3): the node's own key wins, even when it is ``""``; otherwise the
root ``config.json`` key; an empty or missing value means the built-in default. The keys:

* ``KIRO_REFRESH_URL``, ``KIRO_REFRESH_IDC_URL`` (upstream node keys; ``{{region}}`` in a
  configured URL is replaced by the region, as in the built-in default);
* ``<P>_OAUTH_TOKEN_URL`` for ``P`` in ``GEMINI``, ``ANTIGRAVITY``, ``QWEN``, ``IFLOW``,
  ``CODEX`` (this gateway's keys); Qwen also honours the upstream ``QWEN_OAUTH_BASE_URL``
  (token URL = base + ``/api/v1/oauth2/token``). Defaults: Google
  ``https://oauth2.googleapis.com/token``, Qwen ``https://chat.qwen.ai/api/v1/oauth2/token``,
  iFlow ``https://iflow.cn/oauth/token``, Codex ``https://auth.openai.com/oauth/token``;
* ``<P>_OAUTH_CLIENT_ID`` and ``<P>_OAUTH_CLIENT_SECRET``: sent when set, omitted otherwise
  (no vendor client ids are built in; the operator configures them).

Nothing here logs, and no error message carries a token: errors name the credential, the
endpoint and the HTTP status, plus the OAuth ``error`` code of the answer when it has one.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
import attrs

from cfgstore.errors import CfgStoreError
from cfgstore.model.credentials import Credential, TokenFormat, apply_refresh
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import ProviderNode
from cfgstore.model.timefmt import iso_ms

__all__ = [
    "DEFAULT_EXPIRES_IN_S",
    "RefreshFailed",
    "SettingLookup",
    "TokenRequest",
    "build_request",
    "jwt_claims",
    "kiro_auth_method",
    "post_token_request",
    "refresh_token_of",
    "refreshed_document",
]

DEFAULT_EXPIRES_IN_S = 3600
"""Lifetime assumed when an answer has no ``expiresIn``/``expires_in`` (Kiro's upstream
default, applied to every format)."""

MAX_ANSWER_BYTES = 256 * 1024

KIRO_SOCIAL_URL = "https://prod.{{region}}.auth.desktop.kiro.dev/refreshToken"
KIRO_IDC_URL = "https://oidc.{{region}}.amazonaws.com/token"
KIRO_DEFAULT_REGION = "us-east-1"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
QWEN_BASE_URL = "https://chat.qwen.ai"
QWEN_TOKEN_PATH = "/api/v1/oauth2/token"
IFLOW_TOKEN_URL = "https://iflow.cn/oauth/token"
CODEX_TOKEN_URL = "https://auth.openai.com/oauth/token"
CODEX_SCOPE = "openid profile email"
CODEX_AUTH_CLAIM = "https://api.openai.com/auth"

# Settings-key prefix of each OAuth2 format; Gemini and Antigravity share a format but not
# an OAuth client, so the provider type decides.
_OAUTH2_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gemini-antigravity", "ANTIGRAVITY"),
    ("gemini-cli-oauth", "GEMINI"),
    ("openai-qwen-oauth", "QWEN"),
    ("openai-iflow", "IFLOW"),
    ("openai-codex-oauth", "CODEX"),
)


class RefreshFailed(CfgStoreError):
    """A token refresh did not produce a new token: the endpoint refused (``status`` is its
    HTTP status), answered something that is not a token (``status`` is that answer's
    status), could not be reached (``status`` is ``None``), or the credential cannot be
    refreshed at all (no refresh token, no client registration; ``status`` ``None``).

    ``credential`` names it as ``type/uuid``. The message never contains a token."""

    def __init__(self, credential: str, problem: str, status: int | None = None) -> None:
        where = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"refreshing credential {credential} failed{where}: {problem}")
        self.credential = credential
        self.problem = problem
        self.status = status


@attrs.frozen
class SettingLookup:
    """Effective node settings as the Node service computes them: ``{...config, ...node}``
    where a node's empty string still wins and then means "built-in default"."""

    node: Mapping[str, JSONValue]
    config: Mapping[str, JSONValue] = attrs.Factory(dict)

    @classmethod
    def of(cls, node: ProviderNode, config: Mapping[str, JSONValue]) -> SettingLookup:
        return cls(node.settings, config)

    def get(self, key: str) -> str | None:
        """The key's non-empty text value, or ``None`` (use the built-in default)."""
        value = self.node[key] if key in self.node else self.config.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        return None


@attrs.frozen
class TokenRequest:
    """One POST to a token endpoint. ``fields`` is the body: a JSON object when
    ``encoding`` is ``"json"``, a urlencoded form when ``"form"``. Its ``repr`` hides the
    body and the headers (they carry the refresh token and client secrets)."""

    url: str
    fields: dict[str, str] = attrs.field(repr=False)
    encoding: Literal["json", "form"]
    headers: dict[str, str] = attrs.field(factory=dict, repr=False)

    @property
    def endpoint(self) -> str:
        """Scheme, host and path only (for logs and errors: no query string)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"


# -- requests --------------------------------------------------------------------------------


def _ident(credential: Credential) -> str:
    return f"{credential.provider_type}/{credential.uuid}"


def _text(document: Mapping[str, JSONValue], *keys: str) -> str | None:
    for key in keys:
        value = document.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def kiro_auth_method(document: Mapping[str, JSONValue]) -> Literal["social", "idc"]:
    """Social or builder-id/IdC (§4.1): ``authMethod`` decides when present; without it,
    a document with client credentials is builder-id."""
    method = document.get("authMethod")
    if isinstance(method, str) and method:
        return "social" if method == "social" else "idc"
    has_client = _text(document, "clientId") and _text(document, "clientSecret")
    return "idc" if has_client else "social"


def refresh_token_of(credential: Credential) -> str | None:
    """The refresh token the format keeps (``None`` when it has none: not refreshable)."""
    document = credential.effective()
    match credential.token_format:
        case TokenFormat.KIRO:
            return _text(document, "refreshToken")
        case TokenFormat.IFLOW:
            return _text(document, "refresh_token", "refreshToken")
        case TokenFormat.GOOGLE | TokenFormat.QWEN | TokenFormat.CODEX:
            return _text(document, "refresh_token")
        case _:
            return None


def _oauth2_prefix(provider_type: str) -> str | None:
    for type_prefix, key_prefix in _OAUTH2_PREFIXES:
        if provider_type == type_prefix or provider_type.startswith(type_prefix + "-"):
            return key_prefix
    return None


def _with_region(url: str, region: str) -> str:
    return url.replace("{{region}}", region)


def build_request(credential: Credential, settings: SettingLookup) -> TokenRequest:
    """The refresh call for ``credential`` (see the module docstring for each format).

    Raises :class:`RefreshFailed` when the credential cannot be refreshed: no refresh
    token, a Kiro IdC credential without ``clientId``/``clientSecret``, or a format with
    no refresh procedure."""
    ident = _ident(credential)
    refresh_token = refresh_token_of(credential)
    if refresh_token is None:
        raise RefreshFailed(ident, "the credential has no refresh token")
    document = credential.effective()
    if credential.token_format is TokenFormat.KIRO:
        region = _text(document, "region") or KIRO_DEFAULT_REGION
        if kiro_auth_method(document) == "social":
            url = settings.get("KIRO_REFRESH_URL") or KIRO_SOCIAL_URL
            return TokenRequest(_with_region(url, region), {"refreshToken": refresh_token}, "json")
        client_id = _text(document, "clientId")
        client_secret = _text(document, "clientSecret")
        if client_id is None or client_secret is None:
            raise RefreshFailed(
                ident, "a builder-id/IdC credential needs clientId and clientSecret"
            )
        idc_region = _text(document, "idcRegion") or region
        url = settings.get("KIRO_REFRESH_IDC_URL") or KIRO_IDC_URL
        fields = {
            "refreshToken": refresh_token,
            "clientId": client_id,
            "clientSecret": client_secret,
            "grantType": "refresh_token",
        }
        return TokenRequest(_with_region(url, idc_region), fields, "json")

    prefix = _oauth2_prefix(credential.provider_type)
    if prefix is None or credential.token_format is TokenFormat.UNKNOWN:
        raise RefreshFailed(ident, f"no refresh procedure for {credential.token_format.value}")
    url = settings.get(f"{prefix}_OAUTH_TOKEN_URL") or _default_token_url(prefix, settings)
    client_id = settings.get(f"{prefix}_OAUTH_CLIENT_ID")
    client_secret = settings.get(f"{prefix}_OAUTH_CLIENT_SECRET")
    fields = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if client_id is not None:
        fields["client_id"] = client_id
    if client_secret is not None:
        fields["client_secret"] = client_secret
    if credential.token_format is TokenFormat.CODEX:
        fields["scope"] = CODEX_SCOPE
    headers: dict[str, str] = {}
    if credential.token_format is TokenFormat.IFLOW and client_id and client_secret:
        pair = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {pair}"
    return TokenRequest(url, fields, "form", headers)


def _default_token_url(prefix: str, settings: SettingLookup) -> str:
    match prefix:
        case "QWEN":
            base = settings.get("QWEN_OAUTH_BASE_URL") or QWEN_BASE_URL
            return base.rstrip("/") + QWEN_TOKEN_PATH
        case "IFLOW":
            return IFLOW_TOKEN_URL
        case "CODEX":
            return CODEX_TOKEN_URL
        case _:
            return GOOGLE_TOKEN_URL


# -- answers ---------------------------------------------------------------------------------


def _lifetime_ms(answer: Mapping[str, JSONValue], key: str, ident: str, status: int) -> int:
    value = answer.get(key)
    if value is None:
        return DEFAULT_EXPIRES_IN_S * 1000
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RefreshFailed(ident, f"the token endpoint answered a non-numeric {key}", status)
    if value < 0:
        raise RefreshFailed(ident, f"the token endpoint answered a negative {key}", status)
    return int(value * 1000)


def _required(answer: Mapping[str, JSONValue], key: str, ident: str, status: int) -> str:
    value = answer.get(key)
    if not isinstance(value, str) or not value:
        raise RefreshFailed(ident, f"the token endpoint answered no {key}", status)
    return value


def _optional(answer: Mapping[str, JSONValue], key: str, ident: str, status: int) -> str | None:
    value = answer.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RefreshFailed(ident, f"the token endpoint answered a non-text {key}", status)
    return value


def refreshed_document(
    credential: Credential, answer: Mapping[str, JSONValue], now_ms: int, status: int = 200
) -> dict[str, JSONValue]:
    """The whole document to store after a successful answer (merge or replace per
    format). Raises :class:`RefreshFailed` (with ``status``) for an answer without an
    access token or with malformed fields."""
    ident = _ident(credential)
    old = credential.document
    effective = credential.effective()
    match credential.token_format:
        case TokenFormat.KIRO:
            fresh: dict[str, JSONValue] = {
                "accessToken": _required(answer, "accessToken", ident, status),
                "refreshToken": _optional(answer, "refreshToken", ident, status)
                or refresh_token_of(credential),
                "expiresAt": iso_ms(now_ms + _lifetime_ms(answer, "expiresIn", ident, status)),
            }
            profile_arn = _optional(answer, "profileArn", ident, status)
            if profile_arn is not None:
                fresh["profileArn"] = profile_arn
            return apply_refresh(old, fresh, TokenFormat.KIRO)
        case TokenFormat.GOOGLE:
            _required(answer, "access_token", ident, status)
            expiry = now_ms + _lifetime_ms(answer, "expires_in", ident, status)
            new_refresh = _optional(answer, "refresh_token", ident, status)
            document = {k: v for k, v in answer.items() if k != "expires_in"}
            document["expiry_date"] = expiry
            document["refresh_token"] = new_refresh or refresh_token_of(credential)
            return document
        case TokenFormat.QWEN:
            return {
                "access_token": _required(answer, "access_token", ident, status),
                "token_type": _optional(answer, "token_type", ident, status)
                or _text(old, "token_type")
                or "Bearer",
                "refresh_token": _optional(answer, "refresh_token", ident, status)
                or refresh_token_of(credential),
                "resource_url": _optional(answer, "resource_url", ident, status)
                or old.get("resource_url"),
                "expiry_date": now_ms + _lifetime_ms(answer, "expires_in", ident, status),
            }
        case TokenFormat.IFLOW:
            return {
                "access_token": _required(answer, "access_token", ident, status),
                "refresh_token": _optional(answer, "refresh_token", ident, status)
                or refresh_token_of(credential),
                "expiry_date": now_ms + _lifetime_ms(answer, "expires_in", ident, status),
                "token_type": _optional(answer, "token_type", ident, status)
                or _text(old, "token_type", "tokenType")
                or "Bearer",
                "scope": _optional(answer, "scope", ident, status) or old.get("scope"),
                "apiKey": _optional(answer, "apiKey", ident, status)
                or _optional(answer, "api_key", ident, status)
                or _text(effective, "apiKey", "api_key"),
            }
        case TokenFormat.CODEX:
            access_token = _required(answer, "access_token", ident, status)
            id_token = _optional(answer, "id_token", ident, status) or _text(old, "id_token")
            claims = jwt_claims(id_token) if id_token else {}
            return {
                "id_token": id_token or "",
                "access_token": access_token,
                "refresh_token": _optional(answer, "refresh_token", ident, status)
                or refresh_token_of(credential),
                "account_id": _codex_account_id(claims) or old.get("account_id"),
                "last_refresh": iso_ms(now_ms),
                "email": _text(claims, "email") or old.get("email"),
                "type": "codex",
                "expired": iso_ms(now_ms + _lifetime_ms(answer, "expires_in", ident, status)),
            }
        case _:
            raise RefreshFailed(ident, f"no refresh procedure for {credential.token_format.value}")


def jwt_claims(token: str) -> dict[str, JSONValue]:
    """The payload of a JWT, unverified (the id token came straight from the issuer over
    TLS; only informational claims are read). ``{}`` when it is not a readable JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _codex_account_id(claims: Mapping[str, JSONValue]) -> str | None:
    auth = claims.get(CODEX_AUTH_CLAIM)
    if isinstance(auth, dict):
        found = _text(auth, "chatgpt_account_id")
        if found:
            return found
    return _text(claims, f"{CODEX_AUTH_CLAIM}.chatgpt_account_id", "sub")


# -- the call --------------------------------------------------------------------------------


async def post_token_request(
    http: aiohttp.ClientSession, request: TokenRequest, *, credential: str, timeout_s: float
) -> tuple[int, dict[str, JSONValue]]:
    """POST ``request`` and return ``(status, JSON object)`` of a 2xx answer.

    Raises :class:`RefreshFailed`: with the status for a non-2xx answer (naming the OAuth
    ``error`` code when the body has one) or a 2xx body that is not a JSON object; with
    ``status`` ``None`` when the endpoint cannot be reached or does not answer within
    ``timeout_s``."""
    headers = {"Accept": "application/json", **request.headers}
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        if request.encoding == "json":
            posting = http.post(
                request.url,
                json=request.fields,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            )
        else:
            posting = http.post(
                request.url,
                data=request.fields,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            )
        async with posting as response:
            status = response.status
            raw = bytearray()
            while len(raw) <= MAX_ANSWER_BYTES and (chunk := await response.content.read(65536)):
                raw += chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        problem = f"{request.endpoint} unreachable: {type(exc).__name__}"
        raise RefreshFailed(credential, problem) from None
    answer = _json_object(raw)
    if not 200 <= status < 300:
        code = _oauth_error(answer)
        problem = f"{request.endpoint} refused" + (f" ({code})" if code else "")
        raise RefreshFailed(credential, problem, status)
    if answer is None:
        raise RefreshFailed(credential, f"{request.endpoint} answered no JSON object", status)
    return status, answer


def _json_object(raw: bytes | bytearray) -> dict[str, JSONValue] | None:
    if len(raw) > MAX_ANSWER_BYTES:
        return None
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _oauth_error(answer: Mapping[str, JSONValue] | None) -> str | None:
    """The OAuth ``error`` code (RFC 6749 §5.2; AWS OIDC says ``error`` too), only when it
    looks like a code: a short token of letters, digits and ``_-.``."""
    if answer is None:
        return None
    code = answer.get("error")
    if (
        isinstance(code, str)
        and 0 < len(code) <= 64
        and code.replace("_", "").replace("-", "").replace(".", "").isalnum()
    ):
        return code
    return None
