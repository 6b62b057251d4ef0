"""Each protocol carries what it can express through the neutral model and back: requests,
whole responses and streams (cut at random byte boundaries), for generated conversations."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfgstore_gateway.protocols import BUILT_IN, Converter
from cfgstore_gateway.protocols import neutral as n
from tests.protocols.strategies import requests, responses, stream_of

PROTOCOLS = pytest.mark.parametrize("protocol", BUILT_IN, ids=lambda c: c.name)


def merged(messages: tuple[n.Message, ...]) -> tuple[n.Message, ...]:
    """Consecutive turns of one role as one (protocols that need alternation merge them)."""
    out: list[n.Message] = []
    for message in messages:
        if out and out[-1].role == message.role:
            out[-1] = n.Message(message.role, out[-1].parts + message.parts)
        else:
            out.append(message)
    return tuple(out)


def unnamed(message: n.Message) -> n.Message:
    parts = tuple(
        attrs.evolve(p, name=None) if isinstance(p, n.ToolResult) else p for p in message.parts
    )
    return n.Message(message.role, parts)


def expressible(protocol: str, request: n.ChatRequest) -> n.ChatRequest:
    """``request`` as ``protocol`` can carry it (compared after both sides pass this)."""
    request = attrs.evolve(request, messages=tuple(unnamed(m) for m in merged(request.messages)))
    if protocol == "gemini":  # the stream flag is in the URL, not the body
        request = attrs.evolve(request, stream=False)
    if protocol == "openaiResponses":
        request = attrs.evolve(request, stop=())
    return request


def through_json(body: dict[str, object]) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(json.dumps(body))
    return loaded


@PROTOCOLS
@settings(max_examples=40, deadline=None)
@given(request=requests())
def test_request_round_trip(protocol: Converter, request: n.ChatRequest) -> None:
    body = through_json(protocol.render_request(request))
    again = protocol.parse_request(body, model=request.model)
    assert expressible(protocol.name, again) == expressible(protocol.name, request)


@PROTOCOLS
@settings(max_examples=40, deadline=None)
@given(response=responses())
def test_response_round_trip(protocol: Converter, response: n.ChatResponse) -> None:
    body = through_json(protocol.render_response(response))
    again = protocol.parse_response(body)
    assert attrs.evolve(again, id=response.id) == response


def reassembled(events: list[n.StreamEvent]) -> tuple[str, list[tuple[str, str, str]], n.Finish]:
    """The text, the tool calls (id, name, arguments) and the Finish a stream carries."""
    assert isinstance(events[0], n.Start)
    assert isinstance(events[-1], n.Finish)
    assert sum(isinstance(e, n.Start | n.Finish) for e in events) == 2
    text = "".join(e.text for e in events if isinstance(e, n.TextDelta))
    calls: dict[int, list[str]] = {}
    for event in events:
        if isinstance(event, n.ToolCallStart):
            calls[event.index] = [event.id, event.name, ""]
        elif isinstance(event, n.ToolCallDelta):
            calls[event.index][2] += event.arguments
    return text, [(i, nm, json.dumps(json.loads(a))) for i, nm, a in calls.values()], events[-1]


@PROTOCOLS
@settings(max_examples=40, deadline=None)
@given(response=responses(), data=st.data())
def test_stream_round_trip_at_any_byte_boundary(
    protocol: Converter, response: n.ChatResponse, data: st.DataObject
) -> None:
    writer = protocol.stream_writer(response.model)
    wire = b"".join(writer.write(event) for event in stream_of(response))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(wire) - 1)), max_size=12)))
    reader = protocol.stream_reader()
    events: list[n.StreamEvent] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        events += reader.feed(wire[start:end])
    events += reader.close()
    text, calls, finish = reassembled(events)
    assert text == response.text()
    assert calls == [
        (c.id, c.name, json.dumps(json.loads(c.arguments))) for c in response.tool_calls()
    ]
    assert finish.stop == response.stop
    assert finish.usage == response.usage
