"""Hypothesis strategies: neutral requests, responses and streams every protocol can
express (texts, images, tool calls with object arguments, tool results, limits)."""

from __future__ import annotations

import json

import attrs
from hypothesis import strategies as st

from cfgstore_gateway.protocols import neutral as n

texts = st.text(min_size=1, max_size=40)
names = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
ids = st.from_regex(r"call_[A-Za-z0-9]{4,12}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)
arguments = st.dictionaries(names, json_values, max_size=4).map(
    lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":"))
)
images = st.builds(
    n.Image,
    media_type=st.sampled_from(["image/png", "image/jpeg"]),
    data=st.from_regex(r"[A-Za-z0-9+/]{4,24}={0,2}", fullmatch=True),
)
tool_calls = st.builds(n.ToolCall, id=ids, name=names, arguments=arguments)
tools = st.builds(
    n.Tool,
    name=names,
    description=st.text(max_size=20),
    parameters=st.just({"type": "object", "properties": {"q": {"type": "string"}}}),
)


@st.composite
def conversations(draw: st.DrawFn) -> tuple[n.Message, ...]:
    """Alternating turns: user content or the results of the previous assistant's calls;
    assistant text and/or tool calls."""
    messages: list[n.Message] = []
    pending: list[n.ToolCall] = []
    for turn in range(draw(st.integers(1, 5))):
        if turn % 2 == 0:
            if pending:
                results = tuple(n.ToolResult(call.id, (n.Text(draw(texts)),)) for call in pending)
                messages.append(n.Message("user", results))
                pending = []
            else:
                parts = draw(st.lists(texts.map(n.Text) | images, min_size=1, max_size=3))
                messages.append(n.Message("user", tuple(parts)))
        else:
            text = draw(st.none() | texts)
            calls = draw(st.lists(tool_calls, max_size=2, unique_by=lambda c: c.id))
            parts = ([n.Text(text)] if text else []) + calls
            messages.append(n.Message("assistant", tuple(parts or [n.Text("ok")])))
            pending = calls
    return tuple(messages)


@st.composite
def requests(draw: st.DrawFn) -> n.ChatRequest:
    declared = draw(st.lists(tools, max_size=3, unique_by=lambda t: t.name))
    choice = draw(
        st.none()
        | st.sampled_from([n.ToolChoice("auto"), n.ToolChoice("none"), n.ToolChoice("required")])
        | (
            st.sampled_from(declared).map(lambda t: n.ToolChoice("tool", t.name))
            if declared
            else st.none()
        )
    )
    return n.ChatRequest(
        model=draw(names),
        messages=draw(conversations()),
        system=draw(st.none() | texts),
        tools=tuple(declared),
        tool_choice=choice,
        max_tokens=draw(st.integers(1, 100_000)),
        temperature=draw(st.none() | st.floats(0, 2, allow_nan=False)),
        top_p=draw(st.none() | st.floats(0, 1, allow_nan=False)),
        stop=tuple(draw(st.lists(texts, max_size=2))),
        stream=draw(st.booleans()),
        thinking_budget=draw(st.sampled_from([None, 2048, 8192, 20000])),
    )


usages = st.builds(
    lambda i, o, c, r: n.Usage(i + c, o + r, c, r),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(0, 1000),
    st.just(0),
)


@st.composite
def responses(draw: st.DrawFn) -> n.ChatResponse:
    text = draw(st.none() | texts)
    calls = draw(st.lists(tool_calls, max_size=2, unique_by=lambda c: c.id))
    parts = ([n.Text(text)] if text else []) + calls
    stop = "tool_use" if calls else draw(st.sampled_from(["end", "max_tokens"]))
    return n.ChatResponse(
        id=draw(st.from_regex(r"[a-z0-9]{8}", fullmatch=True)),
        model=draw(names),
        parts=tuple(parts or [n.Text("ok")]),
        stop=stop,
        usage=draw(usages),
    )


def stream_of(response: n.ChatResponse) -> list[n.StreamEvent]:
    """The response as stream events, texts and arguments cut in fragments."""
    events: list[n.StreamEvent] = [n.Start(response.id, response.model)]
    index = 0
    for part in response.parts:
        if isinstance(part, n.Text):
            events += [n.TextDelta(part.text[i : i + 3]) for i in range(0, len(part.text), 3)]
        elif isinstance(part, n.ToolCall):
            events.append(n.ToolCallStart(index, part.id, part.name))
            args = part.arguments
            events += [n.ToolCallDelta(index, args[i : i + 5]) for i in range(0, len(args), 5)]
            index += 1
    return [*events, n.Finish(response.stop, response.usage)]


def without(value: object, **changes: object) -> object:
    return attrs.evolve(value, **changes)  # type: ignore[misc]
