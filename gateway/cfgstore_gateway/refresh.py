"""OAuth token refresh orchestration: at most one refresh per account, across every instance.

The store gives the primitives (``cfgstore.hookspecs.credentials``): a compare-and-set
credential write and a shared refresh lock with a random token and a TTL, released by
compare-and-delete. :class:`Refresher` builds the refresh protocol on them; the per-format
request and write rules live in :mod:`cfgstore_gateway.token_requests`.

When: a credential needs a refresh when its expiry (``Credential.expiry_ms``, §4.7) is
unknown or less than ``near_expiry_ms`` away; the gateway forces one after an upstream 401
(:meth:`Refresher.refresh` with ``force=True``).

Protocol, for one credential ``(type, uuid)`` and a *basis* — the version the caller read
and found stale (or, forced, whose token the upstream refused):

1. **In process**, callers share one *flight* (an ``asyncio.Task``); every caller awaits it
   through ``asyncio.shield`` so a cancelled caller never cancels the others. A caller
   accepts the flight's credential when the flight called the endpoint itself, or when the
   credential satisfies the caller's own basis (below); otherwise it starts the next flight.
2. **Across instances**, the flight takes the store's lock (``lock_ttl_ms``). The holder
   re-reads the credential; if it already satisfies the basis, someone refreshed meanwhile
   and it is used as is (the store's lock contract: after taking the lock, the next read
   is the stored credential, never a cached copy behind another instance's refresh). Only
   then does it call
   the endpoint, and it writes the result with the version it read. The lock is released in
   ``finally`` (compare-and-delete: a lease that lapsed and was taken by another instance is
   left alone).
3. **Waiting**: a flight that finds the lock held re-reads the credential every
   ``poll_interval_s`` until it satisfies the basis, retrying the lock each time (a holder
   that failed releases it without writing; a dead holder's lease lapses after its TTL),
   for at most ``wait_for_other_s``; then :class:`RefreshTimedOut`. The memory fallback
   re-reads changed credentials on its change feed, so a waiter sees another instance's
   write within milliseconds of it.
4. **Lost write**: a :class:`~cfgstore.errors.VersionConflict` on the write (possible only
   once the lease lapsed) re-reads the newer credential; a fresh one is used, anything else
   is a :class:`RefreshFailed` (this attempt's tokens are dropped, never written over a
   newer version).

"Satisfies the basis": forced, the stored version differs from the basis (a refresh landed
after the caller's read); not forced, the credential is fresh (not within the near-expiry
window), or its version differs from the basis and it has not expired (a token the endpoint
issued with a lifetime shorter than the window is used, not refreshed again at once).

Failures: :class:`RefreshFailed` (re-exported from :mod:`~cfgstore_gateway.token_requests`)
when the endpoint refuses or answers garbage, carrying the HTTP status. The lock is
released and the credential unchanged. :meth:`Refresher.credential_for` keeps serving a
credential that is only near expiry when its refresh fails (logged; the next attempt waits
``failure_backoff_s``); an expired one raises.

Settings (endpoint URLs, OAuth client ids) are the node's keys first, then the root
``config.json`` keys (:class:`~cfgstore_gateway.token_requests.SettingLookup`); the config
is read through the store once per refresh call, never on the fast path. Nothing here logs
a token: log lines name the credential (``type/uuid``), the endpoint and the outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp
import attrs

from cfgstore.adapters import Store
from cfgstore.errors import CfgStoreError, NotFound, VersionConflict
from cfgstore.model.credentials import Credential, path_keys_for
from cfgstore.model.pools import ProviderNode
from cfgstore.model.timefmt import now_ms
from cfgstore_gateway.token_requests import (
    RefreshFailed,
    SettingLookup,
    build_request,
    post_token_request,
    refreshed_document,
)

__all__ = ["RefreshFailed", "RefreshStats", "RefreshTimedOut", "Refresher"]

log = logging.getLogger("cfgstore_gateway.refresh")


_Key = tuple[str, str]


class RefreshTimedOut(RefreshFailed):
    """Another holder of the refresh lock produced no new version within
    ``wait_for_other_s`` (or this instance's copy never caught up with the store's)."""


@attrs.define
class RefreshStats:
    """Counters of one :class:`Refresher` (for status pages and tests)."""

    flights: int = 0
    """Refresh attempts started in this process (each is shared by every concurrent caller)."""
    joined: int = 0
    """Callers that joined a flight already under way instead of starting one."""
    endpoint_calls: int = 0
    """Requests sent to a token endpoint."""
    refreshed: int = 0
    """Refreshes written by this process."""
    waited: int = 0
    """Flights that found the lock held by someone else and waited for their result."""
    failures: int = 0
    """Flights that ended in :class:`RefreshFailed`."""


@attrs.frozen
class _Outcome:
    credential: Credential
    fetched: bool
    """This flight called the endpoint and wrote the result."""


class Refresher:
    """Refreshes OAuth credentials of one store, single-flight in process and across
    instances (see the module docstring for the protocol).

    ``http`` is the gateway's client session (its connector, proxy and TLS settings apply);
    the refresher never closes it. ``poll_interval_s`` is the waiting re-read interval,
    ``request_timeout_s`` bounds one endpoint call (default: half the lock TTL, at most
    30 s, so a live holder finishes long before its lease lapses), ``failure_backoff_s``
    how long :meth:`credential_for` keeps serving a near-expiry credential without retrying
    after a failed refresh, ``clock`` the epoch-ms clock for expiry decisions and for the
    expiry written."""

    def __init__(
        self,
        store: Store,
        http: aiohttp.ClientSession,
        *,
        near_expiry_ms: int = 5 * 60_000,
        lock_ttl_ms: int = 60_000,
        wait_for_other_s: float = 30.0,
        poll_interval_s: float = 0.02,
        request_timeout_s: float | None = None,
        failure_backoff_s: float = 10.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._http = http
        self.near_expiry_ms = near_expiry_ms
        self.lock_ttl_ms = lock_ttl_ms
        self.wait_for_other_s = wait_for_other_s
        self.poll_interval_s = poll_interval_s
        self.request_timeout_s = (
            request_timeout_s if request_timeout_s is not None else min(30.0, lock_ttl_ms / 2000)
        )
        self.failure_backoff_s = failure_backoff_s
        self._clock = clock
        self._flights: dict[_Key, asyncio.Task[_Outcome]] = {}
        self._failed_at: dict[_Key, float] = {}
        self.stats = RefreshStats()

    # -- expiry ----------------------------------------------------------------------------

    def needs_refresh(self, credential: Credential) -> bool:
        """Expiry unknown, or less than ``near_expiry_ms`` away."""
        expiry = credential.expiry_ms()
        return expiry is None or expiry - self._clock() < self.near_expiry_ms

    def is_expired(self, credential: Credential) -> bool:
        expiry = credential.expiry_ms()
        return expiry is None or expiry <= self._clock()

    def _satisfies(self, credential: Credential, basis: str | None, force: bool) -> bool:
        if force:
            return credential.version != basis
        if not self.needs_refresh(credential):
            return True
        return credential.version != basis and not self.is_expired(credential)

    # -- public API ------------------------------------------------------------------------

    async def credential_for(self, provider_type: str, node: ProviderNode) -> Credential | None:
        """The node's credential, refreshed first when expired or near expiry; ``None``
        for a node without one.

        Raises :class:`RefreshFailed` when the credential has expired and its refresh
        failed; a credential that is only near expiry is returned as it is then."""
        if not path_keys_for(provider_type):
            return None
        credential = await self._store.credentials.get(provider_type, node.uuid)
        if credential is None or not self.needs_refresh(credential):
            return credential
        key = (provider_type, node.uuid)
        expired = self.is_expired(credential)
        if not expired and self._backing_off(key):
            return credential
        try:
            return await self._ensure(provider_type, node, credential.version, force=False)
        except RefreshFailed as exc:
            if expired:
                raise
            log.warning("serving %s/%s until it expires: %s", provider_type, node.uuid, exc)
            return credential

    async def refresh(
        self,
        provider_type: str,
        node: ProviderNode,
        *,
        force: bool = False,
        seen_version: str | None = None,
    ) -> Credential:
        """Refresh now (``force``, e.g. after an upstream 401) unless a refresh that started
        after the caller's read already landed; without ``force``, only when needed.

        ``seen_version`` is the version of the credential the caller used (its token was
        refused); by default, the version current when this call starts. Single-flight:
        concurrent callers in this process share one attempt; across instances the store's
        lock decides who calls the endpoint, the others wait for the new version (bounded)
        and use it. Raises :class:`~cfgstore.errors.NotFound` when the node has no
        credential, :class:`RefreshFailed` (or :class:`RefreshTimedOut`) when no new token
        could be had."""
        if seen_version is None or not force:
            credential = await self._read(provider_type, node.uuid)
            if not force and not self.needs_refresh(credential):
                return credential
            if seen_version is None:
                seen_version = credential.version
        return await self._ensure(provider_type, node, seen_version, force=force)

    async def aclose(self) -> None:
        """Cancel the flights still under way (their locks are released or lapse by TTL)."""
        flights = list(self._flights.values())
        for flight in flights:
            flight.cancel()
        await asyncio.gather(*flights, return_exceptions=True)

    # -- in process: one flight per credential ---------------------------------------------

    async def _ensure(
        self, provider_type: str, node: ProviderNode, basis: str | None, *, force: bool
    ) -> Credential:
        key = (provider_type, node.uuid)
        # Each round either starts a flight (whose result always satisfies its starter)
        # or joins one that then completes: the loop ends.
        while True:
            flight = self._flights.get(key)
            if flight is None:
                flight = asyncio.create_task(self._fly(provider_type, node, basis, force))
                flight.add_done_callback(_retrieve)
                self._flights[key] = flight
                self.stats.flights += 1
            else:
                self.stats.joined += 1
            outcome = await asyncio.shield(flight)
            credential = outcome.credential
            if force:
                if credential.version != basis:
                    return credential
            elif outcome.fetched or self._satisfies(credential, basis, force):
                return credential

    async def _fly(
        self, provider_type: str, node: ProviderNode, basis: str | None, force: bool
    ) -> _Outcome:
        key = (provider_type, node.uuid)
        try:
            outcome = await self._across_instances(provider_type, node, basis, force)
        except RefreshFailed:
            self.stats.failures += 1
            self._failed_at[key] = asyncio.get_running_loop().time()
            raise
        else:
            self._failed_at.pop(key, None)
            return outcome
        finally:
            # Before the task completes: a caller woken by it never joins a finished flight.
            if self._flights.get(key) is asyncio.current_task():
                del self._flights[key]

    def _backing_off(self, key: _Key) -> bool:
        failed_at = self._failed_at.get(key)
        return (
            failed_at is not None
            and asyncio.get_running_loop().time() - failed_at < self.failure_backoff_s
        )

    # -- across instances: the store's lock ------------------------------------------------

    async def _across_instances(
        self, provider_type: str, node: ProviderNode, basis: str | None, force: bool
    ) -> _Outcome:
        uuid = node.uuid
        ident = f"{provider_type}/{uuid}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_for_other_s
        waiting = False
        while True:
            token = await self._store.credentials.lock(provider_type, uuid, self.lock_ttl_ms)
            if token is not None:
                try:
                    return await self._holding_lock(provider_type, node, basis, force, deadline)
                finally:
                    await self._unlock(provider_type, uuid, token)
            if not waiting:
                waiting = True
                self.stats.waited += 1
                log.debug("refresh of %s under way elsewhere; waiting for it", ident)
            current = await self._read(provider_type, uuid)
            if self._satisfies(current, basis, force):
                return _Outcome(current, fetched=False)
            if loop.time() >= deadline:
                raise RefreshTimedOut(
                    ident,
                    f"the refresh lock is held elsewhere and no new version came within "
                    f"{self.wait_for_other_s:g} s",
                )
            await asyncio.sleep(self.poll_interval_s)

    async def _holding_lock(
        self,
        provider_type: str,
        node: ProviderNode,
        basis: str | None,
        force: bool,
        deadline: float,
    ) -> _Outcome:
        ident = f"{provider_type}/{node.uuid}"
        current = await self._read(provider_type, node.uuid)
        if self._satisfies(current, basis, force):
            return _Outcome(current, fetched=False)

        config = await self._store.config.get()
        request = build_request(current, SettingLookup.of(node, config.document))
        self.stats.endpoint_calls += 1
        status, answer = await post_token_request(
            self._http, request, credential=ident, timeout_s=self.request_timeout_s
        )
        document = refreshed_document(current, answer, self._clock(), status)
        updated = attrs.evolve(current, document=document)
        try:
            # The token file alone, as the Node service writes it: the siblings read are
            # not written back (the folder's other files may have changed since).
            only_token = attrs.evolve(updated, siblings={})
            version = await self._store.credentials.put(only_token, current.version)
        except VersionConflict as conflict:
            newer = await self._read_until(provider_type, node.uuid, conflict.actual, deadline)
            if not self.needs_refresh(newer):
                log.info("refresh of %s lost its write to a newer fresh version; using it", ident)
                return _Outcome(newer, fetched=False)
            raise RefreshFailed(
                ident, "another writer changed the credential during the refresh"
            ) from None
        self.stats.refreshed += 1
        log.info("refreshed credential %s via %s", ident, request.endpoint)
        return _Outcome(attrs.evolve(updated, version=version), fetched=True)

    async def _read(self, provider_type: str, uuid: str) -> Credential:
        credential = await self._store.credentials.get(provider_type, uuid)
        if credential is None:
            raise NotFound("credential", f"{provider_type}/{uuid}")
        return credential

    async def _read_until(
        self, provider_type: str, uuid: str, version: str | None, deadline: float
    ) -> Credential:
        """Re-read until this instance's copy has ``version`` (its cache catches up on the
        change feed), bounded by ``deadline``."""
        if version is None:
            raise NotFound("credential", f"{provider_type}/{uuid}")
        loop = asyncio.get_running_loop()
        while True:
            current = await self._read(provider_type, uuid)
            if current.version == version:
                return current
            if loop.time() >= deadline:
                raise RefreshTimedOut(
                    f"{provider_type}/{uuid}",
                    f"this instance never saw the stored version within "
                    f"{self.wait_for_other_s:g} s",
                )
            await asyncio.sleep(self.poll_interval_s)

    async def _unlock(self, provider_type: str, uuid: str, token: str) -> None:
        try:
            released = await self._store.credentials.unlock(provider_type, uuid, token)
        except CfgStoreError as exc:  # the lease lapses by itself after its TTL
            log.warning("could not release the refresh lock of %s/%s: %s", provider_type, uuid, exc)
            return
        if not released:
            log.warning(
                "the refresh lock of %s/%s had lapsed before its release", provider_type, uuid
            )


def _retrieve(task: asyncio.Task[_Outcome]) -> None:
    """Mark a flight's exception as retrieved: every caller may have gone away."""
    if not task.cancelled():
        task.exception()
