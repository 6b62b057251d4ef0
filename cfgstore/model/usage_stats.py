"""Model usage statistics: requests and tokens per provider type, model and day (the
``model-usage-stats`` gateway plugin; Node's ``configs/model-usage-stats.json``).

What the gateway counts for each answered request is tallied in memory
(:class:`UsageTally`) and added to the store as :class:`UsageCount` values, one per provider
type, model and day. Every count lands in four *scopes*: the summary, its provider type's
summary, its model, and its day (a Beijing date, ``YYYY-MM-DD``). Per scope the store keeps
a :data:`BLOCK_FIELDS` block: sums (requests and tokens, which add up over instances), the
latest ``lastUsedAt`` (ISO text, the later one wins) and peaks (``maxQps``, ``maxRpm``,
``maxTps``).

**Peaks are per-instance observations merged with max.** Each instance measures its own
request rate over a sliding minute (:class:`RateTracker`, Node's rule: the rate of every
request the instance counted, written into all four scopes of the request), and the stored
peak is the largest any instance reported. Several instances behind a balancer each see
part of the traffic, so the stored peak is the busiest instance's, not the sum of the
instances' rates at one moment.

The document (:func:`empty_document`) is Node's file shape, in Node's key order:
``{"updatedAt", "summary", "providers": {type: {"summary", "models": {model: block}}},
"daily": {day: block}}``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from cfgstore.errors import InvalidData
from cfgstore.fileio import read_bytes
from cfgstore.model import jsjson
from cfgstore.model.jsjson import JSONValue, format_number

SUMS = ("requestCount", "promptTokens", "completionTokens", "totalTokens", "cachedTokens")
PEAKS = ("maxQps", "maxRpm", "maxTps")
TOKEN_FIELDS = SUMS[1:] + PEAKS
"""What a token reset zeroes (request counts and ``lastUsedAt`` are kept)."""
BLOCK_FIELDS = (*SUMS, *PEAKS, "lastUsedAt")
USAGE_STATS_FILE = "model-usage-stats.json"
"""Node's file, in ``<cwd>/configs``."""
BEIJING_OFFSET_MS = 8 * 3600 * 1000
RATE_WINDOW_S = 60
"""Node's sliding window for the live rates (60 one-second buckets)."""


def beijing_day(at_ms: int) -> str:
    """The Beijing calendar date (UTC+8, ``YYYY-MM-DD``) of an epoch-ms instant."""
    return time.strftime("%Y-%m-%d", time.gmtime((at_ms + BEIJING_OFFSET_MS) // 1000))


def empty_block() -> dict[str, JSONValue]:
    block: dict[str, JSONValue] = dict.fromkeys((*SUMS, *PEAKS), 0)
    block["lastUsedAt"] = None
    return block


def empty_document(updated_at: str | None = None) -> dict[str, JSONValue]:
    return {"updatedAt": updated_at, "summary": empty_block(), "providers": {}, "daily": {}}


def _number(value: object) -> int | float:
    """Node's ``toNumber``: a finite number, else 0 (numeric text is read as its number)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else 0
    if isinstance(value, str):
        try:
            number = float(value.strip() or "0")
        except ValueError:
            return 0
        if not math.isfinite(number):
            return 0
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return 0


def normalise_block(block: object) -> dict[str, JSONValue]:
    """A stored block in Node's shape (Node's ``normalizeUsageBlock``): missing or
    non-numeric values read as 0, a missing ``lastUsedAt`` as ``null``."""
    out = empty_block()
    if isinstance(block, dict):
        for name in (*SUMS, *PEAKS):
            out[name] = _number(block.get(name))
        last = block.get("lastUsedAt")
        out["lastUsedAt"] = last if isinstance(last, str) and last else None
    return out


def normalise_document(doc: object, source: str) -> dict[str, JSONValue]:
    """A stats document in Node's shape and order (Node's ``normalizeStore``);
    :class:`InvalidData` when ``doc`` is not an object."""
    if not isinstance(doc, dict):
        raise InvalidData(source, "$", "the model usage statistics must be a JSON object")
    updated = doc.get("updatedAt")
    out = empty_document(updated if isinstance(updated, str) and updated else None)
    out["summary"] = normalise_block(doc.get("summary"))
    providers: dict[str, JSONValue] = {}
    raw_providers = doc.get("providers")
    for name, provider in raw_providers.items() if isinstance(raw_providers, dict) else ():
        raw_models = provider.get("models") if isinstance(provider, dict) else None
        models = {
            model: normalise_block(block)
            for model, block in (raw_models.items() if isinstance(raw_models, dict) else ())
        }
        summary = provider.get("summary") if isinstance(provider, dict) else None
        providers[name] = {"summary": normalise_block(summary), "models": models}
    out["providers"] = providers
    raw_daily = doc.get("daily")
    out["daily"] = {
        day: normalise_block(block)
        for day, block in (raw_daily.items() if isinstance(raw_daily, dict) else ())
    }
    return out


@attrs.frozen
class UsageCount:
    """The answered requests of one provider type and model on one (Beijing) day: how many,
    their token sums, the latest time one was used (ISO text) and the peak rates this
    instance saw while counting them."""

    provider_type: str
    model: str
    day: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    last_used_at: str | None = None
    max_qps: float = 0
    max_rpm: float = 0
    max_tps: float = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider_type, self.model, self.day)

    def plus(self, other: UsageCount) -> UsageCount:
        """This count and ``other`` (same key) together."""
        last = max(filter(None, (self.last_used_at, other.last_used_at)), default=None)
        return attrs.evolve(
            self,
            requests=self.requests + other.requests,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            last_used_at=last,
            max_qps=max(self.max_qps, other.max_qps),
            max_rpm=max(self.max_rpm, other.max_rpm),
            max_tps=max(self.max_tps, other.max_tps),
        )

    @property
    def sums(self) -> tuple[int, int, int, int, int]:
        """The increments, in :data:`SUMS` order."""
        return (
            self.requests,
            self.prompt_tokens,
            self.completion_tokens,
            self.total_tokens,
            self.cached_tokens,
        )

    @property
    def peaks(self) -> tuple[float, float, float]:
        """In :data:`PEAKS` order."""
        return (self.max_qps, self.max_rpm, self.max_tps)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, doc: object, source: str) -> UsageCount:
        if not isinstance(doc, dict):
            raise InvalidData(source, "usage count", "expected an object")
        try:
            count = cls(**doc)
        except TypeError as exc:
            raise InvalidData(source, "usage count", f"not a usage count: {exc}") from None
        ints = (count.requests, *count.sums)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            raise InvalidData(source, "usage count", "counts must be integers")
        return count


def merge_counts(counts: Iterable[UsageCount]) -> list[UsageCount]:
    """One count per key (sums added, the latest use and the peaks kept), in first-seen
    order."""
    merged: dict[tuple[str, str, str], UsageCount] = {}
    for count in counts:
        held = merged.get(count.key)
        merged[count.key] = count if held is None else held.plus(count)
    return list(merged.values())


def apply_counts(doc: dict[str, Any], counts: Iterable[UsageCount], updated_at: str) -> None:
    """Add ``counts`` to a document in Node's shape, in place (the file backend's and the
    tests' reference): each count's four scopes, new scopes appended in Node's order."""
    for count in counts:
        provider = doc["providers"].setdefault(
            count.provider_type, {"summary": empty_block(), "models": {}}
        )
        model = provider["models"].setdefault(count.model, empty_block())
        day = doc["daily"].setdefault(count.day, empty_block())
        for block in (doc["summary"], provider["summary"], model, day):
            _add_to_block(block, count)
    doc["updatedAt"] = updated_at


def _add_to_block(block: dict[str, Any], count: UsageCount) -> None:
    for name, value in zip(SUMS, count.sums, strict=True):
        block[name] = _number(block.get(name)) + value
    for name, peak in zip(PEAKS, count.peaks, strict=True):
        block[name] = max(_number(block.get(name)), peak)
    held = block.get("lastUsedAt")
    if count.last_used_at and (not isinstance(held, str) or count.last_used_at > held):
        block["lastUsedAt"] = count.last_used_at


def reset_document_tokens(doc: dict[str, Any], updated_at: str) -> None:
    """Zero the tokens and peaks of every block, in place (counts and last use kept)."""
    blocks: list[dict[str, Any]] = [doc["summary"], *doc["daily"].values()]
    for provider in doc["providers"].values():
        blocks += [provider["summary"], *provider["models"].values()]
    for block in blocks:
        block.update(dict.fromkeys(TOKEN_FIELDS, 0))
    doc["updatedAt"] = updated_at


def round2(value: float) -> int | float:
    """JavaScript's ``Number(value.toFixed(2))`` for the rates (an integral result is an
    int, as JavaScript prints it)."""
    rounded = round(float(value), 2)
    return int(rounded) if rounded.is_integer() else rounded


@attrs.define
class Rates:
    qps: int | float = 0
    tps: int | float = 0
    rpm: int | float = 0


class RateTracker:
    """Requests and tokens over a sliding window of one-second buckets (Node's rate
    tracker): the live ``qps``/``tps``/``rpm``, and the peaks seen when they were read."""

    def __init__(self, window_s: int = RATE_WINDOW_S) -> None:
        self._window = window_s
        self._counts = [0] * window_s
        self._tokens = [0] * window_s
        self._last_s = 0
        self._first_s = 0

    def _advance(self, now_s: int) -> None:
        gap = now_s - self._last_s
        if gap <= 0:
            return
        for i in range(min(gap, self._window)):
            index = (self._last_s + i + 1) % self._window
            self._counts[index] = 0
            self._tokens[index] = 0
        self._last_s = now_s

    def record(self, tokens: int, now_s: int) -> None:
        if not self._first_s:
            self._first_s = now_s
            self._last_s = now_s
        self._advance(now_s)
        self._counts[now_s % self._window] += 1
        self._tokens[now_s % self._window] += tokens

    def rates(self, now_s: int) -> Rates:
        if not self._first_s:
            return Rates()
        self._advance(now_s)
        divisor = min(max(1, now_s - self._first_s + 1), self._window)
        count, tokens = sum(self._counts), sum(self._tokens)
        return Rates(
            round2(count / divisor), round2(tokens / divisor), round2(count * 60 / divisor)
        )


def with_live_rates(
    doc: dict[str, Any], overall: Rates, per_key: Mapping[str, Rates]
) -> dict[str, Any]:
    """Node's ``GET`` answer: ``qps``/``tps``/``rpm`` added to the summary (``overall``),
    each provider summary (``per_key["provider:<type>"]``) and each model block
    (``per_key["model:<model>"]``); peaks raised to the live rates. In place; returns
    ``doc``."""

    def add(block: dict[str, Any], rates: Rates) -> None:
        block["qps"], block["tps"], block["rpm"] = rates.qps, rates.tps, rates.rpm
        block["maxQps"] = max(_number(block.get("maxQps")), rates.qps)
        block["maxTps"] = max(_number(block.get("maxTps")), rates.tps)
        block["maxRpm"] = max(_number(block.get("maxRpm")), rates.rpm)

    add(doc["summary"], overall)
    for name, provider in doc["providers"].items():
        add(provider["summary"], per_key.get(f"provider:{name}", Rates()))
        for model, block in provider["models"].items():
            add(block, per_key.get(f"model:{model}", Rates()))
    return doc


def number_text(value: int | float) -> str:
    """How a number is kept as text (Redis hash fields): JavaScript's spelling."""
    return str(value) if isinstance(value, int) else format_number(value)


def number_of(text: str | bytes | None) -> int | float:
    """A number kept as text back (absent: 0)."""
    if text is None:
        return 0
    return _number(text.decode() if isinstance(text, bytes) else text)


def read_node_file(path: Path) -> dict[str, Any] | None:
    """The statistics of a Node file, when it holds them in Node's shape (as Node's writer
    leaves it: :func:`normalise_document` changes nothing); ``None`` when it is absent,
    not JSON, or shaped otherwise (an older or foreign format, which ``cfgctl migrate``
    keeps as bytes instead). Blocking."""
    raw = read_bytes(path)
    if raw is None:
        return None
    try:
        doc = jsjson.loads(raw, str(path))
        normal = normalise_document(doc, str(path))
    except InvalidData:
        return None
    return normal if jsjson.dumps(normal) == jsjson.dumps(doc) else None
