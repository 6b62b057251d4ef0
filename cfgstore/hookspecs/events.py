"""Observer hooks: plain fan-out notifications, not storage operations.

Implementations may be sync or return an awaitable; the Store gathers awaitables and
isolates failures (an observer that raises is logged and never breaks the write that
triggered it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.model.events import ChangeEvent


@hookspec
def cfgstore_changed(event: ChangeEvent) -> object:
    """Stored data changed (in this process or, once noticed, in another one).

    Backends publish through ``BackendContext.publish`` before a write returns (the rule is
    in :mod:`cfgstore.hookspecs`); caching layers drop what ``event.entity`` names."""


@hookspec
def cfgstore_provider_health_changed(provider_type: str, uuid: str, healthy: bool) -> object:
    """A node went healthy → unhealthy or back (for webhooks and live UI updates)."""


@hookspec
def cfgstore_storage_degraded(degraded: bool, reason: str) -> object:
    """The store entered (``degraded=True``) or left degraded mode."""
