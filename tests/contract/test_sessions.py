"""Web-UI sessions: add, expiry, logout, purge, concurrent logins."""

from __future__ import annotations

import asyncio
import secrets

from cfgstore.adapters import Store
from cfgstore.model.sessions import UiSession
from cfgstore.model.timefmt import now_ms

HOUR = 3_600_000


async def test_session_lifecycle(store: Store) -> None:
    now = now_ms()
    live, dead = secrets.token_hex(32), secrets.token_hex(32)
    await store.sessions.add(live, UiSession("admin", now, now + HOUR))
    await store.sessions.add(dead, UiSession("admin", now - 2 * HOUR, now - HOUR))
    got = await store.sessions.get(live)
    assert got == UiSession("admin", now, now + HOUR)
    assert await store.sessions.get(dead) is None  # expired: never returned
    assert await store.sessions.get("unknown") is None
    assert await store.sessions.count() == 1
    assert await store.sessions.get(live, now + HOUR) is None  # expires exactly at expiry
    assert await store.sessions.purge_expired() == 1
    assert await store.sessions.delete(live) is True
    assert await store.sessions.delete(live) is False
    assert await store.sessions.count() == 0


async def test_concurrent_logins_do_not_drop_each_other(store: Store) -> None:
    now = now_ms()
    tokens = [secrets.token_hex(32) for _ in range(30)]
    await asyncio.wait_for(
        asyncio.gather(
            *(store.sessions.add(t, UiSession("admin", now, now + HOUR)) for t in tokens)
        ),
        timeout=60,
    )
    assert await store.sessions.count() == len(tokens)
    for token in tokens:
        assert await store.sessions.get(token) is not None
