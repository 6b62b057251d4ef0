"""This instance's heartbeat in the shared storage, so ``cfgctl status`` can list the live
instances (id, host, pid, version, mode, journal depth, oldest entry, last error, resync)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING

import cfgstore
from cfgstore.errors import CfgStoreError, StorageUnavailable
from cfgstore.model.replica import InstanceInfo
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore_memory.cancellation import raise_if_cancelling

if TYPE_CHECKING:
    from cfgstore_memory.fallback import MemoryFallback

log = logging.getLogger("cfgstore.memory.heartbeat")

TTL_INTERVALS = 3
"""A heartbeat lives this many intervals: one or two missed beats do not hide an instance."""


class Heartbeat:
    def __init__(self, layer: MemoryFallback) -> None:
        self._layer = layer
        self._interval_s = layer.settings.heartbeat_interval_ms / 1000
        self._host = socket.gethostname()
        self.stopped = asyncio.Event()

    def info(self, mode: str | None = None) -> InstanceInfo:
        layer = self._layer
        replicator = layer._replicator
        oldest = layer.journal.oldest_at_ms
        return InstanceInfo(
            instance_id=layer.state.instance_id,
            host=self._host,
            pid=os.getpid(),
            version=cfgstore.__version__,
            mode=mode or replicator.mode.value,
            journal_depth=layer.journal.depth,
            oldest_entry_age_ms=now_ms() - oldest if oldest is not None else None,
            last_error=replicator.last_error,
            last_resync=replicator.last_resync,
            started_at=iso_ms(layer.started_at_ms),
            state_dir=str(layer.state.path),
        )

    async def beat(self, mode: str | None = None, ttl_ms: int | None = None) -> None:
        ttl = ttl_ms or int(self._interval_s * 1000 * TTL_INTERVALS)
        await self._layer._below["cfgstore_replica_heartbeat"](info=self.info(mode), ttl_ms=ttl)

    async def run(self) -> None:
        while not self.stopped.is_set():
            raise_if_cancelling()
            if not self._layer._replicator.serving_degraded:
                try:
                    async with asyncio.timeout(self._interval_s):
                        await self.beat()
                except (StorageUnavailable, TimeoutError) as exc:
                    raise_if_cancelling(exc)
                    self._layer._replicator.note_outage(exc)
                except CfgStoreError as exc:
                    raise_if_cancelling(exc)
                    log.warning("heartbeat not published: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self.stopped.wait()

    async def withdraw(self) -> None:
        """Announce the stop: the heartbeat expires almost at once."""
        async with asyncio.timeout(self._interval_s):
            await self.beat("stopped", ttl_ms=1)
