"""The ``*.json`` files of Kiro token folders, read once per folder rather than once per
token (aiclient-formats §4.1: every other file of a token's folder is merged into it, so a
folder of N tokens would otherwise be read N times over, N² files).

A folder's scan is reused while the folder's modification time is unchanged (a file
created, removed or renamed in: the file backend's own writes, which also drop the scan)
and for at most :data:`RECHECK_S` seconds: a file rewritten in place by another program
(the Node service writes so) is seen at the latest that long after. Blocking: call from a
worker thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from cfgstore.model.jsjson import JSONValue

RECHECK_S = 1.0
"""How long a folder's scan is trusted without a look at the folder."""

Docs = dict[str, dict[str, JSONValue]]
Scan = Callable[[Path], Docs]
"""Reads a folder: file name → document, in directory order."""


@attrs.define
class _Entry:
    mtime_ns: int
    at: float
    docs: Docs


class SiblingCache:
    def __init__(self, scan: Scan) -> None:
        self._scan = scan
        self._entries: dict[Path, _Entry] = {}
        self._lock = threading.Lock()

    def siblings(self, path: Path) -> Docs:
        """The files of ``path``'s folder but ``path`` itself, in directory order. The
        documents are shared by every token of the folder (read-only, see
        :class:`cfgstore.model.credentials.Credential`): a folder of N tokens is N
        documents in memory, not N²."""
        docs = self._current(path.parent).docs
        own = path.name
        return {name: doc for name, doc in docs.items() if name != own}

    def forget(self, folder: Path) -> None:
        """Drop ``folder``'s scan (this process changed a file in it)."""
        with self._lock:
            self._entries.pop(folder, None)

    def _current(self, folder: Path) -> _Entry:
        try:
            mtime_ns = os.stat(folder).st_mtime_ns
        except OSError:
            mtime_ns = -1
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(folder)
        if entry is not None and entry.mtime_ns == mtime_ns and now - entry.at < RECHECK_S:
            return entry
        entry = _Entry(mtime_ns, now, self._scan(folder))
        with self._lock:
            self._entries[folder] = entry
        return entry
