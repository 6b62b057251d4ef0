"""``/api/providers…`` and ``/api/upload-oauth-credentials``: the pools, edited through the
store (aiclient-formats §7).

Answers show nodes as ``provider_pools.json`` objects with secrets masked. Edits go
through the same store as the request path (the hot path's counters are never
overwritten: the store merges admin edits atomically with them), so they reach every
instance through its change events. A new OAuth account is a node plus its credential
document: the node is added first (the file backend gives it its token file path), then
the credential; if storing the credential fails the node is removed again, so nothing
half-made is left behind. A credential path outside the folders credential files may live
in (:mod:`cfgstore.credential_paths`) is a ``422`` naming the field, checked before
anything is stored, in every storage mode.
"""

from __future__ import annotations

import asyncio
import re
import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from cfgstore.adapters import Store
from cfgstore.credential_paths import confine_for, is_credential_path_key
from cfgstore.errors import CredentialPathOutside, InvalidData
from cfgstore.model.credentials import Credential, credential_path_of, token_format_for
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import HOT_KEYS, ProviderNode, node_from_settings, node_to_json
from cfgstore_gateway.admin.http import (
    check_document,
    invalid,
    not_found,
    parse_json,
    read_json_object,
    refuse_declared_oversize,
    refuse_received_oversize,
    success,
)
from cfgstore_gateway.admin.masking import masked, without_masked_echoes
from cfgstore_gateway.health_checks import HealthChecker
from cfgstore_gateway.routing import BUILTIN_PROVIDER_TYPES, RESERVED_TYPE_NAMES, is_reserved_type
from cfgstore_gateway.services import SERVICES

_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_UUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_KEPT_ON_ADD = frozenset({"isDisabled"})
"""Hot-path fields a new node may set; the others start at their defaults."""


def node_answer(node: ProviderNode) -> dict[str, Any]:
    return masked(node_to_json(node))


# -- reads ------------------------------------------------------------------------------


async def list_providers(request: web.Request) -> web.StreamResponse:
    pools = await _store(request).pools.list()
    return web.json_response(
        {t: [node_answer(n) for n in nodes] for t, nodes in pools.types.items()}
    )


async def supported_types(request: web.Request) -> web.StreamResponse:
    services = request.config_dict[SERVICES]
    pools = await services.store.pools.view()
    # Built-in ids, then the types adapters list (a plugin's own), then the pools' types.
    candidates = dict.fromkeys([*BUILTIN_PROVIDER_TYPES, *services.registry.declared_types()])
    candidates.update(dict.fromkeys(pools))
    types = [t for t in candidates if services.registry.for_type(t) is not None]
    return web.json_response({"types": types})


async def providers_of_type(request: web.Request) -> web.StreamResponse:
    provider_type = _type_of(request)
    nodes = (await _store(request).pools.list()).types.get(provider_type, [])
    return web.json_response(
        {
            "providerType": provider_type,
            "providers": [node_answer(n) for n in nodes],
            "totalCount": len(nodes),
            "healthyCount": sum(1 for n in nodes if n.state.is_healthy),
        }
    )


# -- node edits -------------------------------------------------------------------------


async def add_provider(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    fields: dict[str, str] = {}
    provider_type = body.get("providerType")
    if problem := _new_type_problem(provider_type):
        fields["providerType"] = problem
    config = body.get("providerConfig", {})
    if not isinstance(config, dict):
        fields["providerConfig"] = "expected an object"
        config = {}
    credential = body.get("credential")
    if credential is not None and not isinstance(credential, dict):
        fields["credential"] = "expected the token document (a JSON object)"
    node_uuid = config.get("uuid") or str(uuidlib.uuid4())
    if not isinstance(node_uuid, str) or not _UUID.fullmatch(node_uuid):
        fields["providerConfig.uuid"] = "expected letters, digits, . _ - (at most 128)"
    fields.update(await _outside_paths(_store(request), config, "providerConfig."))
    if fields:
        raise invalid(fields)
    assert isinstance(provider_type, str) and isinstance(node_uuid, str)
    node = await _add_node(_store(request), provider_type, node_uuid, config, credential)
    return success(201, provider=node_answer(node))


async def update_provider(request: web.Request) -> web.StreamResponse:
    provider_type, node_uuid = _type_of(request), _uuid_of(request)
    body = await read_json_object(request)
    config = body.get("providerConfig")
    if not isinstance(config, dict):
        raise invalid({"providerConfig": "expected an object of the fields to change"})
    changes = without_masked_echoes(config)
    changes.pop("uuid", None)
    store = _store(request)
    if fields := await _outside_paths(store, changes, "providerConfig."):
        raise invalid(fields)
    current = await store.pools.get_node(provider_type, node_uuid)
    if current is not None:  # else the store answers 404
        check_document({**node_to_json(current), **changes}, "providerConfig")
    try:
        node = await store.pools.update_node(provider_type, node_uuid, changes)
    except InvalidData as exc:
        raise invalid({"providerConfig": _where(exc)}) from None
    return success(provider=node_answer(node))


async def delete_provider(request: web.Request) -> web.StreamResponse:
    await _store(request).pools.delete_node(_type_of(request), _uuid_of(request))
    return success()


async def disable_provider(request: web.Request) -> web.StreamResponse:
    await _store(request).pools.set_disabled(_type_of(request), _uuid_of(request), True)
    return success()


async def enable_provider(request: web.Request) -> web.StreamResponse:
    await _store(request).pools.set_disabled(_type_of(request), _uuid_of(request), False)
    return success()


async def reset_health(request: web.Request) -> web.StreamResponse:
    count = await _store(request).pools.reset_health(_type_of(request))
    return success(count=count)


async def delete_unhealthy(request: web.Request) -> web.StreamResponse:
    removed = await _store(request).pools.delete_unhealthy(_type_of(request))
    return success(removed=removed)


async def refresh_uuid(request: web.Request) -> web.StreamResponse:
    new_uuid = str(uuidlib.uuid4())
    await _store(request).pools.rename_node(_type_of(request), _uuid_of(request), new_uuid)
    return success(uuid=new_uuid)


async def refresh_unhealthy_uuids(request: web.Request) -> web.StreamResponse:
    store, provider_type = _store(request), _type_of(request)
    nodes = (await store.pools.list()).types.get(provider_type)
    if nodes is None:
        raise not_found(f"Provider type {provider_type}")
    renamed: dict[str, str] = {}
    for node in nodes:
        if not node.state.is_healthy:
            renamed[node.uuid] = str(uuidlib.uuid4())
            await store.pools.rename_node(provider_type, node.uuid, renamed[node.uuid])
    return success(renamed=renamed)


async def health_check(request: web.Request) -> web.StreamResponse:
    """Check one node, or the type's unhealthy nodes, now (aiclient-formats §3.7 UI rules)."""
    services = request.config_dict[SERVICES]
    provider_type = _type_of(request)
    node_uuid = request.match_info.get("uuid")
    if (
        node_uuid is not None
        and await services.store.pools.get_node(provider_type, node_uuid) is None
    ):
        raise not_found(f"Provider {provider_type}/{node_uuid}")
    results = await HealthChecker.for_services(services).check_now(provider_type, node_uuid)
    return success(
        results=[{"uuid": r.uuid, "healthy": r.ok, "message": r.message} for r in results]
    )


# -- credentials ------------------------------------------------------------------------


async def put_credential(request: web.Request) -> web.StreamResponse:
    store, provider_type, node_uuid = _store(request), _type_of(request), _uuid_of(request)
    document = await read_json_object(request)
    if not document:
        raise invalid({"body": "expected the token document (a non-empty JSON object)"})
    check_document(document, "body")
    node = await store.pools.get_node(provider_type, node_uuid)
    if node is None:
        raise not_found(f"Provider {provider_type}/{node_uuid}")
    carrier = credential_path_of(provider_type, node)
    if carrier is not None and (fields := await _outside_paths(store, dict([carrier]))):
        raise invalid(fields)
    current = await store.credentials.get(provider_type, node_uuid)
    await _put_credential(store, provider_type, node_uuid, document, current)
    return success()


async def upload_credential(request: web.Request) -> web.StreamResponse:
    """Multipart ``file`` (the token JSON) and ``provider`` (the type): a new node holding
    that credential (optional ``customName``)."""
    parts = await _multipart(request)
    fields: dict[str, str] = {}
    provider_type = parts.get("provider", b"").decode("utf-8", "replace").strip()
    if problem := _new_type_problem(provider_type):
        fields["provider"] = problem
    document: Any = None
    if "file" not in parts:
        fields["file"] = "required: the token JSON file"
    else:
        document = parse_json(parts["file"], "file")
        if not isinstance(document, dict) or not document:
            fields["file"] = "expected a token document (a non-empty JSON object)"
    name = parts.get("customName", b"").decode("utf-8", "replace").strip()
    if len(name) > 200:
        fields["customName"] = "at most 200 characters"
    if fields:
        raise invalid(fields)
    config: dict[str, Any] = {"customName": name} if name else {}
    node = await _add_node(_store(request), provider_type, str(uuidlib.uuid4()), config, document)
    return success(201, provider=node_answer(node))


# -- helpers ----------------------------------------------------------------------------


async def _add_node(
    store: Store,
    provider_type: str,
    node_uuid: str,
    config: dict[str, Any],
    credential: dict[str, Any] | None,
) -> ProviderNode:
    settings = {k: v for k, v in config.items() if k not in HOT_KEYS or k in _KEPT_ON_ADD}
    settings.pop("uuid", None)
    check_document(settings, "providerConfig")
    if credential is not None:
        check_document(credential, "credential")
    try:
        node = node_from_settings(settings, node_uuid, "providerConfig")
    except InvalidData as exc:
        raise invalid({"providerConfig": _where(exc)}) from None
    added = await store.pools.add_node(provider_type, node)
    if credential is None:
        return added
    try:
        await _put_credential(store, provider_type, node_uuid, credential, None)
    except BaseException:
        await store.pools.delete_node(provider_type, node_uuid)
        raise
    return await store.pools.get_node(provider_type, node_uuid) or added


async def _put_credential(
    store: Store,
    provider_type: str,
    node_uuid: str,
    document: dict[str, JSONValue],
    current: Credential | None,
) -> None:
    credential = Credential(
        provider_type, node_uuid, document, token_format=token_format_for(provider_type)
    )
    try:
        await store.credentials.put(credential, current.version if current else None)
    except InvalidData as exc:
        raise invalid({"credential": _where(exc)}) from None


async def _outside_paths(
    store: Store, settings: Mapping[str, Any], prefix: str = ""
) -> dict[str, str]:
    """``{prefix + key: problem}`` for each credential path among ``settings`` that leads
    outside the folders credential files may live in (:mod:`cfgstore.credential_paths`)."""
    paths = {
        key: value
        for key, value in settings.items()
        if is_credential_path_key(key) and isinstance(value, str) and value.strip()
    }
    if not paths:
        return {}

    def check() -> dict[str, str]:  # resolving symlinks is file-system I/O: in a thread
        problems: dict[str, str] = {}
        for key, value in paths.items():
            try:
                confine_for(store.settings, value)
            except CredentialPathOutside as exc:
                problems[prefix + key] = f"{value!r} {exc.problem}"
        return problems

    return await asyncio.to_thread(check)


async def _multipart(request: web.Request) -> dict[str, bytes]:
    """The form's parts by name; ``413`` once the body (framing included) passes the cap."""
    if not request.content_type.startswith("multipart/"):
        raise invalid({"body": "expected multipart/form-data with file and provider"})
    refuse_declared_oversize(request)
    reader = await request.multipart()
    parts: dict[str, bytes] = {}
    while (part := await reader.next()) is not None:
        refuse_received_oversize(request)
        data = bytearray()
        while chunk := await part.read_chunk():  # type: ignore[union-attr]
            refuse_received_oversize(request)
            data += chunk
        if part.name:  # type: ignore[union-attr]
            parts[part.name] = bytes(data)  # type: ignore[union-attr]
    refuse_received_oversize(request)
    return parts


def _store(request: web.Request) -> Store:
    return request.config_dict[SERVICES].store


def _new_type_problem(provider_type: object) -> str | None:
    """What is wrong with ``provider_type`` as the type of a new node (``None``: fine)."""
    if not isinstance(provider_type, str) or not _TYPE.fullmatch(provider_type):
        return "expected a provider type id (letters, digits, . _ -)"
    if is_reserved_type(provider_type):
        reserved = ", ".join(sorted(RESERVED_TYPE_NAMES))
        return f"{provider_type!r} is reserved for the gateway's own paths ({reserved})"
    return None


def _type_of(request: web.Request) -> str:
    provider_type = request.match_info["type"]
    if not _TYPE.fullmatch(provider_type):
        raise not_found(f"Provider type {provider_type[:64]}")
    return provider_type


def _uuid_of(request: web.Request) -> str:
    node_uuid = request.match_info["uuid"]
    if not _UUID.fullmatch(node_uuid):
        raise not_found(f"Provider {node_uuid[:64]}")
    return node_uuid


def _where(exc: InvalidData) -> str:
    return exc.problem if exc.where in ("", "$") else f"{exc.where}: {exc.problem}"
