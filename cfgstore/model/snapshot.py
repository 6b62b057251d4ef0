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

**Format version 2** (written when two or more credentials share a folder of sibling files,
Kiro's token folders): the object also has ``"sibling_folders": {folder: {name: {…}, …}, …}``
after ``credentials``, each folder's files kept once, and a credential whose siblings are
exactly its folder's files but its own (same names in the same order, equal documents)
says ``"siblings": "<folder>"`` instead of repeating them: a folder of N tokens costs N
documents, not N². Version 1 files are still read.

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
FORMAT_VERSION = 2
"""The newest version written and read; :data:`PLAIN_FORMAT_VERSION` is written when no
sibling folder is shared (readable by older cfgstore releases)."""
PLAIN_FORMAT_VERSION = 1

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
_FOLDERS_KEY = "sibling_folders"
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
    doc = _plain_json(snapshot)
    _shared_folders(snapshot, doc)
    return doc


def _plain_json(snapshot: StoreSnapshot) -> dict[str, JSONValue]:
    return {
        "format": FORMAT,
        "format_version": PLAIN_FORMAT_VERSION,
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


def _shared_folders(snapshot: StoreSnapshot, doc: dict[str, JSONValue]) -> None:
    """Rewrite ``doc`` (version 1) as version 2 when credentials share a sibling folder:
    each folder's files once, credentials referencing it (module docstring)."""
    groups: dict[str, list[Credential]] = {}
    for c in snapshot.credentials:
        if c.siblings and c.source_path:
            groups.setdefault(_folder_of(c.source_path)[0], []).append(c)
    shared = {f: _folder_files(group) for f, group in groups.items() if len(group) > 1}
    if not shared:
        return
    used: set[str] = set()
    entries = doc["credentials"]
    assert isinstance(entries, list)
    for c, entry in zip(snapshot.credentials, entries, strict=True):
        if not (c.siblings and c.source_path):
            continue
        folder, own = _folder_of(c.source_path)
        in_folder = shared.get(folder)
        if in_folder is None:
            continue
        expected = _folder_siblings(in_folder, own)
        if list(expected) == list(c.siblings) and expected == c.siblings:
            assert isinstance(entry, dict)
            entry["siblings"] = folder
            used.add(folder)
    if used:
        doc["format_version"] = FORMAT_VERSION
        doc[_FOLDERS_KEY] = {f: files for f, files in shared.items() if f in used}


def _folder_files(group: list[Credential]) -> dict[str, dict[str, JSONValue]]:
    """A folder's files in directory order, from its credentials' siblings: the first
    one's, with its own file put where another credential lists it. (A credential whose
    siblings are not these files but its own, in this order, is written out in full.)"""
    first = group[0]
    assert first.source_path is not None
    own = _folder_of(first.source_path)[1]
    files = list(first.siblings.items())
    for other in group[1:]:
        listed = list(other.siblings)
        if own in listed:
            at = listed.index(own)
            before = listed[at - 1] if at else None
            names = [name for name, _ in files]
            position = (
                0 if before is None else names.index(before) + 1 if before in names else len(files)
            )
            files.insert(position, (own, other.siblings[own]))
            break
    return dict(files)


def _folder_of(source_path: str) -> tuple[str, str]:
    """(folder, file name) of a token file's path (``\\`` read as ``/``)."""
    folder, _, name = source_path.replace("\\", "/").rpartition("/")
    return folder, name


def _folder_siblings(
    files: dict[str, dict[str, JSONValue]], own: str
) -> dict[str, dict[str, JSONValue]]:
    """A folder's files but ``own``, in the folder's order (the same documents)."""
    return {name: doc for name, doc in files.items() if name != own}


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
    if version not in (PLAIN_FORMAT_VERSION, FORMAT_VERSION):
        raise InvalidData(
            source,
            "$.format_version",
            f"unknown snapshot format version {version} (this cfgstore reads "
            f"{PLAIN_FORMAT_VERSION} and {FORMAT_VERSION})",
        )
    keys = _SNAPSHOT_KEYS if version == PLAIN_FORMAT_VERSION else (*_SNAPSHOT_KEYS, _FOLDERS_KEY)
    _check_keys(doc, keys, source, "$")
    folders = _sibling_folders(doc, source) if version == FORMAT_VERSION else {}

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
        where = json_path("credentials", index)
        if isinstance(item, dict) and isinstance(item.get("siblings"), str):
            credential = _referencing(item, folders, source, where)
        else:
            credential = credential_from_json(item, source, where)
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


def _sibling_folders(
    doc: dict[str, JSONValue], source: str
) -> dict[str, dict[str, dict[str, JSONValue]]]:
    table = doc[_FOLDERS_KEY]
    if not isinstance(table, dict):
        raise InvalidData(source, f"$.{_FOLDERS_KEY}", "expected an object of folder → files")
    folders: dict[str, dict[str, dict[str, JSONValue]]] = {}
    for folder, files in table.items():
        where = _child(f"$.{_FOLDERS_KEY}", folder)
        if not isinstance(files, dict):
            raise InvalidData(source, where, "expected an object of file name → document")
        for name, sibling in files.items():
            if not isinstance(sibling, dict):
                raise InvalidData(source, _child(where, name), "expected an object")
        folders[folder] = files
    return folders


def _referencing(
    item: dict[str, JSONValue],
    folders: dict[str, dict[str, dict[str, JSONValue]]],
    source: str,
    path: str,
) -> Credential:
    """A credential entry whose ``siblings`` names a folder of ``sibling_folders``: the
    folder's files but the credential's own (the documents shared by its credentials)."""
    folder = item["siblings"]
    assert isinstance(folder, str)
    files = folders.get(folder)
    if files is None:
        raise InvalidData(source, _child(path, "siblings"), f"no sibling folder {folder!r}")
    credential = credential_from_json({**item, "siblings": {}}, source, path)
    if credential.source_path is None or _folder_of(credential.source_path)[0] != folder:
        raise InvalidData(
            source, _child(path, "siblings"), f"the token file is not in folder {folder!r}"
        )
    credential.siblings = _folder_siblings(files, _folder_of(credential.source_path)[1])
    return credential


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
