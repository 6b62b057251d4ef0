"""What a first start of ``cfgctl serve`` creates, so that no well-known default credential
(the client key ``123456``, the password ``admin123``) is ever what lets someone in.

* **A chain on the files** (the file backend at the bottom: the default without Redis):
  :func:`ensure_default_configs` creates the Node layout a folder lacks, before the store
  opens (``config.json`` with a generated client API key, a generated admin password in
  ``pwd``, hashed, ``plugins.json``, an empty ``provider_pools.json``).
* **Any other chain named explicitly** (``--backends`` / ``CFGSTORE_BACKENDS``: a
  third-party backend, ``redis``, ``memory,redis``): :func:`seed_store` writes the same
  defaults *into the store* through the Store API (what ``cfgctl init`` writes, namespace
  id included), and never a file; a store that holds a config but no password gets a
  generated one. ``cfgctl serve`` seeds the store it serves from (a backend may keep its
  data in the process), or, for workers and for a chain whose memory fallback would not
  open on an empty shared namespace, the shared backend once before (the backend must
  then be one the processes share).
* The default Redis chain (a Redis URL, no ``--backends``) is left as it is: an empty
  namespace is served from the files until it is migrated or initialised.

The generated secrets are returned once, to be printed once (:func:`fresh_folder_lines`,
:func:`seeded_store_lines`); they are never logged.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import attrs

from cfgstore.adapters import Settings, Store
from cfgstore.cli.common import FILE_BACKEND
from cfgstore.cli.init_cmd import initialise
from cfgstore.errors import StorageUnavailable, VersionConflict
from cfgstore.fileio import atomic_write, make_private_dirs, read_bytes
from cfgstore.model import jsjson
from cfgstore.model.defaults import (
    default_config,
    default_plugin_config,
    generate_admin_password,
    generate_api_key,
)
from cfgstore.model.password import hash_password, js_trim

log = logging.getLogger("cfgstore_gateway.first_start")


def stores_in_files(settings: Settings) -> bool:
    """Whether the chain's storage is the configs folder (the file backend at the bottom)."""
    return settings.chain[-1] == FILE_BACKEND


def seeds_store(settings: Settings) -> bool:
    """Whether a first start seeds the store: a chain named explicitly whose storage is not
    the files (see the module docstring)."""
    return bool(settings.backends) and not stores_in_files(settings)


@attrs.frozen
class FreshDeployment:
    """The secrets generated for a deployment at start (shown once)."""

    api_key: str | None
    """``None`` when the deployment had a config (it is kept, and its key)."""
    admin_password: str | None
    """``None`` when it had a password (it is kept)."""


def ensure_default_configs(configs_dir: Path) -> FreshDeployment | None:
    """Create what a deployment in ``configs_dir`` lacks to start safely.

    Without ``config.json``: a default deployment (``config.json`` with a generated client
    API key, ``plugins.json``, an empty ``provider_pools.json``). Without a password (no
    ``pwd``, or a blank one, which the Node service reads as ``admin123``): a generated
    web-UI admin password, stored in ``pwd`` as a ``pbkdf2:`` hash. Returns what was
    generated, or ``None`` when nothing was. Existing files are never changed, except a
    blank ``pwd``. New folders are mode 0700, new files 0600 (created exclusively,
    ``O_EXCL``), in the Node write format. Blocking: run it in a thread."""
    config_path = configs_dir / "config.json"
    key = None
    if not config_path.exists():
        make_private_dirs(configs_dir)
        key = generate_api_key()
        _create(configs_dir / "plugins.json", jsjson.dump_bytes(default_plugin_config().to_json()))
        _create(configs_dir / "provider_pools.json", jsjson.dump_bytes({}))
        password = _ensure_password(configs_dir / "pwd")
        _create(config_path, jsjson.dump_bytes(default_config(key)))  # last: marks "done"
    else:
        password = _ensure_password(configs_dir / "pwd")
    if key is None and password is None:
        return None
    return FreshDeployment(key, password)


def _ensure_password(path: Path) -> str | None:
    """A generated admin password stored hashed in ``path`` when it holds none; ``None``
    when it has one (kept)."""
    stored = read_bytes(path)
    if stored is not None and js_trim(stored.decode("utf-8", "replace")):
        return None
    password = generate_admin_password()
    hashed = hash_password(password).encode()
    if stored is None:
        if not _create(path, hashed):
            return None  # another process made one meanwhile: theirs
    else:
        atomic_write(path, hashed)
    return password


def _create(path: Path, data: bytes) -> bool:
    """Write a new file; ``False`` (and nothing written) when it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    return True


def fresh_folder_lines(configs_dir: Path, fresh: FreshDeployment) -> list[str]:
    """What the operator is told, once, about the secrets generated in ``configs_dir``."""
    lines = []
    if fresh.api_key is not None:
        config_path = configs_dir / "config.json"
        lines.append(f"created a default deployment in {configs_dir}")
        lines.append(f"client API key (shown once, stored in {config_path}): {fresh.api_key}")
    if fresh.admin_password is not None:
        lines.append(
            f"web UI admin password (shown once, stored hashed in {configs_dir / 'pwd'}): "
            f"{fresh.admin_password}"
        )
    return lines


async def seed_store(store: Store) -> FreshDeployment | None:
    """Give an empty store the defaults ``cfgctl init`` writes (config with a generated
    client API key, default plugins, a generated admin password stored hashed, the
    namespace id), or a store holding a config but no password a generated password.
    Returns what was generated, or ``None``: nothing was (the store holds both, a
    migration into it is unfinished, another process seeded it first, or its storage is
    unreachable now — said in a warning)."""
    api_key, password = generate_api_key(), generate_admin_password()
    try:
        result = await initialise(store, password, api_key, force=False)
        if result.written:
            return FreshDeployment(api_key, password)
        if result.existing.migrating is not None:
            return None  # migrate writes the password it finishes with
        if js_trim(await store.password.get_stored() or ""):
            return None
        await store.password.set(password)
        return FreshDeployment(None, password)
    except VersionConflict:
        return None  # another process seeded the store meanwhile: its secrets
    except StorageUnavailable as exc:
        log.warning("could not check the store for its first-start defaults: %s", exc)
        return None


def seeded_store_lines(chain: list[str], fresh: FreshDeployment) -> list[str]:
    """What the operator is told, once, about the secrets seeded into the store."""
    lines = []
    if fresh.api_key is not None:
        lines.append(f"seeded a default deployment into the store ({' → '.join(chain)})")
        lines.append(f"client API key (shown once, stored in the store): {fresh.api_key}")
    if fresh.admin_password is not None:
        lines.append(
            "web UI admin password (shown once, stored hashed in the store): "
            f"{fresh.admin_password}"
        )
    return lines
