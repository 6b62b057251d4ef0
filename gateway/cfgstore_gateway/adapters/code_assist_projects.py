"""Code Assist project discovery, shared by ``gemini-cli-oauth`` and ``gemini-antigravity``
(:mod:`~cfgstore_gateway.adapters.code_assist`).

A node's project is its ``PROJECT_ID`` (node key, else ``config.json``). Without one,
``loadCodeAssist`` names it, or, for an account that has none yet, ``onboardUser`` creates
it (a long-running operation polled every :data:`ONBOARD_POLL_S` until ``done``, at most
:data:`ONBOARD_POLLS` times). :class:`ProjectDirectory` writes the project found to the
node (``PROJECT_ID``, through the store's ``update_node``), so every gateway instance
sharing the store reuses it instead of discovering it again; within one instance
concurrent requests of a node share one discovery (single flight), and the result is
remembered until the node's own value shows up. The tier and account e-mail that
``loadCodeAssist`` reports are kept in memory only, as in the Node service.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote

import attrs

from cfgstore.adapters.facades import Pools
from cfgstore.errors import CfgStoreError
from cfgstore.model.config import MainConfig
from cfgstore.model.pools import ProviderNode
from cfgstore_gateway.adapters.openai_compat import effective_setting, setting_text

log = logging.getLogger("cfgstore_gateway.code_assist")

PROJECT_KEY = "PROJECT_ID"
ONBOARD_POLL_S = 2.0
"""Pause between two ``onboardUser`` polls (the Node service's 2 s)."""
ONBOARD_POLLS = 30
CLIENT_METADATA = {
    "ideType": "IDE_UNSPECIFIED",
    "platform": "PLATFORM_UNSPECIFIED",
    "pluginType": "GEMINI",
    "duetProject": "",
}


@attrs.frozen
class JsonAnswer:
    """An account call's HTTP answer, read whole."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def document(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


def load_body() -> dict[str, Any]:
    """The ``loadCodeAssist`` request."""
    return {"cloudaicompanionProject": "", "metadata": dict(CLIENT_METADATA)}


AccountCall = Callable[[str, Mapping[str, Any]], Awaitable[JsonAnswer]]
"""``call(method, body)``: one account call (discovery, models, quota) and its answer."""


class DiscoveryFailed(Exception):
    """``loadCodeAssist`` / ``onboardUser`` gave no project; ``answer`` is the HTTP answer
    that stopped it when there was one (a 401 goes to the gateway for a refresh)."""

    def __init__(self, message: str, answer: JsonAnswer | None = None) -> None:
        super().__init__(message)
        self.answer = answer


@attrs.frozen
class Account:
    """What ``loadCodeAssist`` tells of an account."""

    project: str | None
    tier: str | None = None
    email: str | None = None


def account_of(answer: Mapping[str, Any]) -> tuple[Account, str]:
    """The account a ``loadCodeAssist`` answer describes, and the base tier id to onboard
    with (the default of ``allowedTiers``, else ``free-tier``)."""
    tiers = answer.get("allowedTiers")
    default = (
        next((t for t in tiers if isinstance(t, Mapping) and t.get("isDefault")), None)
        if isinstance(tiers, list)
        else None
    )
    base_tier = setting_text(default.get("id")) if default else None
    base_tier = base_tier or "free-tier"
    paid = answer.get("paidTier")
    paid_name = setting_text(paid.get("name")) if isinstance(paid, Mapping) else None
    tier = f"{paid_name}({base_tier.replace('-tier', '')})" if paid_name else base_tier
    email = None
    uri = answer.get("manageSubscriptionUri")
    if isinstance(uri, str):
        found = re.search(r"Email=([^&]+)", uri)
        email = unquote(found.group(1)) if found else None
    project = answer.get("cloudaicompanionProject")
    if isinstance(project, Mapping):
        project = project.get("id")
    return Account(setting_text(project), tier, email), base_tier


async def discover(call: AccountCall) -> Account:
    """Find (or onboard) the account's project with ``call(method, body)`` →
    :class:`JsonAnswer`; :class:`DiscoveryFailed` when no usable project comes out."""
    loaded = await call("loadCodeAssist", load_body())
    if loaded.status != 200:
        raise DiscoveryFailed(f"loadCodeAssist answered HTTP {loaded.status}", loaded)
    account, base_tier = account_of(loaded.document())
    if account.project is not None:
        return account
    onboard_body = {
        "tierId": base_tier,
        "cloudaicompanionProject": "",
        "metadata": dict(CLIENT_METADATA),
    }
    for poll in range(ONBOARD_POLLS + 1):
        if poll:
            await asyncio.sleep(ONBOARD_POLL_S)
        operation = await call("onboardUser", onboard_body)
        if operation.status != 200:
            raise DiscoveryFailed(f"onboardUser answered HTTP {operation.status}", operation)
        document = operation.document()
        if document.get("done"):
            response = document.get("response")
            project = (
                response.get("cloudaicompanionProject") if isinstance(response, Mapping) else None
            )
            if isinstance(project, Mapping):
                project = project.get("id")
            found = setting_text(project)
            if found is None or found == "default":
                raise DiscoveryFailed("onboarding finished without a project")
            return attrs.evolve(account, project=found)
    raise DiscoveryFailed("onboarding did not finish in time")


def _landed(memory: _Memory, key: tuple[str, str], flight: asyncio.Future[Account]) -> None:
    """A discovery ended: the next request after a failure starts a new one. Its outcome
    counts as seen (every waiter may have gone: a client that disconnected)."""
    memory.flights.pop(key, None)
    if not flight.cancelled():
        flight.exception()


@attrs.define
class _Memory:
    """One store's remembered accounts and discoveries in flight, by (type, node)."""

    known: dict[tuple[str, str], Account] = attrs.Factory(dict)
    flights: dict[tuple[str, str], asyncio.Future[Account]] = attrs.Factory(dict)


class ProjectDirectory:
    """Projects of one adapter's nodes (see the module docstring), kept per store (its
    pools, weakly) and node, so gateway applications sharing a process stay apart."""

    def __init__(self) -> None:
        self._by_store: weakref.WeakKeyDictionary[Pools, _Memory] = weakref.WeakKeyDictionary()
        self._outside = _Memory()
        """For calls without a store (``pools`` is ``None``)."""

    def _memory(self, pools: Pools | None) -> _Memory:
        if pools is None:
            return self._outside
        memory = self._by_store.get(pools)
        if memory is None:
            memory = self._by_store[pools] = _Memory()
        return memory

    def configured(self, node: ProviderNode, config: MainConfig) -> str | None:
        return setting_text(effective_setting(node, config, PROJECT_KEY))

    def account(self, pools: Pools | None, provider_type: str, uuid: str) -> Account | None:
        return self._memory(pools).known.get((provider_type, uuid))

    async def project(
        self,
        pools: Pools | None,
        provider_type: str,
        node: ProviderNode,
        config: MainConfig,
        call: AccountCall,
    ) -> str:
        """The node's project: configured, remembered, or discovered once (and stored)."""
        configured = self.configured(node, config)
        if configured is not None:
            return configured
        memory = self._memory(pools)
        key = (provider_type, node.uuid)
        known = memory.known.get(key)
        if known is not None and known.project is not None:
            return known.project
        flight = memory.flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._discover(pools, provider_type, node, call))
            memory.flights[key] = flight
            flight.add_done_callback(lambda done: _landed(memory, key, done))
        account = await asyncio.shield(flight)
        assert account.project is not None
        return account.project

    async def _discover(
        self,
        pools: Pools | None,
        provider_type: str,
        node: ProviderNode,
        call: AccountCall,
    ) -> Account:
        account = await discover(call)
        assert account.project is not None
        self._memory(pools).known[(provider_type, node.uuid)] = account
        log.info("%s node %s: project discovered", provider_type, node.uuid)
        if pools is not None:
            try:
                await pools.update_node(provider_type, node.uuid, {PROJECT_KEY: account.project})
            except CfgStoreError as exc:  # still served from memory; next instance rediscovers
                log.warning(
                    "%s node %s: discovered project not stored: %s", provider_type, node.uuid, exc
                )
        return account

    def remember(
        self, pools: Pools | None, provider_type: str, uuid: str, account: Account
    ) -> None:
        self._memory(pools).known[(provider_type, uuid)] = account
