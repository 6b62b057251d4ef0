"""Journal entries: what they hold, and replaying them onto the shared storage (DESIGN §3).

Six kinds of entry:

``records``
    ``data`` is a list of hot-path records (:mod:`cfgstore.model.record_codec`); the entry's
    ``op_id`` is the batch's operation id (``<instance>:<epoch>:<seq>``,
    :mod:`cfgstore.model.batch_ids`; a random legacy id in journals written before). Replay
    sends the batch under that same id, in journal order, and the storage records it
    atomically with the writes: a batch applied before (its reply was lost, or an
    interrupted replay got that far) is recognised and skipped. Increments are deltas, so
    replaying onto whatever the storage holds now is exact.
``credential``
    ``data`` is ``{"credential": <credential>, "expected_version": <version or null>}``: a
    refresh made during an outage, against the version it read. Replay writes it with that
    version; on a conflict (someone refreshed meanwhile) the credential with the later
    expiry is kept. A credential whose node is gone is dropped with a warning.
``logout``
    ``data`` is ``{"digest": <sha256 hex of the session token>}``: an admin logout made
    during an outage (the raw token is never journaled). Replay deletes that session, so
    the instances that still remembered it refuse it from then on; deleting a session
    that is gone already is harmless.
``traffic``
    ``data`` is a list of traffic counts (:class:`cfgstore.model.traffic.TrafficCount`,
    ``to_json``) the console's charts were to get during an outage; ``op_id`` is the batch
    id of the instance's traffic (``<instance id>-t:<epoch>:<seq>``). Replay adds them
    under that id (``cfgstore_replica_add_traffic``): a batch Redis had applied already
    (its reply was lost) is skipped, so no count is lost or doubled.
``potluck``
    ``data`` is a list of api-potluck token uses (:class:`cfgstore.model.potluck.TokenUse`,
    ``to_json``) of requests finished during an outage; ``op_id`` is the batch id of the
    instance's potluck writer (``<instance id>-k:<epoch>:<seq>``). Replay adds them under
    that id (``cfgstore_replica_add_potluck_tokens``), exactly once like traffic.
``usage-stats``
    ``data`` is a list of model usage counts (:class:`cfgstore.model.usage_stats.UsageCount`,
    ``to_json``), ``op_id`` a batch id of the instance's usage writer
    (``<instance id>-u:<epoch>:<seq>``); replayed like ``traffic``
    (``cfgstore_replica_add_usage_stats``).

Consecutive ``records`` entries are sent pipelined, many per round trip
(:data:`PIPELINE_ENTRIES`), so a replay takes about as long as the outage that made the
journal, not one round trip per entry.

Used by the instance itself on recovery and by ``cfgctl journal replay`` for orphaned
journals; both clear the journal chunk by chunk as entries land, so an interrupted replay
restarts where it stopped, and anything sent twice is recognised.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import attrs

from cfgstore.adapters.backend import Operations
from cfgstore.errors import InvalidData, NotFound, VersionConflict
from cfgstore.model.credentials import Credential
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.potluck import TokenUse
from cfgstore.model.record_codec import record_from_json, record_to_json
from cfgstore.model.records import NodeRecord
from cfgstore.model.snapshot import credential_from_json, credential_to_json
from cfgstore.model.traffic import TrafficCount
from cfgstore.model.usage_stats import UsageCount
from cfgstore_memory.journal import Journal, JournalEntry

log = logging.getLogger("cfgstore.memory.replay")

RECORDS = "records"
CREDENTIAL = "credential"
LOGOUT = "logout"
TRAFFIC = "traffic"
POTLUCK = "potluck"
USAGE_STATS = "usage-stats"
_DIGEST = re.compile(r"[0-9a-f]{64}")
CHUNK_ENTRIES = 256
"""Entries replayed between two clears of the journal."""
PIPELINE_ENTRIES = 64
PIPELINE_RECORDS = 20_000
"""Consecutive ``records`` entries sent in one round trip (pipelined, each batch still
checked against its own operation id): at most this many entries and records."""


def records_data(records: Sequence[NodeRecord]) -> JSONValue:
    return [record_to_json(r) for r in records]


def credential_data(credential: Credential, expected_version: str | None) -> JSONValue:
    return {"credential": credential_to_json(credential), "expected_version": expected_version}


def entry_records(entry: JournalEntry, source: str) -> list[NodeRecord]:
    """The records of a ``records`` entry; :class:`InvalidData` when it is malformed."""
    where = f"{source} entry {entry.seq}"
    if not isinstance(entry.data, list):
        raise InvalidData(where, "$", "expected a list of records")
    return [record_from_json(doc, where, f"$[{i}]") for i, doc in enumerate(entry.data)]


def entry_credential(entry: JournalEntry, source: str) -> tuple[Credential, str | None]:
    where = f"{source} entry {entry.seq}"
    data = entry.data
    if not isinstance(data, dict) or set(data) != {"credential", "expected_version"}:
        raise InvalidData(where, "$", "expected {credential, expected_version}")
    expected = data["expected_version"]
    if expected is not None and not isinstance(expected, str):
        raise InvalidData(where, "$.expected_version", "expected a string or null")
    return credential_from_json(data["credential"], where, "$.credential"), expected


class _JsonItem(Protocol):
    def to_json(self) -> JSONValue: ...


Item = TypeVar("Item")


def items_data(items: Sequence[_JsonItem]) -> JSONValue:
    """A batch of counted items (traffic counts, potluck token uses, usage counts) as the
    data of its journal entry."""
    return [item.to_json() for item in items]


traffic_data = potluck_data = usage_data = items_data


def _entry_items(
    entry: JournalEntry, source: str, what: str, read: Callable[[JSONValue, str], Item]
) -> list[Item]:
    where = f"{source} entry {entry.seq}"
    if not isinstance(entry.data, list):
        raise InvalidData(where, "$", f"expected a list of {what}")
    return [read(doc, where) for doc in entry.data]


def entry_traffic(entry: JournalEntry, source: str) -> list[TrafficCount]:
    """The counts of a ``traffic`` entry; :class:`InvalidData` when malformed."""
    return _entry_items(entry, source, "traffic counts", TrafficCount.from_json)


def entry_potluck(entry: JournalEntry, source: str) -> list[TokenUse]:
    """The uses of a ``potluck`` entry; :class:`InvalidData` when malformed."""
    return _entry_items(entry, source, "api-potluck token uses", TokenUse.from_json)


def entry_usage(entry: JournalEntry, source: str) -> list[UsageCount]:
    """The counts of a ``usage-stats`` entry; :class:`InvalidData` when malformed."""
    return _entry_items(entry, source, "usage counts", UsageCount.from_json)


def logout_data(digest: str) -> JSONValue:
    return {"digest": digest}


def entry_logout(entry: JournalEntry, source: str) -> str:
    """The session digest of a ``logout`` entry; :class:`InvalidData` when malformed."""
    data = entry.data
    digest = data.get("digest") if isinstance(data, dict) and set(data) == {"digest"} else None
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InvalidData(f"{source} entry {entry.seq}", "$", 'expected {"digest": <sha256 hex>}')
    return digest


@attrs.define
class ReplayReport:
    entries: int = 0
    records: int = 0
    duplicates: int = 0
    """Record batches the storage had already applied (sent before, reply lost)."""
    credentials_written: int = 0
    credentials_kept_newer: int = 0
    """Journaled refreshes dropped because the stored credential expires later."""
    credentials_dropped: int = 0
    """Journaled refreshes whose node no longer exists."""
    logouts: int = 0
    traffic_batches: int = 0
    """Traffic batches added (those Redis had already applied are not counted)."""
    potluck_batches: int = 0
    """api-potluck token batches added (likewise)."""
    usage_batches: int = 0
    """Model usage batches added (likewise)."""


OnRecords = Callable[[list[NodeRecord], str], None]
"""Told of each ``records`` batch the storage acknowledged during a replay (records, op id)."""


async def replay_entry(
    entry: JournalEntry,
    ops: Operations,
    namespace_id: str,
    report: ReplayReport,
    source: str,
    on_records: OnRecords | None = None,
) -> None:
    """Apply one entry (see the module docstring); storage errors propagate."""
    if entry.kind == RECORDS:
        records = entry_records(entry, source)
        applied = await ops["cfgstore_replica_apply"](
            records=records, op_id=entry.op_id, namespace_id=namespace_id
        )
        if on_records is not None:
            on_records(records, entry.op_id)
        report.records += len(records)
        report.duplicates += applied.duplicate
    elif entry.kind == CREDENTIAL:
        credential, expected = entry_credential(entry, source)
        await _replay_credential(credential, expected, ops, report)
    elif entry.kind == LOGOUT:
        await ops["cfgstore_sessions_delete_digest"](digest=entry_logout(entry, source))
        report.logouts += 1
    elif entry.kind == TRAFFIC:
        counts = entry_traffic(entry, source)
        if "cfgstore_replica_add_traffic" not in ops:
            log.warning("journaled traffic dropped: the storage keeps no traffic counts")
        elif await ops["cfgstore_replica_add_traffic"](counts=counts, op_id=entry.op_id):
            report.traffic_batches += 1
    elif entry.kind == POTLUCK:
        uses = entry_potluck(entry, source)
        if "cfgstore_replica_add_potluck_tokens" not in ops:
            log.warning("journaled api-potluck tokens dropped: the storage keeps no keys")
        elif await ops["cfgstore_replica_add_potluck_tokens"](uses=uses, op_id=entry.op_id):
            report.potluck_batches += 1
    elif entry.kind == USAGE_STATS:
        counts_u = entry_usage(entry, source)
        if "cfgstore_replica_add_usage_stats" not in ops:
            log.warning("journaled usage statistics dropped: the storage keeps none")
        elif await ops["cfgstore_replica_add_usage_stats"](counts=counts_u, op_id=entry.op_id):
            report.usage_batches += 1
    else:
        raise InvalidData(f"{source} entry {entry.seq}", "kind", f"unknown kind {entry.kind!r}")
    report.entries += 1


async def _replay_credential(
    credential: Credential, expected: str | None, ops: Operations, report: ReplayReport
) -> None:
    ident = f"{credential.provider_type}/{credential.uuid}"
    for _ in range(5):  # each conflict means another writer got in between; settle quickly
        try:
            await ops["cfgstore_credentials_put"](credential=credential, expected_version=expected)
        except VersionConflict:
            current: Credential | None = await ops["cfgstore_credentials_get"](
                provider_type=credential.provider_type, uuid=credential.uuid
            )
            if current is not None and (current.expiry_ms() or 0) >= (credential.expiry_ms() or 0):
                log.info("journaled refresh of %s superseded by a later one; kept that", ident)
                report.credentials_kept_newer += 1
                return
            expected = current.version if current is not None else None
            continue
        except NotFound:
            log.warning("journaled refresh of %s dropped: the node no longer exists", ident)
            report.credentials_dropped += 1
            return
        report.credentials_written += 1
        return
    raise VersionConflict("credential", ident, expected, None)


async def replay_journal(
    journal: Journal,
    ops: Operations,
    namespace_id: str,
    *,
    between_chunks: Callable[[], Awaitable[None]] | None = None,
    report: ReplayReport | None = None,
    on_records: OnRecords | None = None,
) -> ReplayReport:
    """Replay every entry of ``journal`` in order, clearing it chunk by chunk. Storage
    errors propagate with the journal holding exactly the entries not yet cleared (some
    of them possibly applied: their operation ids make a second replay skip them).

    ``between_chunks`` runs after each full chunk only (it may append entries): under a
    steady load every chunk brought one new entry, and a replay that waited for an empty
    journal never ended while the load lasted; the last, partial chunk empties it."""
    report = report or ReplayReport()
    source = f"journal {journal.path}"
    while True:
        chunk = journal.entries()[:CHUNK_ENTRIES]
        if not chunk:
            return report
        for group in _pipeline_groups(chunk, ops):
            if len(group) == 1:
                await replay_entry(group[0], ops, namespace_id, report, source, on_records)
            else:
                await _replay_records(group, ops, namespace_id, report, source, on_records)
        await journal.clear_through(chunk[-1].seq)
        if between_chunks is not None and len(chunk) == CHUNK_ENTRIES:
            await between_chunks()


def _pipeline_groups(entries: Sequence[JournalEntry], ops: Operations) -> list[list[JournalEntry]]:
    """``entries`` in order, consecutive ``records`` entries grouped for one round trip
    (when the storage offers ``cfgstore_replica_apply_many``), every other entry alone."""
    pipelined = "cfgstore_replica_apply_many" in ops
    groups: list[list[JournalEntry]] = []
    records = 0
    for entry in entries:
        size = len(entry.data) if isinstance(entry.data, list) else 1
        group = groups[-1] if groups else None
        if (
            pipelined
            and entry.kind == RECORDS
            and group is not None
            and group[-1].kind == RECORDS
            and len(group) < PIPELINE_ENTRIES
            and records + size <= PIPELINE_RECORDS
        ):
            group.append(entry)
            records += size
        else:
            groups.append([entry])
            records = size
    return groups


async def _replay_records(
    entries: Sequence[JournalEntry],
    ops: Operations,
    namespace_id: str,
    report: ReplayReport,
    source: str,
    on_records: OnRecords | None,
) -> None:
    """Send ``records`` entries in one round trip, each under its own operation id."""
    batches = [(entry_records(entry, source), entry.op_id) for entry in entries]
    outcomes = await ops["cfgstore_replica_apply_many"](batches=batches, namespace_id=namespace_id)
    for (records, op_id), applied in zip(batches, outcomes, strict=True):
        if on_records is not None:
            on_records(records, op_id)
        report.records += len(records)
        report.duplicates += applied.duplicate
        report.entries += 1
