"""How a model moves through its lifecycle (`model_registry.states`) as the trainer reports.

The registry follows the trainer's `training.*` events on `refinery.models` (typed, through
`subscriptions`). Each event is recorded once in the model's training log (deduped on its
event id, since delivery is at least once); only a first delivery moves the state, and only
along a legal transition. A move the lifecycle refuses (a `training.completed` for a model that
was cancelled, timed out or deleted) is permanent, not transient: it is noted in the training
log and the event is done with, never raised for the bus to retry. A completed job is deployed in
the background: inference must load the adapter before the model is DEPLOYED.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

import grpc
from pydantic import BaseModel
from refinery.events import models as ev
from refinery.rpc import inference_pb2, inference_pb2_grpc, models_pb2
from refinery.runtime.subscriptions import Event, Subscriptions

from model_registry.servicer import deployment
from model_registry.states import IllegalTransition, ModelState
from model_registry.store import NotFound, RegistryStore

log = logging.getLogger("refinery.model_registry")

# A deployment inference cannot take yet (restarting, still loading its base) is tried again.
_DEPLOY_TRIES = 3
_DEPLOY_RETRY_S = 2.0
_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class Lifecycle:
    def __init__(self, store: RegistryStore, inference: inference_pb2_grpc.InferenceStub | None,
                 deploy_timeout_s: float, stall_timeout_s: float, deploy_retry_s: float = _DEPLOY_RETRY_S) -> None:
        self.store = store
        self._inference = inference
        self._deploy_timeout_s = deploy_timeout_s
        self._stall_timeout_s = stall_timeout_s
        self._deploy_retry_s = deploy_retry_s
        self._deploying: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def record(self, event: Event[Any]) -> Any | None:
        """The model's row when `event` is news about a live model (recorded now), else None."""
        model_id = event.aggregate_id.removeprefix("training-")
        row = await asyncio.to_thread(self.store.by_id, model_id)
        if row is None or row.deleted:
            return None
        data = event.data.model_dump()
        fresh = await asyncio.to_thread(self.store.record_training_event, model_id, event.event_id,
                                        describe(event.type, event.data), data,
                                        "error" if event.type == ev.TRAINING_FAILED else "info")
        return row if fresh else None

    async def move(self, model_id: str, target: ModelState, error: str | None = None, *,
                   adapter_key: str | None = None, cause: str | None = None) -> bool:
        """Move the model to `target`; True when it moved. A refused move is noted (in the
        training log under `cause`, the event id that asked for it, so a redelivery notes it
        once) and answered False; a vanished model is False too."""
        try:
            return await asyncio.to_thread(self.store.transition, model_id, target, error, adapter_key)
        except NotFound:
            return False
        except IllegalTransition as exc:
            log.info("model %s: %s; left as it is", model_id, exc)
            if cause is not None:
                await asyncio.to_thread(self.store.record_training_event, model_id, f"{cause}:refused",
                                        f"ignored: {exc}", {}, "info")
            return False

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deploy(self, model_id: str, adapter_key: str) -> None:
        """Load a DEPLOYING model's adapter into inference, then mark it DEPLOYED (or FAILED)."""
        if model_id in self._deploying:
            return
        self._deploying.add(model_id)
        try:
            row = await asyncio.to_thread(self.store.by_id, model_id)
            if row is None:
                return
            # Chat and reward models alike: DEPLOYED once inference has loaded the adapter and it
            # answered (a reward model by scoring a conversation), so a reward-model criterion
            # never names a model that cannot score.
            if self._inference is None:
                await self.move(model_id, ModelState.FAILED,
                                "trained, but no inference service is configured to deploy it")
                return
            dep = deployment(row)
            dep.adapter_key = adapter_key
            for attempt in range(1, _DEPLOY_TRIES + 1):
                try:
                    await self._inference.LoadAdapter(dep, timeout=self._deploy_timeout_s)
                    break
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in _TRANSIENT and attempt < _DEPLOY_TRIES:
                        await asyncio.sleep(self._deploy_retry_s)
                        continue
                    await self.move(model_id, ModelState.FAILED,
                                    f"deployment failed: {exc.code().name}: {exc.details()}")
                    return
            if not await self.move(model_id, ModelState.DEPLOYED, adapter_key=adapter_key):
                await self._unload(dep)  # deleted while it was being loaded: it must not keep serving
        finally:
            self._deploying.discard(model_id)

    async def _unload(self, dep: models_pb2.Deployment) -> None:
        if self._inference is None:
            return
        try:
            await self._inference.UnloadAdapter(inference_pb2.AdapterRef(model_id=dep.model_id), timeout=30)
        except grpc.aio.AioRpcError as exc:
            log.warning("could not unload %s from inference: %s", dep.model_id, exc.details())

    async def resume_deployments(self) -> None:
        """Deployments a stopped registry left half-way are taken up again."""
        for row in await asyncio.to_thread(self.store.in_states, frozenset({ModelState.DEPLOYING})):
            if row.adapter_key:
                self.spawn(self.deploy(row.id, row.adapter_key))
            else:
                await self.move(row.id, ModelState.FAILED, "trained, but the adapter's location was lost")

    async def expire_stalled(self) -> None:
        """Running work nobody reports on (a trainer gone for good) ends TIMED_OUT, measured from
        its last event since it started running; queued work is waiting its turn and is left alone."""
        now = time.time() * 1000
        for row in await asyncio.to_thread(self.store.running):
            if now - row.last_event_at > self._stall_timeout_s * 1000:
                await self.move(row.id, ModelState.TIMED_OUT,
                                f"no progress from the trainer for {self._stall_timeout_s:.0f} s; "
                                "the job was abandoned")

    async def watchdog(self) -> None:
        await self.resume_deployments()
        while True:
            await asyncio.sleep(min(30.0, self._stall_timeout_s / 4))
            await self.expire_stalled()


def subscriptions(lifecycle: Lifecycle) -> Subscriptions:
    """The registry's handlers of the trainer's events."""
    subs = Subscriptions("model-registry")

    @subs.on(ev.TRAINING_STARTED)
    async def started(event: Event[ev.TrainingStarted]) -> None:
        row = await lifecycle.record(event)
        if row is not None:
            await lifecycle.move(row.id, ModelState.PROVISIONING, cause=event.event_id)

    @subs.on(ev.TRAINING_PROGRESSED)
    async def progressed(event: Event[ev.TrainingProgressed]) -> None:
        row = await lifecycle.record(event)
        if row is not None and row.status in (ModelState.QUEUED, ModelState.PROVISIONING):
            await lifecycle.move(row.id, ModelState.TRAINING, cause=event.event_id)

    @subs.on(ev.TRAINING_CHECKPOINT_SAVED)
    async def checkpoint(event: Event[ev.TrainingCheckpointSaved]) -> None:
        row = await lifecycle.record(event)
        if row is not None:
            await asyncio.to_thread(lifecycle.store.add_checkpoint, row.id, event.data.model_dump())

    @subs.on(ev.TRAINING_REQUEUED)
    async def requeued(event: Event[ev.TrainingRequeued]) -> None:
        row = await lifecycle.record(event)
        if row is not None:
            await lifecycle.move(row.id, ModelState.QUEUED, cause=event.event_id)

    @subs.on(ev.TRAINING_FAILED)
    async def failed(event: Event[ev.TrainingFailed]) -> None:
        row = await lifecycle.record(event)
        if row is not None:
            target = ModelState.CANCELLED if event.data.cancelled else ModelState.FAILED
            await lifecycle.move(row.id, target, event.data.error_message, cause=event.event_id)

    @subs.on(ev.TRAINING_COMPLETED)
    async def completed(event: Event[ev.TrainingCompleted]) -> None:
        row = await lifecycle.record(event)
        if row is None:
            return
        if await lifecycle.move(row.id, ModelState.DEPLOYING, adapter_key=event.data.adapter_key,
                                cause=event.event_id):
            await asyncio.to_thread(lifecycle.store.set_metrics, row.id, event.data.metrics)
            lifecycle.spawn(lifecycle.deploy(row.id, event.data.adapter_key))

    return subs


def describe(kind: str, data: BaseModel) -> str:
    """The line a training event adds to the model's log."""
    if isinstance(data, ev.TrainingStarted):
        return (f"{data.phase} started (attempt {data.attempt}): "
                f"{data.train_rows} training rows, {data.test_rows} test rows")
    if isinstance(data, ev.TrainingProgressed):
        parts = [f"{data.phase} step {data.step}/{data.total_steps}"]
        if data.train_loss is not None:
            parts.append(f"train loss {data.train_loss:.4f}")
        if data.token_accuracy is not None:
            parts.append(f"token accuracy {data.token_accuracy:.3f}")
        if data.valid_loss is not None:
            parts.append(f"validation loss {data.valid_loss:.4f}")
        return ", ".join(parts)
    if isinstance(data, ev.TrainingCheckpointSaved):
        return f"checkpoint saved after {data.phase} epoch {data.epoch} (step {data.step})"
    if isinstance(data, ev.TrainingCompleted):
        return "training completed; deploying"
    if isinstance(data, ev.TrainingFailed):
        return f"training failed: {data.error_message}"
    if isinstance(data, ev.TrainingRequeued):
        return (f"attempt {data.attempt} of {data.max_attempts} ended: {data.reason}; "
                "the job is queued to run again")
    return kind
