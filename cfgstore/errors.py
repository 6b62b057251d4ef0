"""Typed errors shared by every backend and by the Store.

One base class, :class:`CfgStoreError`, so a consumer can catch everything the storage
layer raises in one ``except``. Backends raise these types only; anything else escaping a
backend is a bug in that backend.
"""

from __future__ import annotations


class CfgStoreError(Exception):
    """Base class of every error cfgstore raises on purpose."""


class NotFound(CfgStoreError):
    """The entity asked for does not exist (a node uuid, a provider type, a credential)."""

    def __init__(self, entity: str, ident: str) -> None:
        super().__init__(f"{entity} not found: {ident}")
        self.entity = entity
        self.ident = ident


class AlreadyExists(CfgStoreError):
    """An add would create an entity whose id is already taken (e.g. a duplicate uuid)."""

    def __init__(self, entity: str, ident: str) -> None:
        super().__init__(f"{entity} already exists: {ident}")
        self.entity = entity
        self.ident = ident


class VersionConflict(CfgStoreError):
    """A compare-and-set write named a version that is no longer current.

    ``expected`` is the version the caller passed, ``actual`` the one the store holds
    (``None`` when the entity is gone). Nothing was written.
    """

    def __init__(self, entity: str, ident: str, expected: str | None, actual: str | None) -> None:
        super().__init__(
            f"{entity} {ident}: version conflict (expected {expected!r}, store has {actual!r})"
        )
        self.entity = entity
        self.ident = ident
        self.expected = expected
        self.actual = actual


class StorageUnavailable(CfgStoreError):
    """The storage cannot be reached right now (an outage: refused, timeout, failover).

    Also raised for admin edits while the store runs degraded. Retrying later may succeed.
    """


class StorageDegraded(StorageUnavailable):
    """The store runs degraded (its shared storage is unreachable) and refuses this
    operation: admin edits and session operations wait until the storage is back. Hot-path
    records and reads keep working from memory meanwhile."""


class NotInitialised(CfgStoreError):
    """The configured storage is reachable but empty and was never used by this instance:
    it needs ``cfgctl migrate`` (from files) or ``cfgctl init`` (fresh defaults) first."""


class NamespaceMismatch(CfgStoreError):
    """The shared storage no longer holds the namespace this instance ran on: it was
    emptied (``actual`` is ``None``) or replaced by another one. Nothing was written."""

    def __init__(self, expected: str, actual: str | None) -> None:
        found = f"namespace id {actual}" if actual else "no namespace (emptied)"
        super().__init__(f"storage holds {found}, expected namespace id {expected}")
        self.expected = expected
        self.actual = actual


class StorageServerError(CfgStoreError):
    """The storage answered with an error that is not an outage (out of memory, wrong type,
    authentication). Retrying will not help until an operator acts."""


class InvalidData(CfgStoreError):
    """Input that does not have the expected shape: a malformed file or a bad argument.

    ``source`` names the file (or the argument), ``where`` the position: ``line L column C``
    for JSON syntax errors, or a JSON path such as ``$["openai-custom"][0].usageCount`` for
    shape errors. Nothing was written when this is raised.
    """

    def __init__(self, source: str, where: str, problem: str) -> None:
        super().__init__(f"{source}: {where}: {problem}")
        self.source = source
        self.where = where
        self.problem = problem


class JournalFull(CfgStoreError):
    """The outage journal reached its configured bound; the write was refused, not dropped."""


class PluginError(CfgStoreError):
    """A backend chain cannot be built: unknown backend name, missing operations, bad plugin."""


class CredentialPathOutside(InvalidData):
    """A credential file path (``*_CREDS_FILE_PATH``) that resolves, symlinks followed,
    outside every folder credential files may live in: the deployment's working directory,
    its configs folder and the roots an operator lists in ``CFGSTORE_CREDENTIAL_ROOTS``.

    ``path`` is the path string as written, ``resolved`` where it really points, ``roots``
    the allowed folders (resolved). Nothing was read or written."""

    def __init__(self, path: str, resolved: str, roots: tuple[str, ...]) -> None:
        allowed = ", ".join(roots)
        super().__init__(
            path,
            "credential path",
            f"resolves to {resolved}, outside the folders credential files may live in "
            f"({allowed}); list another folder in CFGSTORE_CREDENTIAL_ROOTS to allow it",
        )
        self.path = path
        self.resolved = resolved
        self.roots = roots
