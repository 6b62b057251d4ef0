"""Encoding a batch of hot-path records for the ``APPLY_RECORDS`` script, merged per node.

Records keep their order per node; runs of successes fold into one ``U`` op carrying a
count, runs of selections into the last one — the same result as applying them one by
one (see :mod:`cfgstore.model.records`), in far fewer arguments.

The records travel as **one** argument: every field (a node's type, uuid and op count,
each op's code and arguments) ended by ``\x1f``, which no field can hold (type names and
uuids may not, JSON text escapes control characters, the rest are digits, codes and ISO
times). The script builds each node's keys from the two key prefixes. One argument per
field, as before, made redis-py's command packing the largest per-node cost of a batch:
it appends each argument to a buffer of up to 6,000 bytes by copying the buffer (~2 µs an
argument), and records spread over 5,000 nodes name ~700 distinct nodes per 1,000 records
where 50 nodes name 50 (each node costing its type, uuid, count and two keys).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from cfgstore.model import records as rec
from cfgstore.model.batch_ids import parse_batch_id
from cfgstore.model.names import SEPARATOR
from cfgstore.model.timefmt import iso_ms
from cfgstore_redis.keys import Keys

Op = list[str]

LEGACY_ID_TTL_MS = 24 * 3600 * 1000
"""How long an applied batch's *legacy* id is remembered (journals written before batch
ids were sequenced, :mod:`cfgstore.model.batch_ids`)."""


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _iso(ms: int) -> str:
    return '"' + iso_ms(ms) + '"'  # ISO time text never needs JSON escaping


def _op(record: rec.NodeRecord, count: int) -> Op:
    """The script arguments of one record (``count`` folds a run of successes)."""
    at = str(record.at_ms)
    match record:
        case rec.Selected():
            return ["S", _iso(record.at_ms), str(record.seq)]
        case rec.Success():
            return ["U", str(count), at, _iso(record.at_ms)]
        case rec.Failure():
            message = _json(record.message) if record.message else ""
            return [
                "F",
                at,
                _iso(record.at_ms),
                message,
                str(record.max_error_count),
                "1" if record.immediate else "0",
            ]
        case rec.Cooldown():
            return [
                "C",
                at,
                _iso(record.at_ms),
                _json(record.message),
                str(record.max_error_count),
                _iso(record.recovery_at_ms),
            ]
        case rec.NeedRefresh():
            return ["N", at]
        case rec.Recovered():
            return ["R"]
        case rec.HealthCheckResult():
            return [
                "H",
                at,
                _iso(record.at_ms),
                "1" if record.ok else "0",
                _json(record.model) if record.model else "",
                _json(record.message or "Health check failed"),
                str(record.max_error_count),
                "1" if record.immediate else "0",
                "1" if record.reset_usage else "0",
            ]
    raise TypeError(f"unknown record type {type(record).__name__}")


def touched_nodes(records: Sequence[rec.NodeRecord]) -> list[str]:
    """``type/uuid`` of every node the records name, first appearance first (one text
    per distinct node, not per record)."""
    return [f"{t}/{u}" for t, u in dict.fromkeys((r.provider_type, r.uuid) for r in records)]


def pipeline_predecessors(op_ids: Sequence[str]) -> list[int]:
    """For batches sent in one pipeline, in order: the ``seq`` of the batch before each
    of the same instance and epoch (0: none, or a legacy id). A batch refused in the
    middle of a pipeline (out of memory) must not let a later one of its run move the
    mark past it: sent again, it would be taken for a duplicate."""
    last: dict[tuple[str, int], int] = {}
    out: list[int] = []
    for op_id in op_ids:
        batch = parse_batch_id(op_id)
        if batch is None:
            out.append(0)
            continue
        run = (batch.instance, batch.epoch)
        out.append(last.get(run, 0))
        last[run] = batch.seq
    return out


def encode(
    records: Sequence[rec.NodeRecord],
    keys: Keys,
    op_id: str,
    head: str,
    namespace_id: str = "",
    after: int = 0,
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of one ``APPLY_RECORDS`` call for ``records``; a non-empty
    ``namespace_id`` makes the script refuse a namespace with another (or no) id. A
    sequenced ``op_id`` is checked against its instance's mark for its epoch in
    ``{p}:batches``, a legacy one against its own ``{p}:op:<id>`` key (kept 24 h).
    ``after`` (a sequenced id only; 0: none) is the ``seq`` of the batch of the same
    instance and epoch sent just before this one in the same pipeline: unless that one
    is applied (the mark reached it), this one is not applied either (see
    :func:`pipeline_predecessors`).

    Runs are folded before anything is formatted: per node, a run of successes becomes
    its last record and a count, a run of selections its last record. The records are
    the last argument, one text (see the module docstring). A record whose type or uuid
    holds ``\x1f`` names no stored node (no store accepts such a name) and is left out,
    as the script would find nothing to change."""
    batch_id = parse_batch_id(op_id)
    if batch_id is None:
        script_keys = [keys.operation(op_id), keys.revision, keys.meta]
        args: list[str | int] = ["", LEGACY_ID_TTL_MS, 0, 0]
    else:
        script_keys = [keys.batches, keys.revision, keys.meta]
        args = [batch_id.instance, batch_id.epoch, batch_id.seq, after]
    fields: list[str] = []
    for (provider_type, uuid), runs in rec.fold_runs(records).items():
        if SEPARATOR in provider_type or SEPARATOR in uuid:
            continue
        fields += (provider_type, uuid, str(len(runs)))
        for record, count in runs:
            fields += _op(record, count)
    fields.append("")  # every field ends with the separator
    args += [
        keys.channel,
        head,
        namespace_id,
        keys.node("", "")[:-1],  # "{p}:node:": the script appends "<type>:<uuid>"
        keys.forward("", "")[:-1],
        SEPARATOR.join(fields),
    ]
    return script_keys, args
