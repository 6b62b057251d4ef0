"""Web-UI sessions: add, expiry, logout, purge, concurrent logins, ending all but one,
deleting by digest (``cfgstore.hookspecs.sessions``)."""

from __future__ import annotations

import asyncio
import secrets
from contextlib import AsyncExitStack

import pytest

from cfgstore.adapters import Store
from cfgstore.model.sessions import UiSession, token_digest
from cfgstore.model.timefmt import now_ms
from cfgstore.testing.deployment import Deployment
from cfgstore.testing.fixtures import deployment_fixture, store_fixture  # noqa: F401
from cfgstore.testing.rules import rule

pytestmark = pytest.mark.asyncio  # every test here is a coroutine

HOUR = 3_600_000


async def test_session_lifecycle(store: Store) -> None:
    now = now_ms()
    live, dead = secrets.token_hex(32), secrets.token_hex(32)
    await store.sessions.add(live, UiSession("admin", now, now + HOUR))
    await store.sessions.add(dead, UiSession("admin", now - 2 * HOUR, now - HOUR))
    with rule("cfgstore_sessions_get", "the session as added; None when absent or expired"):
        assert await store.sessions.get(live) == UiSession("admin", now, now + HOUR)
        assert await store.sessions.get(dead) is None
        assert await store.sessions.get("unknown") is None
    with rule("cfgstore_sessions_count", "counts the sessions still valid"):
        assert await store.sessions.count() == 1
    with rule(
        "cfgstore_sessions_get",
        "a session is expired from its expiry_time on (now_ms >= expiry_time)",
    ):
        assert await store.sessions.get(live, now + HOUR) is None
        assert await store.sessions.get(live, now + HOUR - 1) is not None
    with rule("cfgstore_sessions_purge_expired", "removes the expired ones, returns how many"):
        assert await store.sessions.purge_expired() == 1
    with rule("cfgstore_sessions_delete", "returns whether the session existed"):
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
    with rule("cfgstore_sessions_add", "atomic: concurrent adds never drop each other"):
        assert await store.sessions.count() == len(tokens)
        for token in tokens:
            assert await store.sessions.get(token) is not None


async def test_ending_every_session_but_one(deployment: Deployment) -> None:
    """A password change ends the other sessions, also those made through another store
    (another instance, on a shared backend), and only them; ``None`` ends them all."""
    now = now_ms()
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(deployment.open())
        two = await stack.enter_async_context(deployment.open()) if deployment.shared else one
        kept, *others = [secrets.token_hex(32) for _ in range(6)]
        for index, token in enumerate([kept, *others]):
            add = (one if index % 2 else two).sessions.add
            await add(token, UiSession("admin", now, now + HOUR))
        text = "removes every session but keep_token's, whichever instance added them"
        with rule("cfgstore_sessions_delete_others", text):
            assert await one.sessions.delete_others(kept) == len(others)
            for opened in (one, two):
                assert await opened.sessions.get(kept) is not None
                for token in others:
                    assert await opened.sessions.get(token) is None
        with rule("cfgstore_sessions_delete_others", "None removes every session"):
            assert await two.sessions.delete_others(None) == 1
            assert await one.sessions.get(kept) is None


async def test_a_session_is_deleted_by_the_digest_of_its_token(store: Store) -> None:
    now = now_ms()
    token, other = secrets.token_hex(32), secrets.token_hex(32)
    for t in (token, other):
        await store.sessions.add(t, UiSession("admin", now, now + HOUR))
    with rule(
        "cfgstore_sessions_delete_digest",
        "removes the session whose token has this digest (only it), returns whether it existed",
    ):
        assert await store.sessions.delete_digest(token_digest(token)) is True
        assert await store.sessions.delete_digest(token_digest(token)) is False
        assert await store.sessions.get(token) is None
        assert await store.sessions.get(other) is not None
