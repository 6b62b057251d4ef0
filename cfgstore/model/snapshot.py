"""The confirmed-state snapshot of the memory fallback (one file, one JSON object).

An instance on Redis writes a snapshot to its state directory so that it can start serving
when Redis is down, and ``cfgctl restore --snapshot FILE`` re-seeds an emptied Redis from
one. It holds everything the store serves: pools (nodes with their hot-path state),
credentials, the main config, the system prompt, custom models, plugin settings, the stored
password and the usage cache. Web-UI sessions are not in it (stores keep token digests only).

**Confirmed state.** A snapshot holds only what Redis acknowledged: state read from Redis,
and writes whose reply came back, at namespace ``revision`` (the ``{p}:rev`` value the state
was read at). It never holds the outage overlay, records still queued in the group-commit
writer, or anything in an outage journal. Journal entries are exactly the writes Redis has
not acknowledged, so a snapshot and the journals are disjoint: restoring the snapshot and
then replaying the journals applies every write once and never counts a usage or error
twice. A snapshot of one namespace (``namespace_id``, the ``namespace`` field of
``{p}:meta``, and ``prefix``) must not be restored into another.

**Format** (``format_version`` 1), written by :func:`snapshot_to_bytes` with the Node-exact
writer (:func:`cfgstore.model.jsjson.dump_bytes`: two-space indent, raw UTF-8, integers of
any size written exactly, key order kept)::

    {
      "format": "cfgstore-snapshot",
      "format_version": 1,
      "namespace_id": "…",             # string
      "prefix": "aiclient",            # string: the Redis key prefix
      "revision": 42,                  # integer ≥ 0
      "saved_at": "2026-03-15T12:00:00.000Z",   # ISO ms, for people; saved_at_ms rules
      "saved_at_ms": 1773576000000,    # integer ≥ 0
      "pools": {type: [node, …], …},   # provider_pools.json layout (pools_to_json)
      "config": {"version": "…", "document": {…}},
      "system_prompt": "…" | null,
      "custom_models": [{…}, …],       # custom_models.json layout
      "plugins": {"plugins": {…}, …},  # plugins.json layout
      "password": "pbkdf2:…" | "legacy plaintext" | null,
      "usage_cache": {"timestamp": …, "providers": {…}, …} | null,
      "credentials": [
        {"provider_type": "…", "uuid": "…", "document": {…}, "source_path": "…" | null,
         "token_format": "kiro", "version": "…" | null, "siblings": {name: {…}, …}},
        …
      ]
    }

Every key is required (``null`` where the type allows it); unknown keys are refused, in the
snapshot object, ``config`` and each credential, so a misspelt key cannot silently drop
data on restore. :func:`snapshot_from_bytes` is strict: text that is not JSON raises
:class:`~cfgstore.errors.InvalidData` with ``line L column C``; a wrong ``format`` tag, an
unknown ``format_version``, or a missing or wrongly typed field raises it with the JSON path
of the field (``$.pools``, ``$.credentials[3].uuid``). As in every Node-format file, keys
that JavaScript treats as array indices (``"0"``, ``"12"``) are written first, in numeric
order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import attrs

from cfgstore.errors import InvalidData
from cfgstore.model import jsjson
from cfgstore.model.config import MainConfig, config_from_json
from cfgstore.model.convert import json_path
from cfgstore.model.credentials import Credential, TokenFormat
from cfgstore.model.custom_models import CustomModel, custom_models_from_json, models_to_json
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.plugin_config import PluginConfig, plugin_config_from_json
from cfgstore.model.pools import ProviderPools, pools_from_json, pools_to_json
from cfgstore.model.timefmt import iso_ms
from cfgstore.model.usage_cache import UsageCache, usage_cache_from_json

FORMAT = "cfgstore-snapshot"
FORMAT_VERSION = 1

_SNAPSHOT_KEYS = (
    "format",
    "format_version",
    "namespace_id",
    "prefix",
    "revision",
    "saved_at",
    "saved_at_ms",
    "pools",
    "config",
    "system_prompt",
    "custom_models",
    "plugins",
    "password",
    "usage_cache",
    "credentials",
)
_CONFIG_KEYS = ("version", "document")
_CREDENTIAL_KEYS = (
    "provider_type",
    "uuid",
    "document",
    "source_path",
    "token_format",
    "version",
    "siblings",
)

T = TypeVar("T")


@attrs.define
class StoreSnapshot:
    """Everything the store serves, as Redis confirmed it at ``revision``."""

    namespace_id: str
    """The Redis namespace id (meta field ``namespace``) the state came from."""
    prefix: str
    """The Redis key prefix."""
    revision: int
    """The namespace revision the state was read at."""
    saved_at_ms: int
    pools: ProviderPools
    config: MainConfig
    system_prompt: str | None
    custom_models: list[CustomModel]
    plugins: PluginConfig
    password: str | None
    """The stored form (``pbkdf2:…`` or legacy plaintext), never a clear password."""
    usage_cache: UsageCache | None
    credentials: list[Credential]


# ------------------------------------------------------------------------------- writing


def credential_to_json(c: Credential) -> dict[str, JSONValue]:
    """One credential as a snapshot entry (document and siblings verbatim)."""
    return {
        "provider_type": c.provider_type,
        "uuid": c.uuid,
        "document": c.document,
        "source_path": c.source_path,
        "token_format": c.token_format.value,
        "version": c.version,
        "siblings": c.siblings,
    }


def snapshot_to_json(snapshot: StoreSnapshot) -> dict[str, JSONValue]:
    """The snapshot as one JSON object (the value :func:`snapshot_to_bytes` writes)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "namespace_id": snapshot.namespace_id,
        "prefix": snapshot.prefix,
        "revision": snapshot.revision,
        "saved_at": iso_ms(snapshot.saved_at_ms),
        "saved_at_ms": snapshot.saved_at_ms,
        "pools": pools_to_json(snapshot.pools),
        "config": {"version": snapshot.config.version, "document": snapshot.config.document},
        "system_prompt": snapshot.system_prompt,
        "custom_models": models_to_json(snapshot.custom_models),
        "plugins": snapshot.plugins.to_json(),
        "password": snapshot.password,
        "usage_cache": None if snapshot.usage_cache is None else snapshot.usage_cache.to_json(),
        "credentials": [credential_to_json(c) for c in snapshot.credentials],
    }


def snapshot_to_bytes(snapshot: StoreSnapshot) -> bytes:
    """The snapshot file's bytes: one JSON object, UTF-8, in the Node write format."""
    return jsjson.dump_bytes(snapshot_to_json(snapshot))


# ------------------------------------------------------------------------------- reading


def snapshot_from_bytes(data: bytes, source: str) -> StoreSnapshot:
    """Parse a snapshot file; raise :class:`InvalidData` naming ``source`` and the position
    (``line L column C`` for broken JSON, else the JSON path of the bad field)."""
    return snapshot_from_json(jsjson.loads(data, source), source)


def snapshot_from_json(doc: JSONValue, source: str) -> StoreSnapshot:
    """Structure a parsed snapshot object (see the module docstring for the checks)."""
    if not isinstance(doc, dict):
        raise InvalidData(source, "$", "a snapshot must be a JSON object")
    tag = doc.get("format")
    if tag != FORMAT:
        raise InvalidData(
            source, "$.format", f"not a cfgstore snapshot (expected {FORMAT!r}, got {tag!r})"
        )
    version = doc.get("format_version")
    if not _is_int(version):
        raise InvalidData(source, "$.format_version", "expected an integer")
    if version != FORMAT_VERSION:
        raise InvalidData(
            source,
            "$.format_version",
            f"unknown snapshot format version {version} (this cfgstore reads {FORMAT_VERSION})",
        )
    _check_keys(doc, _SNAPSHOT_KEYS, source, "$")

    namespace_id = _string(doc, "namespace_id", source, "$")
    prefix = _string(doc, "prefix", source, "$")
    revision = _count(doc, "revision", source, "$")
    _string(doc, "saved_at", source, "$")
    saved_at_ms = _count(doc, "saved_at_ms", source, "$")

    pools = _nested(source, "$.pools", lambda: pools_from_json(doc["pools"], source))

    config_doc = doc["config"]
    if not isinstance(config_doc, dict):
        raise InvalidData(source, "$.config", "expected an object with version and document")
    _check_keys(config_doc, _CONFIG_KEYS, source, "$.config")
    config_version = _string(config_doc, "version", source, "$.config")
    config = _nested(
        source,
        "$.config.document",
        lambda: config_from_json(config_doc["document"], source, config_version),
    )

    system_prompt = _optional_string(doc, "system_prompt", source, "$")
    custom_models = _nested(
        source, "$.custom_models", lambda: custom_models_from_json(doc["custom_models"], source)
    )
    plugins = _nested(source, "$.plugins", lambda: plugin_config_from_json(doc["plugins"], source))
    password = _optional_string(doc, "password", source, "$")
    usage_doc = doc["usage_cache"]
    usage_cache = (
        None
        if usage_doc is None
        else _nested(source, "$.usage_cache", lambda: usage_cache_from_json(usage_doc, source))
    )

    items = doc["credentials"]
    if not isinstance(items, list):
        raise InvalidData(source, "$.credentials", "expected an array of credentials")
    credentials: list[Credential] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(items):
        credential = credential_from_json(item, source, json_path("credentials", index))
        key = (credential.provider_type, credential.uuid)
        if key in seen:
            raise InvalidData(
                source,
                json_path("credentials", index, "uuid"),
                f"duplicate credential {credential.provider_type}/{credential.uuid}",
            )
        seen.add(key)
        credentials.append(credential)

    return StoreSnapshot(
        namespace_id=namespace_id,
        prefix=prefix,
        revision=revision,
        saved_at_ms=saved_at_ms,
        pools=pools,
        config=config,
        system_prompt=system_prompt,
        custom_models=custom_models,
        plugins=plugins,
        password=password,
        usage_cache=usage_cache,
        credentials=credentials,
    )


def credential_from_json(doc: JSONValue, source: str, path: str = "$") -> Credential:
    """Structure one snapshot credential entry; :class:`InvalidData` at ``path`` + field."""
    if not isinstance(doc, dict):
        raise InvalidData(source, path, "a credential must be a JSON object")
    _check_keys(doc, _CREDENTIAL_KEYS, source, path)
    provider_type = _string(doc, "provider_type", source, path)
    if not provider_type:
        raise InvalidData(source, _child(path, "provider_type"), "must not be empty")
    uuid = _string(doc, "uuid", source, path)
    if not uuid:
        raise InvalidData(source, _child(path, "uuid"), "must not be empty")
    document = doc["document"]
    if not isinstance(document, dict):
        raise InvalidData(source, _child(path, "document"), "expected an object")
    source_path = _optional_string(doc, "source_path", source, path)
    format_value = _string(doc, "token_format", source, path)
    try:
        token_format = TokenFormat(format_value)
    except ValueError:
        known = ", ".join(f.value for f in TokenFormat)
        raise InvalidData(
            source,
            _child(path, "token_format"),
            f"unknown token format {format_value!r} (one of {known})",
        ) from None
    version = _optional_string(doc, "version", source, path)
    siblings_doc = doc["siblings"]
    siblings_path = _child(path, "siblings")
    if not isinstance(siblings_doc, dict):
        raise InvalidData(source, siblings_path, "expected an object of file name → document")
    siblings: dict[str, dict[str, JSONValue]] = {}
    for name, sibling in siblings_doc.items():
        if not isinstance(sibling, dict):
            raise InvalidData(source, _child(siblings_path, name), "expected an object")
        siblings[name] = sibling
    return Credential(
        provider_type=provider_type,
        uuid=uuid,
        document=document,
        source_path=source_path,
        token_format=token_format,
        version=version,
        siblings=siblings,
    )


# ------------------------------------------------------------------------------- helpers


def _child(path: str, key: str | int) -> str:
    """``path`` extended by one key or index, spelt as :func:`json_path` spells it."""
    return path + json_path(key)[1:]


def _is_int(value: JSONValue) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_keys(doc: dict[str, JSONValue], keys: tuple[str, ...], source: str, path: str) -> None:
    for key in keys:
        if key not in doc:
            raise InvalidData(source, _child(path, key), "missing")
    for key in doc:
        if key not in keys:
            raise InvalidData(source, _child(path, key), "unknown field")


def _string(doc: dict[str, JSONValue], key: str, source: str, path: str) -> str:
    value = doc[key]
    if not isinstance(value, str):
        raise InvalidData(source, _child(path, key), "expected a string")
    return value


def _optional_string(doc: dict[str, JSONValue], key: str, source: str, path: str) -> str | None:
    value = doc[key]
    if value is not None and not isinstance(value, str):
        raise InvalidData(source, _child(path, key), "expected a string or null")
    return value


def _count(doc: dict[str, JSONValue], key: str, source: str, path: str) -> int:
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidData(source, _child(path, key), "expected an integer")
    if value < 0:
        raise InvalidData(source, _child(path, key), "must not be negative")
    return value


def _nested(source: str, path: str, parse: Callable[[], T]) -> T:
    """Run a model's ``from_json`` on a member; rebase the JSON path of its errors (which
    are relative to the member, ``$…``) onto ``path``."""
    try:
        return parse()
    except InvalidData as exc:
        if exc.source != source or not exc.where.startswith("$"):
            raise
        raise InvalidData(source, path + exc.where[1:], exc.problem) from None
