"""``/api/providers…`` and ``/api/cfgstore/upload-oauth-credentials``: the pools, edited
through the store (aiclient-formats §7).

Answers have the Node service's shapes (``src/ui-modules/provider-api.js``): ``{"success":
true, "message", …}`` with the fields its UI reads, ``200`` for an add, and nodes as
``provider_pools.json`` objects with secrets masked (also where the Node service shows
them in clear: a deleted, disabled or renamed node). ``GET /api/providers`` adds each
node's ``activeRequests``/``waitingRequests`` (this instance's slots), as the Node service
does; an update never stores them back. Edits go
through the same store as the request path (the hot path's counters are never
overwritten: the store merges admin edits atomically with them), so they reach every
instance through its change events. A new OAuth account is a node plus its credential
document: the node is added first (the file backend gives it its token file path), then
the credential; if storing the credential fails the node is removed again, so nothing
half-made is left behind. A node whose path names an uploaded file takes that file's
document as its credential (:mod:`.upload_adoption`). A credential path outside the
folders credential files may live in (:mod:`cfgstore.credential_paths`) is a ``400``
naming the field, checked before anything is stored, in every storage mode.
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
from cfgstore.model.convert import converter
from cfgstore.model.credentials import Credential, credential_path_of, token_format_for
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import HOT_KEYS, ProviderNode, node_from_settings, node_to_json
from cfgstore_gateway.admin.http import (
    ApiError,
    check_document,
    invalid,
    not_found,
    parse_json,
    read_form,
    read_json_object,
    success,
)
from cfgstore_gateway.admin.masking import masked, without_masked_echoes
from cfgstore_gateway.admin.state import admin_state
from cfgstore_gateway.admin.upload_adoption import adopt_upload
from cfgstore_gateway.health_checks import CheckResult, HealthChecker
from cfgstore_gateway.routing import BUILTIN_PROVIDER_TYPES, RESERVED_TYPE_NAMES, is_reserved_type
from cfgstore_gateway.services import SERVICES

_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_UUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ANSWER_ONLY = frozenset({"activeRequests", "waitingRequests"})
"""Fields answers add to a node (this instance's slots): never stored from an update."""
_AUTH_ERROR = re.compile(
    r"\b(401|403)\b|\b(Unauthorized|Forbidden|AccessDenied|InvalidToken|ExpiredToken)\b",
    re.IGNORECASE,
)
_KEPT_ON_ADD = frozenset({"isDisabled"})
"""Hot-path fields a new node may set; the others start at their defaults."""


ANSWERED_STATE = (
    "isHealthy",
    "isDisabled",
    "lastUsed",
    "usageCount",
    "errorCount",
    "lastErrorTime",
    "lastHealthCheckTime",
    "lastHealthCheckModel",
    "lastErrorMessage",
)
"""Health fields every node in an answer has, defaults included (the Node service writes
them into each new node; cfgstore stores only those that differ from the defaults)."""


def node_answer(node: ProviderNode) -> dict[str, Any]:
    """The node as the Node service shows it: its object with the health fields, secrets
    masked."""
    answer = masked(node_to_json(node))
    state = converter.unstructure(node.state)
    for key in ANSWERED_STATE:
        answer.setdefault(key, state[key])
    return answer


# -- reads ------------------------------------------------------------------------------


async def list_providers(request: web.Request) -> web.StreamResponse:
    """``{"providers": {type: [node…]}, "supportedProviders": [type…]}``."""
    services = request.config_dict[SERVICES]
    pools = await services.store.pools.list()
    slots = services.slots
    providers = {
        t: [
            {
                **node_answer(n),
                "activeRequests": slots.active(t, n.uuid),
                "waitingRequests": slots.waiting(t, n.uuid),
            }
            for n in nodes
        ]
        for t, nodes in pools.types.items()
    }
    supported = await _supported(request)
    supported.extend(t for t in providers if t not in supported)
    return web.json_response({"providers": providers, "supportedProviders": supported})


async def supported_types(request: web.Request) -> web.StreamResponse:
    """The types the gateway can serve, as a JSON array."""
    return web.json_response(await _supported(request))


async def _supported(request: web.Request) -> list[str]:
    services = request.config_dict[SERVICES]
    pools = await services.store.pools.view()
    # Built-in ids, then the types adapters list (a plugin's own), then the pools' types.
    candidates = dict.fromkeys([*BUILTIN_PROVIDER_TYPES, *services.registry.declared_types()])
    candidates.update(dict.fromkeys(pools))
    return [t for t in candidates if services.registry.for_type(t) is not None]


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
    config = body.get("providerConfig")
    if not provider_type or config is None:
        missing = {k: "required" for k in ("providerType", "providerConfig") if not body.get(k)}
        raise invalid(missing, "providerType and providerConfig are required")
    if not isinstance(config, dict):
        fields["providerConfig"] = "expected an object"
        config = {}
    credential = body.get("credential")
    if credential is not None and not isinstance(credential, dict):
        fields["credential"] = "expected the token document (a JSON object)"
    node_uuid = config.get("uuid") or str(uuidlib.uuid4())
    if not isinstance(node_uuid, str) or not _UUID.fullmatch(node_uuid):
        fields["providerConfig.uuid"] = "expected letters, digits, . _ - (at most 128)"
    fields.update(await outside_paths(_store(request), config, "providerConfig."))
    if fields:
        raise invalid(fields)
    assert isinstance(provider_type, str) and isinstance(node_uuid, str)
    store = _store(request)
    node = await _add_node(store, provider_type, node_uuid, config, credential)
    if credential is None:  # a path the Node UI's form got from an upload: its document
        try:
            if await adopt_upload(store, provider_type, node_uuid, admin_state(request).uploads):
                node = await store.pools.get_node(provider_type, node_uuid) or node
        except BaseException:
            await store.pools.delete_node(provider_type, node_uuid)
            raise
    return success(
        message="Provider added successfully",
        provider=node_answer(node),
        providerType=provider_type,
    )


async def update_provider(request: web.Request) -> web.StreamResponse:
    provider_type, node_uuid = _type_of(request), _uuid_of(request)
    body = await read_json_object(request)
    config = body.get("providerConfig")
    if not isinstance(config, dict):
        raise invalid({"providerConfig": "expected an object of the fields to change"})
    changes = {k: v for k, v in without_masked_echoes(config).items() if k not in _ANSWER_ONLY}
    changes.pop("uuid", None)
    store = _store(request)
    if fields := await outside_paths(store, changes, "providerConfig."):
        raise invalid(fields)
    current = await _existing(store, provider_type, node_uuid)
    check_document({**node_to_json(current), **changes}, "providerConfig")
    try:
        node = await store.pools.update_node(provider_type, node_uuid, changes)
    except InvalidData as exc:
        raise invalid({"providerConfig": _where(exc)}) from None
    if any(is_credential_path_key(key) for key in changes):  # perhaps a fresh upload's path
        await adopt_upload(store, provider_type, node_uuid, admin_state(request).uploads)
    return success(message="Provider updated successfully", provider=node_answer(node))


async def delete_provider(request: web.Request) -> web.StreamResponse:
    store, provider_type, node_uuid = _store(request), _type_of(request), _uuid_of(request)
    node = await _existing(store, provider_type, node_uuid)
    await store.pools.delete_node(provider_type, node_uuid)
    return success(message="Provider deleted successfully", deletedProvider=node_answer(node))


async def disable_provider(request: web.Request) -> web.StreamResponse:
    return await _set_disabled(request, True)


async def enable_provider(request: web.Request) -> web.StreamResponse:
    return await _set_disabled(request, False)


async def _set_disabled(request: web.Request, disabled: bool) -> web.StreamResponse:
    store, provider_type, node_uuid = _store(request), _type_of(request), _uuid_of(request)
    await _existing(store, provider_type, node_uuid)
    await store.pools.set_disabled(provider_type, node_uuid, disabled)
    node = await _existing(store, provider_type, node_uuid)
    action = "disable" if disabled else "enable"
    return success(message=f"Provider {action}d successfully", provider=node_answer(node))


async def reset_health(request: web.Request) -> web.StreamResponse:
    store, provider_type = _store(request), _type_of(request)
    nodes = await _nodes_of(store, provider_type)
    reset = sum(
        1
        for n in nodes
        if not n.state.is_healthy or n.state.needs_refresh or n.state.error_count > 0
    )
    await store.pools.reset_health(provider_type)
    return success(
        message=f"Successfully reset health status for {reset} providers",
        resetCount=reset,
        totalCount=len(nodes),
        providerType=provider_type,
    )


async def delete_unhealthy(request: web.Request) -> web.StreamResponse:
    store, provider_type = _store(request), _type_of(request)
    nodes = await _nodes_of(store, provider_type)
    if all(n.state.is_healthy for n in nodes):
        return success(
            message="No unhealthy providers to delete", deletedCount=0, remainingCount=len(nodes)
        )
    removed = set(await store.pools.delete_unhealthy(provider_type))
    deleted = [{"uuid": n.uuid, "customName": n.custom_name} for n in nodes if n.uuid in removed]
    return success(
        message=f"Successfully deleted {len(deleted)} unhealthy providers",
        deletedCount=len(deleted),
        remainingCount=len(nodes) - len(deleted),
        deletedProviders=deleted,
    )


async def refresh_uuid(request: web.Request) -> web.StreamResponse:
    store, provider_type, old_uuid = _store(request), _type_of(request), _uuid_of(request)
    new_uuid = str(uuidlib.uuid4())
    await _existing(store, provider_type, old_uuid)
    await store.pools.rename_node(provider_type, old_uuid, new_uuid)
    node = await _existing(store, provider_type, new_uuid)
    return success(
        message="UUID refreshed successfully",
        oldUuid=old_uuid,
        newUuid=new_uuid,
        provider=node_answer(node),
    )


async def refresh_unhealthy_uuids(request: web.Request) -> web.StreamResponse:
    store, provider_type = _store(request), _type_of(request)
    nodes = await _nodes_of(store, provider_type)
    refreshed: list[dict[str, Any]] = []
    for node in nodes:
        if not node.state.is_healthy:
            new_uuid = str(uuidlib.uuid4())
            await store.pools.rename_node(provider_type, node.uuid, new_uuid)
            refreshed.append(
                {"oldUuid": node.uuid, "newUuid": new_uuid, "customName": node.custom_name}
            )
    if not refreshed:
        return success(
            message="No unhealthy providers to refresh", refreshedCount=0, totalCount=len(nodes)
        )
    return success(
        message=f"Successfully refreshed UUIDs for {len(refreshed)} unhealthy providers",
        refreshedCount=len(refreshed),
        totalCount=len(nodes),
        refreshedProviders=refreshed,
    )


async def health_check(request: web.Request) -> web.StreamResponse:
    """Check one node, or the type's unhealthy nodes, now (aiclient-formats §3.7 UI rules)."""
    services = request.config_dict[SERVICES]
    provider_type = _type_of(request)
    node_uuid = request.match_info.get("uuid")
    checker = HealthChecker.for_services(services)
    if node_uuid is not None:
        await _existing(services.store, provider_type, node_uuid)
        results = await checker.check_now(provider_type, node_uuid)
        if not results:
            raise not_found("Provider")
        one = results[0]
        return success(
            providerType=provider_type,
            uuid=node_uuid,
            healthy=one.ok,
            modelName=one.model or None,
            message=_check_message(one),
            isAuthError=_is_auth_error(one),
        )
    nodes = await _nodes_of(services.store, provider_type)
    results = await checker.check_now(provider_type)
    if not results:
        return success(
            message="No unhealthy providers to check",
            successCount=0,
            failCount=0,
            totalCount=len(nodes),
            results=[],
        )
    answers: list[dict[str, Any]] = []
    for r in results:
        answer = {"uuid": r.uuid, "success": r.ok, "modelName": r.model or None}
        answer["message"] = _check_message(r)
        if not r.ok:
            answer["isAuthError"] = _is_auth_error(r)
        answers.append(answer)
    ok = sum(1 for r in results if r.ok)
    return success(
        message=f"Health check completed: {ok} healthy, {len(results) - ok} unhealthy",
        successCount=ok,
        failCount=len(results) - ok,
        totalCount=len(nodes),
        results=answers,
    )


def _check_message(result: CheckResult) -> str:
    return "Healthy" if result.ok else (result.message or "Check failed")


def _is_auth_error(result: CheckResult) -> bool:
    """The Node service's test: a 401/403 or an auth word in the failure."""
    if result.ok:
        return False
    if result.status in (401, 403):
        return True
    return bool(_AUTH_ERROR.search(result.message or ""))


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
    if carrier is not None and (fields := await outside_paths(store, dict([carrier]))):
        raise invalid(fields)
    current = await store.credentials.get(provider_type, node_uuid)
    await _put_credential(store, provider_type, node_uuid, document, current)
    return success()


async def upload_credential(request: web.Request) -> web.StreamResponse:
    """``/api/cfgstore/upload-oauth-credentials``: multipart ``file`` (the token JSON) and
    ``provider`` (the type): a new node holding that credential (optional ``customName``),
    in one step (the Node path stores a file to link later: :mod:`.uploads_api`)."""
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
    return success(message="Provider added successfully", provider=node_answer(node))


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


async def outside_paths(
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
    """The form's parts by name (:func:`~cfgstore_gateway.admin.http.read_form`)."""
    return {name: part.data for name, part in (await read_form(request)).items()}


async def _existing(store: Store, provider_type: str, node_uuid: str) -> ProviderNode:
    node = await store.pools.get_node(provider_type, node_uuid)
    if node is None:
        raise not_found("Provider")
    return node


async def _nodes_of(store: Store, provider_type: str) -> list[ProviderNode]:
    """The type's nodes; ``404`` when it has none (the Node service's answer)."""
    nodes = (await store.pools.list()).types.get(provider_type)
    if not nodes:
        raise ApiError(404, "not_found", "No providers found for this type")
    return list(nodes)


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
