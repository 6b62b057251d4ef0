"""``/api/custom-models``: CRUD of ``custom_models.json`` (aiclient-formats §6.2).

Each operation is one atomic store edit (an update is a shallow merge; the id cannot
change). The request path's routing reads the aliases from the store, so a change
applies to the next request on every instance.
"""

from __future__ import annotations

from aiohttp import web

from cfgstore.errors import InvalidData
from cfgstore.model.custom_models import CustomModel
from cfgstore_gateway.admin.http import check_document, invalid, read_json_object, success
from cfgstore_gateway.services import SERVICES

_MAX_ID = 256


async def list_models(request: web.Request) -> web.StreamResponse:
    models = await request.config_dict[SERVICES].store.custom_models.list()
    return web.json_response([m.to_json() for m in models])


async def add_model(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    model_id = body.get("id")
    if not isinstance(model_id, str) or not model_id.strip() or len(model_id) > _MAX_ID:
        raise invalid({"id": f"required: a non-empty string of at most {_MAX_ID} characters"})
    check_document(body, "body")
    try:
        model = CustomModel.from_json(body, "custom model")
    except InvalidData as exc:
        raise invalid({"body": exc.problem}) from None
    await request.config_dict[SERVICES].store.custom_models.add(model)
    return web.json_response(model.to_json(), status=201)


async def update_model(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    model_id = request.match_info["id"]
    if "id" in body and body["id"] != model_id:
        raise invalid({"id": "the id cannot change (delete and add instead)"})
    store = request.config_dict[SERVICES].store
    current = next((m for m in await store.custom_models.list() if m.id == model_id), None)
    if current is not None:  # else the store answers 404
        check_document({**current.document, **body}, "body")
    model = await store.custom_models.update(model_id, body)
    return web.json_response(model.to_json())


async def delete_model(request: web.Request) -> web.StreamResponse:
    await request.config_dict[SERVICES].store.custom_models.delete(request.match_info["id"])
    return success()
