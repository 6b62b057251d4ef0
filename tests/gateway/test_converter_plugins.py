"""A third party adds a protocol: a plugin registers a converter (hook
``cfgstore_gateway_converters``) and an adapter that speaks it; OpenAI and Anthropic clients
are then served by that upstream, whole and streamed, through the same conversion core."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anthropic
import openai

from cfgstore.adapters import Store
from cfgstore.model.config import MainConfig
from cfgstore.model.pools import ProviderNode
from cfgstore_gateway.adapters import ModelsCall, UpstreamCall, UpstreamReply
from cfgstore_gateway.app import create_app
from cfgstore_gateway.hookspecs import adapters_hookimpl, converters_hookimpl
from cfgstore_gateway.protocols import neutral as n
from tests.gateway.conftest import CLIENT_KEY, WAIT_S, make_deployment, serving

TYPE = "plain-llm"
NODE = "99999999-0000-4000-8000-000000000099"


class PlainReader:
    """The plain stream: one line of text per event, ``END`` last."""

    def __init__(self) -> None:
        self._pending = b""
        self._started = False

    def feed(self, chunk: bytes) -> list[n.StreamEvent]:
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        events: list[n.StreamEvent] = [] if self._started else [n.Start("plain-1", "plain")]
        self._started = True
        for line in lines:
            if line == b"END":
                events.append(n.Finish("end", n.Usage(3, 2)))
            elif line:
                events.append(n.TextDelta(line.decode()))
        return events

    def close(self) -> list[n.StreamEvent]:
        return []


class PlainConverter:
    """A made-up protocol: ``{"model", "prompt", "stream"}`` in, ``{"text"}`` out."""

    name = "plain"

    def parse_request(self, body: Mapping[str, Any], model: str | None = None) -> n.ChatRequest:
        return n.ChatRequest(
            model or body["model"], (n.Message("user", (n.Text(body["prompt"]),)),)
        )

    def render_request(self, request: n.ChatRequest) -> dict[str, Any]:
        prompt = "\n".join(m.text() for m in request.messages if m.role == "user")
        return {"model": request.model, "prompt": prompt, "stream": request.stream}

    def parse_response(self, body: Mapping[str, Any]) -> n.ChatResponse:
        return n.ChatResponse("plain-1", "plain", (n.Text(body["text"]),), usage=n.Usage(3, 2))

    def render_response(self, response: n.ChatResponse) -> dict[str, Any]:
        return {"text": response.text()}

    def stream_reader(self) -> PlainReader:
        return PlainReader()

    def stream_writer(self, model: str) -> Any:
        raise NotImplementedError("no client speaks plain here")

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": message}


class PlainReply:
    def __init__(self, body: bytes, chunks: Sequence[bytes]) -> None:
        self._body, self._chunks = body, chunks

    @property
    def status(self) -> int:
        return 200

    @property
    def headers(self) -> Mapping[str, str]:
        return {"Content-Type": "application/json"}

    async def read(self) -> bytes:
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk

    def close(self) -> None:
        pass


class PlainAdapter:
    """An in-process "upstream" answering in the plain protocol: the prompt, shouted."""

    name = "plain-upstream"
    protocol = "plain"

    def __init__(self) -> None:
        self.bodies: list[Mapping[str, Any]] = []

    def serves(self, provider_type: str) -> bool:
        return provider_type == TYPE

    def needs_credential(self, provider_type: str) -> bool:
        return False

    def check_node(self, provider_type: str, node: ProviderNode, config: MainConfig) -> None:
        pass

    def static_models(self, provider_type: str) -> Sequence[str]:
        return ("plain-1",)

    async def chat_completions(self, call: UpstreamCall) -> UpstreamReply:
        self.bodies.append(call.body)
        text = str(call.body["prompt"]).upper()
        words = [w.encode() + b"\n" for w in text.split(" ")]
        return PlainReply(json.dumps({"text": text}).encode(), [*words, b"END\n"])

    async def list_models(self, call: ModelsCall) -> list[str]:
        return ["plain-1"]


class PlainPlugin:
    def __init__(self) -> None:
        self.adapter = PlainAdapter()

    @converters_hookimpl
    def cfgstore_gateway_converters(self, register: Callable[[Any], None]) -> None:
        register(PlainConverter())

    @adapters_hookimpl
    def cfgstore_gateway_adapters(self, register: Callable[[Any], None]) -> None:
        register(self.adapter)


async def test_a_plugin_protocol_serves_openai_and_anthropic_clients(tmp_path: Path) -> None:
    settings = make_deployment(tmp_path, {TYPE: [{"uuid": NODE}]}, MODEL_PROVIDER=TYPE)
    plugin = PlainPlugin()
    async with Store.open(settings) as store:
        store.plugins.manager.register(plugin, name="plain-protocol")
        async with serving(create_app(store)) as url:
            chat = openai.AsyncOpenAI(
                base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=WAIT_S
            )
            whole = await chat.chat.completions.create(
                model="plain-1", messages=[{"role": "user", "content": "hello there"}]
            )
            assert whole.choices[0].message.content == "HELLO THERE"
            assert whole.usage is not None and whole.usage.prompt_tokens == 3
            stream = await chat.chat.completions.create(
                model="plain-1", messages=[{"role": "user", "content": "a b c"}], stream=True
            )
            pieces = [
                c.choices[0].delta.content
                async for c in stream
                if c.choices and c.choices[0].delta.content
            ]
            assert pieces == ["A", "B", "C"]
            claude = anthropic.AsyncAnthropic(
                base_url=url, api_key=CLIENT_KEY, max_retries=0, timeout=WAIT_S
            )
            message = await claude.messages.create(
                model="plain-1", max_tokens=10, messages=[{"role": "user", "content": "quiet"}]
            )
            assert message.content[0].type == "text" and message.content[0].text == "QUIET"
        await store.flush()
        node = await store.pools.get_node(TYPE, NODE)
        assert node is not None and node.state.usage_count == 3
    assert [b["prompt"] for b in plugin.adapter.bodies] == ["hello there", "a b c", "quiet"]
    assert plugin.adapter.bodies[1]["stream"] is True
