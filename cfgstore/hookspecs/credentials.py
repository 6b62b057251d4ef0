"""OAuth credential documents: one per token file, looked up by node (FR-007b).

A credential belongs to the token file its node names (``*_CREDS_FILE_PATH``). Nodes whose
path strings name the same file — equal :func:`cfgstore.model.credentials.same_file_key`, as
the Node service resolves them: ``./configs/x.json``, ``configs/x.json``,
``configs\\x.json`` — share **one** stored credential. Every operation is addressed by a
node ``(provider_type, uuid)`` and acts on the credential of the file that node names now:

* a write through one node is what every node sharing the file reads next, at one version;
* a change event for a credential write or delete names every node sharing the file;
* the refresh lock is the file's: one holder at a time, whichever node it was taken through;
* a credential lives while some node names its file: deleting, renaming or re-pointing one
  of several nodes leaves the others' credential as it was; once no node names the file,
  no node reaches its credential (a store other than the files themselves deletes it);
* a node naming no file has no credential; storing one first gives the node a path in the
  Node service's upload convention (aiclient-formats §7).

A credential remembers a path string naming its file (``source_path``, a spelling of one of
its nodes). Writes are compare-and-set on an opaque version: a token refresh reads a
credential, computes the new document, and writes it with the version it read; a concurrent
refresh — through the same node or another sharing the file — makes the second writer fail
instead of silently overwriting. A version is never reused for other content, of the same
file or another: a write whose node was pointed at another file since its read fails too
(unless that file holds the very content that was read).
:class:`~cfgstore.errors.VersionConflict` carries the version the caller passed as
``expected``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.model.credentials import Credential, CredentialRef


@hookspec
async def cfgstore_credentials_get(provider_type: str, uuid: str) -> Credential | None:
    """Return the credential of the file the node names, with its current version, or
    ``None`` when the node, its path or the credential is absent. Nodes sharing the file get
    the same document and version (``provider_type``/``uuid`` are the asking node's).
    The document comes back as put, key order included.

    Raises :class:`~cfgstore.errors.InvalidData` when the stored document is not a JSON
    object (naming the file or key).
    """


@hookspec
async def cfgstore_credentials_put(credential: Credential, expected_version: str | None) -> str:
    """Store ``credential.document`` as the credential of the file the node
    ``(credential.provider_type, credential.uuid)`` names (every node sharing it sees it).

    ``expected_version`` is the version the caller read; ``None`` means "only if no
    credential exists yet"; :data:`cfgstore.model.versions.ANY_VERSION` overwrites
    unconditionally (migration with ``--force``). On mismatch raises
    :class:`~cfgstore.errors.VersionConflict` and writes nothing. The whole document is
    replaced atomically; merge policies (Kiro merges, others replace) are applied by the
    caller (:func:`cfgstore.model.credentials.apply_refresh`). Returns the new version.
    Raises :class:`~cfgstore.errors.NotFound` when the backend can only store credentials
    for existing nodes and the node is absent, and
    :class:`~cfgstore.errors.InvalidData` when the provider type keeps no credential files
    (an API-key type: :func:`cfgstore.model.credentials.path_keys_for` is empty). A node
    that names no token path yet is given one first, in the Node service's upload
    convention (:func:`cfgstore.model.credentials.new_credential_path`), so that export
    writes the credential back to a file.

    ``credential.siblings`` (Kiro: the other files of the token's folder) are stored with
    it; empty keeps the stored ones. A backend may keep a folder's files once for all its
    tokens (the Redis backend does): then putting one token's siblings makes them the
    folder's other files for every token of the folder, as on disk. A sibling name that
    is not a plain ``*.json`` file name may be refused (:class:`InvalidData`).

    The tokens of one folder are each other's siblings, and the Node service reads a
    folder's *current* files at every load (aiclient-formats §4.1): once a put returns,
    every other credential of the folder that has this token's file as a sibling reads
    ``credential.document`` under that name (with or without siblings in the put; other
    instances once the change reaches them). A refresh writes its token file alone, as
    the Node service does: it passes no siblings, since those it read may have been
    rewritten since (a put with siblings puts them back).
    """


@hookspec
async def cfgstore_credentials_delete(provider_type: str, uuid: str) -> bool:
    """Delete the credential of the file the node names (for every node sharing it; the
    nodes keep naming the file); return whether one existed. The file is deleted: the
    other credentials of its folder (Kiro) no longer have it as a sibling."""


@hookspec
async def cfgstore_credentials_list() -> list[CredentialRef]:
    """List every stored credential once (type, uuid, source path, version), in pool order:
    a credential shared by several nodes is listed under the first node naming its file."""


@hookspec
async def cfgstore_credentials_lock(provider_type: str, uuid: str, ttl_ms: int) -> str | None:
    """Take the refresh lock of the node's credential: one lock per token file, shared by
    every node naming it and by every instance and process (a node naming no file has a
    lock of its own).

    Returns a random token when the lock was free (it then expires by itself after
    ``ttl_ms`` so a crashed holder cannot block refreshes), ``None`` when someone holds it.
    The token identifies the lock by itself: unlocking with it releases the lock that was
    taken even after the node was renamed or pointed at another file. Never waits. After
    a successful lock the caller's next ``cfgstore_credentials_get``
    of that credential returns what is stored — a caching layer must not answer it from a
    copy that may not have heard of another instance's refresh yet.
    """


@hookspec
async def cfgstore_credentials_unlock(provider_type: str, uuid: str, token: str) -> bool:
    """Release the lock ``token`` names if that token still holds it (compare-and-delete);
    return whether it did. A lock that expired and was taken by someone else is left alone;
    ``provider_type``/``uuid`` (the node it was taken through) only label log messages."""
