"""Where ``cfgctl export`` puts a file whose path leads outside the export folder, and the
pools and config that name the relocated files (``export --relocate-paths``).

The export folder plays the Node working directory. A path *escapes* it when, spelled as
the store tells files apart (:func:`~cfgstore.model.credentials.same_file_key`), it is
absolute and not inside the folder, or relative and leading up out of it (``../…``).
Export never writes there; it writes the file under the folder instead, at

* ``relocated/absolute/<the absolute path without its leading />`` for an absolute path
  (``/srv/tokens/a.json`` → ``relocated/absolute/srv/tokens/a.json``);
* ``relocated/up-<n>/<the rest>`` for a path leading ``n`` levels up
  (``../../tokens/a.json`` → ``relocated/up-2/tokens/a.json``).

Spellings the store takes for one file land on one relocated file; different files never
do. Should the deployment's own files already occupy such a place (a node naming
``relocated/absolute/…`` itself), the whole relocation folder becomes ``relocated-2``,
``relocated-3``… — the first one free, the same for the same store every time.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import attrs

from cfgstore.model.credentials import resolve_path, same_file_key

if TYPE_CHECKING:
    from cfgstore.cli.snapshot import Snapshot

FOLDER = "relocated"


def folders() -> Iterator[str]:
    """The relocation folder candidates, in the order they are tried."""
    yield FOLDER
    for n in itertools.count(2):
        yield f"{FOLDER}-{n}"


@attrs.frozen
class Moved:
    """A path string of the store that escapes the export folder, and where its file went.

    ``relocated`` is posix, relative to the export folder (the path string that names the
    relocated file). What names the path: a ``config.json`` key (``config_key``), a node's
    path field (``provider_type``, ``uuid``, ``path_key``), or only a stored credential
    whose node names no path (``path_key`` ``None``)."""

    path: str
    relocated: str
    config_key: str | None = None
    provider_type: str | None = None
    uuid: str | None = None
    path_key: str | None = None

    def where(self) -> str:
        if self.config_key is not None:
            return f"config.json {self.config_key}"
        if self.path_key is not None:
            return f"provider_pools.json {self.provider_type}/{self.uuid} {self.path_key}"
        return f"credential {self.provider_type}/{self.uuid}"

    def describe(self) -> str:
        return f"{self.where()}: {self.path} → {self.relocated}"


@attrs.frozen
class Places:
    """Where, under the export folder ``root``, the file a path string names is written
    (``folder``: the relocation folder)."""

    root: Path
    folder: str = FOLDER

    @classmethod
    def under(cls, root: Path, folder: str = FOLDER) -> Places:
        return cls(Path(os.path.abspath(root)), folder)

    def relocation(self, path_string: str) -> str | None:
        """The relocated path (posix, relative to the folder) of an escaping path string;
        ``None`` for one that stays inside."""
        key = same_file_key(path_string)
        pure = PurePosixPath(key)
        if pure.is_absolute():
            if Path(key).is_relative_to(self.root):
                return None
            return f"{self.folder}/absolute/{key.lstrip('/')}"
        ups = len(list(itertools.takewhile(lambda part: part == "..", pure.parts)))
        if ups == 0:
            return None
        rest = pure.parts[ups:]
        return "/".join((self.folder, f"up-{ups}", *rest))

    def target(self, path_string: str) -> Path:
        """The file written for ``path_string``: where it resolves, or its relocation."""
        relocated = self.relocation(path_string)
        if relocated is not None:
            return self.root / relocated
        return Path(os.path.normpath(resolve_path(path_string, self.root)))


def collides(relocated: Iterable[Path], inside: Iterable[Path]) -> bool:
    """Whether a relocated file would be (or be a folder of, or lie in) a file that is
    written where its own path says."""
    files = set(inside)
    folders_of = {parent for path in files for parent in path.parents}
    return any(
        path in files or path in folders_of or any(parent in files for parent in path.parents)
        for path in relocated
    )


def rewrite(snapshot: Snapshot, moved: Iterable[Moved]) -> Snapshot:
    """``snapshot`` with every moved path string replaced by its relocated path: what an
    export writes with ``--relocate-paths`` (the store itself is not changed)."""
    pools = snapshot.pools.copy()
    document = dict(snapshot.config.document)
    credentials = dict(snapshot.credentials)
    for item in moved:
        if item.config_key is not None:
            document[item.config_key] = item.relocated
            continue
        ident = (item.provider_type or "", item.uuid or "")
        node = pools.find(*ident)
        if item.path_key is not None and node is not None:
            node.settings[item.path_key] = item.relocated
        elif ident in credentials:
            credentials[ident] = attrs.evolve(credentials[ident], source_path=item.relocated)
    config = attrs.evolve(snapshot.config, document=document)
    return attrs.evolve(snapshot, config=config, pools=pools, credentials=credentials)
