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
    plain: dict[str, bool]


class SiblingCache:
    def __init__(self, scan: Scan) -> None:
        self._scan = scan
        self._entries: dict[Path, _Entry] = {}
        self._lock = threading.Lock()

    def siblings(self, path: Path) -> Docs:
        """The files of ``path``'s folder but ``path`` itself, as copies the caller owns."""
        folder = path.parent
        entry = self._current(folder)
        out: Docs = {}
        for name, doc in entry.docs.items():
            if name != path.name:
                out[name] = dict(doc) if entry.plain[name] else _copy(doc)
        return out

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
        docs = self._scan(folder)
        plain = {name: _plain(doc) for name, doc in docs.items()}
        entry = _Entry(mtime_ns, now, docs, plain)
        with self._lock:
            self._entries[folder] = entry
        return entry


def _plain(doc: dict[str, JSONValue]) -> bool:
    """Whether a shallow copy of ``doc`` shares nothing mutable with it."""
    return not any(isinstance(v, dict | list) for v in doc.values())


def _copy(value: dict[str, JSONValue]) -> dict[str, JSONValue]:
    def deep(v: JSONValue) -> JSONValue:
        if isinstance(v, dict):
            return {k: deep(x) for k, x in v.items()}
        if isinstance(v, list):
            return [deep(x) for x in v]
        return v

    return {k: deep(v) for k, v in value.items()}
