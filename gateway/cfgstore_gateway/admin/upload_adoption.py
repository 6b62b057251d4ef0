"""A node that names an uploaded file takes that file's document as its credential.

The Node UI uploads a token file first and then names its path in a node: through
``/api/quick-link-provider``, or by putting the path into a new or edited node's form
(``POST /api/providers``, ``PUT /api/providers/{type}/{uuid}``). Where the store keeps
credentials apart from files (Redis), the node would otherwise have no token: so when a
node's credential path names a loose upload (``store.kept_files``), the upload's JSON
document becomes the node's credential (unless the store already reads exactly that, as
the file backend does from the file itself), and the file stops being a loose upload.
"""

from __future__ import annotations

import asyncio

from cfgstore.adapters import Store
from cfgstore.errors import InvalidData
from cfgstore.model import jsjson
from cfgstore.model.credentials import Credential, credential_path_of, token_format_for
from cfgstore_gateway.admin.credential_files import normal_path
from cfgstore_gateway.admin.http import check_document, invalid


async def adopt_upload(
    store: Store, provider_type: str, node_uuid: str, lock: asyncio.Lock
) -> bool:
    """Make the upload the node's path names its credential; whether it named one."""
    node = await store.pools.get_node(provider_type, node_uuid)
    carrier = credential_path_of(provider_type, node) if node is not None else None
    if carrier is None:
        return False
    wanted = normal_path(carrier[1])
    async with lock:
        files = await store.kept_files.get()
        key = next((k for k in files if normal_path(k) == wanted), None)
        if key is None:
            return False
        await _take_document(store, provider_type, node_uuid, key, files[key])
        await store.kept_files.put({k: v for k, v in files.items() if k != key})
    return True


async def _take_document(
    store: Store, provider_type: str, node_uuid: str, key: str, raw: bytes
) -> None:
    try:
        document = jsjson.loads(raw, key)
    except ValueError:
        return  # not a token document: the node names the file, as in the Node service
    if not isinstance(document, dict):
        return
    check_document(document, "file")
    current = await store.credentials.get(provider_type, node_uuid)
    if current is not None and current.document == document:
        return  # the store reads the file itself
    credential = Credential(
        provider_type, node_uuid, document, token_format=token_format_for(provider_type)
    )
    try:
        await store.credentials.put(credential, current.version if current else None)
    except InvalidData as exc:
        raise invalid({"file": exc.problem}) from None
