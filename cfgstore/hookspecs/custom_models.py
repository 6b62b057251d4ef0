"""Custom model aliases (``custom_models.json``, aiclient-formats §6.2): an ordered list of
objects with a unique string ``id``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from cfgstore.hookspecs import hookspec

if TYPE_CHECKING:
    from cfgstore.model.custom_models import CustomModel
    from cfgstore.model.jsjson import JSONValue


@hookspec
async def cfgstore_custom_models_list() -> list[CustomModel]:
    """Return every custom model in stored order (empty list when none)."""


@hookspec
async def cfgstore_custom_models_add(model: CustomModel) -> None:
    """Append a model. Raises :class:`~cfgstore.errors.AlreadyExists` for a taken ``id``."""


@hookspec
async def cfgstore_custom_models_update(
    model_id: str, changes: Mapping[str, JSONValue]
) -> CustomModel:
    """Shallow-merge ``changes`` and return the stored model: keys keep their position,
    new keys are appended, and an ``id`` in ``changes`` is ignored (the id cannot change).

    Raises :class:`~cfgstore.errors.NotFound`.
    """


@hookspec
async def cfgstore_custom_models_delete(model_id: str) -> None:
    """Remove the model. Raises :class:`~cfgstore.errors.NotFound`."""


@hookspec
async def cfgstore_custom_models_put(models: list[CustomModel]) -> None:
    """Replace the whole list atomically (migration). Raises
    :class:`~cfgstore.errors.InvalidData` for duplicate ids (nothing written)."""
