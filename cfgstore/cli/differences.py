"""What differs between two snapshots, in words an operator can act on.

Configuration is compared exactly (byte for byte as the Node service would write it);
live hot-path state — counters, health, times — is not configuration and is ignored: it
keeps changing while the service runs. A system prompt or password file that the folder
does not have is not a difference either: a missing optional file is no instruction to
delete what an operator set (for the password it would mean the well-known default).
"""

from __future__ import annotations

from typing import Any

from cfgstore.cli.kept_files import opaque
from cfgstore.cli.snapshot import Snapshot
from cfgstore.model import jsjson
from cfgstore.model.password import is_hashed, verify_password
from cfgstore.model.pools import HOT_KEYS, ProviderNode, node_to_json


def _settings(node: ProviderNode) -> dict[str, object]:
    return {k: v for k, v in node_to_json(node).items() if k not in HOT_KEYS}


def _same(a: object, b: object) -> bool:
    return jsjson.dumps(a) == jsjson.dumps(b)


class _SiblingComparer:
    """Compares Kiro sibling files, each pair of documents once: the tokens of one folder
    are each other's siblings, and backends share a folder's documents between its
    credentials, so 1,000 tokens in one folder are a million sibling entries but only
    about a thousand distinct pairs."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], tuple[object, object, bool]] = {}
        # (keeps both documents alive: their ids are not reused while remembered)

    def all(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        """Whether ``a`` and ``b`` hold the same files, in the same order, with the same
        documents (key order included)."""
        if list(a) != list(b):
            return False
        return all(self._same(a[name], b[name]) for name in a)

    def _same(self, x: object, y: object) -> bool:
        key = (id(x), id(y))
        seen = self._seen.get(key)
        if seen is None:
            seen = self._seen[key] = (x, y, _same(x, y))
        return seen[2]


def differences(
    files: Snapshot, store: Snapshot, *, check_password: bool = True, complete: bool = False
) -> list[str]:
    """Every difference, files first. Empty when the store holds what the files hold.

    ``complete``: the files are meant to hold everything the store holds (an export read
    back), so a system prompt, password or usage cache missing from them is a difference.
    """
    out: list[str] = []
    if not _same(files.config.document, store.config.document):
        changed = sorted(
            key
            for key in set(files.config.document) | set(store.config.document)
            if not _same(files.config.document.get(key), store.config.document.get(key))
        )
        out.append(
            "config: " + (", ".join(changed) + " differ" if changed else "key order differs")
        )
    out += _pool_differences(files, store)
    same_sibling = _SiblingComparer()
    for key, credential in files.credentials.items():
        other = store.credentials.get(key)
        name = "/".join(key)
        if other is None:
            out.append(f"credential {name}: not in the store")
        elif not _same(credential.document, other.document):
            out.append(f"credential {name}: differs")
        elif credential.siblings and not same_sibling.all(credential.siblings, other.siblings):
            out.append(f"credential {name}: sibling files differ")
    for key in store.credentials.keys() - files.credentials.keys():
        out.append(f"credential {'/'.join(key)}: only in the store")
    if (files.system_prompt is not None or complete) and files.system_prompt != store.system_prompt:
        out.append("system prompt: differs")
    if not _same(
        [m.document for m in files.custom_models], [m.document for m in store.custom_models]
    ):
        out.append("custom models: differ")
    if not _same(files.plugins.to_json(), store.plugins.to_json()):
        out.append("plugins: differ")
    if (
        check_password
        and (files.password is not None or complete)
        and not _same_password(files.password, store.password)
    ):
        out.append("UI password: differs")
    out += _kept_differences(files, store, complete)
    if (files.usage_cache is not None or (complete and store.usage_cache is not None)) and (
        files.usage_cache is None
        or store.usage_cache is None
        or not _same(files.usage_cache.to_json(), store.usage_cache.to_json())
    ):
        out.append("usage cache: differs")
    # Keys only one side holds are a difference either way (like pool nodes).
    if (files.potluck is not None or store.potluck is not None) and (
        files.potluck is None
        or store.potluck is None
        or not _same(files.potluck.keys, store.potluck.keys)
    ):
        out.append("api-potluck keys: differ")
    if (files.usage_stats is not None or (complete and store.usage_stats is not None)) and (
        files.usage_stats is None
        or store.usage_stats is None
        or not _same(files.usage_stats, store.usage_stats)
    ):
        out.append("model usage statistics: differ")
    return out


def _kept_differences(files: Snapshot, store: Snapshot, complete: bool) -> list[str]:
    """Files kept as bytes. An export read back (``complete``) compares the opaque ones
    only: an original kept for an entity modified since is rightly not written."""
    mine, theirs = (opaque(files), opaque(store)) if complete else (files.kept, store.kept)
    out: list[str] = []
    for key in sorted(mine.keys() | theirs.keys()):
        if key not in theirs:
            out.append(f"kept file {key}: not in the store")
        elif key not in mine:
            out.append(f"kept file {key}: only in the store")
        elif mine[key] != theirs[key]:
            out.append(f"kept file {key}: differs")
    return out


def live_state_differences(files: Snapshot, store: Snapshot) -> list[str]:
    """Nodes whose counters, health or times differ (what ``--reset-counters`` resets)."""
    out = []
    for provider_type, node in files.pools:
        other = store.pools.find(provider_type, node.uuid)
        if other is not None and node.state != other.state:
            out.append(f"node {provider_type}/{node.uuid}: counters or health differ")
    return out


def _pool_differences(files: Snapshot, store: Snapshot) -> list[str]:
    out: list[str] = []
    if list(files.pools.types) != list(store.pools.types):
        missing = [t for t in files.pools.types if t not in store.pools.types]
        extra = [t for t in store.pools.types if t not in files.pools.types]
        if missing:
            out.append(f"provider types not in the store: {', '.join(missing)}")
        if extra:
            out.append(f"provider types only in the store: {', '.join(extra)}")
        if not missing and not extra:
            out.append("provider types: order differs")
    for provider_type, nodes in files.pools.types.items():
        stored = store.pools.types.get(provider_type)
        if stored is None:
            continue
        stored_by_uuid = {n.uuid: n for n in stored}
        for node in nodes:
            other = stored_by_uuid.get(node.uuid)
            if other is None:
                out.append(f"node {provider_type}/{node.uuid}: not in the store")
            elif not _same(_settings(node), _settings(other)):
                out.append(f"node {provider_type}/{node.uuid}: settings differ")
        file_uuids = [n.uuid for n in nodes]
        for uuid in stored_by_uuid.keys() - set(file_uuids):
            out.append(f"node {provider_type}/{uuid}: only in the store")
        if set(file_uuids) == set(stored_by_uuid) and file_uuids != [n.uuid for n in stored]:
            out.append(f"nodes of {provider_type}: order differs")
    return out


def _same_password(file_form: str | None, stored: str | None) -> bool:
    """A plaintext file password matches the hash it was migrated to."""
    if file_form == stored:
        return True
    if file_form is None or stored is None:
        return False
    if not is_hashed(file_form) and is_hashed(stored):
        return verify_password(file_form, stored)
    return False
