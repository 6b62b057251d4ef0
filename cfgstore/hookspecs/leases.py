"""Optional: named leases, so that one instance at a time does a piece of work the
instances share (a quota refresh: the gateway's :mod:`cfgstore_gateway.usage_quotas`).

A lease is a name held by at most one holder at a time across every instance and process
on the storage, until its holder releases it or its time to live runs out (a crashed
holder blocks nobody for longer). It guards work, not data: what the holder writes goes
through the usual operations. The chain's backends the project ships offer leases; a
chain without them gets leases of its own process only (:class:`cfgstore.adapters.facades.Leases`).
"""

from __future__ import annotations

from cfgstore.hookspecs import hookspec


@hookspec
async def cfgstore_lease_take(name: str, ttl_ms: int) -> str | None:
    """Take the lease ``name`` (any non-empty string) for ``ttl_ms`` milliseconds.

    Returns a random token when the lease was free or had run out, ``None`` when someone
    holds it (this caller included: a lease is not re-entrant). Never waits. After a
    successful take, the caller's reads of the documents (config, system prompt, custom
    models, plugin config, password, usage cache) return at least what an earlier holder
    wrote before releasing: a caching layer drops the copies it holds."""


@hookspec
async def cfgstore_lease_release(name: str, token: str) -> bool:
    """Release the lease ``name`` if ``token`` still holds it (compare-and-delete); return
    whether it did. A lease that ran out and was taken by someone else is left alone."""
