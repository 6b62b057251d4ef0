"""The sample deployment (``examples/deployment``), migrated, serves every account type it
holds (issue 18, last test point).

A private copy of the sample has every node's upstream and token endpoint pointed at local
stubs (the node keys the adapters and :mod:`cfgstore_gateway.token_requests` read; the
Google, Codex and iFlow token URLs as ``config.json`` keys), written back in the Node
service's bytes. The real ``cfgctl migrate`` stores it in a Redis namespace of its own and a
real ``cfgctl serve`` process serves it. Every token of the sample expired long ago
(2026-03-15), so each OAuth account is refreshed through the token stub before its first
request. Then, per provider type, the official ``openai`` SDK (and for the Claude-protocol
types the ``anthropic`` SDK) asks ``/{type}/v1/...`` with the conversation of the stubs'
scene (a ``get_weather`` result) and gets the stub's answer, whole and streamed.

The sample's other nodes follow the gateway's rules, asserted here:

* ``grok-web`` (a web-cookie account, not an API) is refused with a 503 naming the type as
  not served; its node and cookie stay byte for byte the sample's;
* a type whose only node is disabled (``claude-custom``) or unhealthy with no recovery time
  (``gemini-antigravity``), and the empty ``claude-custom-spare``, answer 503 with the route
  report; an operator then enables / resets them through the admin API and they serve;
* the Kiro Builder ID node (unhealthy after a 402, recovery time 2026-04-01, long past) is
  recovered at its first selection and serves; the Kiro IDE cache node (``needsRefresh``
  in the file, and the sample runs no proactive refresh) is not picked until a health
  reset, then refreshes through IdC with its sibling registration's client and serves;
* the Codex access-token-only import (no refresh token, expired) cannot be refreshed: it
  never reaches the backend and its credential is left as it was; its type is served by
  the other account.

Finally ``cfgctl export`` writes the Node layout back: the same files at the same paths,
every JSON file in the Node service's bytes, the pools' types, nodes and key order kept,
the refreshed tokens in their format, and everything the gateway did not touch byte for
byte the input's.

The whole scenario is one test (one migration, one gateway start, one export: three
``cfgctl`` processes); about 20 s on a busy 2-core machine, most of it process starts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai

from cfgstore.adapters import Settings, Store
from cfgstore.model import jsjson
from cfgstore.model.pools import HOT_KEYS
from tests.cli.deployments import (
    EMPTY_TOKEN_STORE,
    EXAMPLE,
    copy_deployment,
    read_json,
    tree_bytes,
    write_json,
)
from tests.gateway.code_assist_stub import ANTIGRAVITY as ANTIGRAVITY_FLAVOUR
from tests.gateway.code_assist_stub import CLI, CodeAssistStub
from tests.gateway.codex_stub import CodexStub
from tests.gateway.kiro_stub import KiroStub
from tests.gateway.processes import cfgctl, gateway_env, gateway_fleet
from tests.gateway.protocol_stubs import ProtocolStub
from tests.gateway.redis_instances import delete_namespace, new_prefix
from tests.gateway.token_stub import Received, TokenStub

CLIENT_KEY = "sk-FAKE-example-gateway-key"  # the sample's REQUIRED_API_KEY
ADMIN_PASSWORD = "example-admin-password"
ANSWER = "It is 18 C in Paris ☀."
CLI_S = 60.0
"""Bound of one cfgctl call (a start of the interpreter and a Redis round trip or two)."""
CALL_S = 20.0
"""Bound of one client call through the gateway."""

KIRO = "claude-kiro-oauth"
GEMINI = "gemini-cli-oauth"
ANTIGRAVITY = "gemini-antigravity"
QWEN = "openai-qwen-oauth"
IFLOW = "openai-iflow"
CODEX = "openai-codex-oauth"
GROK = "grok-web"
CLAUDE = "claude-custom"
SPARE = "claude-custom-spare"

KIRO_SOCIAL = "67ab4112-97a0-4660-9808-3f9ad194c93b"
KIRO_BUILDER_ID = "c39bf733-a16c-4b29-add5-a96103727919"
KIRO_IDE = "299f53b6-db17-48a2-a3e6-5754f00925e7"
GEMINI_NODE = "d93de8e5-3628-4795-92ae-b8a6b8f17f66"
GEMINI_PROJECT = "example-gcp-project-4711"
ANTIGRAVITY_NODE = "1d1764f8-2360-4b93-9787-834f32bfb03b"
CODEX_BOB = "ddf666e3-f84a-48e1-b010-8d11ddbb7a2b"
CODEX_TOKEN_ONLY = "e57bed61-efe8-48cb-96a0-f999e1146c13"
BOB_ACCOUNT = "0c0d0000-0000-4000-8000-00000000000a"
GROK_NODE = "df13ac5f-6bd1-41ff-bd54-e800dbddb57e"
CLAUDE_NODE = "112af95e-9f7a-4e58-9cd1-e696a3a60d4a"

OAUTH_NODES: dict[tuple[str, str], str] = {
    (KIRO, KIRO_SOCIAL): "aorFAKE-example-kiro-social-refresh-0001",
    (KIRO, KIRO_BUILDER_ID): "aorFAKE-example-kiro-builderid-refresh-0002",
    (KIRO, KIRO_IDE): "aorFAKE-example-kiro-ide-refresh-0003",
    (GEMINI, GEMINI_NODE): "1//0FAKE-example-gemini-refresh-0001",
    (ANTIGRAVITY, ANTIGRAVITY_NODE): "1//0FAKE-example-antigravity-refresh-0001",
    (QWEN, "6b6ec415-26d2-490d-bc62-fa8bdfc8f3c2"): "FAKE-example-qwen-refresh-0001",
    (QWEN, "f6651ee4-714b-4962-823b-549fcdfcb4e4"): "FAKE-example-qwen-refresh-0002",
    (IFLOW, "dbd630ba-3762-4ff4-9c0c-b7b2f6b815b6"): "FAKE-example-iflow-refresh-0001",
    (IFLOW, "027b6990-307e-4aab-ab1e-715dc384ec97"): "FAKE-example-iflow-refresh-0002",
    (CODEX, CODEX_BOB): "rt_FAKE-example-codex-refresh-0001",
}
"""Every OAuth node that can be refreshed, with the refresh token of its file."""

IFLOW_KEYS = {"sk-FAKE-example-iflow-key-0001", "sk-FAKE-example-iflow-key-0002"}
"""iFlow calls its API with the account's ``apiKey``, which a refresh keeps."""

API_KEY_TYPES: dict[str, tuple[str, str]] = {
    "openai-custom": ("gpt-4o", "sk-FAKE-example-openai-key-0001"),
    "openai-custom-deepseek": ("deepseek-chat", "sk-FAKE-example-deepseek-key-0001"),
    "openaiResponses-custom": ("gpt-4o", "sk-FAKE-example-responses-key-0001"),
}
MODELS = {
    KIRO: "claude-haiku-4-5",
    GEMINI: "gemini-2.5-flash",
    ANTIGRAVITY: "gemini-3-flash",
    QWEN: "qwen3-coder-plus",
    IFLOW: "qwen3-coder-plus",
    CODEX: "gpt-5.2",
    CLAUDE: "claude-sonnet-4-5",
    **{t: model for t, (model, _) in API_KEY_TYPES.items()},
}
CLAUDE_PROTOCOL = {KIRO, CLAUDE}


def fresh(refresh_token: str) -> str:
    """The access token the token stub issues for ``refresh_token``."""
    return f"fresh-{refresh_token}"


def unsigned_jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.FAKE"


def token_answer(received: Received, number: int) -> tuple[int, Any]:
    """Each token endpoint of the sample's formats, by path: a new access token derived
    from the refresh token sent (so each stored credential names its own refresh)."""
    fields = received.fields or {}
    path = received.path
    if path in ("/kiro/social", "/kiro/idc"):
        refresh = fields.get("refreshToken")
        if not isinstance(refresh, str) or (path == "/kiro/idc") != ("clientId" in fields):
            return 400, {"error": "invalid_request"}
        return 200, {"accessToken": fresh(refresh), "refreshToken": refresh, "expiresIn": 3600}
    refresh = fields.get("refresh_token")
    if fields.get("grant_type") != "refresh_token" or not isinstance(refresh, str):
        return 400, {"error": "invalid_grant"}
    answer: dict[str, Any] = {"access_token": fresh(refresh), "expires_in": 3600}
    if path in ("/google/gemini", "/google/antigravity"):
        return 200, {**answer, "token_type": "Bearer", "scope": "openid"}
    if path == "/qwen/api/v1/oauth2/token":
        return 200, {**answer, "token_type": "Bearer", "refresh_token": refresh}
    if path == "/iflow/token":
        return 200, {**answer, "token_type": "bearer", "refresh_token": refresh, "scope": "read"}
    if path == "/codex/token" and fields.get("scope") == "openid profile email":
        claims = {
            "email": "bob@example.com",
            "https://api.openai.com/auth": {"chatgpt_account_id": BOB_ACCOUNT},
        }
        return 200, {**answer, "id_token": unsigned_jwt(claims), "refresh_token": refresh}
    return 404, {"error": "unknown_endpoint"}


# ---------------------------------------------------------------------------------- stubs


class Stubs:
    """Every local upstream of the sample, started together."""

    def __init__(self) -> None:
        self.tokens = TokenStub(token_answer)
        self.vendor = ProtocolStub()
        self.codex = CodexStub({fresh(OAUTH_NODES[CODEX, CODEX_BOB]): BOB_ACCOUNT})
        self.kiro = KiroStub()
        # The sample's Gemini CLI account was onboarded by the Node service (the node names
        # its PROJECT_ID); the Antigravity node's PROJECT_ID is empty: discovered.
        self.gemini = CodeAssistStub(
            CLI, project=GEMINI_PROJECT, token=fresh(OAUTH_NODES[GEMINI, GEMINI_NODE])
        )
        self.gemini.onboarded = True
        self.antigravity = CodeAssistStub(
            ANTIGRAVITY_FLAVOUR,
            project=GEMINI_PROJECT,
            token=fresh(OAUTH_NODES[ANTIGRAVITY, ANTIGRAVITY_NODE]),
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Stubs]:
        async with contextlib.AsyncExitStack() as stack:
            stubs = (self.tokens, self.vendor, self.codex, self.kiro, self.gemini, self.antigravity)
            for stub in stubs:
                await stack.enter_async_context(stub)
            yield self

    def vendor_v1(self) -> str:
        return f"{self.vendor.url}/v1"

    def point_nodes(self, pools: dict[str, list[dict[str, Any]]]) -> None:
        """Every node's upstream and token endpoint keys → the stubs (in place)."""
        for node in pools[KIRO]:
            node["KIRO_BASE_URL"] = self.kiro.generate_url
            node["KIRO_REFRESH_URL"] = self.tokens.url("/kiro/social")
            node["KIRO_REFRESH_IDC_URL"] = self.tokens.url("/kiro/idc")
        (gemini,) = pools[GEMINI]
        gemini["GEMINI_BASE_URL"] = self.gemini.base()
        # The adapter reads ANTIGRAVITY_BASE_URL (one base for the list it tries); the
        # sample's ANTIGRAVITY_BASE_URL_DAILY/_AUTOPUSH placeholders stay "" as they are.
        (antigravity,) = pools[ANTIGRAVITY]
        antigravity["ANTIGRAVITY_BASE_URL"] = self.antigravity.base()
        for node in pools[QWEN]:
            node["QWEN_BASE_URL"] = self.vendor_v1()
            node["QWEN_OAUTH_BASE_URL"] = self.tokens.url("/qwen")
        for node in pools[IFLOW]:
            node["IFLOW_BASE_URL"] = self.vendor_v1()
        for node in pools[CODEX]:
            node["CODEX_BASE_URL"] = self.codex.base_url
        for provider_type in API_KEY_TYPES:
            for node in pools[provider_type]:
                node["OPENAI_BASE_URL"] = self.vendor_v1()
        for node in pools[CLAUDE]:
            node["CLAUDE_BASE_URL"] = self.vendor_v1()

    def point_config(self, config: dict[str, Any]) -> None:
        """The token URLs the nodes do not carry, and no outbound proxy (the sample's
        ``PROXY_URL`` is a made-up host)."""
        config["GEMINI_OAUTH_TOKEN_URL"] = self.tokens.url("/google/gemini")
        config["ANTIGRAVITY_OAUTH_TOKEN_URL"] = self.tokens.url("/google/antigravity")
        config["IFLOW_OAUTH_TOKEN_URL"] = self.tokens.url("/iflow/token")
        config["CODEX_OAUTH_TOKEN_URL"] = self.tokens.url("/codex/token")
        config["PROXY_ENABLED_PROVIDERS"] = []


# -------------------------------------------------------------------------------- clients


def conversation_openai() -> tuple[Any, Any]:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": schema}}]
    call = {
        "id": "call_w1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_w1", "content": "18 C"},
    ]
    return messages, tools


def conversation_anthropic() -> tuple[Any, Any]:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": schema}]
    use = {"type": "tool_use", "id": "toolu_w1", "name": "get_weather", "input": {"city": "Paris"}}
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [use]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_w1", "content": "18 C"}],
        },
    ]
    return messages, tools


async def ask_openai(url: str, provider_type: str, *, stream: bool) -> str:
    client = openai.AsyncOpenAI(
        base_url=f"{url}/{provider_type}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=CALL_S
    )
    messages, tools = conversation_openai()
    model = MODELS[provider_type]
    if not stream:
        answer = await client.chat.completions.create(model=model, messages=messages, tools=tools)
        return answer.choices[0].message.content or ""
    chunks = await client.chat.completions.create(
        model=model, messages=messages, tools=tools, stream=True
    )
    return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


async def ask_anthropic(url: str, provider_type: str, *, stream: bool) -> str:
    client = anthropic.AsyncAnthropic(
        base_url=f"{url}/{provider_type}", api_key=CLIENT_KEY, max_retries=0, timeout=CALL_S
    )
    messages, tools = conversation_anthropic()
    model = MODELS[provider_type]
    if not stream:
        answer = await client.messages.create(
            model=model, max_tokens=100, messages=messages, tools=tools
        )
        return "".join(block.text for block in answer.content if block.type == "text")
    async with client.messages.stream(
        model=model, max_tokens=100, messages=messages, tools=tools
    ) as events:
        return "".join([text async for text in events.text_stream])


async def serve_type(url: str, provider_type: str) -> None:
    """The type answers the stub's text to each client, whole and streamed."""
    asks = [ask_openai] + ([ask_anthropic] if provider_type in CLAUDE_PROTOCOL else [])
    for ask in asks:
        for stream in (False, True):
            text = await ask(url, provider_type, stream=stream)
            assert text == ANSWER, (provider_type, ask.__name__, stream)


async def refused(
    client: aiohttp.ClientSession, url: str, provider_type: str
) -> tuple[int, dict[str, Any]]:
    """A chat request for ``provider_type``: (status, JSON answer)."""
    body = {
        "model": MODELS.get(provider_type, "grok-4.1-mini"),
        "messages": conversation_openai()[0],
    }
    async with client.post(
        f"{url}/{provider_type}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
    ) as response:
        return response.status, await response.json()


async def admin_post(client: aiohttp.ClientSession, url: str, path: str, token: str) -> Any:
    async with client.post(
        f"{url}/api{path}", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 200, (path, response.status, await response.text())
        return await response.json()


async def login(client: aiohttp.ClientSession, url: str) -> str:
    async with client.post(f"{url}/api/login", json={"password": ADMIN_PASSWORD}) as response:
        assert response.status == 200, await response.text()
        token: str = (await response.json())["token"]
        return token


# -------------------------------------------------------------------------------- cfgctl


async def run_cfgctl(prefix: str, *args: str | Path) -> str:
    """Run the installed ``cfgctl`` on namespace ``prefix``; its stdout (exit 0 asserted)."""
    process = await asyncio.create_subprocess_exec(
        *cfgctl(),
        *map(str, args),
        env=gateway_env(prefix),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), CLI_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"cfgctl {args[0]} still running after {CLI_S} s") from None
    assert process.returncode == 0, (args, out.decode(), err.decode())
    return out.decode()


def is_node_bytes(raw: bytes) -> bool:
    """Whether ``raw`` is the Node service's ``JSON.stringify(value, null, 2)`` of itself."""
    return jsjson.dump_bytes(jsjson.loads(raw, "export")) == raw


# ---------------------------------------------------------------------------------- tests


async def test_the_migrated_sample_serves_every_account_type_it_holds(
    redis_url: str, tmp_path: Path
) -> None:
    prefix = new_prefix("deploy")
    try:
        async with Stubs().running() as stubs:
            await scenario(stubs, redis_url, prefix, tmp_path)
    finally:
        await asyncio.to_thread(delete_namespace, redis_url, prefix)


async def scenario(stubs: Stubs, redis_url: str, prefix: str, tmp_path: Path) -> None:
    root = copy_deployment(EXAMPLE, tmp_path)
    configs = root / "configs"
    pools = read_json(configs / "provider_pools.json")
    stubs.point_nodes(pools)
    write_json(configs / "provider_pools.json", pools)
    config = read_json(configs / "config.json")
    stubs.point_config(config)
    write_json(configs / "config.json", config)
    before = tree_bytes(root)

    migrated = await run_cfgctl(prefix, "migrate", "--configs", configs, "--redis-url", redis_url)
    assert migrated.startswith("migrated\n"), migrated
    assert "  nodes: 16\n" in migrated and "  credentials: 11\n" in migrated, migrated

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALL_S)) as client:
        async with gateway_fleet(
            tmp_path / "gw", 1, redis_url=redis_url, redis_prefix=prefix, client=client
        ) as (gateway,):
            url = gateway.url
            await check_refusals(client, url)
            for provider_type in (*API_KEY_TYPES, QWEN, IFLOW, CODEX, GEMINI):
                await serve_type(url, provider_type)
            await serve_type(url, KIRO)  # the social and the recovered Builder ID node

            # An operator brings back the nodes the gateway keeps out, and they serve.
            session = await login(client, url)
            await admin_post(client, url, f"/providers/{CLAUDE}/{CLAUDE_NODE}/enable", session)
            await serve_type(url, CLAUDE)
            reset = await admin_post(client, url, f"/providers/{ANTIGRAVITY}/reset-health", session)
            assert reset["resetCount"] == 1, reset
            await serve_type(url, ANTIGRAVITY)
            # The Kiro IDE cache node waits for a refresh (needsRefresh in the file; the
            # sample runs no proactive refresh): a health reset lets it be picked.
            reset = await admin_post(client, url, f"/providers/{KIRO}/reset-health", session)
            assert reset["resetCount"] == 1, reset
            await serve_type(url, KIRO)
            assert await gateway.terminate() == 0, gateway.log_tail()
        log = gateway.log_path.read_text()
    assert CLIENT_KEY not in log and ADMIN_PASSWORD not in log
    assert not [t for t in OAUTH_NODES.values() if t in log]

    check_upstreams(stubs)
    check_refreshes(stubs.tokens.received)
    stored = await check_store(redis_url, prefix)
    out = tmp_path / "out"
    await run_cfgctl(prefix, "export", "--to", out, "--redis-url", redis_url)
    check_export(before, tree_bytes(out), stored)


async def check_refusals(client: aiohttp.ClientSession, url: str) -> None:
    """What a client of a type the gateway cannot serve now is told."""
    status, body = await refused(client, url, GROK)
    message = body["error"]["message"]
    assert status == 503, body
    assert GROK in message and "no adapter" in message, message
    for provider_type, reason in (
        (CLAUDE, "disabled"),
        (SPARE, "none configured"),
        (ANTIGRAVITY, "unhealthy"),
    ):
        status, body = await refused(client, url, provider_type)
        message = body["error"]["message"]
        assert status == 503, (provider_type, body)
        assert f"No healthy provider found in pool for {provider_type}" in message, message
        assert reason in message, (provider_type, message)


def check_upstreams(stubs: Stubs) -> None:
    """Each upstream saw the nodes' own API keys or their refreshed tokens, nothing else."""
    seen = {r.headers.get("Authorization") for r in stubs.vendor.received}
    expected = {f"Bearer {key}" for _, key in API_KEY_TYPES.values()}
    expected |= {f"Bearer {key}" for key in IFLOW_KEYS}
    expected |= {f"Bearer {fresh(r)}" for (t, _), r in OAUTH_NODES.items() if t == QWEN}
    expected.add(None)  # claude-custom: x-api-key
    assert seen == expected, seen
    claude = {r.headers.get("x-api-key") for r in stubs.vendor.received if r.path == "/v1/messages"}
    assert claude == {"sk-ant-FAKE-example-key-0001"}, claude
    sent = {r.headers["Authorization"] for r in stubs.codex.responses()}
    assert sent == {f"Bearer {fresh(OAUTH_NODES[CODEX, CODEX_BOB])}"}, sent
    tokens = set(stubs.kiro.tokens())
    assert tokens == {fresh(r) for (t, _), r in OAUTH_NODES.items() if t == KIRO}, tokens
    assert stubs.gemini.problems == [] and stubs.antigravity.problems == []
    assert "onboardUser" not in stubs.gemini.methods()  # the node names its project
    assert "onboardUser" in stubs.antigravity.methods()  # discovered, onboarded


REFRESH_PATHS = {
    GEMINI: "/google/gemini",
    ANTIGRAVITY: "/google/antigravity",
    QWEN: "/qwen/api/v1/oauth2/token",
    IFLOW: "/iflow/token",
    CODEX: "/codex/token",
}
KIRO_CLIENTS = {
    KIRO_BUILDER_ID: "FAKE-example-clientId-builderid-0002",
    KIRO_IDE: "FAKE-example-clientId-ide-0003",  # from the IDE's registration file
}


def check_refreshes(received: list[Received]) -> None:
    """One refresh per OAuth node, at its format's endpoint, and no other
    (the access-token-only Codex import has no refresh token: never sent)."""
    expected: Counter[tuple[str, str, str | None]] = Counter()
    for (provider_type, uuid), refresh in OAUTH_NODES.items():
        if provider_type == KIRO:
            client = KIRO_CLIENTS.get(uuid)
            path = "/kiro/social" if client is None else "/kiro/idc"
            expected[path, refresh, client] += 1
        else:
            expected[REFRESH_PATHS[provider_type], refresh, None] += 1
    actual: Counter[tuple[str, str, str | None]] = Counter()
    for request in received:
        fields = request.fields or {}
        refresh = fields.get("refreshToken", fields.get("refresh_token"))
        actual[request.path, refresh, fields.get("clientId")] += 1
    assert actual == expected, actual


async def check_store(redis_url: str, prefix: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The refreshed credentials are stored in their format; the nodes' states follow the
    gateway's rules. Returns the stored credential documents."""
    settings = Settings(
        configs_dir=Path("unused"), backends=("redis",), redis_url=redis_url, redis_prefix=prefix
    )
    documents: dict[tuple[str, str], dict[str, Any]] = {}
    async with Store.open(settings) as store:
        for (provider_type, uuid), refresh in OAUTH_NODES.items():
            credential = await store.credentials.get(provider_type, uuid)
            assert credential is not None, uuid
            document = dict(credential.document)
            documents[provider_type, uuid] = document
            assert list(document) == FORMAT_KEYS.get(provider_type, list(document)), document
            access = document.get("access_token", document.get("accessToken"))
            assert access == fresh(refresh), (provider_type, uuid)
        assert documents[CODEX, CODEX_BOB]["account_id"] == BOB_ACCOUNT
        token_only = await store.pools.get_node(CODEX, CODEX_TOKEN_ONLY)
        assert token_only is not None
        assert token_only.state.error_count == 1  # tried once, then left out
        assert "has no refresh token" in (token_only.state.last_error_message or "")
        builder_id = await store.pools.get_node(KIRO, KIRO_BUILDER_ID)
        assert builder_id is not None and builder_id.state.is_healthy
        assert builder_id.state.usage_count > 41
        ide = await store.pools.get_node(KIRO, KIRO_IDE)
        assert ide is not None and ide.state.usage_count > 7
        node = await store.pools.get_node(ANTIGRAVITY, ANTIGRAVITY_NODE)
        assert node is not None and node.state.is_healthy
        assert node.settings["PROJECT_ID"] == GEMINI_PROJECT  # discovered and stored
        grok = await store.pools.get_node(GROK, GROK_NODE)
        assert grok is not None and grok.state.usage_count == 0
    return documents


FORMAT_KEYS = {
    QWEN: ["access_token", "token_type", "refresh_token", "resource_url", "expiry_date"],
    IFLOW: ["access_token", "refresh_token", "expiry_date", "token_type", "scope", "apiKey"],
    CODEX: [
        "id_token",
        "access_token",
        "refresh_token",
        "account_id",
        "last_refresh",
        "email",
        "type",
        "expired",
    ],
    GEMINI: ["access_token", "token_type", "scope", "expiry_date", "refresh_token"],
    ANTIGRAVITY: ["access_token", "token_type", "scope", "expiry_date", "refresh_token"],
}
"""The key order each format writes after a refresh (Kiro merges into the document)."""


def check_export(
    before: dict[str, bytes],
    after: dict[str, bytes],
    stored: dict[tuple[str, str], dict[str, Any]],
) -> None:
    """The export is the Node layout: the same files, Node bytes, the pools' shape kept,
    the refreshed token files in place and everything else byte for byte the input."""
    expected = {name for name in before if name != "README.md"}
    assert set(after) == expected, sorted(set(after) ^ expected)
    for name, raw in after.items():
        if name.endswith(".json"):
            assert is_node_bytes(raw), name
    pools_before = json.loads(before[POOLS])
    pools_after = json.loads(after[POOLS])
    assert list(pools_after) == list(pools_before)
    token_files: dict[str, tuple[str, str]] = {}
    for provider_type, nodes in pools_before.items():
        assert [n["uuid"] for n in pools_after[provider_type]] == [n["uuid"] for n in nodes]
        for old, new in zip(nodes, pools_after[provider_type], strict=True):
            assert list(new)[: len(old)] == list(old), old["uuid"]  # key order kept
            changed = {
                k for k in old.keys() | new.keys() if k not in HOT_KEYS and old.get(k) != new.get(k)
            }
            project = {"PROJECT_ID"} if old["uuid"] == ANTIGRAVITY_NODE else set()
            assert changed <= project, (old["uuid"], changed)
            for key, value in old.items():
                if key.endswith("_PATH") and isinstance(value, str):
                    token_files["configs/" + value.split("configs/", 1)[1]] = (
                        provider_type,
                        old["uuid"],
                    )
    assert json.dumps(pools_after[GROK]) == json.dumps(pools_before[GROK])  # untouched
    assert after[TOKEN_STORE] == EMPTY_TOKEN_STORE  # sessions are not exported
    for name, raw in after.items():
        owner = token_files.get(name)
        if owner in stored:
            assert json.loads(raw) == stored[owner], name
            if owner[0] == KIRO:  # merged: every field of the file stays, in place
                assert list(json.loads(raw)) == list(json.loads(before[name])), name
        elif name not in (POOLS, TOKEN_STORE):
            assert raw == before[name], name  # not refreshed, not written: the input


POOLS = "configs/provider_pools.json"
TOKEN_STORE = "configs/token-store.json"
