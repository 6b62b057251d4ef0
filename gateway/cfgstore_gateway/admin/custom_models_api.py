"""``/api/custom-models``: CRUD of ``custom_models.json`` (aiclient-formats §6.2), in the
Node service's shapes (``src/ui-modules/custom-models-api.js``): the list as an array,
``{"success": true, "model"}`` for an add or an update, ``{"success": true,
"deletedModel"}`` for a delete, ``400`` for a missing or taken id.

Each operation is one atomic store edit (an update is a shallow merge; the id cannot
change). The request path's routing reads the aliases from the store, so a change
applies to the next request on every instance.
"""

from __future__ import annotations

from aiohttp import web

from cfgstore.errors import AlreadyExists, InvalidData
from cfgstore.model.custom_models import CustomModel
from cfgstore_gateway.admin.http import (
    check_document,
    invalid,
    not_found,
    read_json_object,
    success,
)
from cfgstore_gateway.services import SERVICES

_MAX_ID = 256


async def list_models(request: web.Request) -> web.StreamResponse:
    models = await request.config_dict[SERVICES].store.custom_models.list()
    return web.json_response([m.to_json() for m in models])


async def add_model(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    model_id = body.get("id")
    if not isinstance(model_id, str) or not model_id.strip() or len(model_id) > _MAX_ID:
        message = f"required: a non-empty string of at most {_MAX_ID} characters"
        raise invalid({"id": message}, "Model ID is required")
    check_document(body, "body")
    try:
        model = CustomModel.from_json(body, "custom model")
    except InvalidData as exc:
        raise invalid({"body": exc.problem}) from None
    try:
        await request.config_dict[SERVICES].store.custom_models.add(model)
    except AlreadyExists:
        message = f"Model ID '{model_id}' already exists"
        raise invalid({"id": "taken"}, message) from None
    return success(model=model.to_json())


async def update_model(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    model_id = request.match_info["id"]
    if "id" in body and body["id"] != model_id:
        raise invalid({"id": "the id cannot change (delete and add instead)"})
    store = request.config_dict[SERVICES].store
    current = next((m for m in await store.custom_models.list() if m.id == model_id), None)
    if current is None:
        raise not_found("Model")
    check_document({**current.document, **body}, "body")
    model = await store.custom_models.update(model_id, body)
    return success(model=model.to_json())


async def delete_model(request: web.Request) -> web.StreamResponse:
    store = request.config_dict[SERVICES].store
    model_id = request.match_info["id"]
    current = next((m for m in await store.custom_models.list() if m.id == model_id), None)
    if current is None:
        raise not_found("Model")
    await store.custom_models.delete(model_id)
    return success(deletedModel=current.to_json())
