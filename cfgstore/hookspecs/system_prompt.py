"""The system prompt text (``SYSTEM_PROMPT_FILE_PATH``, default ``input_system_prompt.txt``)."""

from __future__ import annotations

from cfgstore.hookspecs import hookspec


@hookspec
async def cfgstore_system_prompt_get() -> str | None:
    """Return the prompt text exactly as stored (no trimming), or ``None`` when absent."""


@hookspec
async def cfgstore_system_prompt_put(text: str) -> None:
    """Replace the prompt text atomically."""
