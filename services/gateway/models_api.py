"""Model routes: the SDK's `/models` API, the deprecated `unstable/finetune/*` routes, and
Refinery's training visibility (events, checkpoints, cancel) in the shape of OpenAI's
fine-tuning API. model-registry owns the models; these routes check bodies and render answers
(`gateway.models_wire`) and translate."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request
from refinery.rpc import models_pb2

from gateway.auth import project_of
from gateway.error_mapping import MODEL_REGISTRY, InvalidInput, api_error, call
from gateway.errors import ApiError
from gateway.models_wire import (
    CREATE_SCHEMA,
    checkpoint_out,
    create_request,
    event_out,
    finetune_create_body,
    finetune_out,
    model_out,
)
from gateway.rendering import input_json, json_response

router = APIRouter(prefix="/api/v1")


async def _rpc(request: Request, method: str, message: Any, deadline_s: float = 60) -> Any:
    return await call(request.app.state.deps.models, method, message, MODEL_REGISTRY, deadline_s)


async def _create(request: Request, project_id: str, body: Any) -> models_pb2.Model:
    # Checked as JSON is stored: what orjson cannot write is a 400 first, and NaN or Infinity read as null.
    body = orjson.loads(input_json(body, "the body"))
    try:
        message = create_request(project_id, body)
    except InvalidInput as exc:
        raise api_error(exc) from exc
    return await _rpc(request, "CreateModel", message, deadline_s=600)


@router.post("/models", summary="Train a new model (SFT and/or DPO, or a reward model)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": CREATE_SCHEMA}}}})
async def create_model(request: Request, body: Any = Body(...), project_id: str = Depends(project_of)):
    return json_response(model_out(await _create(request, project_id, body)))


@router.get("/models", summary="List the project's models")
async def list_models(request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "ListModels", models_pb2.ListModelsRequest(project_id=project_id))
    return json_response({"object": "list", "data": [model_out(m) for m in resp.models]})


@router.get("/models/{slug}", summary="Get a model")
async def get_model(slug: str, request: Request, project_id: str = Depends(project_of)):
    slug = slug.removeprefix("openpipe:")
    return json_response(model_out(await _rpc(request, "GetModel", models_pb2.ModelRef(project_id=project_id,
                                                                                       slug=slug))))


@router.delete("/models/{slug}", summary="Delete a model (cancels its training if still running)")
async def delete_model(slug: str, request: Request, project_id: str = Depends(project_of)):
    slug = slug.removeprefix("openpipe:")
    resp = await _rpc(request, "DeleteModel", models_pb2.ModelRef(project_id=project_id, slug=slug))
    return json_response({"id": resp.id, "object": "model", "deleted": True})


@router.get("/models/{slug}/events", summary="Training events: steps, losses, token accuracy, validation loss")
async def training_events(slug: str, request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "TrainingEvents", models_pb2.ModelRef(project_id=project_id, slug=slug))
    return json_response({"object": "list", "data": [event_out(e) for e in resp.events]})


@router.get("/models/{slug}/checkpoints", summary="A checkpoint per epoch")
async def checkpoints(slug: str, request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "Checkpoints", models_pb2.ModelRef(project_id=project_id, slug=slug))
    return json_response({"object": "list", "data": [checkpoint_out(slug, c) for c in resp.checkpoints]})


@router.post("/models/{slug}/cancel", summary="Cancel training; the model ends in ERROR")
async def cancel(slug: str, request: Request, project_id: str = Depends(project_of)):
    m = await _rpc(request, "CancelTraining", models_pb2.ModelRef(project_id=project_id, slug=slug))
    return json_response(model_out(m))


# ---- deprecated unstable routes -----------------------------------------------------------


@router.post("/unstable/finetune/create", summary="Deprecated: use POST /models")
async def unstable_create(request: Request, body: Any = Body(...), project_id: str = Depends(project_of)):
    model = await _create(request, project_id, finetune_create_body(body))
    return json_response({"id": model.id})


async def _by_id_or_slug(request: Request, project_id: str, id_: str | None, slug: str | None) -> models_pb2.Model:
    if slug:
        return await _rpc(request, "GetModel", models_pb2.ModelRef(project_id=project_id, slug=slug))
    resp = await _rpc(request, "ListModels", models_pb2.ListModelsRequest(project_id=project_id))
    for m in resp.models:
        if m.id == id_:
            return m
    raise ApiError(404, "NOT_FOUND", f"fine-tune {id_!r} not found")


@router.get("/unstable/finetune/get", summary="Deprecated: use GET /models/{slug}")
async def unstable_get(request: Request, id: str | None = Query(default=None), slug: str | None = Query(default=None),
                       project_id: str = Depends(project_of)):
    if not id and not slug:
        raise ApiError(400, "BAD_REQUEST", "Input validation failed", ["give `id` or `slug`"])
    return json_response(finetune_out(await _by_id_or_slug(request, project_id, id, slug)))


@router.post("/unstable/finetune/delete", summary="Deprecated: use DELETE /models/{slug}")
async def unstable_delete(request: Request, body: Any = Body(...), project_id: str = Depends(project_of)):
    id_ = body.get("id") if isinstance(body, dict) else None
    if not isinstance(id_, str) or not id_:
        raise ApiError(400, "BAD_REQUEST", "Input validation failed", ["`id` is required"])
    model = await _by_id_or_slug(request, project_id, id_, None)
    await _rpc(request, "DeleteModel", models_pb2.ModelRef(project_id=project_id, slug=model.slug))
    return json_response({"deleted": True})
