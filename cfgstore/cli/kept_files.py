"""Which files of a deployment a migration keeps as opaque bytes, so that an export gives
back every file, byte for byte (see :mod:`cfgstore.hookspecs.kept_files`).

Two kinds, both keyed by where an export writes them (a posix path relative to the
export folder, the Node working directory; files of the configs folder go under
``configs/`` whatever the source layout):

* *opaque* files: everything in the configs folder that no entity models (plugin data,
  ``fetch_system_prompt.txt``, token files no node links to, ``usage-cache.json`` unless
  included), except ``pwd`` and ``token-store.json`` — secrets the store keeps only as
  hashes and digests;
* *originals*: the bytes of a modelled file that the Node service's writer would not
  have produced (another indent, a trailing newline, a byte-order mark). Export writes
  them instead of the model's bytes as long as they still parse to what the model holds;
  once the entity was modified it writes the Node format.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from cfgstore.errors import InvalidData
from cfgstore.fileio import read_bytes
from cfgstore.model import jsjson

if TYPE_CHECKING:
    from cfgstore.cli.snapshot import Snapshot

SECRETS = frozenset({"pwd", "token-store.json"})
"""Files of the configs folder never kept as bytes (a plaintext password, live sessions)."""

_SENTINEL_ROOT = Path("/__deployment__")


def equivalent(original: bytes, planned: bytes) -> bool:
    """Whether ``original`` says what ``planned`` (the Node writer's bytes) says: the same
    bytes, the same text, or JSON that parses to the same value."""
    if original == planned:
        return True
    try:
        return jsjson.dump_bytes(jsjson.loads(original, "kept file")) == planned
    except InvalidData:
        return False


def relative_key(path: Path, root: Path) -> str | None:
    """``path`` as a kept-file key (posix, relative to ``root``), or ``None`` outside it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return None


def safe_key(key: str) -> bool:
    """A key names a file inside the export folder (relative, no ``..``)."""
    parts = PurePosixPath(key).parts
    return bool(parts) and not PurePosixPath(key).is_absolute() and ".." not in parts


def modelled(snapshot: Snapshot) -> dict[str, bytes]:
    """What an export of ``snapshot`` writes from its entities: key → Node-format bytes."""
    from cfgstore.cli.export_cmd import model_files

    files = model_files(snapshot, _SENTINEL_ROOT).files
    return {
        key: data
        for path, data in files.items()
        if (key := relative_key(path, _SENTINEL_ROOT)) is not None
    }


def opaque(snapshot: Snapshot) -> dict[str, bytes]:
    """The kept files no entity of ``snapshot`` models."""
    models = modelled(snapshot)
    return {key: data for key, data in snapshot.kept.items() if key not in models}


FIXED_NAMES = frozenset(
    {
        "config.json",
        "plugins.json",
        "pwd",
        "token-store.json",
        "usage-cache.json",
        "provider_pools.json",
        "custom_models.json",
        "input_system_prompt.txt",
    }
)
"""Files an export writes to ``configs/`` whatever the source layout (the pre-2025-12
layout kept them in the working directory itself)."""


def collect(snapshot: Snapshot, configs: Path, root: Path) -> dict[str, bytes]:
    """Read the files a migration of ``snapshot`` (read from ``configs``, working directory
    ``root``) keeps, keyed by where an export writes them. Blocking: call from a worker
    thread."""
    configs, root = configs.absolute(), root.absolute()

    def source_of(key: str) -> Path:
        parts = PurePosixPath(key).parts
        if len(parts) == 2 and parts[0] == "configs" and parts[1] in FIXED_NAMES:
            return configs / parts[1]
        return root / key

    models = modelled(snapshot)
    sources = {source_of(key): key for key in models}
    kept: dict[str, bytes] = {}
    for source, key in sources.items():
        original = read_bytes(source)
        planned = models[key]
        if original is not None and original != planned and equivalent(original, planned):
            kept[key] = original
    for path in sorted(configs.rglob("*")):
        relative = path.relative_to(configs)
        if relative.parts[0].startswith(".") or not path.is_file() or path in sources:
            continue
        if len(relative.parts) == 1 and path.name in SECRETS:
            continue
        kept[f"configs/{relative.as_posix()}"] = path.read_bytes()
    return kept
