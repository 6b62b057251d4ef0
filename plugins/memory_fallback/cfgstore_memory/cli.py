"""cfgctl commands of the memory fallback (entry point ``cfgctl-memory``, group ``cfgstore``).

``cfgctl journal list --state-dir DIR``
    Every outage journal in ``DIR`` and in its direct subdirectories (a gateway gives each
    worker its own state directory below one root): files named ``journal`` and set-aside
    ones ``journal.orphan-<namespace id>-<ms>`` (see :mod:`cfgstore_memory.fallback`). Per
    journal: the instance id (from the ``instance.json`` beside it), entries, records,
    bytes, the oldest entry, and whether it is *in use* (its ``.lock`` is held by a live
    process) or *orphaned*. Strictly read-only: files are read, never opened as a
    :class:`~cfgstore_memory.journal.Journal` (which would take the lock, create a lock file
    or repair a torn tail). Exit 0.

``cfgctl journal replay (--state-dir DIR | --journal FILE)``
    Replays orphaned journals onto Redis, oldest first, with
    :func:`~cfgstore_memory.replay.replay_journal`; operation ids make a second run
    harmless. Every journal is checked before anything is sent; when one is refused (exit
    1) nothing is replayed at all:

    * a journal whose lock is held: *in use by a running instance; it replays it itself*.
      With ``--journal`` that is a refusal; with ``--state-dir`` such journals are not
      orphaned and are skipped (reported, exit code unaffected);
    * a journal whose namespace is not the one Redis holds. A ``journal`` belongs to the
      namespace remembered in the ``instance.json`` beside it for the configured key prefix;
      a ``journal.orphan-<ns>-<ms>`` to ``<ns>``. ``--namespace-id ID`` overrides that, and
      must then name the namespace Redis holds (the storage refuses records made for
      another one).

    A fully replayed set-aside file is removed (with its lock file); a ``journal`` is left
    cleared. A file that is not a journal, or one damaged in the middle, exits 2 before
    anything is sent; a torn tail (a write cut short by a crash, never acknowledged) is
    dropped as the instance itself would drop it. A storage error during a replay stops
    there (exit 2): the journal keeps exactly the entries not yet confirmed.

``cfgctl restore --snapshot FILE``
    Re-seeds an emptied Redis namespace from a snapshot file
    (:mod:`cfgstore.model.snapshot`): pools with their counters, credentials, config,
    system prompt, custom models, plugins, stored password, usage cache, then — last — the
    meta marker with the snapshot's namespace id, which is what lets the instances that ran
    on that namespace recognise it and replay their journals. Refused (exit 1, nothing
    written) when the namespace is not empty (as ``cfgctl init`` decides it) or the
    snapshot was taken under another key prefix, unless ``--force``.

Exit codes as everywhere in cfgctl: 0 done, 1 refused, 2 unusable input or storage (a
missing or damaged snapshot or journal, Redis unreachable). Nothing here prints a secret:
credential documents, the password and the config's API key never reach the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

import attrs
import typer

from cfgstore import hookimpl
from cfgstore.adapters.settings import Settings, redact_url
from cfgstore.adapters.store import Store
from cfgstore.cli.common import (
    INPUT_ERRORS,
    JsonOption,
    Progress,
    RedisUrlOption,
    emit_json,
    fail,
    plugin_set,
    redis_settings,
    run,
)
from cfgstore.cli.init_cmd import Existing
from cfgstore.cli.status import format_age_ms
from cfgstore.errors import CfgStoreError, InvalidData, StorageUnavailable, VersionConflict
from cfgstore.model.snapshot import StoreSnapshot, snapshot_from_bytes
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore.model.versions import SCHEMA_VERSION
from cfgstore_memory.journal import MAGIC, Journal, _scan
from cfgstore_memory.replay import CREDENTIAL, RECORDS, ReplayReport, replay_journal
from cfgstore_memory.state_dir import IDENTITY_FILE, JOURNAL_FILE

ORPHAN_NAME = re.compile(r"journal\.orphan-(?P<namespace>.+)-(?P<ms>\d+)")
"""A journal set aside by an instance that found another namespace in Redis
(``MemoryFallback._set_journal_aside``): ``journal.orphan-<old namespace id>-<epoch ms>``."""

IN_USE = "in use by a running instance; it replays it itself"

StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="A state directory, or the root of per-worker state directories (its direct "
        "subdirectories are searched too).",
    ),
]


# ---------------------------------------------------------------------- finding journals


@attrs.frozen
class Identity:
    """What the ``instance.json`` beside a journal says (nothing when it is absent)."""

    instance_id: str | None = None
    namespaces: dict[str, str] = attrs.field(factory=dict)
    problem: str | None = None


@attrs.frozen
class JournalFile:
    """One journal file as read from disk, without opening it as a :class:`Journal`.

    Counts are of the entries that check out from the start of the file. ``problem`` says
    what is wrong past them (only for a journal not in use: one in use may be in the middle
    of an append); ``damaged_in_middle`` is true when good-looking frames follow the damage
    (such a journal is not replayed by cfgctl); ``is_journal`` is false for a non-empty
    file that does not start with a frame."""

    path: Path
    orphan_namespace: str | None
    """For ``journal.orphan-<ns>-<ms>``: ``<ns>``; ``None`` for a ``journal``."""
    set_aside_at_ms: int | None
    identity: Identity
    in_use: bool
    size: int
    entries: int = 0
    records: int = 0
    credentials: int = 0
    oldest_at_ms: int | None = None
    good_bytes: int = 0
    problem: str | None = None
    damage: str | None = None
    """Why the frame at ``good_bytes`` is bad (``None`` when the file reads cleanly)."""
    later_frames: int = 0
    """Frames that check out after the damage (corruption in the middle when > 0)."""
    is_journal: bool = True

    @property
    def damaged_in_middle(self) -> bool:
        return self.later_frames > 0

    @property
    def kind(self) -> str:
        return "journal" if self.orphan_namespace is None else "orphan"

    def to_json(self, now: int) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "instance_id": self.identity.instance_id,
            "namespaces": self.identity.namespaces,
            "orphan_namespace_id": self.orphan_namespace,
            "set_aside_at": iso_ms(self.set_aside_at_ms) if self.set_aside_at_ms else None,
            "in_use": self.in_use,
            "orphaned": not self.in_use,
            "entries": self.entries,
            "records": self.records,
            "credentials": self.credentials,
            "bytes": self.size,
            "oldest_at": iso_ms(self.oldest_at_ms) if self.oldest_at_ms is not None else None,
            "oldest_age_ms": now - self.oldest_at_ms if self.oldest_at_ms is not None else None,
            "problem": self.problem,
            "identity_problem": self.identity.problem,
        }


def find_journals(root: Path) -> tuple[list[Path], list[str]]:
    """Journal files in ``root`` and its direct subdirectories (sorted, ``root`` first),
    and one warning per subdirectory that could not be read."""
    found: list[Path] = []
    warnings: list[str] = []
    directories = [root]
    for child in sorted(root.iterdir()):
        with contextlib.suppress(OSError):
            if child.is_dir():
                directories.append(child)
    for directory in directories:
        try:
            names = sorted(p.name for p in directory.iterdir())
        except OSError as exc:
            warnings.append(f"cannot read {directory}: {exc.strerror or exc}")
            continue
        for name in names:
            path = directory / name
            if (name == JOURNAL_FILE or ORPHAN_NAME.fullmatch(name)) and path.is_file():
                found.append(path)
    return found, warnings


def lock_held(journal: Path) -> bool:
    """Whether a live process holds the journal's ``<name>.lock`` (the flock an open
    :class:`Journal` keeps). Probed non-blocking and released at once; a missing lock file
    is not created (nobody can hold it)."""
    lock = journal.with_name(journal.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def read_identity(directory: Path) -> Identity:
    """The ``instance.json`` of a state directory, read-only; a damaged one is reported in
    :attr:`Identity.problem`, never repaired or replaced."""
    path = directory / IDENTITY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Identity()
    except OSError as exc:
        return Identity(problem=f"cannot read {path}: {exc.strerror or exc}")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        return Identity(problem=f"{path} is not JSON: {exc}")
    if not isinstance(doc, dict):
        return Identity(problem=f"{path} is not a JSON object")
    instance_id = doc.get("instance_id")
    namespaces = doc.get("namespaces", {})
    if not isinstance(namespaces, dict):
        namespaces = {}
    return Identity(
        instance_id if isinstance(instance_id, str) and instance_id else None,
        {k: v for k, v in namespaces.items() if isinstance(k, str) and isinstance(v, str)},
    )


def inspect_journal(path: Path) -> JournalFile:
    """Read one journal file (see :class:`JournalFile`). Raises :class:`OSError` when the
    file cannot be read."""
    match = ORPHAN_NAME.fullmatch(path.name)
    in_use = lock_held(path)
    base = JournalFile(
        path=path,
        orphan_namespace=match["namespace"] if match else None,
        set_aside_at_ms=int(match["ms"]) if match else None,
        identity=read_identity(path.parent),
        in_use=in_use,
        size=0,
    )
    buf = path.read_bytes()
    scan = _scan(buf)
    records = credentials = 0
    for entry in scan.entries:
        if entry.kind == RECORDS and isinstance(entry.data, list):
            records += len(entry.data)
        elif entry.kind == CREDENTIAL:
            credentials += 1
    is_journal = not buf or buf.startswith(MAGIC)
    problem = None
    if not is_journal:
        problem = "not a cfgstore journal (the file does not start with a frame)"
    elif scan.problem is not None and not in_use:
        if scan.later_frames:
            problem = (
                f"damaged at offset {scan.good_bytes} ({scan.problem}), followed by "
                f"{scan.later_frames} frames that check out"
            )
        else:
            problem = (
                f"torn tail at offset {scan.good_bytes} ({scan.problem}): "
                f"{len(buf) - scan.good_bytes} bytes of a write cut short, never acknowledged"
            )
    return attrs.evolve(
        base,
        size=len(buf),
        entries=len(scan.entries),
        records=records,
        credentials=credentials,
        oldest_at_ms=scan.entries[0].at_ms if scan.entries else None,
        good_bytes=scan.good_bytes,
        problem=problem,
        damage=None if in_use else scan.problem,
        later_frames=0 if in_use else scan.later_frames,
        is_journal=is_journal,
    )


# ---------------------------------------------------------------------- journal list


def _list(state_dir: Path, as_json: bool) -> None:
    if not state_dir.is_dir():
        fail(f"{state_dir}: not a directory", 2)
    try:
        paths, warnings = find_journals(state_dir)
        files = [inspect_journal(p) for p in paths]
    except OSError as exc:
        fail(f"cannot read {exc.filename or state_dir}: {exc.strerror or exc}", 2, exc)
    for warning in warnings:
        typer.echo(f"cfgctl: warning: {warning}", err=True)
    now = now_ms()
    if as_json:
        emit_json({"state_dir": str(state_dir), "journals": [f.to_json(now) for f in files]})
        return
    if not files:
        typer.echo(f"no journals under {state_dir}")
        return
    in_use = sum(1 for f in files if f.in_use)
    typer.echo(
        f"{_count(len(files), 'journal')} under {state_dir} "
        f"({in_use} in use, {len(files) - in_use} orphaned)"
    )
    for f in files:
        typer.echo(str(f.path))
        typer.echo(f"  instance     {f.identity.instance_id or '(no instance.json)'}")
        if f.in_use:
            state = "in use by a running instance"
        elif f.orphan_namespace is not None:
            when = iso_ms(f.set_aside_at_ms) if f.set_aside_at_ms else "?"
            state = f"orphaned: set aside from namespace {f.orphan_namespace} at {when}"
        else:
            state = "orphaned: no running instance holds it"
        typer.echo(f"  state        {state}")
        typer.echo(
            f"  entries      {f.entries} ({_count(f.records, 'record')}, "
            f"{_count(f.credentials, 'credential')})"
        )
        typer.echo(f"  size         {_count(f.size, 'byte')}")
        if f.oldest_at_ms is not None:
            age = format_age_ms(max(now - f.oldest_at_ms, 0))
            typer.echo(f"  oldest       {iso_ms(f.oldest_at_ms)} ({age} ago)")
        if f.problem is not None:
            typer.echo(f"  problem      {f.problem}")
        if f.identity.problem is not None:
            typer.echo(f"  warning      {f.identity.problem}")


# ---------------------------------------------------------------------- journal replay


@attrs.define
class ReplayItem:
    """One journal's part in a replay run.

    ``status``: ``replay`` (planned), ``replayed``, ``empty`` (nothing to send),
    ``in-use`` (skipped or refused), ``refused``, ``failed`` (a storage error stopped it),
    ``not-run`` (a journal before it failed)."""

    file: JournalFile
    status: str
    namespace_id: str | None = None
    reason: str | None = None
    report: ReplayReport | None = None
    removed: bool = False
    error: CfgStoreError | None = None

    def to_json(self) -> dict[str, Any]:
        report = self.report or ReplayReport()
        return {
            "path": str(self.file.path),
            "kind": self.file.kind,
            "instance_id": self.file.identity.instance_id,
            "status": self.status,
            "namespace_id": self.namespace_id,
            "reason": self.reason,
            "entries": report.entries,
            "records": report.records,
            "duplicates": report.duplicates,
            "credentials_written": report.credentials_written,
            "credentials_kept_newer": report.credentials_kept_newer,
            "credentials_dropped": report.credentials_dropped,
            "removed": self.removed,
            "torn_tail_dropped": self.file.problem is not None and self.status == "replayed",
        }


@attrs.define
class ReplayRun:
    prefix: str
    location: str
    redis_namespace_id: str | None
    items: list[ReplayItem]

    @property
    def refused(self) -> list[ReplayItem]:
        return [i for i in self.items if i.status == "refused"]

    @property
    def failed(self) -> ReplayItem | None:
        return next((i for i in self.items if i.status == "failed"), None)


def plan_item(
    file: JournalFile, prefix: str, redis_ns: str | None, explicit: str | None, single: bool
) -> ReplayItem:
    """Decide what to do with one journal (nothing is opened or sent here). Raises
    :class:`InvalidData` for a file that is not a journal or is damaged in the middle."""
    if file.in_use:
        return ReplayItem(file, "refused" if single else "in-use", reason=IN_USE)
    if not file.is_journal:
        raise InvalidData(
            str(file.path), "offset 0", "not a cfgstore journal (nothing was replayed)"
        )
    if file.damaged_in_middle:
        raise InvalidData(
            str(file.path),
            f"offset {file.good_bytes}",
            f"damaged ({file.damage}), followed by {_count(file.later_frames, 'frame')} that "
            "check out; nothing was replayed. An instance opening it keeps the entries "
            "before the damage and sets the whole file aside for inspection",
        )
    if file.entries == 0:
        return ReplayItem(file, "empty")
    own = file.orphan_namespace or file.identity.namespaces.get(prefix)
    target = explicit or own
    tag = f"{{{prefix}}}"
    if target is None:
        where = (
            f"{file.identity.problem}"
            if file.identity.problem
            else f"the instance.json beside it remembers no namespace for prefix {tag}"
        )
        return ReplayItem(
            file,
            "refused",
            reason=f"no namespace is known for it ({where}); give --namespace-id "
            f"{redis_ns or 'ID'} to replay it onto namespace {tag}",
        )
    if redis_ns is None:
        return ReplayItem(
            file,
            "refused",
            target,
            f"it belongs to namespace {target}, but Redis namespace {tag} holds no namespace "
            f"id (emptied?): `cfgctl restore --snapshot FILE` can bring namespace {target} "
            "back, then replay again",
        )
    if redis_ns != target:
        if explicit is not None:
            reason = f"--namespace-id {explicit}, but Redis namespace {tag} holds {redis_ns}"
        else:
            reason = (
                f"it was written on namespace {target}, but Redis namespace {tag} holds "
                f"{redis_ns}; give --namespace-id {redis_ns} to replay it there anyway, or "
                f"bring namespace {target} back with `cfgctl restore --snapshot FILE`"
            )
        return ReplayItem(file, "refused", target, reason)
    return ReplayItem(file, "replay", target)


async def _replay(
    settings: Settings, files: list[JournalFile], explicit: str | None, single: bool
) -> ReplayRun:
    """Plan every journal against the namespace Redis holds; when none is refused, lock
    them all, replay them oldest first (stopping at the first storage error, recorded in
    the item), then remove the set-aside files that were fully replayed."""
    prefix = settings.redis_prefix
    async with Store.open(settings, plugins=plugin_set()) as store:
        head = await store.replicas.head()
        items = [plan_item(f, prefix, head.namespace_id, explicit, single) for f in files]
        items.sort(key=_replay_order)
        result = ReplayRun(prefix, _location(settings), head.namespace_id, items)
        planned = [i for i in items if i.status == "replay"]
        if result.refused or not planned:
            return result
        # Take every lock before sending anything: an instance starting meanwhile makes
        # this a refusal with nothing replayed, not a replay that stops halfway.
        journals: list[Journal] = []
        try:
            for item in planned:
                max_bytes = max(settings.journal_max_bytes, item.file.size + 1)
                try:
                    journals.append(await Journal.open(item.file.path, max_bytes))
                except StorageUnavailable:
                    item.status, item.reason = "refused", IN_USE
                except OSError as exc:
                    raise InvalidData(
                        str(item.file.path), "open", f"{exc.strerror or exc} (nothing was replayed)"
                    ) from exc
            if result.refused:
                for item in planned:
                    if item.status == "replay":
                        item.status = "not-run"
                return result
            ops = store.replicas.operations
            for item, journal in zip(planned, journals, strict=True):
                if result.failed is not None:
                    item.status = "not-run"
                    continue
                assert item.namespace_id is not None
                item.report = ReplayReport()
                try:
                    await replay_journal(journal, ops, item.namespace_id, report=item.report)
                except CfgStoreError as exc:
                    item.status, item.reason, item.error = "failed", str(exc), exc
                    continue
                item.status = "replayed"
        finally:
            for journal in journals:
                await journal.close()
        for item, journal in zip(planned, journals, strict=True):
            if item.status == "replayed" and item.file.kind == "orphan" and not journal.depth:
                try:
                    await asyncio.to_thread(_remove_orphan, item.file.path)
                except OSError as exc:
                    item.reason = f"replayed and cleared, but not removed: {exc.strerror or exc}"
                else:
                    item.removed = True
        return result


def _replay_order(item: ReplayItem) -> tuple[bool, int, str]:
    oldest = item.file.oldest_at_ms
    return (oldest is None, oldest or 0, str(item.file.path))


def _remove_orphan(path: Path) -> None:
    """A set-aside journal fully replayed: the file and the lock file cfgctl made for it."""
    path.unlink()
    with contextlib.suppress(FileNotFoundError):
        path.with_name(path.name + ".lock").unlink()


def _replay_command(
    state_dir: Path | None,
    journal: Path | None,
    namespace_id: str | None,
    redis_url: str | None,
    as_json: bool,
) -> None:
    if (state_dir is None) == (journal is None):
        fail("give exactly one of --state-dir DIR and --journal FILE", 2)
    if namespace_id is not None and not namespace_id.strip():
        fail("--namespace-id: expected a namespace id", 2)
    single = journal is not None
    if journal is not None and not journal.is_file():
        fail(f"{journal}: no such journal file", 2)
    if state_dir is not None and not state_dir.is_dir():
        fail(f"{state_dir}: not a directory", 2)
    settings = redis_settings("journal replay", redis_url)
    try:
        warnings: list[str] = []
        if journal is not None:
            paths = [journal]
        else:
            assert state_dir is not None
            paths, warnings = find_journals(state_dir)
        files = [inspect_journal(p) for p in paths]
    except OSError as exc:
        fail(f"cannot read {exc.filename}: {exc.strerror or exc}", 2, exc)
    for warning in warnings:
        typer.echo(f"cfgctl: warning: {warning}", err=True)
    outcome = run(lambda: _replay(settings, files, namespace_id, single))
    _print_replay(outcome, as_json)
    if outcome.refused:
        reasons = "; ".join(f"{i.file.path}: {i.reason}" for i in outcome.refused)
        fail(f"refusing to replay (nothing was replayed): {reasons}", 1)
    failed = outcome.failed
    if failed is not None:
        code = 2 if isinstance(failed.error, INPUT_ERRORS) else 1
        fail(
            f"replaying {failed.file.path} stopped: {failed.reason}; the journal keeps the "
            "entries not yet confirmed (a second run skips those already applied)",
            code,
            failed.error,
        )


def _print_replay(outcome: ReplayRun, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "redis_prefix": outcome.prefix,
                "location": outcome.location,
                "redis_namespace_id": outcome.redis_namespace_id,
                "replayed": not outcome.refused and outcome.failed is None,
                "journals": [i.to_json() for i in outcome.items],
            }
        )
        return
    ns = outcome.redis_namespace_id or "none"
    typer.echo(f"Redis namespace {{{outcome.prefix}}} at {outcome.location} (namespace id {ns})")
    if not outcome.items:
        typer.echo("no journals found: nothing to replay")
    for item in outcome.items:
        path = item.file.path
        if item.status in ("replayed", "failed"):
            report = item.report or ReplayReport()
            verb = "replayed" if item.status == "replayed" else "partly replayed"
            typer.echo(
                f"{path}: {verb} {_count(report.entries, 'entry', 'entries')} onto "
                f"namespace {item.namespace_id}"
            )
            typer.echo(
                f"  records      {report.records} "
                f"({_count(report.duplicates, 'batch', 'batches')} already applied)"
            )
            typer.echo(
                f"  credentials  {report.credentials_written} written, "
                f"{report.credentials_kept_newer} kept newer, "
                f"{report.credentials_dropped} dropped (node gone)"
            )
            if item.file.problem is not None and item.status == "replayed":
                typer.echo(f"  dropped      {item.file.problem}")
            if item.removed:
                typer.echo("  removed      (fully replayed)")
            elif item.status == "replayed":
                typer.echo("  left         cleared")
                if item.reason is not None:
                    typer.echo(f"  note         {item.reason}")
        elif item.status == "empty":
            typer.echo(f"{path}: empty, nothing to replay")
        elif item.status == "in-use":
            typer.echo(f"{path}: skipped, {item.reason}")
        elif item.status == "refused":
            typer.echo(f"{path}: refused: {item.reason}")
        elif item.status == "not-run":
            typer.echo(f"{path}: not replayed")
        else:  # "replay": planned, nothing was sent because another journal was refused
            typer.echo(f"{path}: not replayed ({_count(item.file.entries, 'entry', 'entries')})")


# ---------------------------------------------------------------------- restore


@attrs.frozen
class RestoreOutcome:
    prefix: str
    location: str
    existing: Existing
    written: bool
    restored_at: str = ""


def read_snapshot(path: Path) -> StoreSnapshot:
    """The snapshot in ``path``; exits 2 with one line when it is missing, unreadable or
    damaged (nothing was written then)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        fail(f"snapshot {path} does not exist", 2)
    except OSError as exc:
        fail(f"cannot read snapshot {path}: {exc.strerror or exc}", 2, exc)
    try:
        snapshot = snapshot_from_bytes(raw, str(path))
    except InvalidData as exc:
        fail(f"{exc} (nothing was written)", 2, exc)
    if not snapshot.namespace_id:
        fail(f"{path}: $.namespace_id: empty; a snapshot must name its namespace", 2)
    return snapshot


async def _existing(store: Store) -> Existing:
    meta = await store.meta.get()
    config = await store.config.get()
    pools = await store.pools.list()
    credentials = await store.credentials.list()
    return Existing(
        namespace_id=meta.get("namespace"),
        migrating=meta.get("migrating") or None,
        initialized_at=meta.get("initialized_at"),
        config_version=config.version,
        provider_types=len(pools.types),
        nodes=pools.node_count(),
        credentials=len(credentials),
    )


async def _restore(
    settings: Settings, snapshot: StoreSnapshot, source: Path, force: bool
) -> RestoreOutcome:
    prefix = settings.redis_prefix
    async with Store.open(settings, plugins=plugin_set()) as store:
        existing = await _existing(store)
        if not existing.empty and not force:
            return RestoreOutcome(prefix, _location(settings), existing, written=False)
        config_version = (await store.config.get()).version
        await store.pools.import_all(snapshot.pools, keep_live_state=False)
        with Progress("restoring credentials", len(snapshot.credentials)) as progress:
            for credential in snapshot.credentials:
                expected = None
                if not existing.empty:
                    current = await store.credentials.get(credential.provider_type, credential.uuid)
                    expected = current.version if current is not None else None
                await store.credentials.put(credential, expected)
                progress.advance()
        try:
            await store.config.put(snapshot.config.document, config_version)
        except VersionConflict:
            fail(
                f"config of namespace {{{prefix}}} changed while restore ran (an admin edit "
                "or another tool?); the meta marker was not written — check with `cfgctl "
                "status` and run restore again with --force",
                1,
            )
        if snapshot.system_prompt is not None:
            await store.system_prompt.put(snapshot.system_prompt)
        await store.custom_models.put_all(snapshot.custom_models)
        await store.plugin_config.put(snapshot.plugins)
        if snapshot.password is not None:
            await store.password.put_stored(snapshot.password)
        if snapshot.usage_cache is not None:
            await store.usage_cache.put(snapshot.usage_cache)
        restored_at = iso_ms(now_ms())
        meta = {
            "schema": str(SCHEMA_VERSION),
            "namespace": snapshot.namespace_id,
            "restored_at": restored_at,
            "restored_from": str(source),
            "restored_revision": str(snapshot.revision),
        }
        if existing.migrating is not None:
            meta["migrating"] = ""  # everything a migration wrote is replaced
        # Last: the marker makes the namespace the snapshot's again.
        await store.meta.update(meta)
        return RestoreOutcome(prefix, _location(settings), existing, True, restored_at)


def _restore_command(
    snapshot_file: Path, redis_url: str | None, force: bool, as_json: bool
) -> None:
    snapshot = read_snapshot(snapshot_file)
    settings = redis_settings("restore", redis_url)
    prefix = settings.redis_prefix
    if snapshot.prefix != prefix and not force:
        reason = (
            f"snapshot {snapshot_file} was taken under key prefix {{{snapshot.prefix}}}, not "
            f"the configured {{{prefix}}}"
        )
        if as_json:
            emit_json({"restored": False, "redis_prefix": prefix, "reason": reason})
        fail(f"refusing to restore: {reason}. Nothing was written; --force restores anyway", 1)
    outcome = run(lambda: _restore(settings, snapshot, snapshot_file, force))
    if not outcome.written:
        found = outcome.existing.describe()
        if as_json:
            emit_json(
                {
                    "restored": False,
                    "redis_prefix": prefix,
                    "location": outcome.location,
                    "existing": found,
                }
            )
        fail(
            f"refusing to restore into namespace {{{prefix}}} at {outcome.location}: it is not "
            f"empty, it holds {'; '.join(found)}. Nothing was written; --force overwrites it",
            1,
        )
    _print_restore(outcome, snapshot, snapshot_file, force, as_json)


def _snapshot_counts(snapshot: StoreSnapshot) -> dict[str, int]:
    return {
        "provider_types": len(snapshot.pools.types),
        "nodes": snapshot.pools.node_count(),
        "credentials": len(snapshot.credentials),
        "custom_models": len(snapshot.custom_models),
        "plugins": len(snapshot.plugins.plugins),
    }


def _print_restore(
    outcome: RestoreOutcome, snapshot: StoreSnapshot, source: Path, force: bool, as_json: bool
) -> None:
    previous = outcome.existing.namespace_id
    forced = force and not outcome.existing.empty
    optional = {
        "system_prompt": snapshot.system_prompt is not None,
        "password": snapshot.password is not None,
        "usage_cache": snapshot.usage_cache is not None,
    }
    if as_json:
        emit_json(
            {
                "restored": True,
                "forced": forced,
                "redis_prefix": outcome.prefix,
                "location": outcome.location,
                "snapshot": str(source),
                "namespace_id": snapshot.namespace_id,
                "previous_namespace_id": previous,
                "snapshot_prefix": snapshot.prefix,
                "snapshot_revision": snapshot.revision,
                "snapshot_saved_at": iso_ms(snapshot.saved_at_ms),
                "restored_at": outcome.restored_at,
                "counts": _snapshot_counts(snapshot),
                "restored_optional": optional,
            }
        )
        return
    action = "restored (forced over existing data)" if forced else "restored"
    typer.echo(f"{action} namespace {{{outcome.prefix}}} at {outcome.location} from {source}")
    typer.echo(f"  namespace id      {snapshot.namespace_id}")
    if previous is not None and previous != snapshot.namespace_id:
        typer.echo(
            f"  replaced id       {previous} (instances on it will set their journals aside)"
        )
    typer.echo(
        f"  snapshot          revision {snapshot.revision}, saved {iso_ms(snapshot.saved_at_ms)}"
    )
    if snapshot.prefix != outcome.prefix:
        typer.echo(f"  snapshot prefix   {{{snapshot.prefix}}} (restored under --force)")
    for name, count in _snapshot_counts(snapshot).items():
        typer.echo(f"  {name.replace('_', ' '):<18}{count}")
    for name, present in optional.items():
        state = "restored" if present else "none in the snapshot"
        typer.echo(f"  {name.replace('_', ' '):<18}{state}")
    typer.echo("")
    typer.echo(
        f"Running instances that served namespace {snapshot.namespace_id} now recognise it "
        "and replay their journals; orphaned journals: `cfgctl journal list --state-dir DIR` "
        "and `cfgctl journal replay`."
    )


# ---------------------------------------------------------------------- helpers


def _location(settings: Settings) -> str:
    """Where the Redis namespace lives, any password hidden."""
    return redact_url(settings.redis_url or f"{settings.redis_host}:{settings.redis_port}")


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


# ---------------------------------------------------------------------- registration


@hookimpl
def cfgctl_register_commands(app: typer.Typer) -> None:
    """Add ``cfgctl journal list|replay`` and ``cfgctl restore``."""
    journal_app = typer.Typer(
        name="journal",
        help="Outage journals of the memory fallback: list them, replay orphaned ones.",
        no_args_is_help=True,
    )
    app.add_typer(journal_app, name="journal")

    @journal_app.command("list")
    def journal_list(
        state_dir: Annotated[
            Path,
            typer.Option(
                "--state-dir",
                help="A state directory, or the root of per-worker state directories.",
            ),
        ],
        json: JsonOption = False,
    ) -> None:
        """List the journals in a state directory and its direct subdirectories (read-only)."""
        _list(state_dir, json)

    @journal_app.command("replay")
    def journal_replay(
        state_dir: StateDirOption = None,
        journal: Annotated[
            Path | None, typer.Option("--journal", help="One journal file to replay.")
        ] = None,
        namespace_id: Annotated[
            str | None,
            typer.Option(
                "--namespace-id",
                help="Replay onto this namespace id (it must be the one Redis holds) "
                "whatever namespace the journal was written on.",
            ),
        ] = None,
        redis_url: RedisUrlOption = None,
        json: JsonOption = False,
    ) -> None:
        """Replay orphaned journals onto Redis, oldest first (safe to run twice)."""
        _replay_command(state_dir, journal, namespace_id, redis_url, json)

    @app.command("restore")
    def restore(
        snapshot: Annotated[
            Path, typer.Option("--snapshot", help="The snapshot file (snapshot.json).")
        ],
        redis_url: RedisUrlOption = None,
        force: Annotated[
            bool,
            typer.Option(
                "--force",
                help="Restore into a namespace that holds data, or from another key prefix.",
            ),
        ] = False,
        json: JsonOption = False,
    ) -> None:
        """Re-seed an emptied Redis namespace from a snapshot file."""
        _restore_command(snapshot, redis_url, force, json)
