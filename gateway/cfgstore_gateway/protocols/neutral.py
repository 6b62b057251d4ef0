"""The neutral conversation model every protocol converter reads and writes.

One request, response and stream-event model for all client and upstream protocols, so N
protocols need N converters (each to and from this model), never N². It holds what the
protocols share: a system prompt, user and assistant turns made of parts (text, images,
thinking, tool calls and their results), function tools, sampling limits, a stop reason and
token usage. What only one protocol can express stays out; its converter drops it with a
debug log line (:func:`dropped`), never an error.

Values are frozen attrs classes; tool-call arguments are kept as the JSON text the model
produced (streams deliver them in fragments), parsed only by a protocol that wants an object.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

import attrs

log = logging.getLogger("cfgstore_gateway.protocols")

Role = Literal["user", "assistant"]

#: Why generation stopped, in neutral terms: ``end`` (the model finished its turn),
#: ``max_tokens``, ``tool_use`` (it asks for tool results), ``stop_sequence``,
#: ``content_filter`` (refused or cut by a safety filter).
StopReason = Literal["end", "max_tokens", "tool_use", "stop_sequence", "content_filter"]


@attrs.frozen
class Text:
    text: str


@attrs.frozen
class Image:
    """An image given inline (``data``: base64 of ``media_type``) or by ``url``."""

    media_type: str = "image/png"
    data: str | None = None
    url: str | None = None

    def data_url(self) -> str:
        """The image as a URL: its own, or a ``data:`` URL of the inline bytes."""
        if self.url is not None:
            return self.url
        return f"data:{self.media_type};base64,{self.data or ''}"


@attrs.frozen
class Thinking:
    """The model's reasoning text; ``signature`` is the opaque token a protocol that
    verifies thinking (Anthropic) needs echoed back."""

    text: str
    signature: str | None = None


@attrs.frozen
class ToolCall:
    """The model calling a function: ``arguments`` is JSON text."""

    id: str
    name: str
    arguments: str = "{}"


@attrs.frozen
class ToolResult:
    """A function's result sent back to the model, answering the call ``call_id``."""

    call_id: str
    content: tuple[Text | Image, ...] = ()
    is_error: bool = False
    name: str | None = None  # the function's name: Gemini needs it, others do not send it

    def text(self) -> str:
        return "".join(part.text for part in self.content if isinstance(part, Text))


Part = Text | Image | Thinking | ToolCall | ToolResult


@attrs.frozen
class Message:
    role: Role
    parts: tuple[Part, ...]

    def text(self) -> str:
        return "".join(part.text for part in self.parts if isinstance(part, Text))


@attrs.frozen
class Tool:
    """A function the model may call; ``parameters`` is a JSON schema object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = attrs.field(factory=lambda: {"type": "object"})


@attrs.frozen
class ToolChoice:
    """``auto`` (the model decides), ``none``, ``required`` (some tool), ``tool`` (``name``)."""

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None


@attrs.frozen
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # of input_tokens, read from a prompt cache
    reasoning_tokens: int = 0  # of output_tokens, spent thinking

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@attrs.frozen
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    system: str | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    thinking_budget: int | None = None  # tokens the model may spend thinking, when asked


@attrs.frozen
class ChatResponse:
    id: str
    model: str
    parts: tuple[Part, ...]
    stop: StopReason = "end"
    usage: Usage = Usage()

    def text(self) -> str:
        return "".join(part.text for part in self.parts if isinstance(part, Text))

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(part for part in self.parts if isinstance(part, ToolCall))


# ------------------------------------------------------------------------ stream events


@attrs.frozen
class Start:
    """The response begins (always the first event a reader yields)."""

    id: str
    model: str
    usage: Usage | None = None  # input tokens, when the upstream says them up front


@attrs.frozen
class TextDelta:
    text: str


@attrs.frozen
class ThinkingDelta:
    text: str = ""
    signature: str | None = None


@attrs.frozen
class ToolCallStart:
    """A tool call begins; ``index`` counts tool calls from 0 in this response."""

    index: int
    id: str
    name: str


@attrs.frozen
class ToolCallDelta:
    """A fragment of the JSON arguments of the tool call ``index``."""

    index: int
    arguments: str


@attrs.frozen
class Finish:
    """The response ends (always the last event a reader yields)."""

    stop: StopReason = "end"
    usage: Usage | None = None


StreamEvent = Start | TextDelta | ThinkingDelta | ToolCallStart | ToolCallDelta | Finish


def dropped(protocol: str, what: str) -> None:
    """Log, at debug level, that ``protocol`` cannot express ``what`` and it was left out."""
    log.debug("%s cannot express %s: left out", protocol, what)
