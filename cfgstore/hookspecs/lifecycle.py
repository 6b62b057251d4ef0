"""Backend registration, lifecycle and status.

A distribution announces backends through the entry-point group ``cfgstore``: the entry
point names a module (or object) implementing :func:`cfgstore_register_backends`. The
operator picks backends **by name** in settings; the Store then calls the descriptor's
factory and registers the returned object, whose ``async`` hookimpls implement the
operations of the other spec modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.adapters.backend import BackendDescriptor
    from cfgstore.model.status import BackendStatus


@hookspec
def cfgstore_register_backends(register: Callable[[BackendDescriptor], None]) -> None:
    """Announce backends: call ``register(BackendDescriptor(...))`` once per backend.

    Synchronous and side-effect free apart from the calls to ``register``. Two descriptors
    with one name are a configuration error reported at start-up. The descriptor's
    ``capabilities`` say what the storage can do beyond the contract
    (:data:`~cfgstore.adapters.backend.SHARED`: several instances on one storage;
    :data:`~cfgstore.adapters.backend.SHARED_LOGINS`; ``"replica"``); the contract suite
    runs its several-instance tests by them.
    """


@hookspec
async def cfgstore_open() -> None:
    """Prepare the backend for use (connect, read files, start background tasks).

    Called once, bottom of the chain first, before any other operation. Raises
    :class:`~cfgstore.errors.InvalidData` when stored data is malformed and
    :class:`~cfgstore.errors.StorageUnavailable` when the storage cannot be reached.
    """


@hookspec
async def cfgstore_flush() -> None:
    """Return once every write accepted so far is durable in this backend.

    Backends that coalesce writes (debounce, group commit) push what is pending and wait
    for it; others return at once. Never loses a pending write on error: it stays pending
    and the error is raised.
    """


@hookspec
async def cfgstore_close() -> None:
    """Flush, stop background tasks and release resources. Called once, top of chain first.

    Operations after close are undefined.
    """


@hookspec
async def cfgstore_status() -> BackendStatus:
    """Describe the backend and count what it holds (see :class:`BackendStatus`).

    Read-only; never raises for an empty store (counts are zero).
    """
