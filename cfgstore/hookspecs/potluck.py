"""Optional: the api-potluck plugin's keys (:mod:`cfgstore.model.potluck`), shared by every
instance on the storage.

A backend offering these declares the capability ``"potluck"``
(:data:`~cfgstore.adapters.backend.POTLUCK`); with ``"shared-potluck"`` too, admissions
through any number of stores on one storage are exact (never more than ``dailyLimit`` in
a day). Keys are JSON objects as the Node service writes them (order and unknown fields
kept); ``key_id`` is the key itself (``maki_…``). Reads return copies as stored: rolling
the day over (``today*`` read as 0 on a new Beijing date) is the caller's
(:class:`cfgstore.adapters.facades.PotluckKeys` does it). Nothing here publishes a change
event: no layer caches keys, every read asks the storage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.model.jsjson import JSONValue
    from cfgstore.model.potluck import Admission, KeyDocument, PotluckKeys, TokenUse


@hookspec
async def cfgstore_potluck_list() -> list[KeyDocument]:
    """Every key, in creation order (the file's order)."""


@hookspec
async def cfgstore_potluck_get(key_id: str) -> KeyDocument | None:
    """One key, ``None`` when absent."""


@hookspec
async def cfgstore_potluck_create(key: KeyDocument) -> None:
    """Add ``key`` (its ``id`` names it) last. :class:`~cfgstore.errors.AlreadyExists` when
    the id is taken."""


@hookspec
async def cfgstore_potluck_update(key_id: str, changes: Mapping[str, JSONValue]) -> KeyDocument:
    """Set top-level scalar fields (``name``, ``dailyLimit``, ``enabled``) and return the key
    after. :class:`~cfgstore.errors.NotFound` when absent. Counters are untouched: an
    update racing admissions loses none of them."""


@hookspec
async def cfgstore_potluck_toggle(key_id: str) -> KeyDocument:
    """Flip ``enabled`` atomically and return the key after (NotFound when absent). Every
    admission that starts after this returns, on any instance, sees the new value."""


@hookspec
async def cfgstore_potluck_apply_limit(daily_limit: int) -> tuple[int, int]:
    """Set ``dailyLimit`` on every key; returns ``(keys, keys whose limit changed)``."""


@hookspec
async def cfgstore_potluck_reset(
    key_id: str | None, what: Literal["today", "tokens"], today: str
) -> int:
    """``today``: zero the key's today counters and today's history bucket, its
    ``lastResetDate`` becomes ``today``. ``tokens``: zero every token counter and peak of
    the key and its history (request counts kept). ``key_id`` ``None``: every key.
    Returns how many keys were reset (0: the key is absent)."""


@hookspec
async def cfgstore_potluck_regenerate(old_id: str, new_id: str, now_ms: int) -> KeyDocument:
    """Move the key to ``new_id`` in one atomic step (:func:`cfgstore.model.potluck.regenerated`:
    data kept, ``regeneratedAt``/``regeneratedFrom`` added); returns the new key.
    NotFound when ``old_id`` is absent, AlreadyExists when ``new_id`` is taken."""


@hookspec
async def cfgstore_potluck_delete(key_id: str) -> bool:
    """Remove the key; ``False`` when it was absent."""


@hookspec
async def cfgstore_potluck_admit(key_id: str, today: str, now_ms: int) -> Admission:
    """The hot path: ONE atomic step (:func:`cfgstore.model.potluck.admit`): absent →
    ``not_found``; disabled → ``disabled``; the day rolled over to ``today`` (today's
    counters zeroed); ``dailyLimit > 0`` and ``todayUsage >= dailyLimit`` →
    ``quota_exceeded``; else ``todayUsage``, ``totalUsage`` +1 and ``lastUsedAt``. Under any
    concurrency no count is lost or doubled and (capability ``shared-potluck``: across
    every store on the storage) no more than ``dailyLimit`` are admitted per day. Never
    retried by the client: an outage raises :class:`~cfgstore.errors.StorageUnavailable`
    (the request is then refused, not counted)."""


@hookspec
async def cfgstore_potluck_add_tokens(uses: Sequence[TokenUse]) -> None:
    """Count finished requests' tokens (:func:`cfgstore.model.potluck.add_tokens`): each
    use lands exactly once, uses of unknown keys are dropped. May return before they are
    durable (coalesced); ``cfgstore_flush`` waits for them."""


@hookspec
async def cfgstore_replica_add_potluck_tokens(uses: Sequence[TokenUse], op_id: str) -> bool:
    """Optional, for the memory fallback: :func:`cfgstore_potluck_add_tokens` now, exactly
    once per ``op_id`` (a sequenced batch id ``<instance>:<epoch>:<seq>`` checked against
    the same per-instance marks as record batches; the fallback names its potluck batches
    after its instance id with a ``-k`` suffix and journals them through outages). Returns
    ``False`` when the batch had been applied already (nothing added)."""


@hookspec
async def cfgstore_potluck_import(keys: PotluckKeys) -> None:
    """Replace every key with ``keys`` (``cfgctl migrate``)."""
