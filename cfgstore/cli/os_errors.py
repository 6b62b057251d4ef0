"""Filesystem errors as one line an operator can act on: the path, what is wrong with it
in plain words, and what to do. Every cfgctl command reports an ``OSError`` this way
(exit 2) instead of a traceback."""

from __future__ import annotations

import errno
import os

ADVICE: dict[int, tuple[str, str]] = {
    errno.EACCES: ("permission denied", "give this user access to it, or choose another path"),
    errno.EPERM: (
        "operation not permitted",
        "check its permissions and attributes (e.g. chattr +i), or choose another path",
    ),
    errno.EROFS: (
        "read-only file system",
        "choose a folder on a writable file system, or remount it read-write",
    ),
    errno.ENOENT: ("does not exist", "check the path, or create the folder first"),
    errno.ENOTDIR: (
        "a part of this path is a file, not a folder",
        "check the path",
    ),
    errno.EISDIR: ("is a folder where a file is expected", "check the path"),
    errno.EEXIST: ("already exists", "remove it, or choose another path"),
    errno.ENOTEMPTY: ("folder not empty", "empty it, or choose another path"),
    errno.ENOSPC: ("no space left on the device", "free some space, then run the command again"),
    errno.EDQUOT: ("disk quota exceeded", "free some space, then run the command again"),
    errno.ENAMETOOLONG: ("name too long", "choose a shorter path"),
    errno.ELOOP: ("too many symbolic links", "check the links along the path"),
    errno.EMFILE: ("too many open files", "raise the open-files limit (ulimit -n)"),
    errno.EIO: ("input/output error", "check the device and the system log"),
}


def describe_os_error(exc: OSError) -> str:
    """``PATH: what is wrong; what to do`` for ``exc`` (no ``cfgctl:`` prefix). Names both
    paths of a two-path operation (a rename); without a path, the system's words."""
    reason, advice = ADVICE.get(exc.errno or -1, (exc.strerror or str(exc), ""))
    path = exc.filename
    if exc.errno == errno.EEXIST and path is not None and not os.path.isdir(path):
        # Making a folder where a file is: "exists" would send the operator looking for
        # a folder that is not there.
        reason, advice = "a file where a folder is expected", "check the path"
    if path is None:
        return f"{reason}" + (f"; {advice}" if advice else "")
    where = str(path)
    if exc.filename2 is not None:
        where = f"{path} → {exc.filename2}"
    return f"{where}: {reason}" + (f"; {advice}" if advice else "")
