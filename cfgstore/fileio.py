"""Blocking file primitives shared by the file backend and cfgctl's export.

Call them from a worker thread (or a command-line tool), never on an event loop.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path

Signature = tuple[int, int, int]
"""(inode, mtime_ns, size): changes whenever a file is replaced or rewritten."""


def signature(path: Path) -> Signature | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or ``None`` when it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def make_private_dirs(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each mode 0700 whatever the umask
    (configs and credential folders hold secrets). Existing folders are left as they are."""
    missing: list[Path] = []
    current = folder
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # another process made it meanwhile: theirs
        os.chmod(directory, 0o700)  # mkdir's mode is subject to the umask


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` so that readers see the old or the new file, never a mix.

    Temp file beside the target (``<name>.<ms>.<random>.tmp``, created with ``mode``),
    fsync, rename over the target, fsync the directory. The temp file is removed on error.
    Missing folders are created mode 0700 (:func:`make_private_dirs`).
    """
    make_private_dirs(path.parent)
    tmp = path.with_name(f"{path.name}.{time.time_ns() // 1_000_000}.{secrets.token_hex(3)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
