"""api-potluck keys (``configs/api-potluck-keys.json``, aiclient-protocols §5.2).

A key is kept as the JSON object the Node service writes (``{"id", "name", "createdAt",
"dailyLimit", "todayUsage", …, "usageHistory"}``): field order and unknown fields are
preserved, so a file read and written back is byte-identical. The functions here are the
one definition of every change (admission, tokens, resets, edits); backends apply them
to their copy (the file backend) or do the same steps natively (Redis, see
``redis-keys.md``).

Days are **Beijing dates** (UTC+8, ``YYYY-MM-DD``): a key whose ``lastResetDate`` is not
today's has its ``today*`` counters zeroed at its next admission or read, i.e. at 16:00 UTC.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

import attrs

from cfgstore.errors import InvalidData
from cfgstore.model import jsjson
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.timefmt import iso_ms

KEY_PREFIX = "maki_"
KEY_PATTERN = re.compile(r"^maki_[0-9a-f]{32}$")
DEFAULT_DAILY_LIMIT = 500
HISTORY_DAYS = 100
"""Dates of ``usageHistory`` kept per key (the newest)."""

BEIJING = timezone(timedelta(hours=8))

TODAY_FIELDS = (
    "todayUsage",
    "todayPromptTokens",
    "todayCompletionTokens",
    "todayTotalTokens",
    "todayCachedTokens",
)
"""Zeroed when the Beijing date changes."""
TOKEN_FIELDS = (
    "todayPromptTokens",
    "todayCompletionTokens",
    "todayTotalTokens",
    "todayCachedTokens",
    "totalPromptTokens",
    "totalCompletionTokens",
    "totalTokens",
    "totalCachedTokens",
    "maxQps",
    "maxRpm",
    "maxTps",
)
"""Zeroed by a token reset (request counts are kept)."""
BUCKET_FIELDS = (
    "requestCount",
    "promptTokens",
    "completionTokens",
    "totalTokens",
    "cachedTokens",
    "maxQps",
    "maxRpm",
    "maxTps",
)
BUCKET_TOKEN_FIELDS = BUCKET_FIELDS[1:]
SECTIONS = ("summary", "providers", "models")

Verdict = Literal["ok", "not_found", "disabled", "quota_exceeded"]

KeyDocument = dict[str, JSONValue]


def beijing_date(ms: int) -> str:
    """The Beijing (UTC+8) date of epoch ``ms``, ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(BEIJING).strftime("%Y-%m-%d")


def parse_day_ms(day: str) -> int:
    """Epoch ms of the start of Beijing date ``day`` (``YYYY-MM-DD``)."""
    return int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=BEIJING).timestamp() * 1000)


def new_key_id() -> str:
    """``maki_`` + 32 lowercase hex digits (16 random bytes)."""
    return KEY_PREFIX + secrets.token_hex(16)


def masked(key_id: str) -> str:
    """The key as the console shows it: ``maki_1a2b3c4…9f0e``."""
    return f"{key_id[:12]}...{key_id[-4:]}"


def new_key(key_id: str, name: str, daily_limit: int, now_ms: int) -> KeyDocument:
    """A new key, fields in the Node service's order."""
    return {
        "id": key_id,
        "name": name,
        "createdAt": iso_ms(now_ms),
        "dailyLimit": daily_limit,
        "todayUsage": 0,
        "totalUsage": 0,
        "todayPromptTokens": 0,
        "todayCompletionTokens": 0,
        "todayTotalTokens": 0,
        "todayCachedTokens": 0,
        "totalPromptTokens": 0,
        "totalCompletionTokens": 0,
        "totalTokens": 0,
        "totalCachedTokens": 0,
        "lastResetDate": beijing_date(now_ms),
        "lastUsedAt": None,
        "enabled": True,
        "maxQps": 0,
        "maxRpm": 0,
        "maxTps": 0,
        "usageHistory": {},
    }


@attrs.frozen
class Admission:
    """The answer of one admission: ``used`` (today's count after it, or at the refusal)
    and ``limit`` (0: unlimited); ``reset_date`` is the date the count belongs to."""

    verdict: Verdict
    used: int = 0
    limit: int = 0
    reset_date: str = ""

    @property
    def admitted(self) -> bool:
        return self.verdict == "ok"


@attrs.frozen
class TokenUse:
    """Tokens of one finished request, counted for ``key_id`` on Beijing date ``day``."""

    key_id: str
    provider: str
    model: str
    prompt: int = 0
    completion: int = 0
    cached: int = 0
    day: str = ""
    qps: float = 0
    rpm: float = 0
    tps: float = 0
    """The key's rates when the request finished (the caller's sliding window): the
    stored peaks (``maxQps``… of the key and of its buckets) rise to them."""

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    def peaks(self) -> dict[str, float]:
        return {"maxQps": self.qps, "maxRpm": self.rpm, "maxTps": self.tps}

    def to_json(self) -> dict[str, JSONValue]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, doc: JSONValue, source: str) -> TokenUse:
        """A use as :meth:`to_json` wrote it; :class:`InvalidData` when malformed."""
        names = [f.name for f in attrs.fields(cls)]
        if not isinstance(doc, dict) or set(doc) != set(names):
            raise InvalidData(source, "$", f"expected a token use {{{', '.join(names)}}}")
        for name in ("key_id", "provider", "model", "day"):
            if not isinstance(doc[name], str):
                raise InvalidData(source, f"$.{name}", "expected a string")
        for name in ("prompt", "completion", "cached", "qps", "rpm", "tps"):
            value = doc[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidData(source, f"$.{name}", "expected a number")
        return cls(**doc)


def raise_peak(node: dict[str, JSONValue], name: str, value: float, create: bool) -> None:
    """``node[name] = max(node[name], value)``; an absent peak is added when ``create`` or
    ``value`` is above 0."""
    current = node.get(name)
    if name not in node:
        if create or value > 0:
            node[name] = value
    elif not isinstance(current, int | float) or isinstance(current, bool) or current < value:
        node[name] = value


def as_int(value: JSONValue) -> int:
    """A stored counter as an int (absent, ``null`` or not a number: 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value)


def is_enabled(doc: Mapping[str, JSONValue]) -> bool:
    """JavaScript truthiness of ``enabled`` (absent is disabled, as in the Node service)."""
    value = doc.get("enabled")
    return bool(value) and value not in ("", 0)


def roll_day(doc: KeyDocument, today: str) -> None:
    """Zero today's counters when ``lastResetDate`` is not ``today``."""
    if doc.get("lastResetDate") != today:
        for name in TODAY_FIELDS:
            doc[name] = 0
        doc["lastResetDate"] = today


def admit(doc: KeyDocument | None, today: str, now_ms: int) -> Admission:
    """Check and count one request in place: the day rolled, then refused when disabled or
    ``dailyLimit > 0`` and ``todayUsage >= dailyLimit``, else ``todayUsage`` and
    ``totalUsage`` +1 and ``lastUsedAt`` now."""
    if doc is None:
        return Admission("not_found")
    if not is_enabled(doc):
        return Admission("disabled", as_int(doc.get("todayUsage")), as_int(doc.get("dailyLimit")))
    roll_day(doc, today)
    used, limit = as_int(doc.get("todayUsage")), as_int(doc.get("dailyLimit"))
    if limit > 0 and used >= limit:
        return Admission("quota_exceeded", used, limit, today)
    count_admission(doc, today, now_ms)
    return Admission("ok", used + 1, limit, today)


def count_admission(doc: KeyDocument, today: str, now_ms: int) -> None:
    """The counting half of :func:`admit`, without the checks (re-applied to a fresh copy)."""
    roll_day(doc, today)
    doc["todayUsage"] = as_int(doc.get("todayUsage")) + 1
    doc["totalUsage"] = as_int(doc.get("totalUsage")) + 1
    doc["lastUsedAt"] = iso_ms(now_ms)


def bucket_increments(use: TokenUse) -> dict[str, int]:
    return {
        "requestCount": 1,
        "promptTokens": use.prompt,
        "completionTokens": use.completion,
        "totalTokens": use.total,
        "cachedTokens": use.cached,
    }


def key_increments(use: TokenUse) -> dict[str, int]:
    """Top-level counters a token use adds to (the ``today*`` ones for its day)."""
    return {
        "todayPromptTokens": use.prompt,
        "todayCompletionTokens": use.completion,
        "todayTotalTokens": use.total,
        "todayCachedTokens": use.cached,
        "totalPromptTokens": use.prompt,
        "totalCompletionTokens": use.completion,
        "totalTokens": use.total,
        "totalCachedTokens": use.cached,
    }


def history_paths(use: TokenUse) -> list[tuple[str, ...]]:
    """The history buckets a use counts in: the day's summary, its provider, its model."""
    return [
        (use.day, "summary"),
        (use.day, "providers", use.provider),
        (use.day, "models", use.model),
    ]


def add_tokens(doc: KeyDocument, use: TokenUse) -> None:
    """Add one finished request's tokens (today's counters only while ``lastResetDate``
    is the use's day) and count it in the day's history buckets."""
    today = doc.get("lastResetDate") == use.day
    for name, amount in key_increments(use).items():
        if today or not name.startswith("today"):
            doc[name] = as_int(doc.get(name)) + amount
    history = doc.get("usageHistory")
    if not isinstance(history, dict):
        history = doc["usageHistory"] = {}
    for name, value in use.peaks().items():
        raise_peak(doc, name, value, create=False)
    for path in history_paths(use):
        bucket = _bucket_at(history, path)
        for name, amount in bucket_increments(use).items():
            bucket[name] = as_int(bucket.get(name)) + amount
        for name, value in use.peaks().items():
            raise_peak(bucket, name, value, create=True)
    trim_history(history)


def _bucket_at(history: dict[str, JSONValue], path: tuple[str, ...]) -> dict[str, JSONValue]:
    """The bucket at ``path`` (created with zeroed fields; a legacy numeric bucket is read
    as its ``requestCount``)."""
    node = history
    for step in path[:-1]:
        child = node.get(step)
        if not isinstance(child, dict):
            child = node[step] = {}
        node = child
    bucket = node.get(path[-1])
    if isinstance(bucket, int | float) and not isinstance(bucket, bool):
        bucket = {**dict.fromkeys(BUCKET_FIELDS, 0), "requestCount": int(bucket)}
    elif not isinstance(bucket, dict):
        bucket = dict.fromkeys(BUCKET_FIELDS, 0)
    node[path[-1]] = bucket
    return bucket


def trim_history(history: dict[str, JSONValue]) -> None:
    """Keep the newest :data:`HISTORY_DAYS` dates."""
    if len(history) > HISTORY_DAYS:
        for day in sorted(history)[: len(history) - HISTORY_DAYS]:
            del history[day]


def reset_today(doc: KeyDocument, today: str) -> None:
    """Zero today's counters and today's history bucket."""
    for name in TODAY_FIELDS:
        doc[name] = 0
    doc["lastResetDate"] = today
    history = doc.get("usageHistory")
    if isinstance(history, dict) and today in history:
        history[today] = {"summary": dict.fromkeys(BUCKET_FIELDS, 0)}


def reset_tokens(doc: KeyDocument) -> None:
    """Zero every token counter and peak of the key and of its history (counts kept)."""
    for name in TOKEN_FIELDS:
        if name in doc:
            doc[name] = 0
    history = doc.get("usageHistory")
    if isinstance(history, dict):
        for bucket in _buckets(history):
            for name in BUCKET_TOKEN_FIELDS:
                if name in bucket:
                    bucket[name] = 0


def _buckets(history: Mapping[str, JSONValue]) -> list[dict[str, JSONValue]]:
    found: list[dict[str, JSONValue]] = []
    for day in history.values():
        if not isinstance(day, dict):
            continue
        summary = day.get("summary")
        if isinstance(summary, dict):
            found.append(summary)
        for section in SECTIONS[1:]:
            named = day.get(section)
            if isinstance(named, dict):
                found.extend(b for b in named.values() if isinstance(b, dict))
    return found


def regenerated(doc: KeyDocument, new_id: str, now_ms: int) -> KeyDocument:
    """A copy of ``doc`` under ``new_id``, with ``regeneratedAt`` and ``regeneratedFrom``."""
    old_id = str(doc.get("id", ""))
    copy: KeyDocument = jsjson.loads(jsjson.dumps(doc), "key")
    copy["id"] = new_id
    copy["regeneratedAt"] = iso_ms(now_ms)
    copy["regeneratedFrom"] = old_id[:12] + "..."
    return copy


Edit = Literal["name", "dailyLimit", "toggle"]


def check_limit(value: object, minimum: int = 0) -> int:
    """A daily limit the admin API accepts: an integer ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise InvalidData("dailyLimit", repr(value), f"must be a number ≥ {minimum}")
    if isinstance(value, float) and not value.is_integer():
        raise InvalidData("dailyLimit", repr(value), "must be a whole number")
    return int(value)


# -- the file ---------------------------------------------------------------------------------


@attrs.define
class PotluckKeys:
    """The whole file: ``keys`` in file order; ``extra`` the file's other top-level
    members (kept, written back after ``keys``)."""

    keys: dict[str, KeyDocument] = attrs.field(factory=dict)
    extra: dict[str, JSONValue] = attrs.field(factory=dict)
    keys_first: bool = True


def keys_from_bytes(raw: bytes, source: str) -> PotluckKeys:
    data = jsjson.loads(raw, source)
    if not isinstance(data, dict):
        raise InvalidData(source, "$", "must be an object with a 'keys' object")
    keys = data.get("keys", {})
    if not isinstance(keys, dict) or not all(isinstance(v, dict) for v in keys.values()):
        raise InvalidData(source, "$.keys", "must be an object of key objects")
    extra = {k: v for k, v in data.items() if k != "keys"}
    first = next(iter(data), "keys") == "keys"
    return PotluckKeys(dict(keys), extra, first)


def keys_to_bytes(data: PotluckKeys) -> bytes:
    """``JSON.stringify(store, null, 2)``: the bytes the Node service writes."""
    body: dict[str, JSONValue] = (
        {"keys": data.keys, **data.extra} if data.keys_first else {**data.extra, "keys": data.keys}
    )
    return jsjson.dump_bytes(body)


# -- flattening (the Redis hash of a key) ----------------------------------------------------


def pointer(path: Sequence[str]) -> str:
    """RFC 6901 JSON pointer of ``path`` (``/usageHistory/2026-01-01/summary/requestCount``)."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)


def unpointer(text: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in text.split("/")[1:]]


def flatten(doc: Mapping[str, JSONValue]) -> dict[str, str]:
    """Every scalar reachable through objects, by pointer, as JSON text (arrays and empty
    objects stay in the skeleton)."""
    out: dict[str, str] = {}

    def walk(node: Mapping[str, JSONValue], path: list[str]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, [*path, key])
            elif not isinstance(value, list):
                out[pointer([*path, key])] = jsjson_scalar(value)

    walk(doc, [])
    return out


def jsjson_scalar(value: JSONValue) -> str:
    import json

    if isinstance(value, float):
        return jsjson.format_number(value)
    return json.dumps(value, ensure_ascii=False)


_RANK = {name: i for i, name in enumerate((*SECTIONS, *BUCKET_FIELDS))}


def _order(path: list[str]) -> tuple[object, ...]:
    return tuple((_RANK.get(p, len(_RANK)), p) for p in path)


def assemble(skeleton: KeyDocument, fields: Mapping[str, str], source: str) -> KeyDocument:
    """Rebuild a key from its skeleton (order, arrays) and its flattened fields (values):
    fields the skeleton lacks are added in the Node service's order (history dates
    ascending, ``summary``, ``providers``, ``models``, bucket fields)."""
    doc: KeyDocument = skeleton
    _prune(doc, [], fields)
    for text in sorted(fields, key=lambda t: _order(unpointer(t))):
        path = unpointer(text)
        node = doc
        for step in path[:-1]:
            child = node.get(step)
            if not isinstance(child, dict):
                child = node[step] = {}
            node = child
        node[path[-1]] = jsjson.loads(fields[text], f"{source} {text}")
    history = doc.get("usageHistory")
    if isinstance(history, dict):
        trim_history(history)
    return doc


def _prune(node: dict[str, JSONValue], path: list[str], fields: Mapping[str, str]) -> None:
    """Drop the skeleton's scalars that have no field (deleted since), and objects emptied
    by that."""
    for key in list(node):
        value = node[key]
        if isinstance(value, dict):
            if value:
                _prune(value, [*path, key], fields)
                if not node[key]:
                    del node[key]
        elif not isinstance(value, list) and pointer([*path, key]) not in fields:
            del node[key]
