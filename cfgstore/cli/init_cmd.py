"""``cfgctl init``: a fresh Redis namespace with defaults (being written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    del app
