"""The operator's system prompt applied to a chat request (aiclient-formats §2.2).

The prompt text is the store's ``system_prompt`` (``configs/input_system_prompt.txt``);
missing or blank means none. Two config keys shape what is sent upstream:

* ``SYSTEM_PROMPT_REPLACEMENTS``: a list of ``{"old": str, "new": str}``; every occurrence
  of ``old`` in the client's system messages (string content, or the ``text`` of its text
  parts) becomes ``new``, in list order. Items without a non-empty string ``old`` are
  ignored (``new`` defaults to ``""``). Only system messages are touched.
* ``SYSTEM_PROMPT_MODE``: ``append`` (default) adds the prompt to the first system message,
  after its text and a newline (a list content gets a text part appended), or inserts a
  ``{"role": "system", "content": <prompt>}`` message first when there is none;
  ``overwrite`` replaces the first system message's content with the prompt (or inserts
  one likewise). Any other value is treated as ``append``.

The client's body is never mutated: a rewritten copy is returned, or the very same object
when nothing changed (so the gateway can forward the client's bytes unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cfgstore.model.config import MainConfig

APPEND = "append"
OVERWRITE = "overwrite"


def replacements(config: MainConfig) -> list[tuple[str, str]]:
    """The usable ``(old, new)`` pairs of ``SYSTEM_PROMPT_REPLACEMENTS``."""
    value = config.get("SYSTEM_PROMPT_REPLACEMENTS")
    pairs: list[tuple[str, str]] = []
    if not isinstance(value, list):
        return pairs
    for item in value:
        if not isinstance(item, dict):
            continue
        old, new = item.get("old"), item.get("new")
        if isinstance(old, str) and old:
            pairs.append((old, new if isinstance(new, str) else ""))
    return pairs


def _replace(text: str, pairs: Sequence[tuple[str, str]]) -> str:
    for old, new in pairs:
        text = text.replace(old, new)
    return text


def _replaced_content(content: Any, pairs: Sequence[tuple[str, str]]) -> Any:
    """``content`` (a string or a list of parts) with the replacements applied."""
    if isinstance(content, str):
        return _replace(content, pairs)
    if isinstance(content, list):
        parts: list[Any] = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                part = {**part, "text": _replace(part["text"], pairs)}
            parts.append(part)
        return parts
    return content


def _with_prompt(content: Any, prompt: str, mode: str) -> Any:
    """A system message's content after the prompt was applied in ``mode``."""
    if mode == OVERWRITE:
        return prompt
    if isinstance(content, str):
        return f"{content}\n{prompt}" if content else prompt
    if isinstance(content, list):
        return [*content, {"type": "text", "text": prompt}]
    return prompt


def apply_system_prompt(
    body: Mapping[str, Any], prompt: str | None, config: MainConfig
) -> Mapping[str, Any]:
    """``body`` with the replacements and the prompt applied (see the module docstring);
    ``body`` itself when nothing changes."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    pairs = replacements(config)
    prompt = prompt if prompt is not None and prompt.strip() else None
    if not pairs and prompt is None:
        return body
    mode = OVERWRITE if config.get("SYSTEM_PROMPT_MODE") == OVERWRITE else APPEND
    changed: list[Any] = []
    seen_system = False
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "system":
            content = _replaced_content(message.get("content"), pairs) if pairs else None
            new = {**message, "content": content} if pairs else dict(message)
            if prompt is not None and not seen_system:
                new["content"] = _with_prompt(new.get("content"), prompt, mode)
            seen_system = True
            changed.append(new)
        else:
            changed.append(message)
    if prompt is not None and not seen_system:
        changed.insert(0, {"role": "system", "content": prompt})
    if changed == messages:
        return body
    return {**body, "messages": changed}


def apply_to_system(system: str | None, prompt: str | None, config: MainConfig) -> str | None:
    """A converted request's system text after the same rules: the replacements, then the
    prompt appended (after a newline) or, in ``overwrite`` mode, in its place."""
    pairs = replacements(config)
    prompt = prompt if prompt is not None and prompt.strip() else None
    text = _replace(system, pairs) if system is not None and pairs else system
    if prompt is None:
        return text
    mode = OVERWRITE if config.get("SYSTEM_PROMPT_MODE") == OVERWRITE else APPEND
    combined: str = _with_prompt(text or "", prompt, mode)
    return combined
