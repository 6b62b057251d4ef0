"""``custom_models.json`` (aiclient-formats §6.2): a list of model alias objects."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from cfgstore.errors import AlreadyExists, InvalidData, NotFound
from cfgstore.model.convert import json_path
from cfgstore.model.jsjson import JSONValue


@attrs.define
class CustomModel:
    """One alias. ``id`` is required and unique; every other field rides along."""

    id: str
    document: dict[str, JSONValue]

    @classmethod
    def from_json(cls, doc: JSONValue, source: str, path: str = "$") -> CustomModel:
        if not isinstance(doc, dict):
            raise InvalidData(source, path, "a custom model must be a JSON object")
        model_id = doc.get("id")
        if not isinstance(model_id, str) or not model_id:
            raise InvalidData(source, f"{path}.id", "a custom model needs a non-empty string id")
        return cls(model_id, dict(doc))

    def to_json(self) -> dict[str, JSONValue]:
        return dict(self.document)


def custom_models_from_json(doc: JSONValue, source: str) -> list[CustomModel]:
    if not isinstance(doc, list):
        raise InvalidData(source, "$", "custom models must be a JSON array")
    models = [CustomModel.from_json(item, source, json_path(i)) for i, item in enumerate(doc)]
    seen: set[str] = set()
    for index, model in enumerate(models):
        if model.id in seen:
            raise InvalidData(source, json_path(index, "id"), f"duplicate id {model.id}")
        seen.add(model.id)
    return models


def models_to_json(models: list[CustomModel]) -> list[JSONValue]:
    return [m.to_json() for m in models]


def with_model(models: list[CustomModel], model: CustomModel) -> list[JSONValue]:
    """The document with ``model`` appended; :class:`AlreadyExists` for a taken id."""
    if any(m.id == model.id for m in models):
        raise AlreadyExists("custom model", model.id)
    return models_to_json([*models, model])


def with_model_updated(
    models: list[CustomModel], model_id: str, changes: Mapping[str, JSONValue]
) -> tuple[list[JSONValue], CustomModel]:
    """The document with one model shallow-merged (its id cannot change), and that model;
    :class:`NotFound` when absent."""
    for index, model in enumerate(models):
        if model.id == model_id:
            updated = CustomModel(model_id, {**model.document, **changes, "id": model_id})
            return models_to_json([*models[:index], updated, *models[index + 1 :]]), updated
    raise NotFound("custom model", model_id)


def without_model(models: list[CustomModel], model_id: str) -> list[JSONValue]:
    """The document without the model; :class:`NotFound` when absent."""
    kept = [m for m in models if m.id != model_id]
    if len(kept) == len(models):
        raise NotFound("custom model", model_id)
    return models_to_json(kept)
