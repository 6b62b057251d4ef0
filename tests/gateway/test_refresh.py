"""OAuth refresh orchestration (``cfgstore_gateway.refresh``) on the real Redis.

The one stand-in is the upstream token endpoint, a local HTTP server
(:mod:`tests.gateway.token_stub`) that records each request and answers what the test says.
Per format: the request the endpoint receives and the exact stored document after (§4).
Then when a refresh happens (fresh, near expiry, expired, forced), failures, and SC-004:
200 concurrent callers over two instances (each a Store with the memory fallback on one
Redis namespace) → one endpoint call.

The refresher runs on a fixed clock (``NOW``) so expiry fields are exact; Redis and the
network run in real time. Waits are bounded; sizes scale with ``CFGSTORE_TEST_SCALE``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio

from cfgstore.adapters import Store
from cfgstore.model.credentials import Credential, TokenFormat, credential_file_key
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import ProviderNode, node_from_json
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore_gateway.refresh import Refresher, RefreshFailed, RefreshTimedOut
from cfgstore_gateway.token_requests import (
    SettingLookup,
    build_request,
    kiro_auth_method,
)
from cfgstore_redis.keys import Keys
from tests.gateway.redis_instances import Namespace, seeded_namespace
from tests.gateway.token_stub import Received, TokenStub
from tests.support.waiting import until

SCALE = float(os.environ.get("CFGSTORE_TEST_SCALE", "1"))
CALLERS = max(4, int(200 * SCALE))
"""SC-004: concurrent ``credential_for`` calls, spread over two instances."""
WAIT_S = 30.0
"""Bound of every wait (generous for a slow box; the happy path takes milliseconds)."""

KIRO = "claude-kiro-oauth"
GEMINI = "gemini-cli-oauth"
ANTIGRAVITY = "gemini-antigravity"
QWEN = "openai-qwen-oauth"
IFLOW = "openai-iflow"
CODEX = "openai-codex-oauth"
PATH_KEYS = {
    KIRO: "KIRO_OAUTH_CREDS_FILE_PATH",
    GEMINI: "GEMINI_OAUTH_CREDS_FILE_PATH",
    ANTIGRAVITY: "ANTIGRAVITY_OAUTH_CREDS_FILE_PATH",
    QWEN: "QWEN_OAUTH_CREDS_FILE_PATH",
    IFLOW: "IFLOW_TOKEN_FILE_PATH",
    CODEX: "CODEX_OAUTH_CREDS_FILE_PATH",
}

NOW = (now_ms() // 1000) * 1000
"""The refresher's clock in these tests."""
EXPIRED_ISO = iso_ms(NOW - 60_000)
EXPIRED_MS = NOW - 60_000


def fixed_clock() -> int:
    return NOW


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
async def namespace(redis_url: str, tmp_path: Path) -> Namespace:
    return await seeded_namespace(redis_url, tmp_path)


@pytest.fixture
async def store(namespace: Namespace) -> AsyncIterator[Store]:
    """A Redis-only store (reads are never cached)."""
    async with Store.open(namespace.redis_settings()) as opened:
        yield opened


@pytest.fixture
async def stub() -> AsyncIterator[TokenStub]:
    async with TokenStub() as running:
        yield running


def refresher(store: Store, http: aiohttp.ClientSession, **options: Any) -> Refresher:
    options.setdefault("wait_for_other_s", WAIT_S)
    return Refresher(store, http, clock=fixed_clock, **options)


async def add_account(
    store: Store,
    provider_type: str,
    uuid: str,
    document: dict[str, JSONValue],
    **settings: JSONValue,
) -> tuple[ProviderNode, str]:
    """A node naming a token file plus its credential; returns the node and the version."""
    path = f"./configs/{provider_type}/{uuid}.json"
    fields = {"uuid": uuid, PATH_KEYS[provider_type]: path, **settings}
    node = await store.pools.add_node(provider_type, node_from_json(fields, "test"))
    version = await store.credentials.put(
        Credential(provider_type, uuid, document, path), expected_version=None
    )
    return node, version


async def stored(store: Store, provider_type: str, uuid: str) -> Credential:
    credential = await store.credentials.get(provider_type, uuid)
    assert credential is not None
    return credential


def same(actual: Mapping[str, JSONValue], expected: Mapping[str, JSONValue]) -> None:
    """Equal documents, key order included (what a Node write would show)."""
    assert list(actual.items()) == list(expected.items())


async def lock_is_free(store: Store, provider_type: str, uuid: str) -> bool:
    token = await store.credentials.lock(provider_type, uuid, 1000)
    if token is None:
        return False
    assert await store.credentials.unlock(provider_type, uuid, token)
    return True


def answer(body: Any, status: int = 200) -> Callable[[Received, int], tuple[int, Any]]:
    return lambda received, number: (status, body)


# -- documents ---------------------------------------------------------------------------------


def kiro_social_doc() -> dict[str, JSONValue]:
    return {
        "accessToken": "old-access",
        "refreshToken": "old-refresh",
        "profileArn": "arn:aws:codewhisperer:us-east-1:000000000000:profile/OLD",
        "expiresAt": EXPIRED_ISO,
        "authMethod": "social",
        "provider": "Google",
        "socialProvider": "Google",
        "region": "eu-central-1",
        "clientIdHash": "0123456789abcdef",
    }


def kiro_idc_doc() -> dict[str, JSONValue]:
    return {
        "clientId": "FAKE-client-id",
        "clientSecret": "FAKE-client-secret",
        "accessToken": "old-access",
        "refreshToken": "old-refresh",
        "authMethod": "IdC",
        "idcRegion": "eu-west-1",
        "expiresAt": EXPIRED_ISO,
        "startUrl": "https://d-0000000000.awsapps.com/start",
        "region": "us-east-1",
        "provider": "BuilderId",
        "clientIdHash": "fedcba9876543210",
    }


def fake_jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.FAKE-signature"


# -- per format --------------------------------------------------------------------------------


async def refresh_once(
    store: Store,
    http: aiohttp.ClientSession,
    stub: TokenStub,
    provider_type: str,
    node: ProviderNode,
    reply: Any,
) -> Received:
    """Refresh ``node`` with the endpoint answering ``reply``; the one request it received."""
    stub.responder = answer(reply)
    await refresher(store, http).credential_for(provider_type, node)
    (request,) = stub.received
    return request


def assert_form_post(request: Received, path: str, fields: dict[str, str]) -> None:
    """``request`` is the OAuth2 form POST of ``fields`` to ``path``."""
    assert request.path == path
    assert request.content_type == "application/x-www-form-urlencoded"
    assert request.fields == fields


async def test_kiro_social_posts_json_and_merges(
    store: Store, http: aiohttp.ClientSession, stub: TokenStub
) -> None:
    original = kiro_social_doc()
    node, _ = await add_account(
        store, KIRO, "k1", original, KIRO_REFRESH_URL=stub.url("/kiro/{{region}}/refreshToken")
    )
    stub.responder = answer(
        {
            "accessToken": "new-access",
            "refreshToken": "new-refresh",
            "expiresIn": 1800,
            "profileArn": "arn:aws:codewhisperer:us-east-1:000000000000:profile/NEW",
        }
    )
    credential = await refresher(store, http).credential_for(KIRO, node)

    (request,) = stub.received
    assert (request.method, request.path) == ("POST", "/kiro/eu-central-1/refreshToken")
    assert request.content_type == "application/json"
    assert request.fields == {"refreshToken": "old-refresh"}
    expected = {
        **original,
        "accessToken": "new-access",
        "refreshToken": "new-refresh",
        "profileArn": "arn:aws:codewhisperer:us-east-1:000000000000:profile/NEW",
        "expiresAt": iso_ms(NOW + 1_800_000),
    }
    after = await stored(store, KIRO, "k1")
    same(after.document, expected)
    assert credential is not None and credential.document == expected
    assert credential.version == after.version


async def test_kiro_idc_posts_the_oidc_grant_and_merges(
    store: Store, http: aiohttp.ClientSession, stub: TokenStub
) -> None:
    original = kiro_idc_doc()
    node, _ = await add_account(
        store, KIRO, "k1", original, KIRO_REFRESH_IDC_URL=stub.url("/oidc/{{region}}/token")
    )
    # The AWS CreateToken answer: no profileArn, extra fields that are not stored.
    request = await refresh_once(
        store,
        http,
        stub,
        KIRO,
        node,
        {
            "accessToken": "new-access",
            "expiresIn": 28800,
            "idToken": "FAKE.id.token",
            "refreshToken": "new-refresh",
            "tokenType": "Bearer",
        },
    )
    assert request.path == "/oidc/eu-west-1/token"  # idcRegion, not region
    assert request.content_type == "application/json"
    assert request.fields == {
        "refreshToken": "old-refresh",
        "clientId": "FAKE-client-id",
        "clientSecret": "FAKE-client-secret",
        "grantType": "refresh_token",
    }
    expected = {
        **original,
        "accessToken": "new-access",
        "refreshToken": "new-refresh",
        "expiresAt": iso_ms(NOW + 28_800_000),
    }
    same((await stored(store, KIRO, "k1")).document, expected)


async def test_kiro_idc_token_sharing_a_folder_writes_only_its_own_file(
    store: Store, http: aiohttp.ClientSession, stub: TokenStub
) -> None:
    """Two IdC tokens and the IDE's client registration in one folder (stored once, schema
    3): the refresh takes the client from the registration and writes what the Node
    service writes, its own file merged with the answer; the other token's own file is
    untouched, and it sees the refreshed file as its sibling (the Node service reads the
    folder's current files at every load)."""
    registration = {"clientId": "sib-id", "clientSecret": "sib-secret", "expiresAt": "x"}
    mine = {k: v for k, v in kiro_idc_doc().items() if not k.startswith("client")}
    other = {**mine, "accessToken": "other-access"}
    folder = "./configs/kiro/shared"
    files = {"k1.json": mine, "k2.json": other, "reg.json": registration}
    for uuid in ("k1", "k2"):
        path = f"{folder}/{uuid}.json"
        fields = {"uuid": uuid, PATH_KEYS[KIRO]: path}
        fields["KIRO_REFRESH_IDC_URL"] = stub.url("/oidc/{{region}}/token")
        await store.pools.add_node(KIRO, node_from_json(fields, "test"))
        siblings = {n: d for n, d in files.items() if n != f"{uuid}.json"}
        await store.credentials.put(
            Credential(KIRO, uuid, files[f"{uuid}.json"], path, siblings=siblings), None
        )
    k2_before = await stored(store, KIRO, "k2")
    node = await store.pools.get_node(KIRO, "k1")
    assert node is not None
    answer_fields = {"accessToken": "new-access", "expiresIn": 600, "refreshToken": "new-r"}
    request = await refresh_once(store, http, stub, KIRO, node, answer_fields)
    assert request.fields["clientId"] == "sib-id"  # merged in from the registration file
    expected = {
        **mine,
        "accessToken": "new-access",
        "refreshToken": "new-r",
        "expiresAt": iso_ms(NOW + 600_000),
    }
    after = await stored(store, KIRO, "k1")
    same(after.document, expected)
    assert after.siblings == {"k2.json": other, "reg.json": registration}
    k2_after = await stored(store, KIRO, "k2")
    assert k2_after.version == k2_before.version
    assert k2_before.siblings == {"k1.json": mine, "reg.json": registration}
    assert k2_after.document == other
    assert k2_after.siblings == {"k1.json": after.document, "reg.json": registration}


async def test_a_kiro_refresh_leaves_a_sibling_written_meanwhile(
    store: Store, http: aiohttp.ClientSession, stub: TokenStub
) -> None:
    """A refresh writes its own file only (as the Node service): a token of its folder
    written while the refresh waited for its endpoint keeps its new file, also as the
    refreshed token's sibling (the siblings the refresh read are not written back)."""
    registration = {"clientId": "sib-id", "clientSecret": "sib-secret"}
    mine = {k: v for k, v in kiro_idc_doc().items() if not k.startswith("client")}
    files = {"k1.json": mine, "k2.json": {**mine, "accessToken": "k2-0"}, "reg.json": registration}
    for uuid in ("k1", "k2"):
        path = f"./configs/kiro/race/{uuid}.json"
        fields = {"uuid": uuid, PATH_KEYS[KIRO]: path}
        fields["KIRO_REFRESH_IDC_URL"] = stub.url("/oidc/{{region}}/token")
        await store.pools.add_node(KIRO, node_from_json(fields, "test"))
        siblings = {n: d for n, d in files.items() if n != f"{uuid}.json"}
        await store.credentials.put(
            Credential(KIRO, uuid, files[f"{uuid}.json"], path, siblings=siblings), None
        )
    node = await store.pools.get_node(KIRO, "k1")
    assert node is not None
    stub.responder = answer({"accessToken": "k1-1", "expiresIn": 600, "refreshToken": "r1"})
    stub.hold()
    refresh = asyncio.create_task(refresher(store, http).credential_for(KIRO, node))
    await stub.wait_for_requests(1)
    k2 = await stored(store, KIRO, "k2")
    k2_doc = {**k2.document, "accessToken": "k2-1"}
    await store.credentials.put(
        Credential(KIRO, "k2", k2_doc, token_format=TokenFormat.KIRO), k2.version
    )
    stub.release()
    await asyncio.wait_for(refresh, timeout=30)
    k1 = await stored(store, KIRO, "k1")
    assert k1.document["accessToken"] == "k1-1"
    assert k1.siblings["k2.json"] == k2_doc, "the refresh put back the sibling it had read"
    k2_after = await stored(store, KIRO, "k2")
    assert k2_after.document == k2_doc
    assert k2_after.siblings["k1.json"] == k1.document


async def test_kiro_answer_without_refresh_token_keeps_the_old_one(
    store: Store, http: aiohttp.ClientSession, stub: TokenStub
) -> None:
    original = kiro_social_doc()
    node, _ = await add_account(store, KIRO, "k1", original, KIRO_REFRESH_URL=stub.url("/r"))
    stub.responder = answer({"accessToken": "new-access"})  # no expiresIn: 3600 s
    await refresher(store, http).credential_for(KIRO, node)
    expected = {**original, "accessToken": "new-access", "expiresAt": iso_ms(NOW + 3_600_000)}
    same((await stored(store, KIRO, "k1")).document, expected)


@pytest.mark.parametrize(
    ("provider_type", "prefix"), [(GEMINI, "GEMINI"), (ANTIGRAVITY, "ANTIGRAVITY")]
)
async def test_google_posts_the_oauth2_form_and_replaces(
    store: Store, http: aiohttp.ClientSession, stub: TokenStub, provider_type: str, prefix: str
) -> None:
    original: dict[str, JSONValue] = {
        "access_token": "ya29.old",
        "refresh_token": "1//old-refresh",
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "token_type": "Bearer",
        "id_token": "FAKE.old.id",
        "expiry_date": EXPIRED_MS,
        "x_note": "unknown fields do not survive a Google refresh",
    }
    node, _ = await add_account(
        store,
        provider_type,
        "g1",
        original,
        PROJECT_ID="fake-project",
        **{
            f"{prefix}_OAUTH_TOKEN_URL": stub.url("/google/token"),
            f"{prefix}_OAUTH_CLIENT_ID": f"FAKE-{prefix}-client",
            f"{prefix}_OAUTH_CLIENT_SECRET": f"FAKE-{prefix}-secret",
        },
    )
    request = await refresh_once(
        store,
        http,
        stub,
        provider_type,
        node,
        {
            "access_token": "ya29.new",
            "expires_in": 3599,
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "token_type": "Bearer",
            "id_token": "FAKE.new.id",
        },
    )
    assert_form_post(
        request,
        "/google/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": "1//old-refresh",
            "client_id": f"FAKE-{prefix}-client",
            "client_secret": f"FAKE-{prefix}-secret",
        },
    )
    # google-auth-library's object: the answer minus expires_in, then expiry_date, then
    # the carried-over refresh_token.
    same(
        (await stored(store, provider_type, "g1")).document,
        {
            "access_token": "ya29.new",
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "token_type": "Bearer",
            "id_token": "FAKE.new.id",
            "expiry_date": NOW + 3_599_000,
            "refresh_token": "1//old-refresh",
        },
    )


async def test_qwen_device_flow_shape_is_refreshed_into_the_five_fields(
    store: Store, http: aiohttp.ClientSession, stub: TokenStub
) -> None:
    # The raw device-flow answer: no expiry_date, so the expiry is unknown → refresh.
    original: dict[str, JSONValue] = {
        "access_token": "qwen-old",
        "token_type": "Bearer",
        "expires_in": 21600,
        "refresh_token": "qwen-old-refresh",
        "resource_url": "portal.qwen.ai",
        "scope": "openid profile email model.completion",
    }
    node, _ = await add_account(
        store,
        QWEN,
        "q1",
        original,
        QWEN_OAUTH_BASE_URL=stub.url("/qwen"),
        QWEN_OAUTH_CLIENT_ID="FAKE-qwen-client",
    )
    # No refresh_token, no resource_url in the answer: both carried over.
    request = await refresh_once(
        store,
        http,
        stub,
        QWEN,
        node,
        {"access_token": "qwen-new", "token_type": "bearer", "expires_in": 7200},
    )
    assert_form_post(
        request,
        "/qwen/api/v1/oauth2/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": "qwen-old-refresh",
            "client_id": "FAKE-qwen-client",
        },
    )
    same(
        (await stored(store, QWEN, "q1")).document,
        {
            "access_token": "qwen-new",
            "token_type": "bearer",
            "refresh_token": "qwen-old-refresh",
            "resource_url": "portal.qwen.ai",
            "expiry_date": NOW + 7_200_000,
        },
    )


async def test_iflow_posts_with_basic_auth_and_replaces_keeping_the_api_key(
    store: Store, http: aiohttp.ClientSession, stub: TokenStub
) -> None:
    original: dict[str, JSONValue] = {
        "access_token": "iflow-old",
        "refresh_token": "iflow-old-refresh",
        "expiry_date": EXPIRED_MS,
        "token_type": "Bearer",
        "scope": "read",
        "apiKey": "sk-FAKE-iflow",
        "email": "dropped@example.com",
    }
    node, _ = await add_account(
        store,
        IFLOW,
        "i1",
        original,
        IFLOW_OAUTH_TOKEN_URL=stub.url("/oauth/token"),
        IFLOW_OAUTH_CLIENT_ID="FAKE-iflow-client",
        IFLOW_OAUTH_CLIENT_SECRET="FAKE-iflow-secret",
    )
    request = await refresh_once(
        store,
        http,
        stub,
        IFLOW,
        node,
        {
            "access_token": "iflow-new",
            "refresh_token": "iflow-new-refresh",
            "expires_in": 172800,
            "token_type": "Bearer",
            "scope": "read write",
        },
    )
    assert_form_post(
        request,
        "/oauth/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": "iflow-old-refresh",
            "client_id": "FAKE-iflow-client",
            "client_secret": "FAKE-iflow-secret",
        },
    )
    pair = base64.b64encode(b"FAKE-iflow-client:FAKE-iflow-secret").decode()
    assert request.authorization == f"Basic {pair}"
    same(
        (await stored(store, IFLOW, "i1")).document,
        {
            "access_token": "iflow-new",
            "refresh_token": "iflow-new-refresh",
            "expiry_date": NOW + 172_800_000,
            "token_type": "Bearer",
            "scope": "read write",
            "apiKey": "sk-FAKE-iflow",
        },
    )


async def test_codex_rewrites_its_eight_fields_with_urls_from_the_config(
    store: Store, http: aiohttp.ClientSession, stub: TokenStub
) -> None:
    original: dict[str, JSONValue] = {
        "id_token": fake_jwt({"email": "old@example.com", "sub": "user-old"}),
        "access_token": "codex-old",
        "refresh_token": "codex-old-refresh",
        "account_id": "acct-old",
        "last_refresh": iso_ms(NOW - 86_400_000),
        "email": "old@example.com",
        "type": "codex",
        "expired": EXPIRED_ISO,
        "chatgpt_account_id": "acct-old",
        "name": "imported",
        "source": "cli-proxy-api",
    }
    node, _ = await add_account(store, CODEX, "c1", original)
    config = await store.config.get()
    await store.config.put(
        {
            **config.document,
            "CODEX_OAUTH_TOKEN_URL": stub.url("/codex/token"),
            "CODEX_OAUTH_CLIENT_ID": "FAKE-codex-client",
        },
        config.version,
    )
    id_token = fake_jwt(
        {
            "email": "new@example.com",
            "sub": "user-new",
            "https://api.openai.com/auth": {"chatgpt_account_id": "acct-new"},
        }
    )
    request = await refresh_once(
        store,
        http,
        stub,
        CODEX,
        node,
        {
            "id_token": id_token,
            "access_token": "codex-new",
            "refresh_token": "codex-new-refresh",
            "expires_in": 864000,
        },
    )
    assert_form_post(
        request,
        "/codex/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": "codex-old-refresh",
            "client_id": "FAKE-codex-client",
            "scope": "openid profile email",
        },
    )
    same(
        (await stored(store, CODEX, "c1")).document,
        {
            "id_token": id_token,
            "access_token": "codex-new",
            "refresh_token": "codex-new-refresh",
            "account_id": "acct-new",
            "last_refresh": iso_ms(NOW),
            "email": "new@example.com",
            "type": "codex",
            "expired": iso_ms(NOW + 864_000_000),
        },
    )


# -- settings and request building (pure) ------------------------------------------------------


def test_node_key_wins_over_config_and_empty_means_default() -> None:
    config: dict[str, JSONValue] = {"KIRO_REFRESH_URL": "https://config.example/refresh"}
    assert SettingLookup({}, config).get("KIRO_REFRESH_URL") == "https://config.example/refresh"
    node: dict[str, JSONValue] = {"KIRO_REFRESH_URL": "https://node.example/refresh"}
    assert SettingLookup(node, config).get("KIRO_REFRESH_URL") == "https://node.example/refresh"
    # Quick-link writes "" for "built-in default": the node's empty value still wins.
    assert SettingLookup({"KIRO_REFRESH_URL": ""}, config).get("KIRO_REFRESH_URL") is None
    credential = Credential(KIRO, "k1", kiro_social_doc(), token_format=TokenFormat.KIRO)
    request = build_request(credential, SettingLookup({"KIRO_REFRESH_URL": ""}, config))
    assert request.url == "https://prod.eu-central-1.auth.desktop.kiro.dev/refreshToken"
    assert "old-refresh" not in repr(request)


def test_kiro_without_auth_method_is_idc_when_its_sibling_registers_a_client() -> None:
    document = {k: v for k, v in kiro_idc_doc().items() if not k.startswith("client")}
    del document["authMethod"]
    assert kiro_auth_method(document) == "social"
    credential = Credential(
        KIRO,
        "k1",
        document,
        token_format=TokenFormat.KIRO,
        siblings={"fedcba9876543210.json": {"clientId": "sib-id", "clientSecret": "sib-secret"}},
    )
    request = build_request(credential, SettingLookup({}))
    assert request.url == "https://oidc.eu-west-1.amazonaws.com/token"
    assert request.fields["clientId"] == "sib-id"
    assert request.fields["clientSecret"] == "sib-secret"


def test_no_refresh_token_cannot_be_refreshed() -> None:
    codex: dict[str, JSONValue] = {
        "access_token": "at",
        "refresh_token": "",
        "access_token_only": True,
    }
    credential = Credential(CODEX, "c1", codex, token_format=TokenFormat.CODEX)
    with pytest.raises(RefreshFailed, match="no refresh token") as info:
        build_request(credential, SettingLookup({}))
    assert info.value.status is None


# -- when a refresh happens --------------------------------------------------------------------


def kiro_answer(received: Received, number: int) -> tuple[int, Any]:
    return 200, {"accessToken": f"new-access-{number}", "refreshToken": f"new-refresh-{number}"}


async def test_fresh_credential_is_served_without_a_call(
    store: Store, http: aiohttp.ClientSession, stub: TokenStub
) -> None:
    doc = {**kiro_social_doc(), "expiresAt": iso_ms(NOW + 60 * 60_000)}
    node, version = await add_account(store, KIRO, "k1", doc, KIRO_REFRESH_URL=stub.url("/r"))
    stub.responder = kiro_answer
    credential = await refresher(store, http).credential_for(KIRO, node)
    assert credential is not None and credential.version == version
    assert credential.document == doc
    assert stub.count == 0


async def test_near_expiry_credential_is_refreshed(
    store: Store, http: aiohttp.ClientSession, stub: TokenStub
) -> None:
    doc = {**kiro_social_doc(), "expiresAt": iso_ms(NOW + 2 * 60_000)}  # inside 5 min
    node, version = await add_account(store, KIRO, "k1", doc, KIRO_REFRESH_URL=stub.url("/r"))
    stub.responder = kiro_answer
    credential = await refresher(store, http).credential_for(KIRO, node)
    assert stub.count == 1
    assert credential is not None and credential.version != version
    assert credential.document["accessToken"] == "new-access-1"


async def test_node_without_credential_gets_none(store: Store, http: aiohttp.ClientSession) -> None:
    kiro = await store.pools.add_node(KIRO, node_from_json({"uuid": "k0"}, "test"))
    api_key = await store.pools.add_node(
        "openai-custom", node_from_json({"uuid": "o1", "OPENAI_API_KEY": "FAKE"}, "test")
    )
    refreshing = refresher(store, http)
    assert await refreshing.credential_for(KIRO, kiro) is None
    assert await refreshing.credential_for("openai-custom", api_key) is None


async def test_force_refreshes_a_fresh_credential_once_per_seen_version(
    store: Store, http: aiohttp.ClientSession, stub: TokenStub
) -> None:
    doc = {**kiro_social_doc(), "expiresAt": iso_ms(NOW + 60 * 60_000)}
    node, v1 = await add_account(store, KIRO, "k1", doc, KIRO_REFRESH_URL=stub.url("/r"))
    stub.responder = kiro_answer
    refreshing = refresher(store, http)

    forced = await refreshing.refresh(KIRO, node, force=True)  # e.g. after an upstream 401
    assert stub.count == 1 and forced.version != v1
    assert forced.document["accessToken"] == "new-access-1"

    # A caller whose 401 came from the token of v1: the refresh that landed after its read
    # is its answer, no second call.
    again = await refreshing.refresh(KIRO, node, force=True, seen_version=v1)
    assert stub.count == 1 and again.version == forced.version

    # A 401 on the new token itself refreshes again.
    third = await refreshing.refresh(KIRO, node, force=True, seen_version=forced.version)
    assert stub.count == 2 and third.document["accessToken"] == "new-access-2"
    assert (await stored(store, KIRO, "k1")).version == third.version


async def test_concurrent_forced_refreshes_share_one_call(
    store: Store, http: aiohttp.ClientSession, stub: TokenStub
) -> None:
    doc = {**kiro_social_doc(), "expiresAt": iso_ms(NOW + 60 * 60_000)}
    node, v1 = await add_account(store, KIRO, "k1", doc, KIRO_REFRESH_URL=stub.url("/r"))
    stub.responder = kiro_answer
    refreshing = refresher(store, http)
    callers = max(2, int(20 * SCALE))
    results = await asyncio.wait_for(
        asyncio.gather(
            *(refreshing.refresh(KIRO, node, force=True, seen_version=v1) for _ in range(callers))
        ),
        WAIT_S,
    )
    assert stub.count == 1
    assert {r.document["accessToken"] for r in results} == {"new-access-1"}
    assert refreshing.stats.flights == 1 and refreshing.stats.joined == callers - 1


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            400,
            {"error": "invalid_grant", "error_description": "Invalid refresh token"},
            "invalid_grant",
        ),
        (503, b"upstream down", "refused"),
        (200, b"<html>not json</html>", "no JSON object"),
        (200, {"token": "not the expected field"}, "no accessToken"),
        (200, {"accessToken": "x", "expiresIn": "soon"}, "non-numeric expiresIn"),
    ],
)
async def test_endpoint_failure_raises_releases_the_lock_and_changes_nothing(
    store: Store,
    http: aiohttp.ClientSession,
    stub: TokenStub,
    status: int,
    body: Any,
    message: str,
) -> None:
    node, version = await add_account(
        store, KIRO, "k1", kiro_social_doc(), KIRO_REFRESH_URL=stub.url("/r")
    )
    stub.responder = answer(body, status)
    refreshing = refresher(store, http)
    with pytest.raises(RefreshFailed, match=message) as info:
        await refreshing.credential_for(KIRO, node)
    assert info.value.status == status
    assert "old-refresh" not in str(info.value)
    assert await lock_is_free(store, KIRO, "k1")
    after = await stored(store, KIRO, "k1")
    assert after.version == version and after.document == kiro_social_doc()

    # The next attempt takes the lock and succeeds.
    stub.responder = kiro_answer
    credential = await refreshing.credential_for(KIRO, node)
    assert credential is not None and credential.document["accessToken"] == "new-access-2"
    assert refreshing.stats.failures == 1 and refreshing.stats.refreshed == 1


async def test_unreachable_endpoint_raises_without_status(
    store: Store, http: aiohttp.ClientSession
) -> None:
    async with TokenStub() as gone:
        url = gone.url("/r")  # closed when the block ends: nothing listens there any more
    node, version = await add_account(store, KIRO, "k1", kiro_social_doc(), KIRO_REFRESH_URL=url)
    with pytest.raises(RefreshFailed, match="unreachable") as info:
        await refresher(store, http).credential_for(KIRO, node)
    assert info.value.status is None
    assert await lock_is_free(store, KIRO, "k1")
    assert (await stored(store, KIRO, "k1")).version == version


async def test_near_expiry_credential_is_served_when_its_refresh_fails(
    store: Store, http: aiohttp.ClientSession, stub: TokenStub
) -> None:
    doc = {**kiro_social_doc(), "expiresAt": iso_ms(NOW + 2 * 60_000)}
    node, version = await add_account(store, KIRO, "k1", doc, KIRO_REFRESH_URL=stub.url("/r"))
    stub.responder = answer({"error": "temporarily_unavailable"}, 500)
    refreshing = refresher(store, http, failure_backoff_s=WAIT_S)
    first = await refreshing.credential_for(KIRO, node)
    assert first is not None and first.version == version
    second = await refreshing.credential_for(KIRO, node)  # backing off: no new call
    assert second is not None and second.version == version
    assert stub.count == 1 and refreshing.stats.failures == 1


async def test_holder_that_never_writes_makes_waiters_time_out(
    store: Store, http: aiohttp.ClientSession, stub: TokenStub
) -> None:
    node, _ = await add_account(
        store, KIRO, "k1", kiro_social_doc(), KIRO_REFRESH_URL=stub.url("/r")
    )
    token = await store.credentials.lock(KIRO, "k1", 60_000)  # another instance, stuck
    assert token is not None
    try:
        with pytest.raises(RefreshTimedOut):
            await refresher(store, http, wait_for_other_s=0.3).credential_for(KIRO, node)
    finally:
        assert await store.credentials.unlock(KIRO, "k1", token)
    assert stub.count == 0


# -- a holder whose memory copy is behind ------------------------------------------------------


async def test_holder_with_a_stale_cached_copy_uses_the_stored_refresh(
    namespace: Namespace, store: Store, http: aiohttp.ClientSession, stub: TokenStub
) -> None:
    """An instance whose memory copy has not yet heard of another instance's refresh takes
    the lock: its next read is the stored credential (the store's lock contract), so the
    newer version is used and no endpoint call is made."""
    node, version = await add_account(
        store, KIRO, "k1", kiro_social_doc(), KIRO_REFRESH_URL=stub.url("/r")
    )
    stub.responder = kiro_answer
    fresh = {**kiro_social_doc(), "accessToken": "elsewhere", "expiresAt": iso_ms(NOW + 3_600_000)}
    async with Store.open(namespace.instance_settings("b")) as cached:
        assert (await stored(cached, KIRO, "k1")).version == version  # now in its memory
        # Another instance's refresh whose change message has not arrived yet: written
        # straight into the credential hash, no message published.
        client = redis.asyncio.Redis.from_url(namespace.url)
        try:
            file_key = credential_file_key(KIRO, node)
            assert file_key is not None
            key = Keys(namespace.prefix).credential(file_key)
            await client.hset(key, "doc", json.dumps(fresh))
            new_version = str(await client.hincrby(key, "ver", 1))
        finally:
            await client.aclose()
        assert (await stored(cached, KIRO, "k1")).version == version  # still the old copy

        refreshing = refresher(cached, http)
        credential = await asyncio.wait_for(refreshing.credential_for(KIRO, node), WAIT_S)
    assert stub.count == 0 and refreshing.stats.flights == 1
    assert credential is not None and credential.version == new_version
    assert credential.document == fresh
    assert await lock_is_free(store, KIRO, "k1")


# -- SC-004: two instances, one call -----------------------------------------------------------


async def test_sc004_two_instances_200_callers_one_endpoint_call(
    namespace: Namespace, store: Store, stub: TokenStub
) -> None:
    original = kiro_social_doc()
    node, _ = await add_account(store, KIRO, "k1", original, KIRO_REFRESH_URL=stub.url("/r"))
    stub.responder = answer(
        {"accessToken": "new-access", "refreshToken": "new-refresh", "expiresIn": 3600}
    )
    async with (
        Store.open(namespace.instance_settings("a")) as store_a,
        Store.open(namespace.instance_settings("b")) as store_b,
        aiohttp.ClientSession() as http_a,
        aiohttp.ClientSession() as http_b,
    ):
        instances = [refresher(store_a, http_a), refresher(store_b, http_b)]
        stub.hold()  # the holder's call stays in flight until every caller is lined up
        calls = [
            asyncio.create_task(instances[i % 2].credential_for(KIRO, node)) for i in range(CALLERS)
        ]
        try:
            await stub.wait_for_requests(1, WAIT_S)
            # Both instances are in: each has one flight that every other caller joined,
            # and the one without the lock waits for the holder's result.
            await until(
                lambda: sum(r.stats.flights + r.stats.joined for r in instances) == CALLERS,
                "every caller joins its instance's flight",
            )
            await until(lambda: sum(r.stats.waited for r in instances) == 1, "one waiter")
        finally:
            stub.release()
        results = await asyncio.wait_for(asyncio.gather(*calls), WAIT_S)

    assert stub.count == 1
    assert [r.stats.flights for r in instances] == [1, 1]
    assert sum(r.stats.endpoint_calls for r in instances) == 1
    assert all(c is not None and c.document["accessToken"] == "new-access" for c in results)
    expected = {
        **original,
        "accessToken": "new-access",
        "refreshToken": "new-refresh",
        "expiresAt": iso_ms(NOW + 3_600_000),
    }
    after = await stored(store, KIRO, "k1")
    same(after.document, expected)
    assert {c.version for c in results if c is not None} == {after.version}
    assert await lock_is_free(store, KIRO, "k1")
