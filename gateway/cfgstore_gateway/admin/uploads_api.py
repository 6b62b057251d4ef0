"""Credential files uploaded to link later, as the Node service handles them:
``POST /api/upload-oauth-credentials`` stores a file, ``GET /api/upload-configs`` lists the
credential files under ``configs/`` and who uses each, ``POST /api/quick-link-provider``
makes nodes of stored files (shapes: ``src/ui-modules/event-broadcast.js``,
``upload-config-api.js``, ``provider-api.js`` of the Node service).

An uploaded file is kept in the store as a deployment file (``store.kept_files``, the
path ``configs/<provider>/<ms>_<name>``; Kiro's in a folder of its own), so every instance
sees it and the file backend writes it where the Node service would. The path is checked
as every credential path is (:mod:`cfgstore.credential_paths`). Linking a path adds a node
of the type the path names (Node's mappings, :mod:`.credential_files`) whose path key names
it; the file's document becomes the node's credential (:mod:`.upload_adoption`) and the
file stops being a loose upload. A loose upload may be viewed (secrets masked) and
deleted; a file a node names is not deleted (``409``). Edits of the uploads are serialised
per instance; two instances uploading at the same moment may lose one of the uploads (the
kept files are replaced as a set, with no version to compare).

Nothing here shows a secret: listings preview documents with secrets masked.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
import time
import uuid as uuidlib
from typing import Any

import attrs
from aiohttp import web

from cfgstore.adapters import Store
from cfgstore.model import jsjson
from cfgstore.model.pools import node_from_settings
from cfgstore.model.timefmt import now_ms
from cfgstore_gateway.admin.credential_files import (
    USAGE_LABELS,
    Holder,
    describe,
    is_listed,
    kind_of,
    masked_text,
    normal_path,
    system_path,
    usage_info,
)
from cfgstore_gateway.admin.http import (
    ApiError,
    invalid,
    read_form,
    read_json_object,
    success,
)
from cfgstore_gateway.admin.providers_api import node_answer, outside_paths
from cfgstore_gateway.admin.state import admin_state
from cfgstore_gateway.admin.upload_adoption import adopt_upload
from cfgstore_gateway.services import SERVICES

UPLOAD_EXTENSIONS = (".json", ".txt", ".key", ".pem", ".p12", ".pfx")
"""What the Node service accepts as an upload."""
_FOLDER = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UNSAFE = re.compile(r"[^a-zA-Z0-9.-]")
MAX_LINKS = 200
"""Paths one quick-link may name."""


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid", message)


async def upload(request: web.Request) -> web.StreamResponse:
    """Multipart ``file`` and ``provider`` (the ``configs/`` sub-folder, ``common`` when
    absent): ``{"success", "message", "filePath", "originalName", "provider"}``."""
    parts = await read_form(request)
    file = parts.get("file")
    if file is None or file.filename is None:
        raise _bad("No file was uploaded")
    original = file.filename
    extension = posixpath.splitext(original)[1].lower()
    if extension not in UPLOAD_EXTENSIONS:
        raise _bad("Unsupported file type")
    folder = parts["provider"].text() if "provider" in parts else ""
    folder = folder or "common"
    if not _FOLDER.fullmatch(folder):
        raise invalid({"provider": "Invalid provider format"}, "Invalid provider format")
    stamp = int(time.time() * 1000)
    name = f"{stamp}_{_UNSAFE.sub('_', posixpath.basename(original))}"
    if folder == "kiro":  # each Kiro token in a folder of its own, as the Kiro IDE keeps it
        stem = _UNSAFE.sub("_", posixpath.splitext(posixpath.basename(original))[0])
        path = f"configs/kiro/{stamp}_{stem}/{name}"
    else:
        path = f"configs/{folder}/{name}"
    store = request.config_dict[SERVICES].store
    async with admin_state(request).uploads:
        files = await store.kept_files.get()
        if path in files:
            raise ApiError(409, "conflict", f"{path} exists: upload again")
        await store.kept_files.put({**files, path: file.data})
    return success(
        message="File uploaded successfully",
        filePath=path,
        originalName=original,
        provider=folder,
    )


@attrs.frozen
class _Scan:
    """The credential files under ``configs/`` and who names each (normalised paths)."""

    contents: dict[str, bytes]
    """Path → bytes: the loose uploads, then the documents of the files nodes name."""
    loose: dict[str, str]
    """Normalised path → kept-file key of each loose upload."""
    holders: dict[str, list[Holder]]
    config: dict[str, Any]

    def usage(self, path: str) -> dict[str, Any]:
        return usage_info(path, self.config, self.holders.get(path, []))


async def _scan(store: Store) -> _Scan:
    config = dict((await store.config.get()).document)
    pools = (await store.pools.list()).types
    holders: dict[str, list[Holder]] = {}
    readers: dict[str, tuple[str, str]] = {}
    for provider_type, nodes in pools.items():
        for index, node in enumerate(nodes):
            answer = node_answer(node)
            for key in USAGE_LABELS:
                value = node.settings.get(key)
                if isinstance(value, str) and value.strip():
                    path = normal_path(value)
                    holders.setdefault(path, []).append(Holder(provider_type, index, key, answer))
                    readers.setdefault(path, (provider_type, node.uuid))
    kept = await store.kept_files.get()
    loose = {normal_path(key): key for key in kept}
    contents = {normal_path(key): data for key, data in kept.items()}
    for path, (provider_type, node_uuid) in readers.items():
        if path not in contents and is_listed(path):
            credential = await store.credentials.get(provider_type, node_uuid)
            if credential is not None:
                contents[path] = jsjson.dump_bytes(credential.document)
    return _Scan(contents, loose, holders, config)


async def list_configs(request: web.Request) -> web.StreamResponse:
    """The credential files under ``configs/``: uploads not yet linked, and the files nodes
    name, each once (Node's ``scanConfigFiles`` entries)."""
    scan = await _scan(request.config_dict[SERVICES].store)
    now = now_ms()
    entries = [
        describe(path, data, scan.usage(path), now)
        for path, data in sorted(scan.contents.items())
        if is_listed(path)
    ]
    return web.json_response(entries)


def _path_in_configs(request: web.Request, verb: str) -> str:
    path = normal_path(request.match_info["path"])
    if not path.startswith("configs/") or ".." in path.split("/"):
        message = f"Access denied: can only {verb} files in configs directory"
        raise ApiError(403, "forbidden", message)
    return path


async def view_config(request: web.Request) -> web.StreamResponse:
    """``{"path", "content", "size", "modified", "name"}``; the content with its secrets
    masked (a JSON document), or empty (any other file: a key, a certificate)."""
    path = _path_in_configs(request, "view")
    scan = await _scan(request.config_dict[SERVICES].store)
    data = scan.contents.get(path)
    if data is None:
        raise ApiError(404, "not_found", "File does not exist")
    return web.json_response(
        {
            "path": path,
            "content": masked_text(data, path),
            "size": len(data),
            "modified": None,
            "name": posixpath.basename(path),
        }
    )


async def delete_config(request: web.Request) -> web.StreamResponse:
    """Delete a loose upload; a file a node names is ``409`` (delete the node first)."""
    path = _path_in_configs(request, "delete")
    store = request.config_dict[SERVICES].store
    async with admin_state(request).uploads:
        scan = await _scan(store)
        if path in scan.holders:
            count = len(scan.holders[path])
            message = f"{path} is used by {count} node(s): delete or relink them first"
            raise ApiError(409, "conflict", message)
        if path not in scan.loose:
            raise ApiError(404, "not_found", "File does not exist")
        files = await store.kept_files.get()
        files.pop(scan.loose[path], None)
        await store.kept_files.put(files)
    return success(message="File deleted successfully", filePath=path)


async def delete_unbound(request: web.Request) -> web.StreamResponse:
    """Delete every loose upload under a ``configs/`` sub-folder that no node names."""
    store = request.config_dict[SERVICES].store
    async with admin_state(request).uploads:
        scan = await _scan(store)
        unbound = sorted(
            path
            for path in scan.loose
            if is_listed(path) and path.count("/") >= 2 and not scan.usage(path)["isUsed"]
        )
        if not unbound:
            return success(
                message="No unbound config files to delete", deletedCount=0, deletedFiles=[]
            )
        files = await store.kept_files.get()
        for path in unbound:
            files.pop(scan.loose[path], None)
        await store.kept_files.put(files)
    return success(
        message=f"Deleted {len(unbound)} unbound config files",
        deletedCount=len(unbound),
        deletedFiles=unbound,
        failedCount=0,
        failedFiles=[],
    )


async def quick_link(request: web.Request) -> web.StreamResponse:
    """``{"filePath"}`` or ``{"filePaths": [...]}``: a node per file, of the type its path
    names; ``{"success", "message", "successCount", "failCount", "results"}``."""
    body = await read_json_object(request)
    paths = body.get("filePaths") or ([body["filePath"]] if body.get("filePath") else [])
    if not paths:
        raise _bad("filePath or filePaths is required")
    if (
        not isinstance(paths, list)
        or len(paths) > MAX_LINKS
        or not all(isinstance(p, str) and p.strip() for p in paths)
    ):
        raise invalid({"filePaths": f"a list of at most {MAX_LINKS} paths"})
    store = request.config_dict[SERVICES].store
    state = admin_state(request)
    async with state.links:  # one batch at a time: "already linked" holds
        results = [await _link_one(store, path, state.uploads) for path in paths]
    done = sum(1 for r in results if r["success"])
    failed = len(results) - done
    if done:
        message = f"Successfully linked {done} config file(s)" + (
            f", {failed} failed" if failed else ""
        )
    else:
        only = f": {results[0]['error']}" if failed == 1 else ""
        message = f"Failed to link all {failed} config file(s){only}"
    return web.json_response(
        {
            "success": done > 0,
            "message": message,
            "successCount": done,
            "failCount": failed,
            "results": results,
        }
    )


async def _link_one(store: Store, path: str, lock: asyncio.Lock) -> dict[str, Any]:
    kind = kind_of(path)
    if kind is None:
        return {
            "filePath": path,
            "success": False,
            "error": "Unable to identify provider type for config file",
        }
    wanted = normal_path(path)
    nodes = (await store.pools.list()).types.get(kind.provider_type, [])
    for node in nodes:
        value = node.settings.get(kind.path_key)
        if isinstance(value, str) and value.strip() and normal_path(value) == wanted:
            return {
                "filePath": path,
                "success": False,
                "error": "This config file is already linked",
                "providerType": kind.provider_type,
            }
    settings = {
        kind.path_key: system_path(path),
        "checkModelName": kind.check_model,
        "checkHealth": kind.check_health,
    }
    if problems := await outside_paths(store, settings):
        return {"filePath": path, "success": False, "error": next(iter(problems.values()))}
    node_uuid = str(uuidlib.uuid4())
    node = await store.pools.add_node(
        kind.provider_type, node_from_settings(settings, node_uuid, "providerConfig")
    )
    try:
        await adopt_upload(store, kind.provider_type, node_uuid, lock)
    except BaseException:
        await store.pools.delete_node(kind.provider_type, node_uuid)
        raise
    node = await store.pools.get_node(kind.provider_type, node_uuid) or node
    return {
        "filePath": path,
        "success": True,
        "providerType": kind.provider_type,
        "displayName": kind.display_name,
        "provider": node_answer(node),
    }
