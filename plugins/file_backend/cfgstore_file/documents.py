"""Whole-file documents (config, plugins, sessions, …): read, and locked read-modify-write."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cfgstore_file.atomic import LockDir, Signature, atomic_write, read_bytes, signature

T = TypeVar("T")
Change = Callable[[bytes | None], tuple[bytes | None, T]]
"""Given the current bytes (``None`` = absent), return (new bytes or ``None`` to leave the
file as is, result). May raise; then nothing is written."""


class DocumentFile:
    """One data file. Every method runs its blocking work in a worker thread."""

    def __init__(self, path: Path, locks: LockDir) -> None:
        self.path = path
        self._locks = locks
        self.seen: Signature | None = None

    async def read(self) -> bytes | None:
        return await asyncio.to_thread(read_bytes, self.path)

    async def update(self, change: Change[T]) -> T:
        """Apply ``change`` under the cross-process lock and write atomically (mode 0600)."""
        return await asyncio.to_thread(self._update_sync, change)

    async def changed_on_disk(self) -> bool:
        """Whether the file changed since this process last wrote or checked it."""
        sig = await asyncio.to_thread(signature, self.path)
        if sig == self.seen:
            return False
        self.seen = sig
        return True

    def _update_sync(self, change: Change[T]) -> T:
        with self._locks.lock_for(self.path):
            current = read_bytes(self.path)
            new, result = change(current)
            if new is not None and new != current:
                atomic_write(self.path, new)
            self.seen = signature(self.path)
            return result
