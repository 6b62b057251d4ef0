"""api-potluck keys on Redis (``redis-keys.md``): ``{p}:potluck`` lists the key ids in
creation order; ``{p}:potluck:key:<id>`` is one hash per key: ``@doc`` the key's JSON
skeleton (field order, arrays), and every scalar a field named by its JSON pointer
(``/todayUsage``, ``/usageHistory/2026-01-02/models/gpt-4o/totalTokens``) holding its JSON
text. Counters change by ``HINCRBY`` only, never by rewriting JSON.

An admission is one script (``POTLUCK_ADMIT``): check and count are atomic across every
instance, so no more than ``dailyLimit`` are admitted per Beijing day. Concurrent
admissions share a round trip (:class:`Admissions`: what is pending goes as one pipeline
of script calls, each atomic on its own, the next as soon as it returns), so a burst
needs one connection, not one per request; a failed round trip fails its callers (their
requests are refused) and is never re-sent. Token counts queue
in a group-commit writer of their own (ids ``k…``), one script per batch, exactly once per
batch id: through an outage the batch in hand is re-sent under its id, uses arriving
meanwhile wait in memory (behind the memory fallback they come through its relay,
journaled during outages, ``cfgstore_replica_add_potluck_tokens``). A use that opens a
new history day deletes the dates past the newest 100 (the file's rule).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from cfgstore import hookimpl
from cfgstore.errors import AlreadyExists, InvalidData, NotFound, StorageUnavailable
from cfgstore.model import jsjson
from cfgstore.model import potluck as pl
from cfgstore.model.batch_ids import parse_batch_id
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.timefmt import iso_ms
from cfgstore_redis.base import RedisParts
from cfgstore_redis.translate import translated
from cfgstore_redis.writer import GroupCommitWriter

TODAY_POINTERS = [pl.pointer([name]) for name in pl.TODAY_FIELDS]
TOKEN_POINTERS = [pl.pointer([name]) for name in pl.TOKEN_FIELDS]


AdmitCall = tuple[list[str], list[str]]


class Admissions:
    """Pending admissions sent together: callers wait for their own reply."""

    def __init__(self, send: Callable[[list[AdmitCall]], Awaitable[list[Any]]]) -> None:
        self._send = send
        self._pending: list[tuple[AdmitCall, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def call(self, call: AdmitCall) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((call, future))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, future in self._pending:
            if not future.done():
                future.set_exception(StorageUnavailable("the store is closing"))
        self._pending = []

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    replies = await self._send([call for call, _ in batch])
                except asyncio.CancelledError:
                    self._pending = batch + self._pending
                    raise
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), reply in zip(batch, replies, strict=True):
                    if not future.done():
                        future.set_result(reply)


class PotluckOps(RedisParts):
    potluck_writer: GroupCommitWriter[pl.TokenUse]
    admissions: Admissions

    def _start_potluck(self) -> None:
        self.potluck_writer = GroupCommitWriter(
            self._send_tokens, id_prefix="k", what="potluck tokens"
        )
        self.admissions = Admissions(self._send_admissions)

    async def _send_admissions(self, calls: list[AdmitCall]) -> list[Any]:
        if len(calls) == 1:
            return [await self._run("POTLUCK_ADMIT", *calls[0])]
        return await self._run_many("POTLUCK_ADMIT", calls)

    @property
    def _potluck_index(self) -> str:
        return f"{self.keys.tag}:potluck"

    @property
    def _potluck_base(self) -> str:
        return f"{self.keys.tag}:potluck:key:"

    # -- reads ----------------------------------------------------------------------------

    @hookimpl
    async def cfgstore_potluck_list(self) -> list[pl.KeyDocument]:
        with translated(self.connection):
            ids = await self.redis.lrange(self._potluck_index, 0, -1)
            async with self.redis.pipeline(transaction=False) as pipe:
                for key_id in ids:
                    pipe.hgetall(self._potluck_base + key_id)
                replies = await pipe.execute()
        return [
            self._assemble(key_id, fields)
            for key_id, fields in zip(ids, replies, strict=True)
            if fields
        ]

    @hookimpl
    async def cfgstore_potluck_get(self, key_id: str) -> pl.KeyDocument | None:
        with translated(self.connection):
            fields = await self.redis.hgetall(self._potluck_base + key_id)
        return self._assemble(key_id, fields) if fields else None

    def _assemble(self, key_id: str, fields: dict[str, str]) -> pl.KeyDocument:
        source = f"redis {self._potluck_base}{key_id}"
        skeleton = jsjson.loads(fields.pop("@doc", "{}"), source)
        if not isinstance(skeleton, dict):
            raise InvalidData(source, "@doc", "must be a JSON object")
        return pl.assemble(skeleton, fields, source)

    async def _must_get(self, key_id: str) -> pl.KeyDocument:
        key = await self.cfgstore_potluck_get(key_id)
        if key is None:
            raise NotFound("potluck key", pl.masked(key_id))
        return key

    # -- admin edits ----------------------------------------------------------------------

    @hookimpl
    async def cfgstore_potluck_create(self, key: pl.KeyDocument) -> None:
        key_id = str(key.get("id", ""))
        if not key_id:
            raise InvalidData("potluck key", "$.id", "a key needs an id")
        args: list[str] = [key_id, jsjson.dumps(key)]
        for name, text in pl.flatten(key).items():
            args += [name, text]
        reply = await self._run(
            "POTLUCK_CREATE", [self._potluck_index, self._potluck_base + key_id], args
        )
        if reply[0] == "exists":
            raise AlreadyExists("potluck key", pl.masked(key_id))

    @hookimpl
    async def cfgstore_potluck_update(
        self, key_id: str, changes: Mapping[str, JSONValue]
    ) -> pl.KeyDocument:
        args: list[str] = []
        for name, value in changes.items():
            if isinstance(value, dict | list):
                raise InvalidData("potluck key", name, "only scalar fields can be set")
            args += [pl.pointer([name]), pl.jsjson_scalar(value)]
        reply = await self._run("POTLUCK_UPDATE", [self._potluck_base + key_id], args)
        if reply[0] == "not_found":
            raise NotFound("potluck key", pl.masked(key_id))
        return await self._must_get(key_id)

    @hookimpl
    async def cfgstore_potluck_toggle(self, key_id: str) -> pl.KeyDocument:
        reply = await self._run("POTLUCK_TOGGLE", [self._potluck_base + key_id], [])
        if reply[0] == "not_found":
            raise NotFound("potluck key", pl.masked(key_id))
        return await self._must_get(key_id)

    @hookimpl
    async def cfgstore_potluck_apply_limit(self, daily_limit: int) -> tuple[int, int]:
        total, changed = await self._run(
            "POTLUCK_APPLY_LIMIT",
            [self._potluck_index],
            [self._potluck_base, json.dumps(daily_limit)],
        )
        return int(total), int(changed)

    @hookimpl
    async def cfgstore_potluck_reset(
        self, key_id: str | None, what: Literal["today", "tokens"], today: str
    ) -> int:
        keys = [self._potluck_index]
        if key_id is not None:
            keys.append(self._potluck_base + key_id)
        top = TODAY_POINTERS if what == "today" else TOKEN_POINTERS
        bucket = pl.BUCKET_FIELDS if what == "today" else pl.BUCKET_TOKEN_FIELDS
        history = pl.pointer(["usageHistory", today]) + "/" if what == "today" else ""
        args = [self._potluck_base, what, json.dumps(today), history, len(top), *top, *bucket]
        return int(await self._run("POTLUCK_RESET", keys, args))

    @hookimpl
    async def cfgstore_potluck_regenerate(
        self, old_id: str, new_id: str, now_ms: int
    ) -> pl.KeyDocument:
        fields = {
            "/id": json.dumps(new_id),
            "/regeneratedAt": json.dumps(iso_ms(now_ms)),
            "/regeneratedFrom": json.dumps(old_id[:12] + "..."),
        }
        args: list[str] = [old_id, new_id]
        for name, text in fields.items():
            args += [name, text]
        reply = await self._run(
            "POTLUCK_REGENERATE",
            [self._potluck_index, self._potluck_base + old_id, self._potluck_base + new_id],
            args,
        )
        if reply[0] == "not_found":
            raise NotFound("potluck key", pl.masked(old_id))
        if reply[0] == "exists":
            raise AlreadyExists("potluck key", pl.masked(new_id))
        return await self._must_get(new_id)

    @hookimpl
    async def cfgstore_potluck_delete(self, key_id: str) -> bool:
        gone = await self._run(
            "POTLUCK_DELETE", [self._potluck_index, self._potluck_base + key_id], [key_id]
        )
        return bool(int(gone))

    @hookimpl
    async def cfgstore_potluck_import(self, keys: pl.PotluckKeys) -> None:
        await self._run("POTLUCK_CLEAR", [self._potluck_index], [self._potluck_base])
        for key_id, key in keys.keys.items():
            stored = {**key}
            if stored.get("id") != key_id:
                raise InvalidData("api-potluck-keys.json", f"$.keys.{key_id}.id", "must be the key")
            await self.cfgstore_potluck_create(stored)

    # -- the hot path ---------------------------------------------------------------------

    @hookimpl
    async def cfgstore_potluck_admit(self, key_id: str, today: str, now_ms: int) -> pl.Admission:
        verdict, used, limit = await self.admissions.call(
            (
                [self._potluck_base + key_id],
                [json.dumps(today), json.dumps(iso_ms(now_ms)), *TODAY_POINTERS],
            )
        )
        counted_day = today if verdict in ("ok", "quota_exceeded") else ""
        return pl.Admission(verdict, int(used), int(limit), counted_day)

    @hookimpl
    async def cfgstore_potluck_add_tokens(self, uses: Sequence[pl.TokenUse]) -> None:
        self.potluck_writer.submit(list(uses))

    @hookimpl
    async def cfgstore_replica_add_potluck_tokens(
        self, uses: Sequence[pl.TokenUse], op_id: str
    ) -> bool:
        if parse_batch_id(op_id) is None:
            raise InvalidData("op_id", repr(op_id), "potluck batches need a sequenced batch id")
        return await self._add_tokens_once(uses, op_id)

    async def _send_tokens(self, uses: Sequence[pl.TokenUse], op_id: str) -> None:
        await self._add_tokens_once(uses, op_id)

    async def _add_tokens_once(self, uses: Sequence[pl.TokenUse], op_id: str) -> bool:
        """``POTLUCK_TOKENS`` under ``op_id``; ``False`` when Redis had applied it already."""
        batch_id = parse_batch_id(op_id)
        assert batch_id is not None
        keys = [self.keys.batches]
        index: dict[str, int] = {}
        args: list[str | int] = [
            batch_id.instance,
            batch_id.epoch,
            batch_id.seq,
            pl.HISTORY_DAYS,
        ]
        for use in uses:
            if use.key_id not in index:
                keys.append(self._potluck_base + use.key_id)
                index[use.key_id] = len(keys)
            always: list[str | int] = []
            today_only: list[str | int] = []
            for name, amount in pl.key_increments(use).items():
                (today_only if name.startswith("today") else always).extend(
                    [pl.pointer([name]), amount]
                )
            key_peaks: list[str | int] = []
            bucket_peaks: list[str | int] = []
            for name, value in use.peaks().items():
                key_peaks += [pl.pointer([name]), pl.jsjson_scalar(value)]
            for path in pl.history_paths(use):
                for name, amount in pl.bucket_increments(use).items():
                    always.extend([pl.pointer(["usageHistory", *path, name]), amount])
                for name, value in use.peaks().items():
                    field = pl.pointer(["usageHistory", *path, name])
                    bucket_peaks += [field, pl.jsjson_scalar(value)]
            args += [index[use.key_id], json.dumps(use.day)]
            args += [len(always) // 2, *always, len(today_only) // 2, *today_only]
            args += [len(key_peaks) // 2, *key_peaks, len(bucket_peaks) // 2, *bucket_peaks]
        reply = await self._run("POTLUCK_TOKENS", keys, args)
        return bool(reply) and reply[0] == "ok"

    async def _close_potluck(self) -> None:
        await self.potluck_writer.close()
        if self.potluck_writer.batches:
            with translated(self.connection):
                await self.redis.hdel(self.keys.batches, self.potluck_writer.ids.instance)
