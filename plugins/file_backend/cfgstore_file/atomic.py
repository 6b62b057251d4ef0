"""Cross-process locks of the file backend (file primitives live in :mod:`cfgstore.fileio`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import filelock

from cfgstore.fileio import Signature, atomic_write, make_private_dirs, read_bytes, signature

__all__ = ["LockDir", "Signature", "atomic_write", "read_bytes", "signature"]

LOCK_TIMEOUT_S = 30.0


class LockDir:
    """Cross-process locks for data files, kept in one hidden folder so that no lock file
    lands beside the operator's data (and none is mistaken for a credential)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._locks: dict[Path, filelock.BaseFileLock] = {}

    def lock_for(self, path: Path) -> filelock.BaseFileLock:
        """The lock of ``path`` (one object per path: creating one costs more than using it)."""
        lock = self._locks.get(path)
        if lock is None:
            make_private_dirs(self.folder)
            digest = hashlib.sha1(str(path.absolute()).encode()).hexdigest()[:16]
            lock = filelock.FileLock(
                self.folder / f"{path.name}.{digest}.lock", timeout=LOCK_TIMEOUT_S
            )
            self._locks[path] = lock
        return lock
