"""The namespace's schema: refuse a newer one, upgrade an older one in place.

Schema 1 kept one credential hash per node, ``{p}:cred:<type>:<uuid>``; schema 2 keeps one
per token file, ``{p}:cred:<file key>``, which every node naming the file reaches through
its ``@cred`` field and which lists them in ``users`` (``redis-keys.md``). Code reading
schema 2 finds no credential in a schema-1 namespace, so opening one upgrades it first:

* one instance at a time holds the upgrade lock (``SET NX PX``, released by
  compare-and-delete); the others wait for the schema to change, or for the lock to go
  when its holder stopped, and then take it themselves;
* a pass over the nodes, enumerated through the pools lists (never ``KEYS``/``SCAN``):
  a node holding a schema-1 credential but naming no token file is given a path first,
  in the Node upload convention, as a credential write does; then every node joins its
  file and its schema-1 credential moves to the file's key, at a fresh version (a
  revision), one atomic script per node (``UPGRADE_NODE``);
* several nodes naming one file keep one credential: the one expiring last (when the
  documents say), else the first in pool order; a credential already at the file's key
  (a run interrupted after moving it) counts first;
* last, while the lock is still this run's, ``schema`` becomes the new one, the revision
  is bumped and the change feed says that all pools and all credentials changed.

Schema 3 stores the sibling files of Kiro credentials once per folder (``{p}:folder:
<folder>``) where schema 2 kept a copy in every credential of the folder (``siblings``,
JSON): the upgrade from 2 (also run after the one from 1) converts every credential
holding a copy, one script per credential (``UPGRADE_SIBLINGS``), sending each file of a
folder once.

Every step reads what it changes and is skipped when done, so a run interrupted anywhere
is finished by the next open, and an upgraded namespace costs one ``HGET`` per open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import Counter
from collections.abc import Sequence
from typing import Any

from cfgstore.errors import CfgStoreError, InvalidData, StorageServerError
from cfgstore.model import jsjson
from cfgstore.model.credentials import Credential, credential_file_key, credential_path_of
from cfgstore.model.versions import SCHEMA_VERSION
from cfgstore_redis.codec import CRED, DOC_VERSION
from cfgstore_redis.credential_ops import CredentialOps, _format
from cfgstore_redis.pool_ops import PoolOps
from cfgstore_redis.sibling_folders import folder_reference, legacy_siblings, split_reference
from cfgstore_redis.translate import translated

log = logging.getLogger("cfgstore.redis")

PER_NODE_CREDENTIALS = "1"
"""The schema that kept one credential per node: upgraded in place."""
SIBLING_COPIES = "2"
"""The schema that kept a copy of the Kiro sibling files in every credential: upgraded."""
UPGRADABLE = (PER_NODE_CREDENTIALS, SIBLING_COPIES)

LOCK_TTL_MS = 60_000
WAIT_S = 120.0
"""How long an instance waits for another one's upgrade before it gives up."""
POLL_S = 0.2
PASSES = 8
"""Passes over the nodes while admin edits keep changing what a pass read."""
CHUNK = 256
"""Node scripts per round trip."""

OLD_FIELDS = ("ver", "doc", "format", "siblings")


class SchemaOps(PoolOps, CredentialOps):
    async def _stored_schema(self) -> str | None:
        with translated(self.connection):
            stored: str | None = await self.redis.hget(self.keys.meta, "schema")
        if stored is not None and (not stored.isdigit() or int(stored) > SCHEMA_VERSION):
            raise StorageServerError(
                f"namespace {self.keys.tag} at {self.connection.describe()} has schema "
                f"{stored}, newer than the schema {SCHEMA_VERSION} this cfgstore knows: "
                "upgrade cfgstore before starting it on this Redis"
            )
        return stored

    async def _check_schema(self) -> None:
        """Return once the namespace has a schema this code serves: refuse a newer one
        (:class:`StorageServerError`), upgrade schema 1 (or wait for the instance that
        does). An absent schema is a namespace ``init``/``migrate`` has not finished:
        they write the current one when they do."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while (stored := await self._stored_schema()) in UPGRADABLE:
            token = secrets.token_hex(16)
            with translated(self.connection):
                taken = await self.redis.set(self.keys.upgrade_lock, token, nx=True, px=LOCK_TTL_MS)
            if taken:
                try:
                    await self._upgrade(token, str(stored))
                finally:
                    with contextlib.suppress(CfgStoreError):  # else it expires
                        await self._run("RELEASE_LOCK", [self.keys.upgrade_lock], [token])
                continue
            if loop.time() > deadline:
                raise StorageServerError(
                    f"namespace {self.keys.tag} at {self.connection.describe()} is being "
                    f"upgraded from schema {stored} by another instance, "
                    f"still after {WAIT_S:.0f}s: try again when it is done (`cfgctl status` "
                    "shows the schema)"
                )
            await asyncio.sleep(POLL_S)

    async def _upgrade(self, token: str, stored: str) -> None:
        """Upgrade schema ``stored`` (1 or 2) to the current one under the upgrade lock
        ``token``."""
        counts: Counter[str] = Counter()
        for _ in range(PASSES):
            nodes_done = stored != PER_NODE_CREDENTIALS or await self._upgrade_pass(counts)
            if nodes_done and await self._siblings_pass(counts):
                break
        else:
            raise StorageServerError(
                f"namespace {self.keys.tag}: its nodes kept changing while their credentials "
                "were upgraded; nothing is lost, the next start goes on"
            )
        heads = [self._head("pools"), self._head("credentials")]
        result = await self._run(
            "FINISH_UPGRADE",
            [self.keys.meta, self.keys.upgrade_lock, self.keys.revision],
            [token, stored, str(SCHEMA_VERSION), self.keys.channel, *heads],
        )
        if result[0] == "lost":
            raise StorageServerError(
                f"namespace {self.keys.tag}: the schema upgrade took longer than its lock "
                f"({LOCK_TTL_MS} ms); nothing is lost, the next start goes on"
            )
        if result[0] == "ok":
            self._changed("pools")
            self._changed("credentials")
            log.info(
                "upgraded namespace %s from schema %s to %d: %d nodes linked to their token "
                "files, %d credentials moved, %d duplicates of a shared file dropped, %d "
                "token paths given to nodes naming none, %d credentials left in place "
                "(their provider type keeps no token files), %d copies of Kiro sibling "
                "files replaced by their folder's files, stored once",
                self.keys.tag,
                stored,
                SCHEMA_VERSION,
                counts["linked"],
                counts["moved"],
                counts["dropped"],
                counts["paths"],
                counts["left"],
                counts["siblings"],
            )

    async def _upgrade_pass(self, counts: Counter[str]) -> bool:
        """One pass over every node; ``False`` when something it read changed before it
        was written (nothing of that node was written: the caller passes again)."""
        counts["left"] = 0  # counted again by every pass
        pools = await self.cfgstore_pools_list()
        nodes = list(pools)
        rows = await self._upgrade_rows([(t, n.uuid) for t, n in nodes])
        pathless = [
            (t, n.uuid)
            for (t, n), (_, old) in zip(nodes, rows, strict=True)
            if old[1] is not None and credential_path_of(t, n) is None
        ]
        assigned = 0
        for provider_type, uuid in pathless:
            try:
                await self._file_identity(provider_type, uuid)
            except InvalidData:
                continue  # a type that keeps no files: left in place, counted below
            assigned += 1
        if assigned:
            counts["paths"] += assigned
            return False  # read the nodes again, with their new paths

        keep = await self._kept_credentials(nodes, rows)
        calls: list[tuple[list[str], list[Any]]] = []
        for (provider_type, node), ((docver, cred), old) in zip(nodes, rows, strict=True):
            file_key = credential_file_key(provider_type, node) or ""
            if old[0] is None and old[1] is None and (cred or "") == file_key:
                continue  # nothing to do (schema 2 already, or upgraded by an earlier run)
            if not file_key:
                counts["left"] += old[1] is not None
                continue
            member = f"{provider_type}:{node.uuid}"
            mode = "take" if keep.get(file_key) == member else "drop"
            carrier = credential_path_of(provider_type, node)
            calls.append(
                (
                    [
                        self.keys.node(provider_type, node.uuid),
                        self.keys.legacy_credential(provider_type, node.uuid),
                        self.keys.credential(file_key),
                        self.keys.revision,
                    ],
                    [
                        self.keys.credential_base,
                        member,
                        file_key,
                        docver or "",
                        old[0] or "",
                        mode if old[1] is not None else "link",
                        carrier[1] if carrier else "",
                    ],
                )
            )
        clean = True
        for start in range(0, len(calls), CHUNK):
            for reply in await self._run_many("UPGRADE_NODE", calls[start : start + CHUNK]):
                if reply[0] != "ok":
                    clean = False
                    continue
                counts["linked"] += 1
                counts["moved"] += int(reply[1])
                counts["dropped"] += int(reply[2])
        return clean

    async def _siblings_pass(self, counts: Counter[str]) -> bool:
        """Schema 2 → 3: every credential holding its own copy of its folder's sibling
        files references the folder's files instead, each file sent once; ``False`` when
        one changed before it was written (the caller passes again)."""
        pools = await self.cfgstore_pools_list()
        file_keys = sorted({k for t, n in pools if (k := credential_file_key(t, n)) is not None})
        with translated(self.connection):
            async with self.redis.pipeline(transaction=False) as pipe:
                for file_key in file_keys:
                    pipe.hget(self.keys.credential(file_key), "siblings")
                copies = await pipe.execute()
        sent: dict[str, dict[str, str]] = {}  # folder → name → JSON already set this pass
        calls: list[tuple[list[str], list[Any]]] = []
        for file_key, copy in zip(file_keys, copies, strict=True):
            if not copy:
                continue
            reference = folder_reference(file_key)
            folder, _ = split_reference(reference)
            done = sent.setdefault(folder, {})
            pairs: list[str] = []
            for name, document in legacy_siblings(copy, self.keys.credential(file_key)).items():
                text = json.dumps(document, ensure_ascii=False)
                if done.get(name) != text:
                    done[name] = text
                    pairs += [name, text]
            calls.append(
                (
                    [self.keys.credential(file_key), self.keys.folder(folder)],
                    [copy, reference, *pairs],
                )
            )
        clean = True
        for start in range(0, len(calls), CHUNK):
            for reply in await self._run_many("UPGRADE_SIBLINGS", calls[start : start + CHUNK]):
                if reply[0] == "ok":
                    counts["siblings"] += 1
                else:
                    clean = False
        return clean

    async def _upgrade_rows(
        self, pairs: Sequence[tuple[str, str]]
    ) -> list[tuple[list[str | None], list[str | None]]]:
        """Per node: (``@docver``, ``@cred``) and its schema-1 credential's ``OLD_FIELDS``."""
        with translated(self.connection):
            async with self.redis.pipeline(transaction=False) as pipe:
                for provider_type, uuid in pairs:
                    pipe.hmget(self.keys.node(provider_type, uuid), DOC_VERSION, CRED)
                    pipe.hmget(self.keys.legacy_credential(provider_type, uuid), *OLD_FIELDS)
                replies = await pipe.execute()
        return list(zip(replies[::2], replies[1::2], strict=True))

    async def _kept_credentials(
        self, nodes: Sequence[tuple[str, Any]], rows: Sequence[tuple[Any, list[str | None]]]
    ) -> dict[str, str]:
        """File key → the member (``<type>:<uuid>``) whose schema-1 credential the file
        keeps, for every file some node holds one for (absent: the file's own, moved
        there by an interrupted run, is kept)."""
        candidates: dict[str, list[tuple[str, Credential | None]]] = {}
        for (provider_type, node), (_, old) in zip(nodes, rows, strict=True):
            file_key = credential_file_key(provider_type, node)
            if file_key is None or old[1] is None:
                continue
            member = f"{provider_type}:{node.uuid}"
            parsed = _parsed(provider_type, node.uuid, old[1], old[2], old[3])
            candidates.setdefault(file_key, []).append((member, parsed))
        if not candidates:
            return {}
        with translated(self.connection):
            async with self.redis.pipeline(transaction=False) as pipe:
                for file_key in candidates:
                    pipe.hmget(self.keys.credential(file_key), "doc", "format", "siblings")
                current = await pipe.execute()
        kept: dict[str, str] = {}
        for (file_key, found), (doc, token_format, siblings) in zip(
            candidates.items(), current, strict=True
        ):
            provider_type, uuid = found[0][0].split(":", 1)
            if doc is not None:
                found.insert(0, ("", _parsed(provider_type, uuid, doc, token_format, siblings)))
            chosen = _latest(found)
            kept[file_key] = found[chosen][0]
            if len(found) > 1:
                names = [m or "the one moved there before" for m, _ in found]
                log.info(
                    "schema upgrade: token file %s is named by several nodes with a "
                    "credential each; keeping %s (%s), dropping %s",
                    file_key,
                    names[chosen],
                    "it expires last" if _expiry(found[chosen][1]) is not None else "first",
                    ", ".join(n for i, n in enumerate(names) if i != chosen),
                )
        return kept


def _parsed(
    provider_type: str, uuid: str, doc: str, token_format: str | None, siblings: str | None
) -> Credential | None:
    """A stored credential as a :class:`Credential` (for its expiry); ``None`` when it
    does not parse (it is still moved verbatim)."""
    try:
        document = jsjson.loads(doc, "schema-1 credential")
        extra = jsjson.loads(siblings, "schema-1 credential") if siblings else {}
    except InvalidData:
        return None
    if not isinstance(document, dict) or not isinstance(extra, dict):
        return None
    return Credential(
        provider_type,
        uuid,
        document,
        token_format=_format(token_format, provider_type),
        siblings={k: v for k, v in extra.items() if isinstance(v, dict)},
    )


def _expiry(credential: Credential | None) -> int | None:
    return credential.expiry_ms() if credential is not None else None


def _latest(found: Sequence[tuple[str, Credential | None]]) -> int:
    """The index of the credential expiring last; the first when none says."""
    best = 0
    for index, (_, credential) in enumerate(found):
        expiry, best_expiry = _expiry(credential), _expiry(found[best][1])
        if expiry is not None and (best_expiry is None or expiry > best_expiry):
            best = index
    return best
