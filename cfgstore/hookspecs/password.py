"""The web-UI admin password (``configs/pwd``, aiclient-formats §5.1), in stored form:
``pbkdf2:<salt>:<hash>`` or legacy plaintext. Hashing and checking live in
:mod:`cfgstore.model.password`; backends only store the text."""

from __future__ import annotations

from cfgstore.hookspecs import hookspec


@hookspec
async def cfgstore_password_get() -> str | None:
    """Return the stored form with surrounding whitespace trimmed, or ``None`` when absent
    or empty (callers then use the default password)."""


@hookspec
async def cfgstore_password_put(stored: str) -> None:
    """Replace the stored form atomically (written without a trailing newline).

    Raises :class:`~cfgstore.errors.InvalidData` and keeps the stored form when ``stored``
    is empty or only whitespace (it would read back as "no password")."""
