"""Named leases in the file backend (:mod:`cfgstore.hookspecs.leases`): one file per lease
in the backend's lock folder (``lease-<digest>.lock``: ``<token> <expiry ms>``), taken and
released under that file's cross-process lock, so every process on the folder shares
them. A released lease's file is removed."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from pathlib import Path

from cfgstore import hookimpl
from cfgstore.model.timefmt import now_ms
from cfgstore_file.atomic import LockDir, atomic_write, read_bytes
from cfgstore_file.layout import Layout


class LeaseOps:
    layout: Layout
    locks: LockDir

    def _lease_path(self, name: str) -> Path:
        digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:20]
        return self.layout.locks / f"lease-{digest}.lock"

    @hookimpl
    async def cfgstore_lease_take(self, name: str, ttl_ms: int) -> str | None:
        path = self._lease_path(name)
        token = secrets.token_hex(16)

        def take() -> str | None:
            with self.locks.lock_for(path):
                held = _read_lease(path)
                if held is not None and held[1] > now_ms():
                    return None
                atomic_write(path, f"{token} {now_ms() + max(1, ttl_ms)}".encode())
                return token

        return await asyncio.to_thread(take)

    @hookimpl
    async def cfgstore_lease_release(self, name: str, token: str) -> bool:
        path = self._lease_path(name)

        def release() -> bool:
            with self.locks.lock_for(path):
                held = _read_lease(path)
                if held is None or held[0] != token:
                    return False
                path.unlink()
                return held[1] > now_ms()

        return await asyncio.to_thread(release)


def _read_lease(path: Path) -> tuple[str, int] | None:
    """(token, expiry ms) of a lease file, or ``None`` when absent or unreadable."""
    raw = read_bytes(path)
    if raw is None:
        return None
    token, _, expiry = raw.decode("ascii", "replace").partition(" ")
    return (token, int(expiry)) if expiry.isdigit() else None
