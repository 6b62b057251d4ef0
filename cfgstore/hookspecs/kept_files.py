"""Optional: files of a deployment kept as opaque bytes, for a faithful ``cfgctl export``.

``cfgctl migrate`` keeps here what the typed entities do not hold byte for byte: files no
entity models (plugin data such as ``api-potluck-keys.json``, ``fetch_system_prompt.txt``,
token files no node links to, ``usage-cache.json`` unless included) and the original bytes
of a modelled file that the Node service's writer would not have produced (another indent,
a trailing newline). Paths are posix paths relative to the deployment's working directory
(``configs/api-potluck-keys.json``). The service never reads them; only migrate and export
do. The file backend, itself a deployment's files, keeps them by writing them where an
export would (:mod:`cfgstore_file.kept_file_ops`).
"""

from __future__ import annotations

from cfgstore.hookspecs import hookspec


@hookspec
async def cfgstore_kept_files_get() -> dict[str, bytes]:
    """Every kept file: relative path → bytes (empty when none)."""


@hookspec
async def cfgstore_kept_files_put(files: dict[str, bytes]) -> None:
    """Replace every kept file with ``files``, atomically."""
