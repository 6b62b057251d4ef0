"""Encoding a batch of hot-path records for the ``APPLY_RECORDS`` script, merged per node.

Records keep their order per node; runs of successes fold into one ``U`` op carrying a
count, runs of selections into the last one — the same result as applying them one by
one (see :mod:`cfgstore.model.records`), in far fewer arguments.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from cfgstore.model import records as rec
from cfgstore.model.timefmt import iso_ms
from cfgstore_redis.keys import Keys

Op = list[str | int]

OPERATION_TTL_MS = 24 * 3600 * 1000
"""How long an applied batch's id is remembered (a lost reply is re-sent well within it)."""


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _op(record: rec.NodeRecord) -> Op:
    at = str(record.at_ms)
    at_iso = _json(iso_ms(record.at_ms))
    match record:
        case rec.Selected():
            return ["S", at_iso, str(record.seq)]
        case rec.Success():
            return ["U", 1, at, at_iso]
        case rec.Failure():
            message = _json(record.message) if record.message else ""
            return [
                "F",
                at,
                at_iso,
                message,
                str(record.max_error_count),
                "1" if record.immediate else "0",
            ]
        case rec.Cooldown():
            return [
                "C",
                at,
                at_iso,
                _json(record.message),
                str(record.max_error_count),
                _json(iso_ms(record.recovery_at_ms)),
            ]
        case rec.NeedRefresh():
            return ["N", at]
        case rec.Recovered():
            return ["R"]
        case rec.HealthCheckResult():
            return [
                "H",
                at,
                at_iso,
                "1" if record.ok else "0",
                _json(record.model) if record.model else "",
                _json(record.message or "Health check failed"),
                str(record.max_error_count),
                "1" if record.immediate else "0",
                "1" if record.reset_usage else "0",
            ]
    raise TypeError(f"unknown record type {type(record).__name__}")


def _fold(ops: list[Op], op: Op) -> None:
    last = ops[-1] if ops else None
    if last is not None and last[0] == op[0] == "U":
        last[1] = int(last[1]) + 1
        last[2], last[3] = op[2], op[3]
    elif last is not None and last[0] == op[0] == "S":
        ops[-1] = op
    else:
        ops.append(op)


def encode(
    records: Sequence[rec.NodeRecord], keys: Keys, op_id: str, head: str
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of one ``APPLY_RECORDS`` call for ``records``."""
    per_node: dict[tuple[str, str], list[Op]] = {}
    for record in records:
        _fold(per_node.setdefault((record.provider_type, record.uuid), []), _op(record))
    script_keys = [keys.operation(op_id), keys.revision]
    args: list[str | int] = [OPERATION_TTL_MS, keys.channel, head]
    for (provider_type, uuid), ops in per_node.items():
        script_keys += [keys.node(provider_type, uuid), keys.forward(provider_type, uuid)]
        args += [len(ops), keys.node(provider_type, ""), keys.forward(provider_type, "")]
        for op in ops:
            args += op
    return script_keys, args
