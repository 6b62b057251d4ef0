"""``cfgctl init``: give a fresh Redis namespace the defaults a first start needs (FR-020).

Writes a default ``config.json`` (with a random client API key), the default
``plugins.json``, the Web-UI password (from ``--password-file`` or generated) and, last, the
meta marker (``schema``, ``namespace`` id, ``initialized_at``, ``created_by``). Provider
pools start empty: nothing to write. A service started on the namespace afterwards needs no
config files.

A namespace is *empty* when it has no namespace id, no stored config, no provider types
and no unfinished ``cfgctl migrate`` (its ``migrating`` marker). Anything else is refused
(exit 1, nothing written) unless ``--force``, which rewrites config, plugins, password and
meta, keeps the namespace id other instances know the namespace by, and leaves pools,
credentials and everything else alone.

Secrets generated here are printed exactly once: the password only when it was generated,
the API key always (it is new either way). Nothing else of them is ever printed.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import attrs
import typer

import cfgstore
from cfgstore.adapters.settings import Settings
from cfgstore.adapters.store import Store
from cfgstore.cli.common import (
    JsonOption,
    RedisUrlOption,
    count_noun,
    emit_json,
    fail,
    plugin_set,
    redis_location,
    redis_settings,
    run,
)
from cfgstore.errors import VersionConflict
from cfgstore.model.defaults import (
    default_config,
    default_plugin_config,
    generate_admin_password,
    generate_api_key,
)
from cfgstore.model.password import js_trim
from cfgstore.model.status import BackendStatus
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore.model.versions import ABSENT_VERSION, SCHEMA_VERSION

REDIS_SCHEMA = str(SCHEMA_VERSION)

ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Re-initialise a namespace that holds data: rewrite config, plugins, password "
        "and meta; keep the namespace id, pools and credentials.",
    ),
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help="Read the Web-UI password from this file (trimmed) instead of generating one.",
    ),
]


@attrs.frozen
class Existing:
    """What a namespace already holds, as far as init cares."""

    namespace_id: str | None
    migrating: str | None
    initialized_at: str | None
    config_version: str
    provider_types: int
    nodes: int
    credentials: int

    @property
    def empty(self) -> bool:
        return (
            self.namespace_id is None
            and self.migrating is None
            and self.config_version == ABSENT_VERSION
            and self.provider_types == 0
        )

    @classmethod
    async def read(cls, store: Store) -> Existing:
        """What the namespace behind ``store`` holds (``init`` and ``restore`` both decide
        "empty" with this)."""
        meta = await store.meta.get()
        config = await store.config.get()
        pools = await store.pools.list()
        credentials = await store.credentials.list()
        return cls(
            namespace_id=meta.get("namespace"),
            migrating=meta.get("migrating") or None,
            initialized_at=meta.get("initialized_at"),
            config_version=config.version,
            provider_types=len(pools.types),
            nodes=pools.node_count(),
            credentials=len(credentials),
        )

    def describe(self) -> list[str]:
        found: list[str] = []
        if self.namespace_id is not None:
            since = f", initialised {self.initialized_at}" if self.initialized_at else ""
            found.append(f"namespace id {self.namespace_id}{since}")
        if self.migrating is not None:
            found.append(f"an unfinished `cfgctl migrate` (started {self.migrating})")
        if self.config_version != ABSENT_VERSION:
            found.append(f"config.json (version {self.config_version})")
        if self.provider_types:
            types = count_noun(self.provider_types, "provider type")
            found.append(f"{types} ({count_noun(self.nodes, 'node')})")
        if self.credentials:
            found.append(count_noun(self.credentials, "credential"))
        return found

    def kept(self) -> dict[str, int]:
        return {
            "provider_types": self.provider_types,
            "nodes": self.nodes,
            "credentials": self.credentials,
        }


@attrs.frozen
class Outcome:
    prefix: str
    location: str
    existing: Existing
    written: bool
    namespace_id: str = ""
    initialized_at: str = ""
    config_version: str = ""


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init_command(
        redis_url: RedisUrlOption = None,
        force: ForceOption = False,
        password_file: PasswordFileOption = None,
        json: JsonOption = False,
    ) -> None:
        """Initialise an empty Redis namespace with default config, plugins and password."""
        settings = redis_settings("init", redis_url)
        generated_password: str | None = None
        if password_file is not None:
            password = _read_password(password_file)
        else:
            password = generated_password = generate_admin_password()
        api_key = generate_api_key()

        outcome = run(lambda: _initialise(settings, force, password, api_key))
        if not outcome.written:
            _refuse(outcome, json)
        _report(outcome, force, password_file, generated_password, api_key, json)


async def _initialise(settings: Settings, force: bool, password: str, api_key: str) -> Outcome:
    async with Store.open(settings, plugins=plugin_set()) as store:
        location = _location(await store.status(), settings)
        existing = await Existing.read(store)
        prefix = settings.redis_prefix
        if not existing.empty and not force:
            return Outcome(prefix, location, existing, written=False)
        # The config write is a compare-and-set against what was just read: a concurrent
        # init (or admin edit) makes this one fail before anything else is written.
        try:
            version = await store.config.put(default_config(api_key), existing.config_version)
        except VersionConflict:
            fail(
                f"config of namespace {{{prefix}}} changed while init ran (another init or an "
                "admin edit?); nothing was written — check with `cfgctl status` and retry",
                1,
            )
        await store.plugin_config.put(default_plugin_config())
        await store.password.set(password)
        namespace_id = existing.namespace_id or uuid.uuid4().hex
        initialized_at = iso_ms(now_ms())
        # Last: the marker says the namespace is complete.
        await store.meta.update(
            {
                "schema": REDIS_SCHEMA,
                "namespace": namespace_id,
                "initialized_at": initialized_at,
                "created_by": f"cfgstore {cfgstore.__version__}",
            }
        )
        return Outcome(
            prefix,
            location,
            existing,
            written=True,
            namespace_id=namespace_id,
            initialized_at=initialized_at,
            config_version=version,
        )


def _location(statuses: list[BackendStatus], settings: Settings) -> str:
    """Where the namespace lives, passwords hidden (the Redis backend's own description)."""
    for status in statuses:
        if status.name == "redis":
            return status.location
    return redis_location(settings)


def _read_password(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"password file {path} is not UTF-8 text", 2)
    except OSError as exc:
        fail(f"cannot read password file {path}: {exc.strerror or exc}", 2)
    password = js_trim(text)
    if not password:
        fail(f"password file {path} is empty", 2)
    return password


def _refuse(outcome: Outcome, as_json: bool) -> None:
    found = outcome.existing.describe()
    if as_json:
        emit_json(
            {
                "initialised": False,
                "redis_prefix": outcome.prefix,
                "location": outcome.location,
                "existing": found,
            }
        )
    fail(
        f"refusing to initialise namespace {{{outcome.prefix}}} at {outcome.location}: it "
        f"already holds {'; '.join(found)}. Nothing was written. `cfgctl init --force` "
        "rewrites config, plugins, password and meta and keeps pools and credentials",
        1,
    )


def _report(
    outcome: Outcome,
    force: bool,
    password_file: Path | None,
    generated_password: str | None,
    api_key: str,
    as_json: bool,
) -> None:
    existing = outcome.existing
    forced = force and not existing.empty
    plugins = default_plugin_config()
    if as_json:
        summary: dict[str, Any] = {
            "initialised": True,
            "forced": forced,
            "redis_prefix": outcome.prefix,
            "location": outcome.location,
            "namespace_id": outcome.namespace_id,
            "namespace_id_kept": existing.namespace_id is not None,
            "initialized_at": outcome.initialized_at,
            "schema": REDIS_SCHEMA,
            "written": ["config", "plugins", "password", "meta"],
            "config_version": outcome.config_version,
            "plugins": {name: plugins.is_enabled(name) for name in plugins.plugins},
            "password": "generated" if generated_password is not None else "from file",
            "kept": existing.kept(),
            "generated_api_key": api_key,
        }
        if generated_password is not None:
            summary["generated_password"] = generated_password
        emit_json(summary)
        return
    action = "re-initialised" if forced else "initialised"
    typer.echo(f"{action} namespace {{{outcome.prefix}}} at {outcome.location}")
    kept_id = " (kept)" if existing.namespace_id is not None else ""
    typer.echo(f"  namespace id      {outcome.namespace_id}{kept_id}")
    typer.echo(f"  schema            {REDIS_SCHEMA}")
    typer.echo(f"  initialised       {outcome.initialized_at}")
    typer.echo(f"  config.json       defaults written (version {outcome.config_version})")
    enabled = [name for name in plugins.plugins if plugins.is_enabled(name)]
    typer.echo(
        f"  plugins.json      {len(plugins.plugins)} built-in plugins, "
        f"enabled: {', '.join(enabled) or 'none'}"
    )
    source = f"set from {password_file}" if password_file is not None else "generated"
    typer.echo(f"  UI password       {source}")
    if forced:
        typer.echo(
            f"  kept as they were: {count_noun(existing.provider_types, 'provider type')} "
            f"({count_noun(existing.nodes, 'node')}), "
            f"{count_noun(existing.credentials, 'credential')}"
            "; sessions, custom models, system prompt and usage cache untouched"
        )
    else:
        typer.echo("  provider pools    empty (add providers in the Web UI or `cfgctl migrate`)")
    typer.echo("")
    typer.echo("Shown once — store them now:")
    if generated_password is not None:
        typer.echo(f"  generated UI password:  {generated_password}")
    typer.echo(f"  generated API key (REQUIRED_API_KEY):  {api_key}")
