"""Where credential files may live: the one rule every reader and writer of token files
applies (security: an admin-chosen ``*_CREDS_FILE_PATH`` must not read or write arbitrary
files).

A credential path is resolved the way the Node service resolves it (relative to the
deployment's working directory, aiclient-formats §1), then with every symlink followed;
the real path must lie inside the working directory or one of the extra roots (the
configs folder, and the folders an operator lists in ``CFGSTORE_CREDENTIAL_ROOTS``,
separated by ``os.pathsep``). Callers then read or write the *returned* path, so what was
checked is what is touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from cfgstore.errors import CredentialPathOutside
from cfgstore.model.credentials import CREDENTIAL_PATH_KEYS, resolve_path

if TYPE_CHECKING:
    from cfgstore.adapters.settings import Settings

ROOTS_VARIABLE = "CFGSTORE_CREDENTIAL_ROOTS"

_PATH_KEY = re.compile(r"[A-Z0-9_]*_(CREDS|TOKEN)_FILE_PATH")


def is_credential_path_key(key: str) -> bool:
    """Whether a node field names a token file (``*_CREDS_FILE_PATH``,
    ``*_TOKEN_FILE_PATH``), whatever the node's type."""
    return key in CREDENTIAL_PATH_KEYS or _PATH_KEY.fullmatch(key) is not None


def confine_credential_path(
    path_string: str, working_dir: Path, extra_roots: Iterable[Path] = ()
) -> Path:
    """The real path of the credential file ``path_string`` names.

    Relative paths resolve against ``working_dir`` (``./configs/x.json`` and
    ``configs/x.json`` are one file), symlinks are followed (the file need not exist).
    Raises :class:`~cfgstore.errors.CredentialPathOutside` when the result is not inside
    ``working_dir`` or one of ``extra_roots`` (relative roots: against the process's
    current directory). Blocking (it reads links): call it from a worker thread.
    """
    roots = tuple(dict.fromkeys(root.resolve() for root in (working_dir, *extra_roots)))
    real = resolve_path(path_string, working_dir).resolve()
    if any(real.is_relative_to(root) for root in roots):
        return real
    raise CredentialPathOutside(path_string, str(real), tuple(str(root) for root in roots))


def confine_for(settings: Settings, path_string: str) -> Path:
    """:func:`confine_credential_path` with a deployment's settings: its working directory,
    its configs folder and the operator's ``credential_roots``. Blocking."""
    return confine_credential_path(
        path_string, settings.working_dir, (settings.configs_dir, *settings.credential_roots)
    )


def parse_roots(text: str) -> tuple[Path, ...]:
    """The folders of a ``CFGSTORE_CREDENTIAL_ROOTS`` value (``os.pathsep``-separated;
    empty entries ignored)."""
    return tuple(Path(part.strip()) for part in text.split(os.pathsep) if part.strip())
