"""The ``generateAssistantResponse`` request of Kiro (AWS CodeWhisperer), built from an
Anthropic Messages body (aiclient-protocols §3.2, "Request building").

:func:`build_envelope` returns ``{"conversationState": {...}, ["profileArn"]}``:

* the system text (``system``, string or text blocks) is prefixed by the thinking mode when
  ``thinking`` asks for it (``<thinking_mode>enabled</thinking_mode><max_thinking_length>N
  </max_thinking_length>``, N clamped to 1024…24576, or the adaptive form with its effort);
  it goes in front of the first user turn (``<system>\\n\\n<text>`` style: system, blank line,
  text), or as a user turn of its own when the conversation starts with the assistant. The
  Node service also adds a fixed preamble of its own; this adapter sends the client's system
  text only;
* a final assistant turn that opens with the prefill ``{`` is dropped; adjacent turns of
  one role are merged (two texts joined by a line break, else their blocks in order);
* user turns carry their text (blocks joined as they are), images (``{"format": "png",
  "source": {"bytes": b64}}``, only in the last :data:`IMAGE_WINDOW` history messages; older
  ones are counted in a note after the text) and tool
  results (``{"content": [{"text"}], "status": "success", "toolUseId"}``, once per id);
  assistant turns their text (thinking re-wrapped as ``<thinking>…</thinking>`` first) and
  ``toolUses`` (``{"input", "name", "toolUseId"}``);
* tools become ``toolSpecification`` entries of the current message: names over 64
  characters are shortened (first 51 + ``_`` + 12 hex of their SHA-256; :attr:`Envelope.
  tool_names` maps them back), ``web_search``/``websearch`` are left out, descriptions are
  cut at 9216 characters (an empty description becomes the tool's name, where the Node
  service drops the tool), and a placeholder ``no_tool_available`` is sent when none remain;
* the current message is a user turn: a conversation ending with the assistant moves it to
  the history and asks ``Continue``; a history not ending with the assistant gets an
  assistant ``Continue`` appended; an empty current content becomes ``Tool results
  provided.`` (when it carries results) or ``Continue``.

Empty lists and fields are left out rather than sent empty.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

ORIGIN = "AI_EDITOR"
IMAGE_WINDOW = 5
"""Images are sent only in history messages at most this far from the last message."""
TOOL_NAME_LIMIT = 64
DESCRIPTION_LIMIT = 9216
THINKING_MIN, THINKING_MAX, THINKING_DEFAULT = 1024, 24576, 20000
PLACEHOLDER_TOOL = {
    "toolSpecification": {
        "name": "no_tool_available",
        "description": "No tool is available.",
        "inputSchema": {"json": {"type": "object", "properties": {}}},
    }
}

MODEL_IDS: dict[str, str] = {
    "claude-haiku-4-5": "claude-haiku-4.5",
    "claude-opus-4-8": "claude-opus-4.8",
    "claude-opus-4-7": "claude-opus-4.7",
    "claude-opus-4-6": "claude-opus-4.6",
    "claude-sonnet-4-6": "claude-sonnet-4.6",
    "claude-opus-4-5": "claude-opus-4.5",
    "claude-opus-4-5-20251101": "claude-opus-4.5",
    "claude-sonnet-4-5": "claude-sonnet-4.5",
    "claude-sonnet-4-5-20250929": "claude-sonnet-4.5",
}
"""Client model id → Kiro's; any other id is sent as it is."""

MODELS = (
    "claude-haiku-4-5",
    "claude-haiku-4-5-20251001",
    "claude-opus-4-8",
    "claude-opus-4-7",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-opus-4-5",
    "claude-opus-4-5-20251101",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
)
"""The models the Node service lists for the type."""


@attrs.frozen
class Envelope:
    body: dict[str, Any]
    tool_names: Mapping[str, str]
    """Shortened tool name → the client's."""
    thinking: bool
    """The client asked for thinking (``<thinking>`` in the answer becomes a block)."""
    image_chars: int = 0
    """Characters of base64 image data in :attr:`body` (left out of token estimates)."""


def kiro_model(model: str) -> str:
    return MODEL_IDS.get(model, model)


def short_tool_name(name: str) -> str:
    if len(name) <= TOOL_NAME_LIMIT:
        return name
    return f"{name[:51]}_{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def build_envelope(
    body: Mapping[str, Any],
    *,
    profile_arn: str | None = None,
    conversation_id: str | None = None,
) -> Envelope:
    model = kiro_model(str(body.get("model") or ""))
    thinking_prefix = _thinking_prefix(body.get("thinking"))
    system = _text_of(body.get("system"))
    if thinking_prefix:
        system = thinking_prefix + ("\n" + system if system else "")
    tools, names = _tools(body.get("tools"))
    messages = _merged(_without_prefill(body.get("messages")))

    history: list[dict[str, Any]] = []
    if messages and messages[0]["role"] != "user" and system:
        history.append(_user_turn(system, [], [], model))
        system = ""
    last_index = len(messages) - 1
    ends_with_user = bool(messages) and messages[-1]["role"] == "user"
    for index, message in enumerate(messages):
        if index == last_index and ends_with_user:
            break
        keep_images = last_index - index <= IMAGE_WINDOW
        if message["role"] == "user":
            text, images, results = _user_parts(message["content"], keep_images)
            if system:
                text, system = f"{system}\n\n{text}" if text else system, ""
            history.append(_user_turn(text, images, results, model))
        else:
            history.append(_assistant_turn(message["content"], names))

    if ends_with_user:
        text, images, results = _user_parts(messages[-1]["content"], True)
        if history and "assistantResponseMessage" not in history[-1]:
            history.append({"assistantResponseMessage": {"content": "Continue"}})
    else:
        text, images, results = "", [], []
    if not text:
        text = "Tool results provided." if results else "Continue"
    if system:
        text = f"{system}\n\n{text}"
    context: dict[str, Any] = {}
    if results:
        context["toolResults"] = results
    context["tools"] = tools or [PLACEHOLDER_TOOL]
    current: dict[str, Any] = {"content": text, "modelId": model, "origin": ORIGIN}
    if images:
        current["images"] = images
    current["userInputMessageContext"] = context

    state: dict[str, Any] = {
        "agentTaskType": "vibe",
        "chatTriggerType": "MANUAL",
        "conversationId": conversation_id or str(uuid.uuid4()),
    }
    if history:
        state["history"] = history
    state["currentMessage"] = {"userInputMessage": current}
    envelope: dict[str, Any] = {"conversationState": state}
    if profile_arn:
        envelope["profileArn"] = profile_arn
    turns = [*history, state["currentMessage"]]
    image_chars = sum(
        len(image["source"]["bytes"])
        for turn in turns
        for image in turn.get("userInputMessage", {}).get("images", ())
    )
    return Envelope(envelope, names, thinking_prefix is not None, image_chars)


# -- pieces --------------------------------------------------------------------------------


def _thinking_prefix(thinking: object) -> str | None:
    if not isinstance(thinking, Mapping):
        return None
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
            budget = min(THINKING_MAX, max(THINKING_MIN, budget))
        else:
            budget = THINKING_DEFAULT
        return (
            "<thinking_mode>enabled</thinking_mode>"
            f"<max_thinking_length>{budget}</max_thinking_length>"
        )
    if kind == "adaptive":
        effort = thinking.get("effort")
        effort = effort if effort in ("low", "medium", "high") else "high"
        return f"<thinking_mode>adaptive</thinking_mode><thinking_effort>{effort}</thinking_effort>"
    return None


def _text_of(content: object) -> str:
    """The text of a string or a list of blocks (their ``text``), joined as they are."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        block if isinstance(block, str) else str(block.get("text") or "")
        for block in content
        if isinstance(block, str | Mapping)
    )


def _blocks(content: object) -> list[Mapping[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return [block for block in content if isinstance(block, Mapping)]
    return []


def _without_prefill(messages: object) -> list[dict[str, Any]]:
    """The user and assistant messages, a final ``{`` prefill dropped (contents as sent)."""
    if not isinstance(messages, list):
        return []
    kept: list[dict[str, Any]] = [
        {"role": m.get("role"), "content": m.get("content")}
        for m in messages
        if isinstance(m, Mapping) and m.get("role") in ("user", "assistant")
    ]
    if kept and kept[-1]["role"] == "assistant":
        first = _blocks(kept[-1]["content"])[:1]
        if first and first[0].get("type") == "text" and first[0].get("text") == "{":
            kept.pop()
    return kept


def _merged(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adjacent messages of one role as one: two texts joined by a line break, else their
    blocks one after the other; every content as blocks."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        content = message["content"]
        if merged and merged[-1]["role"] == message["role"]:
            last = merged[-1]
            if isinstance(last["content"], str) and isinstance(content, str):
                last["content"] += "\n" + content
            else:
                last["content"] = _blocks(last["content"]) + _blocks(content)
        else:
            merged.append({"role": message["role"], "content": content})
    for message in merged:
        message["content"] = _blocks(message["content"])
    return merged


def _user_parts(
    blocks: Sequence[Mapping[str, Any]], keep_images: bool
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    seen: set[str] = set()
    omitted = 0
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "image":
            image = _image(block.get("source"))
            if image is None:
                continue
            if keep_images:
                images.append(image)
            else:
                omitted += 1
        elif kind == "tool_result":
            tool_id = str(block.get("tool_use_id") or "")
            if tool_id in seen:
                continue
            seen.add(tool_id)
            text = _result_text(block.get("content"))
            results.append({"content": [{"text": text}], "status": "success", "toolUseId": tool_id})
    text = "".join(texts)
    if omitted:
        note = f"[{omitted} image(s) of this message omitted from the history]"
        text = f"{text}\n{note}" if text else note
    return text, images, results


def _result_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return _text_of(content)
    return "" if content is None else json.dumps(content)


def _image(source: object) -> dict[str, Any] | None:
    if not isinstance(source, Mapping) or source.get("type") != "base64":
        return None
    media = str(source.get("media_type") or "image/png")
    return {"format": media.split("/", 1)[-1], "source": {"bytes": str(source.get("data") or "")}}


def _user_turn(
    text: str, images: list[dict[str, Any]], results: list[dict[str, Any]], model: str
) -> dict[str, Any]:
    turn: dict[str, Any] = {"content": text or "Continue", "modelId": model, "origin": ORIGIN}
    if images:
        turn["images"] = images
    if results:
        turn["userInputMessageContext"] = {"toolResults": results}
        if not text:
            turn["content"] = "Tool results provided."
    return {"userInputMessage": turn}


def _assistant_turn(
    blocks: Sequence[Mapping[str, Any]], names: Mapping[str, str]
) -> dict[str, Any]:
    shortened = {long: short for short, long in names.items()}
    thinking = "".join(str(b.get("thinking") or "") for b in blocks if b.get("type") == "thinking")
    text = "".join(str(b.get("text") or "") for b in blocks if b.get("type") == "text")
    if thinking:
        text = f"<thinking>{thinking}</thinking>\n\n{text}"
    uses = []
    for block in blocks:
        if block.get("type") != "tool_use":
            continue
        name = str(block.get("name") or "")
        raw_input = block.get("input")
        tool_input = (
            {k: v for k, v in raw_input.items() if k != ""}
            if isinstance(raw_input, Mapping)
            else {}
        )
        uses.append(
            {
                "input": tool_input,
                "name": shortened.get(name, short_tool_name(name)),
                "toolUseId": str(block.get("id") or ""),
            }
        )
    turn: dict[str, Any] = {"content": text}
    if uses:
        turn["toolUses"] = uses
    return {"assistantResponseMessage": turn}


def _tools(tools: object) -> tuple[list[dict[str, Any]], dict[str, str]]:
    specs: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    if not isinstance(tools, list):
        return specs, names
    for tool in tools:
        if not isinstance(tool, Mapping):
            continue
        name = str(tool.get("name") or "")
        if not name or name.lower() in ("web_search", "websearch"):
            continue
        description = str(tool.get("description") or "").strip() or name
        if len(description) > DESCRIPTION_LIMIT:
            description = description[:DESCRIPTION_LIMIT] + "..."
        short = short_tool_name(name)
        if short != name:
            names[short] = name
        schema = tool.get("input_schema")
        specs.append(
            {
                "toolSpecification": {
                    "name": short,
                    "description": description,
                    "inputSchema": {"json": dict(schema) if isinstance(schema, Mapping) else {}},
                }
            }
        )
    return specs, names
