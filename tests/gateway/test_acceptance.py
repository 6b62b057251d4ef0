"""Acceptance scenarios over HTTP: two gateway instances on one Redis namespace.

Each instance is a real listening gateway (``create_app`` on an aiohttp ``AppRunner``) over
its own :class:`~cfgstore.adapters.Store` with the memory fallback over the session's real
Redis and its own state directory, as two service processes would run; an operator's
edits go through a third, Redis-only store. The only stand-ins are local HTTP servers: the
OpenAI-compatible upstream (:mod:`tests.gateway.upstream_stub`), Kiro's
(:mod:`tests.gateway.kiro_stub`) and the OAuth token endpoint
(:mod:`tests.gateway.token_stub`). Every wait is bounded; sizes scale with
``CFGSTORE_TEST_SCALE``.

* SC-004 / US2-1, US2-2: one ``claude-kiro-oauth`` node whose token has expired, 200
  concurrent chat requests over the two instances → one token-endpoint call, every request
  served with the new token, the merged credential stored, ``usageCount`` exact.
* US2-3: two Kiro nodes and a Qwen node refreshed at the same time, each with its own token.
* US1-3: a failing node turns unhealthy while the other keeps counting; both states exact.
* US1-4: a node added by an operator while requests and health updates flow is used by both
  instances at once; nothing is lost on either side.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest_asyncio
from aiohttp import web

from cfgstore.adapters import Store
from cfgstore.model.credentials import Credential, path_keys_for
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import ProviderNode, node_from_json, node_to_json
from cfgstore.model.timefmt import iso_ms, now_ms, parse_time_ms
from cfgstore.model.versions import ABSENT_VERSION
from cfgstore_gateway.app import SERVICES, create_app
from cfgstore_gateway.refresh import Refresher
from tests.gateway.conftest import CLIENT_KEY, auth, scaled, serving
from tests.gateway.kiro_stub import KiroStub
from tests.gateway.redis_instances import Namespace, delete_namespace, seeded_namespace
from tests.gateway.token_stub import Received as TokenRequest
from tests.gateway.token_stub import TokenStub
from tests.gateway.upstream_stub import Received, Reply, UpstreamStub, default_responder, error
from tests.support.waiting import until

WAIT_S = 30.0
"""Bound of every wait (generous for a slow box; the happy path takes milliseconds)."""
KIRO = "claude-kiro-oauth"
QWEN = "openai-qwen-oauth"
OPENAI = "openai-custom"
HOUR_MS = 3_600_000
EXPIRED_ISO = iso_ms(now_ms() - 60_000)


# -- the deployment --------------------------------------------------------------------------


@pytest_asyncio.fixture
async def namespace(redis_url: str, tmp_path: Path) -> AsyncIterator[Namespace]:
    namespace = await seeded_namespace(redis_url, tmp_path, "acc-")
    try:
        yield namespace
    finally:
        await asyncio.to_thread(delete_namespace, redis_url, namespace.prefix)


@pytest_asyncio.fixture
async def kiro() -> AsyncIterator[KiroStub]:
    """The Kiro upstream of the Kiro nodes (:mod:`cfgstore_gateway.adapters.kiro`)."""
    async with KiroStub() as stub:
        yield stub


@pytest_asyncio.fixture
async def token_stub() -> AsyncIterator[TokenStub]:
    async with TokenStub(max_hold_s=WAIT_S) as stub:
        yield stub


@asynccontextmanager
async def admin(namespace: Namespace) -> AsyncIterator[Store]:
    async with Store.open(namespace.redis_settings()) as store:
        yield store


async def put_config(store: Store, **config: JSONValue) -> None:
    document: dict[str, JSONValue] = {
        "REQUIRED_API_KEY": CLIENT_KEY,
        "REQUEST_MAX_RETRIES": 0,
        "MODEL_PROVIDER": OPENAI,
        "MAX_ERROR_COUNT": 3,
        "CREDENTIAL_SWITCH_MAX_RETRIES": 3,
    }
    document.update(config)
    await store.config.put(document, ABSENT_VERSION)


async def add_oauth_node(
    store: Store,
    provider_type: str,
    uuid: str,
    document: dict[str, JSONValue],
    **settings: JSONValue,
) -> None:
    """A node naming its token file, and the credential stored for it."""
    path = f"./configs/{provider_type}/{uuid}.json"
    fields: dict[str, JSONValue] = {"uuid": uuid, path_keys_for(provider_type)[0]: path}
    fields.update(settings)
    await store.pools.add_node(provider_type, node_from_json(fields, "test"))
    await store.credentials.put(Credential(provider_type, uuid, document, path), None)


async def add_api_node(store: Store, uuid: str, base_url: str, key: str, **fields: Any) -> None:
    document = {"uuid": uuid, "OPENAI_API_KEY": key, "OPENAI_BASE_URL": base_url, **fields}
    await store.pools.add_node(OPENAI, node_from_json(document, "test"))


async def stored_node(store: Store, provider_type: str, uuid: str) -> ProviderNode:
    node = await store.pools.get_node(provider_type, uuid)
    assert node is not None, f"{provider_type}/{uuid} missing"
    return node


async def stored_credential(store: Store, provider_type: str, uuid: str) -> Credential:
    credential = await store.credentials.get(provider_type, uuid)
    assert credential is not None, f"credential {provider_type}/{uuid} missing"
    return credential


# -- the instances ---------------------------------------------------------------------------


@attrs.frozen
class Instance:
    """One gateway instance, serving on a loopback port."""

    name: str
    client: aiohttp.ClientSession
    store: Store
    app: web.Application

    @property
    def refresher(self) -> Refresher:
        refresher = self.app[SERVICES].refresher
        assert isinstance(refresher, Refresher)
        return refresher

    async def chat(
        self,
        model: str = "m",
        *,
        provider: str | None = None,
        stream: bool = False,
        request_id: str | None = None,
    ) -> tuple[int, bytes]:
        """One chat request, read to its end: (status, body)."""
        headers = auth()
        if provider is not None:
            headers["model-provider"] = provider
        if request_id is not None:
            headers["X-Request-Id"] = request_id
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        if stream:
            body["stream"] = True
        async with self.client.post("/v1/chat/completions", json=body, headers=headers) as response:
            return response.status, await response.read()


@asynccontextmanager
async def gateway_instance(namespace: Namespace, name: str) -> AsyncIterator[Instance]:
    async with Store.open(namespace.instance_settings(name)) as store:
        app = create_app(store)
        async with (
            serving(app) as url,
            aiohttp.ClientSession(
                url,
                # No client-side cap: every request of a burst is in flight at once.
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=WAIT_S * 2),
            ) as client,
        ):
            instance = Instance(name, client, store, app)
            try:
                yield instance
            finally:
                await store.flush()


@asynccontextmanager
async def two_instances(namespace: Namespace) -> AsyncIterator[tuple[Instance, Instance]]:
    async with (
        gateway_instance(namespace, "one") as one,
        gateway_instance(namespace, "two") as two,
    ):
        assert one.store.backend_names == ["memory", "redis"]
        yield one, two


def by_token(replies: Mapping[str, Reply]) -> Callable[[Received], Reply]:
    def respond(received: Received) -> Reply:
        reply = replies.get(received.token or "")
        return reply if reply is not None else default_responder(received)

    return respond


def request_id(received: Received) -> str:
    """The ``X-Request-Id`` the gateway sent upstream (header names are case-insensitive)."""
    for name, value in received.headers.items():
        if name.lower() == "x-request-id":
            return value
    return ""


def health_fields(node: ProviderNode) -> dict[str, JSONValue]:
    """What the hot path counts and decides on a node."""
    state = node.state
    return {
        "isHealthy": state.is_healthy,
        "usageCount": state.usage_count,
        "errorCount": state.error_count,
        "needsRefresh": state.needs_refresh,
        "lastErrorMessage": state.last_error_message,
    }


async def views_match_redis(
    instances: tuple[Instance, Instance], store: Store, keys: list[tuple[str, str]]
) -> None:
    """Each instance's view of these nodes becomes exactly what Redis holds (bounded)."""
    expected = {key: node_to_json(await stored_node(store, *key)) for key in keys}

    async def converged() -> bool:
        for instance in instances:
            for key in keys:
                if node_to_json(await stored_node(instance.store, *key)) != expected[key]:
                    return False
        return True

    await until(converged, "both instances show what Redis holds")


# -- documents -------------------------------------------------------------------------------


def kiro_document(name: str) -> dict[str, JSONValue]:
    """An expired Kiro social-login token file with every field a real one carries."""
    return {
        "accessToken": f"old-access-{name}",
        "refreshToken": f"old-refresh-{name}",
        "profileArn": f"arn:aws:codewhisperer:us-east-1:000000000000:profile/{name.upper()}",
        "expiresAt": EXPIRED_ISO,
        "authMethod": "social",
        "provider": "Google",
        "socialProvider": "Google",
        "region": "eu-central-1",
        "clientIdHash": f"0123456789abcdef-{name}",
    }


def qwen_document(name: str) -> dict[str, JSONValue]:
    return {
        "access_token": f"old-access-{name}",
        "token_type": "Bearer",
        "refresh_token": f"old-refresh-{name}",
        "resource_url": "portal.qwen.example.invalid",
        "expiry_date": now_ms() - 60_000,
    }


def check_merged_kiro(
    credential: Credential,
    original: Mapping[str, JSONValue],
    access: str,
    refresh: str,
    window: tuple[int, int],
) -> None:
    """The refreshed Kiro document: new tokens and expiry merged in place, every other
    field as it was (key order included)."""
    document = credential.document
    assert list(document) == list(original)
    expected = {**original, "accessToken": access, "refreshToken": refresh}
    assert {k: v for k, v in document.items() if k != "expiresAt"} == {
        k: v for k, v in expected.items() if k != "expiresAt"
    }
    expires = parse_time_ms(document["expiresAt"])
    assert expires is not None
    assert window[0] + HOUR_MS - 1000 <= expires <= window[1] + HOUR_MS + 1000


# -- SC-004 / US2-1, US2-2 -------------------------------------------------------------------


async def test_sc004_expired_kiro_token_200_requests_two_instances_one_refresh(
    namespace: Namespace, kiro: KiroStub, token_stub: TokenStub
) -> None:
    callers = scaled(200, minimum=4)
    node_id = "a0000000-0000-4000-8000-0000000000a1"
    original = kiro_document("k1")
    async with admin(namespace) as store:
        await put_config(store, MODEL_PROVIDER=KIRO)
        await add_oauth_node(
            store,
            KIRO,
            node_id,
            original,
            KIRO_BASE_URL=kiro.generate_url,
            KIRO_REFRESH_URL=token_stub.url("/refreshToken"),
        )
    token_stub.responder = lambda received, number: (
        200,
        {"accessToken": "new-access", "refreshToken": "new-refresh", "expiresIn": 3600},
    )
    async with two_instances(namespace) as instances:
        refreshers = [instance.refresher for instance in instances]
        started = now_ms()
        token_stub.hold()  # the refresh stays in flight until every request waits on it
        calls = [
            asyncio.create_task(instances[i % 2].chat("claude-sonnet-4-5", stream=i % 4 == 0))
            for i in range(callers)
        ]
        try:
            await token_stub.wait_for_requests(1, WAIT_S)
            # Every request of each instance joined its instance's one flight, and the
            # instance without the lock waits for the other's result.
            await until(
                lambda: sum(r.stats.flights + r.stats.joined for r in refreshers) == callers,
                "every request waits on its instance's refresh",
            )
            await until(lambda: sum(r.stats.waited for r in refreshers) == 1, "one waiter")
            assert kiro.generations() == []
        finally:
            token_stub.release()
        results = await asyncio.wait_for(asyncio.gather(*calls), WAIT_S)
        finished = now_ms()
        assert [status for status, _ in results] == [200] * callers
        assert all(body for _, body in results)
        async with admin(namespace) as store:
            await views_match_redis(instances, store, [(KIRO, node_id)])

    assert token_stub.count == 1
    (refresh_call,) = token_stub.received
    assert (refresh_call.path, refresh_call.fields) == (
        "/refreshToken",
        {"refreshToken": "old-refresh-k1"},
    )
    assert [r.stats.flights for r in refreshers] == [1, 1]
    assert sum(r.stats.endpoint_calls for r in refreshers) == 1
    assert kiro.tokens() == ["new-access"] * callers
    async with admin(namespace) as store:
        credential = await stored_credential(store, KIRO, node_id)
        check_merged_kiro(credential, original, "new-access", "new-refresh", (started, finished))
        node = await stored_node(store, KIRO, node_id)
    assert health_fields(node) == {
        "isHealthy": True,
        "usageCount": callers,
        "errorCount": 0,
        "needsRefresh": False,
        "lastErrorMessage": None,
    }


# -- US2-3 -----------------------------------------------------------------------------------


def own_tokens(received: TokenRequest, number: int) -> tuple[int, Any]:
    """Each credential's refresh answers tokens derived from its own refresh token."""
    fields = received.fields or {}
    if received.path == "/kiro":
        name = str(fields.get("refreshToken", "")).removeprefix("old-refresh-")
        return 200, {
            "accessToken": f"new-access-{name}",
            "refreshToken": f"new-refresh-{name}",
            "expiresIn": 3600,
        }
    name = str(fields.get("refresh_token", "")).removeprefix("old-refresh-")
    return 200, {
        "access_token": f"new-access-{name}",
        "refresh_token": f"new-refresh-{name}",
        "token_type": "Bearer",
        "expires_in": 3600,
    }


async def test_us2_3_two_kiro_nodes_and_a_qwen_node_refresh_at_once_without_interference(
    namespace: Namespace, upstream: UpstreamStub, kiro: KiroStub, token_stub: TokenStub
) -> None:
    kiro_requests = scaled(60, minimum=8)
    qwen_requests = scaled(20, minimum=4)
    k1, k2, q1 = (
        "a0000000-0000-4000-8000-0000000000a1",
        "b0000000-0000-4000-8000-0000000000b2",
        "c0000000-0000-4000-8000-0000000000c1",
    )
    originals = {k1: kiro_document("k1"), k2: kiro_document("k2")}
    async with admin(namespace) as store:
        await put_config(store, MODEL_PROVIDER=KIRO)
        for uuid, document in originals.items():
            await add_oauth_node(
                store,
                KIRO,
                uuid,
                document,
                KIRO_BASE_URL=kiro.generate_url,
                KIRO_REFRESH_URL=token_stub.url("/kiro"),
            )
        await add_oauth_node(
            store,
            QWEN,
            q1,
            qwen_document("q1"),
            QWEN_BASE_URL=upstream.base_url,
            QWEN_OAUTH_TOKEN_URL=token_stub.url("/qwen"),
        )
    token_stub.responder = own_tokens
    async with two_instances(namespace) as instances:
        refreshers = [instance.refresher for instance in instances]
        started = now_ms()
        token_stub.hold()
        calls = [
            asyncio.create_task(instances[i % 2].chat("claude-sonnet-4-5", stream=i % 3 == 0))
            for i in range(kiro_requests)
        ] + [
            asyncio.create_task(instances[i % 2].chat("qwen3-coder-plus", provider=QWEN))
            for i in range(qwen_requests)
        ]
        try:
            # The three refreshes are in flight at the same time.
            await token_stub.wait_for_requests(3, WAIT_S)
            await until(
                lambda: (
                    sum(r.stats.flights + r.stats.joined for r in refreshers)
                    == kiro_requests + qwen_requests
                ),
                "every request waits on a refresh",
            )
        finally:
            token_stub.release()
        results = await asyncio.wait_for(asyncio.gather(*calls), WAIT_S)
        finished = now_ms()
        assert [status for status, _ in results] == [200] * len(calls)

    assert token_stub.count == 3
    assert sorted((r.path, str(r.fields)) for r in token_stub.received) == sorted(
        [
            ("/kiro", str({"refreshToken": "old-refresh-k1"})),
            ("/kiro", str({"refreshToken": "old-refresh-k2"})),
            ("/qwen", str({"grant_type": "refresh_token", "refresh_token": "old-refresh-q1"})),
        ]
    )
    assert sum(r.stats.endpoint_calls for r in refreshers) == 3
    seen = Counter(upstream.tokens() + kiro.tokens())
    assert set(seen) == {"new-access-k1", "new-access-k2", "new-access-q1"}
    assert seen["new-access-k1"] + seen["new-access-k2"] == kiro_requests
    assert seen["new-access-q1"] == qwen_requests
    async with admin(namespace) as store:
        for uuid, name in ((k1, "k1"), (k2, "k2")):
            credential = await stored_credential(store, KIRO, uuid)
            check_merged_kiro(
                credential,
                originals[uuid],
                f"new-access-{name}",
                f"new-refresh-{name}",
                (started, finished),
            )
            node = await stored_node(store, KIRO, uuid)
            # Every call this node served carried its own token, none another's.
            assert node.state.usage_count == seen[f"new-access-{name}"] > 0
            assert node.state.error_count == 0
        qwen = await stored_credential(store, QWEN, q1)
        assert qwen.document["access_token"] == "new-access-q1"
        assert qwen.document["refresh_token"] == "new-refresh-q1"
        assert qwen.document["resource_url"] == "portal.qwen.example.invalid"
        assert (await stored_node(store, QWEN, q1)).state.usage_count == qwen_requests


# -- US1-3 -----------------------------------------------------------------------------------


async def test_us1_3_a_failing_node_turns_unhealthy_while_the_other_keeps_counting(
    namespace: Namespace, upstream: UpstreamStub
) -> None:
    burst = scaled(100, minimum=10)
    after = scaled(40, minimum=4)
    bad, good = "aaaaaaaa-0000-4000-8000-0000000000aa", "bbbbbbbb-0000-4000-8000-0000000000bb"
    upstream.responder = by_token({"key-bad": error(500, "boom")})
    async with admin(namespace) as store:
        await put_config(store, MAX_ERROR_COUNT=3, CREDENTIAL_SWITCH_MAX_RETRIES=3)
        await add_api_node(store, bad, upstream.base_url, "key-bad")
        await add_api_node(store, good, upstream.base_url, "key-good")
    async with two_instances(namespace) as instances:
        # Both nodes serve at first: the failing one is switched away from, every request
        # succeeds, and its failures pile up until MAX_ERROR_COUNT takes it out.
        results = await asyncio.wait_for(
            asyncio.gather(
                *(instances[i % 2].chat("gpt-4o", stream=i % 5 == 0) for i in range(burst))
            ),
            WAIT_S,
        )
        assert [status for status, _ in results] == [200] * burst
        for instance in instances:
            await instance.store.flush()

        async def bad_is_out_everywhere() -> bool:
            for instance in instances:
                if (await stored_node(instance.store, OPENAI, bad)).state.is_healthy:
                    return False
            return True

        await until(bad_is_out_everywhere, "both instances see the failing node unhealthy")
        failures = upstream.tokens().count("key-bad")
        assert failures >= 3
        # Then only the healthy node serves, and keeps counting.
        results = await asyncio.wait_for(
            asyncio.gather(*(instances[i % 2].chat("gpt-4o") for i in range(after))), WAIT_S
        )
        assert [status for status, _ in results] == [200] * after
        assert upstream.tokens().count("key-bad") == failures
        for instance in instances:
            await instance.store.flush()
        async with admin(namespace) as store:
            await views_match_redis(instances, store, [(OPENAI, bad), (OPENAI, good)])

    assert upstream.tokens().count("key-good") == burst + after
    async with admin(namespace) as store:
        failing = await stored_node(store, OPENAI, bad)
        serving_node = await stored_node(store, OPENAI, good)
    assert health_fields(failing) == {
        "isHealthy": False,
        "usageCount": 0,
        "errorCount": failures,
        "needsRefresh": False,
        "lastErrorMessage": "HTTP 500: boom",
    }
    assert failing.state.last_error_time is not None
    assert health_fields(serving_node) == {
        "isHealthy": True,
        "usageCount": burst + after,
        "errorCount": 0,
        "needsRefresh": False,
        "lastErrorMessage": None,
    }


# -- US1-4 -----------------------------------------------------------------------------------


async def test_us1_4_a_node_added_while_serving_is_used_by_both_instances(
    namespace: Namespace, upstream: UpstreamStub
) -> None:
    workers = scaled(6, minimum=2)
    before_add = scaled(40, minimum=8)
    after_seen = scaled(40, minimum=8)
    a, flaky, b = (
        "aaaaaaaa-0000-4000-8000-00000000000a",
        "ffffffff-0000-4000-8000-00000000000f",
        "bbbbbbbb-0000-4000-8000-00000000000b",
    )
    # The flaky node always fails but never reaches MAX_ERROR_COUNT: a steady stream of
    # health updates (failures) next to the successes of the others.
    upstream.responder = by_token({"key-flaky": error(503, "overloaded")})
    async with admin(namespace) as store:
        await put_config(store, MAX_ERROR_COUNT=100_000, CREDENTIAL_SWITCH_MAX_RETRIES=3)
        await add_api_node(store, a, upstream.base_url, "key-a")
        await add_api_node(store, flaky, upstream.base_url, "key-flaky")

    def served_by_b_on(instance: Instance) -> int:
        """Calls node B served for ``instance`` (the request id it passed upstream)."""
        return sum(
            1
            for r in upstream.chat_requests()
            if r.token == "key-b" and request_id(r).startswith(f"{instance.name}-")
        )

    statuses: list[int] = []
    stop = asyncio.Event()

    async def worker(instance: Instance, index: int) -> None:
        number = 0
        while not stop.is_set():
            number += 1
            status, _ = await instance.chat(
                "gpt-4o", stream=number % 4 == 0, request_id=f"{instance.name}-{index}-{number}"
            )
            statuses.append(status)

    async with two_instances(namespace) as instances:
        tasks = [
            asyncio.create_task(worker(instance, index))
            for instance in instances
            for index in range(workers)
        ]
        try:
            await until(lambda: len(statuses) >= before_add, "requests flowing")
            async with admin(namespace) as store:
                await add_api_node(
                    store, b, upstream.base_url, "key-b", customName="added while serving"
                )
            await until(
                lambda: all(served_by_b_on(instance) > 0 for instance in instances),
                "the new node serves on both instances",
            )
            wanted = len(statuses) + after_seen
            await until(lambda: len(statuses) >= wanted, "requests keep flowing")
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
        for instance in instances:
            await instance.store.flush()
        async with admin(namespace) as store:
            await views_match_redis(instances, store, [(OPENAI, a), (OPENAI, flaky), (OPENAI, b)])

    assert statuses == [200] * len(statuses)
    tokens = Counter(upstream.tokens())
    assert set(tokens) == {"key-a", "key-flaky", "key-b"}
    async with admin(namespace) as store:
        node_a = await stored_node(store, OPENAI, a)
        node_flaky = await stored_node(store, OPENAI, flaky)
        node_b = await stored_node(store, OPENAI, b)
    # Exact counts: every success once on the node that served it, every failure once.
    assert node_a.state.usage_count == tokens["key-a"]
    assert node_b.state.usage_count == tokens["key-b"]
    assert node_a.state.usage_count + node_b.state.usage_count == len(statuses)
    assert (node_flaky.state.usage_count, node_flaky.state.error_count) == (0, tokens["key-flaky"])
    assert node_flaky.state.is_healthy
    assert node_flaky.state.last_error_message == "HTTP 503: overloaded"
    # The operator's edit is intact next to the counters.
    assert node_b.settings["customName"] == "added while serving"
    assert node_b.settings["OPENAI_API_KEY"] == "key-b"
    assert node_b.settings["OPENAI_BASE_URL"] == upstream.base_url
    assert (node_a.state.error_count, node_b.state.error_count) == (0, 0)
