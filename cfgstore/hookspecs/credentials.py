"""OAuth credential documents, one per node, keyed by ``(provider_type, uuid)`` (FR-007b).

A credential remembers the path string its node names (``source_path``) so that export can
write it back where it came from. Writes are compare-and-set on an opaque version: a token
refresh reads a credential, computes the new document, and writes it with the version it
read; a concurrent refresh makes the second writer fail instead of silently overwriting
(:class:`~cfgstore.errors.VersionConflict` carries the version the caller passed as
``expected``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.model.credentials import Credential, CredentialRef


@hookspec
async def cfgstore_credentials_get(provider_type: str, uuid: str) -> Credential | None:
    """Return the node's credential with its current version, or ``None`` when the node
    or its credential is absent. The document comes back as put, key order included.

    Raises :class:`~cfgstore.errors.InvalidData` when the stored document is not a JSON
    object (naming the file or key).
    """


@hookspec
async def cfgstore_credentials_put(credential: Credential, expected_version: str | None) -> str:
    """Store ``credential.document`` for ``(credential.provider_type, credential.uuid)``.

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
    """


@hookspec
async def cfgstore_credentials_delete(provider_type: str, uuid: str) -> bool:
    """Delete the credential; return whether one existed."""


@hookspec
async def cfgstore_credentials_list() -> list[CredentialRef]:
    """List every stored credential (type, uuid, source path, version), in pool order."""


@hookspec
async def cfgstore_credentials_lock(provider_type: str, uuid: str, ttl_ms: int) -> str | None:
    """Take the refresh lock of one credential, shared by every instance and process.

    Returns a random token when the lock was free (it then expires by itself after
    ``ttl_ms`` so a crashed holder cannot block refreshes), ``None`` when someone holds it.
    Never waits. After a successful lock the caller's next ``cfgstore_credentials_get``
    of that credential returns what is stored — a caching layer must not answer it from a
    copy that may not have heard of another instance's refresh yet.
    """


@hookspec
async def cfgstore_credentials_unlock(provider_type: str, uuid: str, token: str) -> bool:
    """Release the lock if ``token`` still holds it (compare-and-delete); return whether
    it did. A lock that expired and was taken by someone else is left alone."""
