"""Named leases on Redis (:mod:`cfgstore.hookspecs.leases`): ``{p}:lease:<name>`` holds the
holder's random token with the lease's TTL (``SET NX PX``), released by compare-and-delete
(the ``RELEASE_LOCK`` script)."""

from __future__ import annotations

import secrets

from cfgstore import hookimpl
from cfgstore_redis.base import RedisParts
from cfgstore_redis.translate import translated


class LeaseOps(RedisParts):
    @hookimpl
    async def cfgstore_lease_take(self, name: str, ttl_ms: int) -> str | None:
        token = secrets.token_hex(16)
        with translated(self.connection):
            taken = await self.redis.set(self.keys.lease(name), token, nx=True, px=max(1, ttl_ms))
        return token if taken else None

    @hookimpl
    async def cfgstore_lease_release(self, name: str, token: str) -> bool:
        released = await self._run("RELEASE_LOCK", [self.keys.lease(name)], [token])
        return bool(released)
