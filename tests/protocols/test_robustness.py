"""Converters never fail on content: any JSON value reads (wrong types as absent), any
bytes stream through a reader (only an upstream error event raises StreamFailed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfgstore_gateway.protocols import BUILT_IN, Converter, StreamFailed
from cfgstore_gateway.protocols import neutral as n

PROTOCOLS = pytest.mark.parametrize("protocol", BUILT_IN, ids=lambda c: c.name)

KEYS = [
    "model", "messages", "role", "content", "type", "text", "tool_calls", "function", "name",
    "arguments", "tools", "tool_choice", "system", "input", "instructions", "contents", "parts",
    "functionCall", "functionResponse", "args", "id", "call_id", "tool_use_id", "input_schema",
    "choices", "delta", "message", "finish_reason", "stop_reason", "candidates", "output",
    "usage", "usageMetadata", "source", "image_url", "inlineData", "thought", "max_tokens",
    "temperature", "stream", "generationConfig", "reasoning", "status", "summary", "thinking",
]  # fmt: skip

WORDS = [
    "user", "assistant", "model", "text", "tool_use", "function_call", "message", "image",
    "tool_result", "function", "stop", "STOP",
]  # fmt: skip
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars | st.text(max_size=8) | st.sampled_from(WORDS),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=6)
    ),
    max_leaves=25,
)
bodies = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8)


@PROTOCOLS
@settings(max_examples=60, deadline=None)
@given(body=bodies)
def test_any_json_reads_and_renders_in_every_protocol(
    protocol: Converter, body: dict[str, Any]
) -> None:
    request = protocol.parse_request(body)
    response = protocol.parse_response(body)
    for other in BUILT_IN:
        json.dumps(other.render_request(request))
        json.dumps(other.render_response(response))


@PROTOCOLS
@settings(max_examples=60, deadline=None)
@given(events=st.lists(json_values, max_size=6), junk=st.binary(max_size=40))
def test_any_stream_reads(protocol: Converter, events: list[Any], junk: bytes) -> None:
    wire = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + junk
    reader = protocol.stream_reader()
    try:
        out = reader.feed(wire) + reader.close()
    except StreamFailed:
        return
    assert isinstance(out[0], n.Start) and isinstance(out[-1], n.Finish)
    for other in BUILT_IN:
        writer = other.stream_writer("m")
        for event in out:
            writer.write(event)
