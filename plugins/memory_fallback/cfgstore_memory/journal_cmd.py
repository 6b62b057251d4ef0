"""``cfgctl journal list`` and ``cfgctl journal replay``: the outage journals of the memory
fallback, seen and replayed from outside the instances that wrote them.

``cfgctl journal list --state-dir DIR``
    Every outage journal in ``DIR`` and in its direct subdirectories (a gateway gives each
    worker its own state directory below one root): files named ``journal`` and set-aside
    ones ``journal.orphan-<namespace id>-<ms>`` (see :mod:`cfgstore_memory.fallback`). Per
    journal: the instance id (from the ``instance.json`` beside it), entries, records,
    bytes, the oldest entry, and whether it is *in use* (its ``.lock`` is held by a live
    process) or *orphaned*. Strictly read-only: files are read with
    :func:`~cfgstore_memory.journal.inspect_file` and
    :meth:`~cfgstore_memory.state_dir.StateDir.read`, never opened as a
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

Exit codes as everywhere in cfgctl: 0 done, 1 refused, 2 unusable input or storage (a
missing or damaged journal, Redis unreachable). Nothing here prints a secret: journal
entries (records, credential documents) never reach the output, only their counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import re
from pathlib import Path
from typing import Annotated, Any

import attrs
import typer

from cfgstore.adapters.settings import Settings
from cfgstore.adapters.store import Store
from cfgstore.cli.common import (
    INPUT_ERRORS,
    JsonOption,
    RedisUrlOption,
    count_noun,
    emit_json,
    fail,
    plugin_set,
    redis_location,
    redis_settings,
    require_folder,
    run,
)
from cfgstore.cli.status import format_age_ms
from cfgstore.errors import CfgStoreError, InvalidData, StorageUnavailable
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore_memory.journal import Journal, inspect_file
from cfgstore_memory.replay import CREDENTIAL, RECORDS, ReplayReport, replay_journal
from cfgstore_memory.state_dir import IDENTITY_FILE, JOURNAL_FILE, StateDir

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
    identity: StateDir | None
    """The state directory beside the journal as its ``instance.json`` describes it
    (``None`` when it has none, or a damaged one: see ``identity_problem``)."""
    identity_problem: str | None
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

    @property
    def instance_id(self) -> str | None:
        return self.identity.instance_id if self.identity is not None else None

    @property
    def namespaces(self) -> dict[str, str]:
        """The namespace id the instance last ran on, per key prefix."""
        return self.identity.namespaces if self.identity is not None else {}

    def to_json(self, now: int) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "instance_id": self.instance_id,
            "namespaces": self.namespaces,
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
            "identity_problem": self.identity_problem,
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


def read_identity(directory: Path) -> tuple[StateDir | None, str | None]:
    """The state directory's identity (``None`` without an ``instance.json``) and what is
    wrong with it; read-only: a damaged one is reported, never repaired or replaced."""
    try:
        return StateDir.read(directory), None
    except InvalidData as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"cannot read {directory / IDENTITY_FILE}: {exc.strerror or exc}"


def inspect_journal(path: Path) -> JournalFile:
    """Read one journal file (see :class:`JournalFile`). Raises :class:`OSError` when the
    file cannot be read."""
    match = ORPHAN_NAME.fullmatch(path.name)
    in_use = lock_held(path)
    identity, identity_problem = read_identity(path.parent)
    found = inspect_file(path)
    records = credentials = 0
    for entry in found.entries:
        if entry.kind == RECORDS and isinstance(entry.data, list):
            records += len(entry.data)
        elif entry.kind == CREDENTIAL:
            credentials += 1
    problem = None
    if not found.starts_with_frame:
        problem = "not a cfgstore journal (the file does not start with a frame)"
    elif found.problem is not None and not in_use:
        if found.damaged_in_middle:
            problem = (
                f"damaged at offset {found.good_bytes} ({found.problem}), followed by "
                f"{found.later_frames} frames that check out"
            )
        else:
            problem = (
                f"torn tail at offset {found.good_bytes} ({found.problem}): "
                f"{found.size - found.good_bytes} bytes of a write cut short, never "
                "acknowledged"
            )
    return JournalFile(
        path=path,
        orphan_namespace=match["namespace"] if match else None,
        set_aside_at_ms=int(match["ms"]) if match else None,
        identity=identity,
        identity_problem=identity_problem,
        in_use=in_use,
        size=found.size,
        entries=len(found.entries),
        records=records,
        credentials=credentials,
        oldest_at_ms=found.entries[0].at_ms if found.entries else None,
        good_bytes=found.good_bytes,
        problem=problem,
        damage=None if in_use else found.problem,
        later_frames=0 if in_use else found.later_frames,
        is_journal=found.starts_with_frame,
    )


def read_journals(source: Path, *, single: bool) -> list[JournalFile]:
    """The journal file ``source`` (``single``) or every journal under the state directory
    ``source``, inspected. A subdirectory that cannot be read is a warning on stderr; a
    journal that cannot be read exits 2."""
    try:
        paths, warnings = ([source], []) if single else find_journals(source)
        files = [inspect_journal(p) for p in paths]
    except OSError as exc:
        fail(f"cannot read {exc.filename or source}: {exc.strerror or exc}", 2, exc)
    for warning in warnings:
        typer.echo(f"cfgctl: warning: {warning}", err=True)
    return files


# ---------------------------------------------------------------------- journal list


def _list(state_dir: Path, as_json: bool) -> None:
    require_folder(state_dir, "state directory")
    files = read_journals(state_dir, single=False)
    now = now_ms()
    if as_json:
        emit_json({"state_dir": str(state_dir), "journals": [f.to_json(now) for f in files]})
        return
    if not files:
        typer.echo(f"no journals under {state_dir}")
        return
    in_use = sum(1 for f in files if f.in_use)
    typer.echo(
        f"{count_noun(len(files), 'journal')} under {state_dir} "
        f"({in_use} in use, {len(files) - in_use} orphaned)"
    )
    for f in files:
        typer.echo(str(f.path))
        typer.echo(f"  instance     {f.instance_id or '(no instance.json)'}")
        if f.in_use:
            state = "in use by a running instance"
        elif f.orphan_namespace is not None:
            when = iso_ms(f.set_aside_at_ms) if f.set_aside_at_ms else "?"
            state = f"orphaned: set aside from namespace {f.orphan_namespace} at {when}"
        else:
            state = "orphaned: no running instance holds it"
        typer.echo(f"  state        {state}")
        typer.echo(
            f"  entries      {f.entries} ({count_noun(f.records, 'record')}, "
            f"{count_noun(f.credentials, 'credential')})"
        )
        typer.echo(f"  size         {count_noun(f.size, 'byte')}")
        if f.oldest_at_ms is not None:
            age = format_age_ms(max(now - f.oldest_at_ms, 0))
            typer.echo(f"  oldest       {iso_ms(f.oldest_at_ms)} ({age} ago)")
        if f.problem is not None:
            typer.echo(f"  problem      {f.problem}")
        if f.identity_problem is not None:
            typer.echo(f"  warning      {f.identity_problem}")


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
            "instance_id": self.file.instance_id,
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
            f"damaged ({file.damage}), followed by {count_noun(file.later_frames, 'frame')} "
            "that check out; nothing was replayed. An instance opening it keeps the entries "
            "before the damage and sets the whole file aside for inspection",
        )
    if file.entries == 0:
        return ReplayItem(file, "empty")
    own = file.orphan_namespace or file.namespaces.get(prefix)
    target = explicit or own
    tag = f"{{{prefix}}}"
    if target is None:
        where = (
            f"{file.identity_problem}"
            if file.identity_problem
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
        result = ReplayRun(prefix, redis_location(settings), head.namespace_id, items)
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
    if state_dir is not None:
        require_folder(state_dir, "state directory")
    settings = redis_settings("journal replay", redis_url)
    source = journal if journal is not None else state_dir
    assert source is not None
    files = read_journals(source, single=single)
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
                f"{path}: {verb} {count_noun(report.entries, 'entry', 'entries')} onto "
                f"namespace {item.namespace_id}"
            )
            typer.echo(
                f"  records      {report.records} "
                f"({count_noun(report.duplicates, 'batch', 'batches')} already applied)"
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
            entries = count_noun(item.file.entries, "entry", "entries")
            typer.echo(f"{path}: not replayed ({entries})")


# ---------------------------------------------------------------------- registration


def register(app: typer.Typer) -> None:
    """Add ``cfgctl journal list`` and ``cfgctl journal replay``."""
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
