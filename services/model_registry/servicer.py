"""model-registry's gRPC API (how it follows training to deployment is `model_registry.lifecycle`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import orjson
from refinery.events import models as ev
from refinery.rpc import datasets_pb2, models_pb2, models_pb2_grpc

from model_registry.base_models import RefusedBaseModel, check_base_model
from model_registry.states import wire_status
from model_registry.store import Conflict, NotFound, RegistryStore
from model_registry.validation import InvalidModel, check_create, preference_params, sft_params

log = logging.getLogger("refinery.model_registry")


class RegistryServicer(models_pb2_grpc.ModelRegistryServicer):
    """Takes and returns typed messages (see models.proto, which lists the refusals); the REST
    shape of models is the gateway's."""

    def __init__(self, store: RegistryStore, datasets: Any, base_model_roots: Sequence[Path]) -> None:
        self._store = store
        self._datasets = datasets
        self._base_model_roots = list(base_model_roots)

    async def _abort_for(self, context, exc: Exception) -> None:
        if isinstance(exc, NotFound):
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        if isinstance(exc, Conflict):  # the API answers a taken slug with 400 (the SDK expects it), not 409
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        raise exc

    async def _call(self, context, fn, *args):
        try:
            return await asyncio.to_thread(fn, *args)
        except (NotFound, Conflict) as exc:
            await self._abort_for(context, exc)

    async def CreateModel(self, request: models_pb2.CreateModelRequest, context) -> models_pb2.Model:
        try:
            check_create(request)
        except InvalidModel as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        project_id = request.project_id
        # The base: a model trained here (its adapter seeds the new training) or a known base model.
        init_adapter = None
        base_model = request.base_model
        try:
            parent = await asyncio.to_thread(self._store.get, project_id, request.base_model)
        except NotFound:
            parent = None
        if parent is not None:
            if parent.status != "DEPLOYED" or not parent.adapter_key:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"base model {request.base_model!r} is a model that is not trained yet "
                                    f"(status {wire_status(parent.status)})")
            init_adapter, base_model = parent.adapter_key, parent.base_model
        else:
            try:
                await asyncio.to_thread(check_base_model, request.base_model, self._base_model_roots)
            except RefusedBaseModel as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if request.kind == "openpipeReward" and init_adapter:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a reward model must start from a base model")
        rules = await self._dataset_rules(context, request)
        try:
            snap = await self._datasets.CreateSnapshot(
                datasets_pb2.DatasetRef(project_id=project_id, dataset_id=request.dataset_id), timeout=600)
        except grpc.aio.AioRpcError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"dataset service: {exc.details()}")
        default_temperature = request.default_temperature if request.HasField("default_temperature") else None
        created = ev.ModelCreated(
            slug=request.slug, dataset_id=request.dataset_id, base_model=base_model,
            training_config=orjson.loads(request.training_config_json or b"{}"),
            default_temperature=default_temperature, pruning_rules=rules)
        requested = ev.TrainingRequested(
            slug=request.slug, kind=request.kind, base_model=base_model, init_adapter_key=init_adapter,
            snapshot_key=snap.object_key, snapshot_id=snap.id, pruning_rules=rules, enable_sft=request.enable_sft,
            enable_preference_tuning=request.enable_preference_tuning, sft=sft_params(request.sft),
            preference=preference_params(request))
        row = await self._call(context, self._store.create, project_id, created, requested, request.kind,
                               orjson.loads(request.hyperparameters_json or b"{}"))
        return model_message(row)

    async def _dataset_rules(self, context, request: models_pb2.CreateModelRequest) -> list[str]:
        ref = datasets_pb2.DatasetRef(project_id=request.project_id, dataset_id=request.dataset_id)
        try:
            resp = await self._datasets.ListPruningRules(ref, timeout=30)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"dataset {request.dataset_id!r} not found")
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"dataset service: {exc.details()}")
        by_id = {r.id: r.text for r in resp.rules}
        if not request.HasField("pruning_rule_ids"):
            return list(by_id.values())  # a model inherits its dataset's rules unless told otherwise
        chosen = list(request.pruning_rule_ids.ids)
        missing = [r for r in chosen if r not in by_id]
        if missing:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"pruning rules not in dataset {request.dataset_id}: {', '.join(missing)}")
        return [by_id[r] for r in chosen]

    async def GetModel(self, request, context) -> models_pb2.Model:
        return model_message(await self._call(context, self._store.get, request.project_id, request.slug))

    async def ListModels(self, request, context) -> models_pb2.ListModelsResponse:
        rows = await self._call(context, self._store.in_project, request.project_id)
        return models_pb2.ListModelsResponse(models=[model_message(r) for r in rows])

    async def DeleteModel(self, request, context) -> models_pb2.DeleteModelResponse:
        row = await self._call(context, self._store.delete, request.project_id, request.slug)
        return models_pb2.DeleteModelResponse(id=row.slug)

    async def CancelTraining(self, request, context) -> models_pb2.Model:
        await self._call(context, self._store.request_cancel, request.project_id, request.slug)
        return model_message(await self._call(context, self._store.get, request.project_id, request.slug))

    async def TrainingEvents(self, request, context) -> models_pb2.TrainingEventsResponse:
        rows = await self._call(context, self._store.training_events, request.project_id, request.slug)
        return models_pb2.TrainingEventsResponse(events=[models_pb2.TrainingEvent(
            id=r.event_id, created_at=r.created_at, level=r.level, message=r.message,
            type="metrics" if "total_steps" in r.data else "message", data_json=orjson.dumps(r.data)) for r in rows])

    async def Checkpoints(self, request, context) -> models_pb2.CheckpointsResponse:
        rows = await self._call(context, self._store.checkpoints, request.project_id, request.slug)
        return models_pb2.CheckpointsResponse(checkpoints=[models_pb2.Checkpoint(
            checkpoint_key=r.checkpoint_key, created_at=r.created_at, phase=r.phase, epoch=r.epoch, step=r.step)
            for r in rows])

    async def Resolve(self, request, context):
        try:
            row = await asyncio.to_thread(self._store.get, request.project_id, request.slug)
        except NotFound:
            return models_pb2.Resolution(found=False)
        return models_pb2.Resolution(
            found=True, status=wire_status(row.status), model_id=row.id,
            default_temperature=row.default_temperature or 0.0,
            has_default_temperature=row.default_temperature is not None)

    async def Deployments(self, request, context):
        rows = await asyncio.to_thread(self._store.all_deployed)
        return models_pb2.DeploymentsResponse(deployments=[deployment(r) for r in rows])


def model_message(row: Any) -> models_pb2.Model:
    return models_pb2.Model(
        id=row.id, slug=row.slug, dataset_id=row.dataset_id, base_model=row.base_model,
        status=wire_status(row.status),
        error_message=row.error_message, default_temperature=row.default_temperature,
        pruning_rules=list(row.pruning_rules), snapshot_id=row.snapshot_id, created_at=row.created_at,
        updated_at=row.updated_at, hyperparameters_json=orjson.dumps(row.hyperparameters),
        training_config_json=orjson.dumps(row.training_config), metrics_json=orjson.dumps(row.metrics))


def deployment(row: Any) -> models_pb2.Deployment:
    return models_pb2.Deployment(model_id=row.id, project_id=row.project_id, slug=row.slug,
                                 base_model=row.base_model, adapter_key=row.adapter_key or "",
                                 pruning_rules=list(row.pruning_rules))
