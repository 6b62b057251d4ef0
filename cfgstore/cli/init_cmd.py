"""``cfgctl init``: give a fresh namespace the defaults a first start needs (FR-020).

The namespace is the store of the chain named by ``--redis-url`` / ``--backends`` (a Redis
key prefix, a file backend's configs folder, a third-party backend's database); all of it
is written through the Store API. ``cfgctl serve`` seeds an empty store of a non-file
chain the same way (:func:`initialise`).

Writes a default ``config.json`` (with a random client API key), the default
``plugins.json``, the Web-UI password (from ``--password-file`` or generated) and, last, the
meta marker (``schema``, ``namespace`` id, ``initialized_at``, ``created_by``). Provider
pools start empty: nothing to write. A service started on the namespace afterwards needs no
config files.

A namespace is *empty* when it has no namespace id, no stored config, no provider types
and no unfinished ``cfgctl migrate`` (its ``migrating`` marker). Anything else is refused
(exit 1, nothing written) unless ``--force``, which rewrites config, plugins, password and
meta, keeps the namespace id other instances know the namespace by, and leaves pools,
credentials and everything else alone. ``--force`` on a namespace that holds data asks
first on a terminal; without one it needs ``--yes`` (else exit 1, nothing written).

A ``--password-file`` password follows the admin API's rule
(:func:`cfgstore.model.password.password_problem`).

Secrets generated here are printed exactly once: the password only when it was generated,
the API key always (it is new either way). Nothing else of them is ever printed.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import attrs
import typer

import cfgstore
from cfgstore.adapters.settings import Settings
from cfgstore.adapters.store import Store
from cfgstore.cli.common import (
    BackendsOption,
    ConfigsOption,
    CwdOption,
    JsonOption,
    RedisUrlOption,
    chain_settings,
    count_noun,
    emit_json,
    fail,
    plugin_set,
    redis_location,
    run,
)
from cfgstore.cli.os_errors import describe_os_error
from cfgstore.errors import VersionConflict
from cfgstore.model.defaults import (
    default_config,
    default_plugin_config,
    generate_admin_password,
    generate_api_key,
)
from cfgstore.model.password import js_trim, password_problem
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
YesOption = Annotated[
    bool,
    typer.Option(
        "--yes",
        help="With --force: re-initialise a namespace that holds data without asking "
        "(needed when there is no terminal to ask on).",
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
class Initialised:
    """What :func:`initialise` found and, when ``written``, wrote."""

    existing: Existing
    written: bool
    namespace_id: str = ""
    initialized_at: str = ""
    config_version: str = ""


async def initialise(store: Store, password: str, api_key: str, *, force: bool) -> Initialised:
    """Write the defaults into the namespace behind ``store``: a default config with
    ``api_key``, the default plugins, ``password`` (stored hashed) and, last, the meta
    marker. Writes nothing (``written`` false) when the namespace is not empty, unless
    ``force``. Raises :class:`VersionConflict`, with nothing written, when the config
    changed after it was read (a concurrent init, or an admin edit)."""
    existing = await Existing.read(store)
    if not existing.empty and not force:
        return Initialised(existing, written=False)
    # The config write is a compare-and-set against what was just read: a concurrent init
    # (or admin edit) makes this one fail before anything else is written.
    version = await store.config.put(default_config(api_key), existing.config_version)
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
    return Initialised(existing, True, namespace_id, initialized_at, version)


@attrs.frozen
class Outcome:
    name: str
    """How the namespace is named: ``{prefix}`` on Redis, else the chain."""
    redis_prefix: str | None
    location: str
    result: Initialised


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init_command(
        redis_url: RedisUrlOption = None,
        backends: BackendsOption = None,
        configs: ConfigsOption = None,
        cwd: CwdOption = None,
        force: ForceOption = False,
        yes: YesOption = False,
        password_file: PasswordFileOption = None,
        json: JsonOption = False,
    ) -> None:
        """Initialise an empty namespace (Redis, or the chain --backends names) with
        default config, plugins and password."""
        settings = chain_settings("init", redis_url, backends, configs, cwd)
        generated_password: str | None = None
        if password_file is not None:
            password = _read_password(password_file)
        else:
            password = generated_password = generate_admin_password()
        api_key = generate_api_key()

        outcome = run(lambda: _initialise(settings, False, password, api_key))
        if not outcome.result.written:
            if not force:
                _refuse(outcome, json)
            _confirm_force(outcome, yes)
            outcome = run(lambda: _initialise(settings, True, password, api_key))
        _report(outcome, force, password_file, generated_password, api_key, json)


async def _initialise(settings: Settings, force: bool, password: str, api_key: str) -> Outcome:
    async with Store.open(settings, plugins=plugin_set()) as store:
        on_redis = "redis" in store.backend_names
        prefix = settings.redis_prefix if on_redis else None
        name = f"{{{prefix}}}" if on_redis else "on " + " → ".join(store.backend_names)
        location = _location(await store.status(), settings)
        try:
            result = await initialise(store, password, api_key, force=force)
        except VersionConflict:
            fail(
                f"config of namespace {name} changed while init ran (another init or an "
                "admin edit?); nothing was written — check with `cfgctl status` and retry",
                1,
            )
        return Outcome(name, prefix, location, result)


def _location(statuses: list[BackendStatus], settings: Settings) -> str:
    """Where the namespace lives, passwords hidden: the description of the backend at the
    bottom of the chain (the storage)."""
    if statuses:
        return statuses[-1].location
    return redis_location(settings)


def _read_password(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"password file {path} is not UTF-8 text", 2)
    except OSError as exc:
        fail(f"cannot read the password file: {describe_os_error(exc)}", 2, exc)
    password = js_trim(text)
    if not password:
        fail(f"password file {path} is empty", 2)
    problem = password_problem(password)
    if problem is not None:
        fail(
            f"password file {path}: the Web-UI password needs {problem}, as the admin API "
            "requires; nothing was written",
            2,
        )
    return password


def _confirm_force(outcome: Outcome, yes: bool) -> None:
    """Go on with ``--force`` over data: with ``--yes``, or when the operator says so on a
    terminal; otherwise exit 1 with nothing written."""
    if yes:
        return
    found = "; ".join(outcome.result.existing.describe())
    what = (
        f"namespace {outcome.name} at {outcome.location} holds {found}. `init --force` "
        "replaces its config.json (all of it: API key, providers, every setting), plugins, "
        "password and meta; pools and credentials are kept"
    )
    if not sys.stdin.isatty():
        fail(f"{what}. Nothing was written: add --yes to confirm (no terminal to ask on)", 1)
    # Asked on stderr and read from stdin: stdout stays the report (or the JSON).
    print(f"{what}. Replace them? [y/N]: ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        fail("nothing was written", 1)


def _refuse(outcome: Outcome, as_json: bool) -> None:
    found = outcome.result.existing.describe()
    if as_json:
        emit_json(
            {
                "initialised": False,
                **_where(outcome),
                "existing": found,
            }
        )
    fail(
        f"refusing to initialise namespace {outcome.name} at {outcome.location}: it "
        f"already holds {'; '.join(found)}. Nothing was written. `cfgctl init --force` "
        "rewrites config, plugins, password and meta and keeps pools and credentials",
        1,
    )


def _where(outcome: Outcome) -> dict[str, Any]:
    """The namespace's name and location for ``--json`` (``redis_prefix`` on Redis)."""
    where: dict[str, Any] = {}
    if outcome.redis_prefix is not None:
        where["redis_prefix"] = outcome.redis_prefix
    where["location"] = outcome.location
    return where


def _report(
    outcome: Outcome,
    force: bool,
    password_file: Path | None,
    generated_password: str | None,
    api_key: str,
    as_json: bool,
) -> None:
    result = outcome.result
    existing = result.existing
    forced = force and not existing.empty
    plugins = default_plugin_config()
    if as_json:
        summary: dict[str, Any] = {
            "initialised": True,
            "forced": forced,
            **_where(outcome),
            "namespace_id": result.namespace_id,
            "namespace_id_kept": existing.namespace_id is not None,
            "initialized_at": result.initialized_at,
            "schema": REDIS_SCHEMA,
            "written": ["config", "plugins", "password", "meta"],
            "config_version": result.config_version,
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
    typer.echo(f"{action} namespace {outcome.name} at {outcome.location}")
    kept_id = " (kept)" if existing.namespace_id is not None else ""
    typer.echo(f"  namespace id      {result.namespace_id}{kept_id}")
    typer.echo(f"  schema            {REDIS_SCHEMA}")
    typer.echo(f"  initialised       {result.initialized_at}")
    typer.echo(f"  config.json       defaults written (version {result.config_version})")
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
