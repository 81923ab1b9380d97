"""model-registry's gRPC API, and how it follows training to deployment."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import grpc
import orjson
from refinery.events import models as ev
from refinery.rpc import datasets_pb2, inference_pb2_grpc, models_pb2, models_pb2_grpc

from model_registry.store import Conflict, NotFound, RegistryStore, model_json
from model_registry.validation import InvalidModel, TrainingSpec, parse_create_model

log = logging.getLogger("refinery.model_registry")


def known_base(model_id: str) -> bool:
    """A base this installation can train: the bundled default, or a local model directory."""
    try:
        from refinery.ml.base_models import canonical_id, known_base_models
    except ImportError:  # the ML extra is not installed on this host
        known: list[str] = []
    else:
        known = known_base_models()
        model_id = canonical_id(model_id)
    if model_id.lower() in {k.lower() for k in known}:
        return True
    p = Path(model_id)
    return p.is_absolute() and (p / "config.json").exists()


class RegistryServicer(models_pb2_grpc.ModelRegistryServicer):
    def __init__(self, store: RegistryStore, datasets: Any) -> None:
        self._store = store
        self._datasets = datasets

    async def _abort_for(self, context, exc: Exception) -> None:
        if isinstance(exc, NotFound):
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        if isinstance(exc, (InvalidModel, Conflict)):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise exc

    async def _call(self, context, fn, *args):
        try:
            return await asyncio.to_thread(fn, *args)
        except (NotFound, InvalidModel, Conflict) as exc:
            await self._abort_for(context, exc)

    async def CreateModel(self, request, context):
        try:
            body = orjson.loads(request.body_json)
            spec = parse_create_model(body)
        except orjson.JSONDecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the body is not JSON")
        except InvalidModel as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        project_id = request.project_id
        # The base: a model trained here (its adapter seeds the new training) or a known base model.
        init_adapter = None
        base_model = spec.base_model
        try:
            parent = await asyncio.to_thread(self._store.get, project_id, spec.base_model)
        except NotFound:
            parent = None
        if parent is not None:
            if parent.status != "DEPLOYED" or not parent.adapter_key:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"base model {spec.base_model!r} is a model that is not trained yet "
                                    f"(status {parent.status})")
            init_adapter, base_model = parent.adapter_key, parent.base_model
        elif not await asyncio.to_thread(known_base, spec.base_model):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"unknown base model {spec.base_model!r}: use a base model this installation "
                                "has (HuggingFaceTB/SmolLM2-135M-Instruct), a local model directory, or the slug "
                                "of a model trained in this project")
        if spec.kind == "openpipeReward" and init_adapter:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a reward model must start from a base model")
        rules = await self._dataset_rules(context, project_id, spec)
        try:
            snap = await self._datasets.CreateSnapshot(
                datasets_pb2.DatasetRef(project_id=project_id, dataset_id=spec.dataset_id), timeout=600)
        except grpc.aio.AioRpcError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"dataset service: {exc.details()}")
        created = ev.ModelCreated(
            slug=spec.slug, dataset_id=spec.dataset_id, base_model=base_model, training_config=spec.training_config,
            default_temperature=spec.default_temperature, pruning_rules=rules)
        requested = ev.TrainingRequested(
            slug=spec.slug, kind=spec.kind, base_model=base_model, init_adapter_key=init_adapter,
            snapshot_key=snap.object_key, snapshot_id=snap.id, pruning_rules=rules, enable_sft=spec.enable_sft,
            enable_preference_tuning=spec.enable_preference_tuning,
            sft={k: v for k, v in spec.sft.items() if v is not None},
            preference={k: v for k, v in spec.preference.items() if v is not None})
        row = await self._call(context, self._store.create, project_id, created, requested, spec.kind,
                               spec.hyperparameters)
        return models_pb2.ModelResponse(model_json=orjson.dumps(model_json(row)))

    async def _dataset_rules(self, context, project_id: str, spec: TrainingSpec) -> list[str]:
        ref = datasets_pb2.DatasetRef(project_id=project_id, dataset_id=spec.dataset_id)
        try:
            resp = await self._datasets.ListPruningRules(ref, timeout=30)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"dataset {spec.dataset_id!r} not found")
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"dataset service: {exc.details()}")
        by_id = {r.id: r.text for r in resp.rules}
        if spec.pruning_rule_ids is None:
            return list(by_id.values())  # a model inherits its dataset's rules unless told otherwise
        missing = [r for r in spec.pruning_rule_ids if r not in by_id]
        if missing:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"pruning rules not in dataset {spec.dataset_id}: {', '.join(missing)}")
        return [by_id[r] for r in spec.pruning_rule_ids]

    async def GetModel(self, request, context):
        row = await self._call(context, self._store.get, request.project_id, request.slug)
        return models_pb2.ModelResponse(model_json=orjson.dumps(model_json(row)))

    async def ListModels(self, request, context):
        rows = await self._call(context, self._store.list, request.project_id)
        return models_pb2.ListModelsResponse(models_json=orjson.dumps([model_json(r) for r in rows]))

    async def DeleteModel(self, request, context):
        row = await self._call(context, self._store.delete, request.project_id, request.slug)
        return models_pb2.DeleteModelResponse(id=row.slug)

    async def CancelTraining(self, request, context):
        await self._call(context, self._store.request_cancel, request.project_id, request.slug)
        row = await self._call(context, self._store.get, request.project_id, request.slug)
        return models_pb2.ModelResponse(model_json=orjson.dumps(model_json(row)))

    async def TrainingEvents(self, request, context):
        events = await self._call(context, self._store.training_events, request.project_id, request.slug)
        return models_pb2.TrainingEventsResponse(events_json=orjson.dumps(events))

    async def Checkpoints(self, request, context):
        cps = await self._call(context, self._store.checkpoints, request.project_id, request.slug)
        return models_pb2.CheckpointsResponse(checkpoints_json=orjson.dumps(cps))

    async def Resolve(self, request, context):
        try:
            row = await asyncio.to_thread(self._store.get, request.project_id, request.slug)
        except NotFound:
            return models_pb2.Resolution(found=False)
        return models_pb2.Resolution(
            found=True, status=row.status, model_id=row.id, default_temperature=row.default_temperature or 0.0,
            has_default_temperature=row.default_temperature is not None)

    async def Deployments(self, request, context):
        rows = await asyncio.to_thread(self._store.all_deployed)
        return models_pb2.DeploymentsResponse(deployments=[deployment(r) for r in rows])


def deployment(row: Any) -> models_pb2.Deployment:
    return models_pb2.Deployment(model_id=row.id, project_id=row.project_id, slug=row.slug,
                                 base_model=row.base_model, adapter_key=row.adapter_key or "",
                                 pruning_rules=list(row.pruning_rules))


class Lifecycle:
    """Moves models along QUEUED → PROVISIONING → TRAINING → DEPLOYED (or ERROR) as the trainer reports."""

    def __init__(self, store: RegistryStore, inference: inference_pb2_grpc.InferenceStub | None,
                 deploy_timeout_s: float, stall_timeout_s: float) -> None:
        self._store = store
        self._inference = inference
        self._deploy_timeout_s = deploy_timeout_s
        self._stall_timeout_s = stall_timeout_s
        self._deploying: set[str] = set()
        self._tasks: set[asyncio.Task] = set()

    async def handle(self, events: list[dict]) -> None:
        for env in events:
            kind = env.get("type", "")
            if not kind.startswith("training.") or kind in (ev.TRAINING_REQUESTED, ev.TRAINING_CANCEL_REQUESTED):
                continue
            model_id = env["aggregate_id"].removeprefix("training-")
            row = await asyncio.to_thread(self._store.by_id, model_id)
            if row is None or row.deleted:
                continue
            data = env.get("data") or {}
            fresh = await asyncio.to_thread(self._store.record_training_event, model_id, env["event_id"],
                                            _describe(kind, data), data, "error" if kind == ev.TRAINING_FAILED
                                            else "info")
            if not fresh:
                continue
            if kind == ev.TRAINING_STARTED and row.status == "QUEUED":
                await asyncio.to_thread(self._store.set_status, model_id, "PROVISIONING")
            elif kind == ev.TRAINING_STARTED and row.status in ("TRAINING", "ERROR"):
                await asyncio.to_thread(self._store.set_status, model_id, "PROVISIONING")  # a retry
            elif kind == ev.TRAINING_PROGRESSED and row.status in ("QUEUED", "PROVISIONING"):
                await asyncio.to_thread(self._store.set_status, model_id, "TRAINING")
            elif kind == ev.TRAINING_CHECKPOINT_SAVED:
                await asyncio.to_thread(self._store.add_checkpoint, model_id, data)
            elif kind == ev.TRAINING_FAILED and row.status != "DEPLOYED":
                await asyncio.to_thread(self._store.set_status, model_id, "ERROR", data.get("error_message"))
            elif kind == ev.TRAINING_COMPLETED and row.status != "DEPLOYED":
                await asyncio.to_thread(self._store.set_metrics, model_id, data.get("metrics") or {})
                self._spawn(self.deploy(model_id, data["adapter_key"]))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deploy(self, model_id: str, adapter_key: str) -> None:
        if model_id in self._deploying:
            return
        self._deploying.add(model_id)
        try:
            row = await asyncio.to_thread(self._store.by_id, model_id)
            if row.kind == "openpipeReward":
                # A reward model scores, it does not chat: it is ready once its adapter is stored.
                await asyncio.to_thread(self._store.deployed, model_id, adapter_key)
                return
            if self._inference is None:
                await asyncio.to_thread(self._store.set_status, model_id, "ERROR",
                                        "trained, but no inference service is configured to deploy it")
                return
            dep = deployment(row)
            dep.adapter_key = adapter_key
            try:
                await self._inference.LoadAdapter(dep, timeout=self._deploy_timeout_s)
            except grpc.aio.AioRpcError as exc:
                await asyncio.to_thread(self._store.set_status, model_id, "ERROR",
                                        f"deployment failed: {exc.code().name}: {exc.details()}")
                return
            await asyncio.to_thread(self._store.deployed, model_id, adapter_key)
        finally:
            self._deploying.discard(model_id)

    async def watchdog(self) -> None:
        """A job nobody reports on (a trainer gone for good) ends in ERROR, never stuck in TRAINING."""
        import time

        while True:
            await asyncio.sleep(min(30.0, self._stall_timeout_s / 4))
            now = time.time() * 1000
            for row in await asyncio.to_thread(self._store.active):
                if now - row.last_event_at > self._stall_timeout_s * 1000:
                    await asyncio.to_thread(
                        self._store.set_status, row.id, "ERROR",
                        f"no progress from the trainer for {self._stall_timeout_s:.0f} s; the job was abandoned")


def _describe(kind: str, data: dict) -> str:
    if kind == ev.TRAINING_STARTED:
        return (f"{data.get('phase', 'training')} started (attempt {data.get('attempt')}): "
                f"{data.get('train_rows')} training rows, {data.get('test_rows')} test rows")
    if kind == ev.TRAINING_PROGRESSED:
        parts = [f"{data.get('phase')} step {data.get('step')}/{data.get('total_steps')}"]
        if data.get("train_loss") is not None:
            parts.append(f"train loss {data['train_loss']:.4f}")
        if data.get("token_accuracy") is not None:
            parts.append(f"token accuracy {data['token_accuracy']:.3f}")
        if data.get("valid_loss") is not None:
            parts.append(f"validation loss {data['valid_loss']:.4f}")
        return ", ".join(parts)
    if kind == ev.TRAINING_CHECKPOINT_SAVED:
        return f"checkpoint saved after {data.get('phase')} epoch {data.get('epoch')} (step {data.get('step')})"
    if kind == ev.TRAINING_COMPLETED:
        return "training completed; deploying"
    if kind == ev.TRAINING_FAILED:
        return f"training failed: {data.get('error_message')}"
    return kind
