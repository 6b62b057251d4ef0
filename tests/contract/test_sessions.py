"""Web-UI sessions: add, expiry, logout, purge, concurrent logins, ending all but one,
deleting by digest."""

from __future__ import annotations

import asyncio
import secrets

from cfgstore.adapters import Store
from cfgstore.model.sessions import UiSession, token_digest
from cfgstore.model.timefmt import now_ms
from tests.contract.conftest import Deployment

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


async def test_ending_every_session_but_one(deployment: Deployment) -> None:
    """A password change ends the other sessions, also those made through another store
    (another instance), and only them; ``None`` ends them all."""
    now = now_ms()
    async with deployment.open() as one, deployment.open() as two:
        kept, *others = [secrets.token_hex(32) for _ in range(6)]
        for index, token in enumerate([kept, *others]):
            add = (one if index % 2 else two).sessions.add
            await add(token, UiSession("admin", now, now + HOUR))
        assert await one.sessions.delete_others(kept) == len(others)
        for store in (one, two):
            assert await store.sessions.get(kept) is not None
            for token in others:
                assert await store.sessions.get(token) is None
        assert await two.sessions.delete_others(None) == 1
        assert await one.sessions.get(kept) is None


async def test_a_session_is_deleted_by_the_digest_of_its_token(store: Store) -> None:
    now = now_ms()
    token, other = secrets.token_hex(32), secrets.token_hex(32)
    for t in (token, other):
        await store.sessions.add(t, UiSession("admin", now, now + HOUR))
    assert await store.sessions.delete_digest(token_digest(token)) is True
    assert await store.sessions.delete_digest(token_digest(token)) is False
    assert await store.sessions.get(token) is None
    assert await store.sessions.get(other) is not None
