"""Gateway plugins from outside: a third party's plugins registered through the hook
``cfgstore_gateway_plugins`` admit, refuse and see every outcome; they run by priority; a
broken one neither fails a request nor lets one in; a toggle in ``plugins.json`` on one
instance reaches another over the same Redis within a second; refusals take each client
protocol's error shape; outcomes carry the token usage of converted and passed-through
answers, whole and streamed; ``default-auth`` is not turned off alone; plugin routes answer
404 while their plugin is off and need an admin session when marked so."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cfgstore.adapters import Settings, Store
from cfgstore.model.plugin_config import PluginConfig
from cfgstore_gateway.app import create_app
from cfgstore_gateway.hookspecs import plugins_hookimpl
from cfgstore_gateway.plugin_api import (
    Admit,
    ClientCall,
    ConsoleTab,
    Outcome,
    PluginContext,
    PluginRoute,
    Refuse,
)
from cfgstore_gateway.plugin_runtime import PLUGINS, PluginRuntime
from tests.admin.conftest import Admin, set_password
from tests.gateway.conftest import CLIENT_KEY, WAIT_S, make_deployment, serving
from tests.gateway.protocol_stubs import MODEL, ProtocolStub
from tests.gateway.redis_instances import delete_namespace, seeded_namespace

NODE = "0a0a0a0a-0000-4000-8000-00000000000a"
QUOTA = {"used": 5, "limit": 5, "resetDate": "2026-01-01"}


class Gate:
    """An authenticating plugin: the keys ``gate_*`` are its own (``gate_ok`` in,
    ``gate_over`` over its quota, any other unknown)."""

    name = "gate"
    description = "Keys of its own"
    priority = 10
    enabled_by_default = False
    authenticates = True

    def __init__(self, order: list[str] | None = None) -> None:
        self.order = order if order is not None else []
        self.outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
        self.started: PluginContext | None = None
        self.routes = (
            PluginRoute("GET", "/api/gate/stats", self._stats, "admin"),
            PluginRoute("GET", "/api/gateuser/me", self._me, "public"),
            PluginRoute("POST", "/api/gate/client", self._me, "client"),
            PluginRoute("GET", "/api/plugins", self._stats, "admin"),  # the gateway's own
        )
        self.console = ConsoleTab("Gate", b"export function render(element) {}\n")

    async def start(self, context: PluginContext) -> None:
        self.started = context

    async def admit(self, call: ClientCall) -> Admit | Refuse | None:
        self.order.append(self.name)
        key = next((k for k in call.keys if k.startswith("gate_")), None)
        if key is None:
            return None
        if key == "gate_ok":
            return Admit("gate_ok", {"gateKey": key})
        if key == "gate_over":
            return Refuse(
                429, "Quota exceeded for this API key", "quota_exceeded", {"quota": QUOTA}
            )
        return Refuse(401, "Unknown key", "not_found")

    async def finished(self, outcome: Outcome) -> None:
        self.outcomes.put_nowait(outcome)

    async def next_outcome(self) -> Outcome:
        return await asyncio.wait_for(self.outcomes.get(), WAIT_S)

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"success": True, "data": {"plugin": self.name}})

    async def _me(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"success": True, "data": "me"})


class Watcher:
    """A plugin that only looks (``verdict``: what its ``admit`` answers)."""

    description = "Looks"
    enabled_by_default = True

    def __init__(self, name: str, priority: int, order: list[str], verdict: Any = None) -> None:
        self.name, self.priority, self.order, self.verdict = name, priority, order, verdict

    async def admit(self, call: ClientCall) -> Any:
        self.order.append(self.name)
        return self.verdict


class Broken:
    """Claims to authenticate; raises in everything."""

    name = "broken"
    description = "Always raises"
    priority = 1
    enabled_by_default = True
    authenticates = True

    async def admit(self, call: ClientCall) -> Admit:
        raise RuntimeError("broken admit")

    async def finished(self, outcome: Outcome) -> None:
        raise RuntimeError("broken finished")


class Hanging:
    """Claims to authenticate; its ``admit`` never answers."""

    name = "hanging"
    description = "Never answers"
    priority = 2
    enabled_by_default = True
    authenticates = True

    async def admit(self, call: ClientCall) -> Admit:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class Offer:
    """A third party's distribution: registers its plugins through the hook."""

    def __init__(self, *plugins: object) -> None:
        self.plugins = plugins

    @plugins_hookimpl
    def cfgstore_gateway_plugins(self, register: Callable[[Any], None]) -> None:
        for plugin in self.plugins:
            register(plugin)


def openai_node(url: str) -> dict[str, Any]:
    return {"uuid": NODE, "OPENAI_API_KEY": "sk-openai-up-0123", "OPENAI_BASE_URL": f"{url}/v1"}


@asynccontextmanager
async def gateway(
    settings: Settings, plugins: Sequence[object], enabled: dict[str, bool] | None = None
) -> AsyncIterator[tuple[Admin, PluginRuntime]]:
    async with Store.open(settings) as store:
        await set_password(store)
        store.plugins.manager.register(Offer(*plugins), name=f"third-party-{id(plugins)}")
        if enabled:
            await store.plugin_config.put(
                PluginConfig({n: {"enabled": on} for n, on in enabled.items()})
            )
        app = create_app(store)
        async with (
            serving(app) as url,
            aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=WAIT_S * 3)) as client,
        ):
            yield Admin(client, store), app[PLUGINS]


def chat_body(stream: bool = False) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


async def post(admin: Admin, path: str, key: str | None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with admin.client.post(path, json=body or chat_body(), headers=headers) as response:
        text = await response.read()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


async def test_an_authenticating_plugin_admits_refuses_and_sees_outcomes(tmp_path: Path) -> None:
    gate = Gate()
    async with ProtocolStub() as stub:
        settings = make_deployment(tmp_path, {"openai-custom": [openai_node(stub.url)]})
        async with gateway(settings, [gate], {"gate": True}) as (gw, runtime):
            assert gate.started is not None and gate.started.is_enabled()
            names = [p.name for p in runtime.plugins]  # the shipped ones too
            assert names.index("gate") < names.index("ai-monitor") < names.index("default-auth")
            status, body = await post(gw, "/v1/chat/completions", "gate_ok")
            assert status == 200, body
            outcome = await gate.next_outcome()
            assert (outcome.admitted_by, dict(outcome.admission)) == (
                "gate",
                {"gateKey": "gate_ok"},
            )
            assert (outcome.status, outcome.protocol, outcome.upstream_protocol) == (
                200,
                "openai",
                "openai",
            )
            assert (outcome.provider_type, outcome.node, outcome.model) == (
                "openai-custom",
                NODE,
                MODEL,
            )
            assert outcome.usage is not None and outcome.usage.total_tokens == 18
            assert outcome.exchange is None  # nobody wants the bodies
            status, body = await post(gw, "/v1/chat/completions", "gate_over")
            assert status == 429
            assert body["error"]["code"] == "quota_exceeded" and body["error"]["quota"] == QUOTA
            status, _ = await post(gw, "/v1/chat/completions", "gate_unknown")
            assert status == 401
            status, _ = await post(gw, "/v1/chat/completions", None)
            assert status == 401
            status, _ = await post(gw, "/v1/chat/completions", CLIENT_KEY)  # default-auth
            assert status == 200
            outcome = await gate.next_outcome()  # refused requests have no outcome
            assert outcome.admitted_by is None and outcome.status == 200
            assert gate.outcomes.empty()
            assert len(stub.received) == 2


async def test_plugins_run_by_priority_and_only_authenticators_admit(tmp_path: Path) -> None:
    order: list[str] = []
    plugins = [
        Watcher("b-late", 50, order, Admit("claims", {})),  # not an authenticator: no opinion
        Watcher("a-late", 50, order),
        Watcher("first", 5, order),
        Gate(order),
    ]
    async with ProtocolStub() as stub:
        settings = make_deployment(tmp_path, {"openai-custom": [openai_node(stub.url)]})
        async with gateway(settings, plugins, {"gate": True}) as (gw, _):
            status, _ = await post(gw, "/v1/chat/completions", None)
            assert status == 401  # b-late's Admit let nobody in
            assert order == ["first", "gate", "a-late", "b-late"]
            order.clear()
            status, _ = await post(gw, "/v1/chat/completions", "gate_ok")
            assert status == 200 and order == ["first", "gate"]  # admitted: the rest skipped
            assert not stub.received[0].headers.get("Authorization", "").endswith("gate_ok")


async def test_a_broken_plugin_neither_fails_a_request_nor_lets_one_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate()
    async with ProtocolStub() as stub:
        settings = make_deployment(tmp_path, {"openai-custom": [openai_node(stub.url)]})
        async with gateway(settings, [Broken(), Hanging(), gate], {"gate": True}) as (gw, rt):
            rt.admit_timeout_s = 0.1  # the bound of every admit (5 s by default)
            with caplog.at_level(logging.ERROR, "cfgstore_gateway.plugins"):
                assert (await post(gw, "/v1/chat/completions", None))[0] == 401
                assert (await post(gw, "/v1/chat/completions", "anything"))[0] == 401
                status, body = await post(gw, "/v1/chat/completions", CLIENT_KEY)
                assert status == 200, body
                status, _ = await post(gw, "/v1/chat/completions", CLIENT_KEY, chat_body(True))
                assert status == 200
                first, second = await gate.next_outcome(), await gate.next_outcome()
                assert (first.stream, second.stream) == (False, True)  # after broken's raise
    messages = [r.getMessage() for r in caplog.records]
    assert any("broken: admit failed, bypassed" in m for m in messages)
    assert any("broken: finished failed" in m for m in messages)
    assert any("hanging: admit timed out" in m for m in messages)


async def test_refusals_take_each_client_protocol_shape(tmp_path: Path) -> None:
    settings = make_deployment(tmp_path, {"openai-custom": [openai_node("http://127.0.0.1:9")]})
    async with gateway(settings, [Gate()], {"gate": True}) as (gw, _):
        status, body = await post(gw, "/v1/chat/completions", "gate_over")
        assert status == 429
        assert body["error"]["type"] == "rate_limit_error"
        assert body["error"]["code"] == "quota_exceeded" and body["error"]["quota"] == QUOTA
        claude = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
        status, body = await post(gw, "/v1/messages", "gate_over", claude)
        assert status == 429 and body["type"] == "error"
        assert body["error"]["type"] == "rate_limit_error"
        assert body["error"]["message"] == "Quota exceeded for this API key"
        assert body["error"]["code"] == "quota_exceeded" and body["error"]["quota"] == QUOTA
        gemini = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
        status, body = await post(
            gw, f"/v1beta/models/{MODEL}:generateContent", "gate_over", gemini
        )
        assert status == 429
        assert (body["error"]["code"], body["error"]["status"]) == (429, "RESOURCE_EXHAUSTED")
        assert body["error"]["details"][0]["reason"] == "quota_exceeded"
        assert body["error"]["quota"] == QUOTA
        status, body = await post(gw, "/v1/responses", "gate_over", {"model": MODEL, "input": "x"})
        assert status == 429 and body["error"]["code"] == "quota_exceeded"
        assert body["error"]["message"] == "Quota exceeded for this API key"


async def test_outcomes_carry_usage_converted_and_passed_through(tmp_path: Path) -> None:
    gate = Gate()
    async with ProtocolStub() as stub:
        pools = {
            "openai-custom": [openai_node(stub.url)],
            "claude-custom": [
                {
                    "uuid": NODE,
                    "CLAUDE_API_KEY": "sk-claude-up-0123",
                    "CLAUDE_BASE_URL": f"{stub.url}/v1",
                }
            ],
            "openaiResponses-custom": [
                {
                    "uuid": NODE,
                    "OPENAI_API_KEY": "sk-resp-up-0123",
                    "OPENAI_BASE_URL": f"{stub.url}/v1",
                }
            ],
        }
        settings = make_deployment(tmp_path, pools)
        claude = {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "x"}]}
        cases = [
            ("/openai-custom/v1/chat/completions", chat_body(), "openai", "openai"),
            ("/openai-custom/v1/chat/completions", chat_body(True), "openai", "openai"),
            ("/claude-custom/v1/messages", claude, "claude", "claude"),
            ("/claude-custom/v1/messages", {**claude, "stream": True}, "claude", "claude"),
            (
                "/openaiResponses-custom/v1/responses",
                {"model": MODEL, "input": "x", "stream": True},
                "openaiResponses",
                "openaiResponses",
            ),
            ("/openai-custom/v1/messages", claude, "claude", "openai"),
            ("/openai-custom/v1/messages", {**claude, "stream": True}, "claude", "openai"),
            (
                f"/openai-custom/v1beta/models/{MODEL}:streamGenerateContent",
                {"contents": [{"role": "user", "parts": [{"text": "x"}]}]},
                "gemini",
                "openai",
            ),
        ]
        async with gateway(settings, [gate], {"gate": True}) as (gw, _):
            for path, body, client, upstream in cases:
                status, answer = await post(gw, path, "gate_ok", body)
                assert status == 200, (path, answer)
                outcome = await gate.next_outcome()
                assert (outcome.protocol, outcome.upstream_protocol) == (client, upstream), path
                assert outcome.usage is not None, (path, body.get("stream"), stub)
                assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (11, 7), (
                    path,
                    stub,
                )


async def test_default_auth_is_not_turned_off_alone(tmp_path: Path) -> None:
    settings = make_deployment(tmp_path, {"openai-custom": [openai_node("http://127.0.0.1:9")]})
    async with gateway(settings, [Gate()]) as (anonymous, runtime):
        admin = await anonymous.login()
        status, body = await admin.call("GET", "/api/plugins")
        listed = {p["name"]: p for p in body["plugins"]}
        assert listed["default-auth"]["enabled"] is True and listed["default-auth"]["builtIn"]
        assert listed["default-auth"]["priority"] == 9999
        assert listed["gate"]["enabled"] is False and listed["gate"]["builtIn"] is False
        assert listed["ai-monitor"]["enabled"] is False  # shipped, off by default
        off = {"enabled": False}
        status, body = await admin.call("POST", "/api/plugins/default-auth/toggle", json=off)
        assert status == 400 and "default-auth" in body["error"]["message"]
        assert runtime.is_enabled("default-auth")
        changed = runtime.changed()
        status, _ = await admin.call("POST", "/api/plugins/gate/toggle", json={"enabled": True})
        assert status == 200
        await asyncio.wait_for(changed, WAIT_S)
        changed = runtime.changed()
        status, _ = await admin.call("POST", "/api/plugins/default-auth/toggle", json=off)
        assert status == 200
        await asyncio.wait_for(changed, WAIT_S)
        assert not runtime.is_enabled("default-auth")
        status, body = await post(admin, "/v1/chat/completions", CLIENT_KEY)
        assert status == 401  # the configured key no longer admits
        status, body = await admin.call("GET", "/v1/models", headers={"x-api-key": "gate_ok"})
        assert status == 200 and body["object"] == "list"


async def test_plugin_routes_and_console_tab_follow_the_plugin(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_deployment(tmp_path, {"openai-custom": [openai_node("http://127.0.0.1:9")]})
    with caplog.at_level(logging.ERROR, "cfgstore_gateway.plugins"):
        async with gateway(settings, [Gate()]) as (anonymous, runtime):
            admin = await anonymous.login()
            assert (await anonymous.call("GET", "/api/gateuser/me"))[0] == 404
            assert (await anonymous.call("GET", "/api/gate/stats"))[0] == 401  # no session
            assert (await admin.call("GET", "/api/gate/stats"))[0] == 404
            assert (await anonymous.call("GET", "/static/plugins/gate.js"))[0] == 404
            status, body = await admin.call("GET", "/api/cfgstore/plugin-tabs")
            assert status == 200 and body == {"tabs": []}
            # The colliding route was refused: the gateway's own answers.
            status, body = await admin.call("GET", "/api/plugins")
            assert status == 200 and "plugins" in body
            changed = runtime.changed()
            await admin.store.plugin_config.set_enabled("gate", True)
            await asyncio.wait_for(changed, WAIT_S)
            assert (await anonymous.call("GET", "/api/gateuser/me"))[1]["data"] == "me"
            assert (await anonymous.call("GET", "/api/gate/stats"))[0] == 401
            assert (await anonymous.call("POST", "/api/gate/client"))[0] == 401  # no key
            status, body = await post(anonymous, "/api/gate/client", "gate_ok")
            assert status == 200 and body["data"] == "me"  # admitted, no admin session
            status, body = await admin.call("GET", "/api/gate/stats")
            assert status == 200 and body["data"] == {"plugin": "gate"}
            async with anonymous.client.get("/static/plugins/gate.js") as response:
                assert response.status == 200
                assert response.content_type == "text/javascript"
                assert await response.read() == b"export function render(element) {}\n"
            status, body = await admin.call("GET", "/api/cfgstore/plugin-tabs")
            assert body["tabs"] == [
                {"plugin": "gate", "title": "Gate", "script": "/static/plugins/gate.js"}
            ]
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused and "GET /api/plugins" in refused[0] and "answers it already" in refused[0]


async def test_a_toggle_reaches_another_instance_within_a_second(
    tmp_path: Path, redis_url: str
) -> None:
    namespace = await seeded_namespace(redis_url, tmp_path, "plg-")
    try:
        async with Store.open(namespace.redis_settings()) as seed:
            config = await seed.config.get()
            await seed.config.put(
                {
                    **config.document,
                    "REQUIRED_API_KEY": CLIENT_KEY,
                    "MODEL_PROVIDER": "openai-custom",
                },
                config.version,
            )
        async with (
            gateway(namespace.instance_settings("a"), [Gate()]) as (one, _),
            gateway(namespace.instance_settings("b"), [Gate()]) as (two, runtime_two),
        ):
            assert (await two.call("GET", "/v1/models", headers={"x-api-key": "gate_ok"}))[0] == 401
            changed = runtime_two.changed()
            started = time.monotonic()
            await one.store.plugin_config.set_enabled("gate", True)
            while True:  # each re-read of plugins.json on instance two, until it is on
                await asyncio.wait_for(changed, max(0.01, 1.0 - (time.monotonic() - started)))
                if runtime_two.is_enabled("gate"):
                    break
                changed = runtime_two.changed()
            assert time.monotonic() - started < 1.0
            status, body = await two.call("GET", "/v1/models", headers={"x-api-key": "gate_over"})
            assert status == 429 and body["error"]["code"] == "quota_exceeded"
            assert (await two.call("GET", "/v1/models", headers={"x-api-key": "gate_ok"}))[0] == 200
    finally:
        await asyncio.to_thread(delete_namespace, redis_url, namespace.prefix)
