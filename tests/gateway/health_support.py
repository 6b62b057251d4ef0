"""Shared pieces of the health-check tests: a fixed clock, a local upstream answering by
model, a :class:`HealthChecker` over a store, and a node lookup.

The ``http`` fixture (a plain client session) is in ``tests/gateway/conftest.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from cfgstore.adapters import Store
from cfgstore.model.pools import ProviderNode
from cfgstore.model.timefmt import now_ms
from cfgstore_gateway.adapters import AdapterRegistry
from cfgstore_gateway.adapters.openai_compat import OpenAICompatAdapter
from cfgstore_gateway.health_checks import HealthChecker
from cfgstore_gateway.refresh import Refresher
from tests.gateway.conftest import TYPE
from tests.gateway.upstream_stub import Received, Reply, UpstreamStub, error

NOW = (now_ms() // 1000) * 1000


def clock() -> int:
    return NOW


def responder(received: Received) -> Reply:
    """By model: ``bad-model`` → 500, ``denied-model`` → 401 echoing the key the upstream
    got (as OpenAI's "Incorrect API key provided: …" does), ``forbidden-model`` → 403,
    anything else → 200."""
    model = received.body.get("model") if isinstance(received.body, dict) else None
    if model == "bad-model":
        return error(500, "boom")
    if model == "denied-model":
        return error(401, f"Incorrect API key provided: {received.token}")
    if model == "forbidden-model":
        return error(403, "forbidden")
    return Reply(body={"id": "x", "object": "chat.completion", "model": model, "choices": []})


@asynccontextmanager
async def checking_upstream() -> AsyncIterator[UpstreamStub]:
    """The local upstream answering by :func:`responder`."""
    async with UpstreamStub(responder) as running:
        yield running


def checker(store: Store, http: aiohttp.ClientSession) -> HealthChecker:
    registry = AdapterRegistry()
    registry.register(OpenAICompatAdapter())
    return HealthChecker(store, registry, http, Refresher(store, http), clock=clock)


async def node(store: Store, uuid: str, provider_type: str = TYPE) -> ProviderNode:
    found = await store.pools.get_node(provider_type, uuid)
    assert found is not None
    return found
