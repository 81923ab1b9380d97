"""Model routes: the SDK's `/models` API, the deprecated `unstable/finetune/*` routes, and
Refinery's training visibility (events, checkpoints, cancel) in the shape of OpenAI's
fine-tuning API. model-registry owns the models; these routes translate."""

from __future__ import annotations

from typing import Any

import grpc
import orjson
from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response
from refinery.rpc import models_pb2

from gateway.auth import project_of
from gateway.datasets_api import _api_error, _dumps

router = APIRouter(prefix="/api/v1")

_CREATE_SCHEMA = {
    "type": "object",
    "required": ["datasetId", "slug", "trainingConfig"],
    "properties": {
        "datasetId": {"type": "string"},
        "slug": {"type": "string"},
        "pruningRuleIds": {"type": "array", "items": {"type": "string"}},
        "defaultTemperature": {"type": "number"},
        "trainingConfig": {"type": "object", "required": ["provider", "baseModel"], "properties": {
            "provider": {"type": "string", "enum": ["openpipe", "openpipeReward", "openai", "gemini"]},
            "baseModel": {"type": "string"},
            "enable_sft": {"type": "boolean"},
            "enable_preference_tuning": {"type": "boolean"},
            "sft_hyperparameters": {"type": "object"},
            "preference_hyperparameters": {"type": "object"},
            "hyperparameters": {"type": "object"},
        }},
    },
}


async def _rpc(request: Request, method: str, message: Any, deadline_s: float = 60) -> Any:
    stub = request.app.state.deps.models
    try:
        return await getattr(stub, method)(message, timeout=deadline_s)
    except grpc.aio.AioRpcError as exc:
        raise _api_error(exc) from exc


def _raw(data: bytes) -> Response:
    return Response(data, media_type="application/json")


async def _create(request: Request, project_id: str, body: Any) -> dict:
    resp = await _rpc(request, "CreateModel", models_pb2.CreateModelRequest(
        project_id=project_id, body_json=_dumps(body, "the body")), deadline_s=600)
    return orjson.loads(resp.model_json)


@router.post("/models", summary="Train a new model (SFT and/or DPO, or a reward model)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": _CREATE_SCHEMA}}}})
async def create_model(request: Request, body: Any = Body(...), project_id: str = Depends(project_of)):
    return Response(orjson.dumps(await _create(request, project_id, body)), media_type="application/json")


@router.get("/models", summary="List the project's models")
async def list_models(request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "ListModels", models_pb2.ListModelsRequest(project_id=project_id))
    return Response(orjson.dumps({"object": "list", "data": orjson.Fragment(resp.models_json)}),
                    media_type="application/json")


@router.get("/models/{slug}", summary="Get a model")
async def get_model(slug: str, request: Request, project_id: str = Depends(project_of)):
    slug = slug.removeprefix("openpipe:")
    resp = await _rpc(request, "GetModel", models_pb2.ModelRef(project_id=project_id, slug=slug))
    return _raw(resp.model_json)


@router.delete("/models/{slug}", summary="Delete a model (cancels its training if still running)")
async def delete_model(slug: str, request: Request, project_id: str = Depends(project_of)):
    slug = slug.removeprefix("openpipe:")
    resp = await _rpc(request, "DeleteModel", models_pb2.ModelRef(project_id=project_id, slug=slug))
    return Response(orjson.dumps({"id": resp.id, "object": "model", "deleted": True}), media_type="application/json")


@router.get("/models/{slug}/events", summary="Training events: steps, losses, token accuracy, validation loss")
async def training_events(slug: str, request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "TrainingEvents", models_pb2.ModelRef(project_id=project_id, slug=slug))
    return Response(orjson.dumps({"object": "list", "data": orjson.Fragment(resp.events_json)}),
                    media_type="application/json")


@router.get("/models/{slug}/checkpoints", summary="A checkpoint per epoch")
async def checkpoints(slug: str, request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "Checkpoints", models_pb2.ModelRef(project_id=project_id, slug=slug))
    return Response(orjson.dumps({"object": "list", "data": orjson.Fragment(resp.checkpoints_json)}),
                    media_type="application/json")


@router.post("/models/{slug}/cancel", summary="Cancel training; the model ends in ERROR")
async def cancel(slug: str, request: Request, project_id: str = Depends(project_of)):
    resp = await _rpc(request, "CancelTraining", models_pb2.ModelRef(project_id=project_id, slug=slug))
    return _raw(resp.model_json)


# ---- deprecated unstable routes -----------------------------------------------------------

_UNSTABLE_STATUS = {"QUEUED": "PENDING", "PROVISIONING": "TRANSFERRING_TRAINING_DATA"}


def _finetune(model: dict) -> dict:
    op = model["openpipe"]
    return {"id": model["refinery"]["modelId"], "status": _UNSTABLE_STATUS.get(op["status"], op["status"]),
            "slug": model["id"], "baseModel": op["baseModel"], "errorMessage": op["errorMessage"],
            "datasetId": op["datasetId"], "createdAt": model["created"]}


@router.post("/unstable/finetune/create", summary="Deprecated: use POST /models")
async def unstable_create(request: Request, body: Any = Body(...), project_id: str = Depends(project_of)):
    if not isinstance(body, dict):
        body = {}
    overrides = body.get("overrides") or {}
    translated = {"datasetId": body.get("datasetId"), "slug": body.get("slug"), "trainingConfig": {
        "provider": "openpipe", "baseModel": body.get("baseModel"),
        **({"hyperparameters": overrides} if isinstance(overrides, dict) and overrides else {})}}
    model = await _create(request, project_id, translated)
    return Response(orjson.dumps({"id": model["refinery"]["modelId"]}), media_type="application/json")


async def _by_id_or_slug(request: Request, project_id: str, id_: str | None, slug: str | None) -> dict:
    if slug:
        resp = await _rpc(request, "GetModel", models_pb2.ModelRef(project_id=project_id, slug=slug))
        return orjson.loads(resp.model_json)
    resp = await _rpc(request, "ListModels", models_pb2.ListModelsRequest(project_id=project_id))
    for m in orjson.loads(resp.models_json):
        if m["refinery"]["modelId"] == id_:
            return m
    from gateway.errors import ApiError

    raise ApiError(404, "NOT_FOUND", f"fine-tune {id_!r} not found")


@router.get("/unstable/finetune/get", summary="Deprecated: use GET /models/{slug}")
async def unstable_get(request: Request, id: str | None = Query(default=None), slug: str | None = Query(default=None),
                       project_id: str = Depends(project_of)):
    if not id and not slug:
        from gateway.errors import ApiError

        raise ApiError(400, "BAD_REQUEST", "Input validation failed", ["give `id` or `slug`"])
    return Response(orjson.dumps(_finetune(await _by_id_or_slug(request, project_id, id, slug))),
                    media_type="application/json")


@router.post("/unstable/finetune/delete", summary="Deprecated: use DELETE /models/{slug}")
async def unstable_delete(request: Request, body: Any = Body(...), project_id: str = Depends(project_of)):
    id_ = body.get("id") if isinstance(body, dict) else None
    if not isinstance(id_, str) or not id_:
        from gateway.errors import ApiError

        raise ApiError(400, "BAD_REQUEST", "Input validation failed", ["`id` is required"])
    model = await _by_id_or_slug(request, project_id, id_, None)
    await _rpc(request, "DeleteModel", models_pb2.ModelRef(project_id=project_id, slug=model["id"]))
    return Response(orjson.dumps({"deleted": True}), media_type="application/json")
