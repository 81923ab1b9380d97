"""How a model moves along QUEUED → PROVISIONING → TRAINING → DEPLOYED (or ERROR) as the trainer reports.

The registry follows the trainer's `training.*` events on `refinery.models` (typed, through
`subscriptions`). Each event is recorded once in the model's training log (deduped on its
event id, since delivery is at least once); only a first delivery moves the status. A completed
job is deployed in the background: inference must load the adapter before the model is DEPLOYED.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import grpc
from pydantic import BaseModel
from refinery.events import models as ev
from refinery.rpc import inference_pb2_grpc
from refinery.runtime.subscriptions import Event, Subscriptions

from model_registry.servicer import deployment
from model_registry.store import RegistryStore


class Lifecycle:
    def __init__(self, store: RegistryStore, inference: inference_pb2_grpc.InferenceStub | None,
                 deploy_timeout_s: float, stall_timeout_s: float) -> None:
        self.store = store
        self._inference = inference
        self._deploy_timeout_s = deploy_timeout_s
        self._stall_timeout_s = stall_timeout_s
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

    async def set_status(self, model_id: str, status: str, error: str | None = None) -> None:
        await asyncio.to_thread(self.store.set_status, model_id, status, error)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deploy(self, model_id: str, adapter_key: str) -> None:
        if model_id in self._deploying:
            return
        self._deploying.add(model_id)
        try:
            row = await asyncio.to_thread(self.store.by_id, model_id)
            if row.kind == "openpipeReward":
                # A reward model scores, it does not chat: it is ready once its adapter is stored.
                await asyncio.to_thread(self.store.deployed, model_id, adapter_key)
                return
            if self._inference is None:
                await self.set_status(model_id, "ERROR", "trained, but no inference service is configured to deploy it")
                return
            dep = deployment(row)
            dep.adapter_key = adapter_key
            try:
                await self._inference.LoadAdapter(dep, timeout=self._deploy_timeout_s)
            except grpc.aio.AioRpcError as exc:
                await self.set_status(model_id, "ERROR", f"deployment failed: {exc.code().name}: {exc.details()}")
                return
            await asyncio.to_thread(self.store.deployed, model_id, adapter_key)
        finally:
            self._deploying.discard(model_id)

    async def watchdog(self) -> None:
        """A job nobody reports on (a trainer gone for good) ends in ERROR, never stuck in TRAINING."""
        while True:
            await asyncio.sleep(min(30.0, self._stall_timeout_s / 4))
            now = time.time() * 1000
            for row in await asyncio.to_thread(self.store.active):
                if now - row.last_event_at > self._stall_timeout_s * 1000:
                    await self.set_status(
                        row.id, "ERROR",
                        f"no progress from the trainer for {self._stall_timeout_s:.0f} s; the job was abandoned")


def subscriptions(lifecycle: Lifecycle) -> Subscriptions:
    """The registry's handlers of the trainer's events."""
    subs = Subscriptions("model-registry")

    @subs.on(ev.TRAINING_STARTED)
    async def started(event: Event[ev.TrainingStarted]) -> None:
        row = await lifecycle.record(event)
        if row is not None and row.status in ("QUEUED", "TRAINING", "ERROR"):  # TRAINING/ERROR: a retry
            await lifecycle.set_status(row.id, "PROVISIONING")

    @subs.on(ev.TRAINING_PROGRESSED)
    async def progressed(event: Event[ev.TrainingProgressed]) -> None:
        row = await lifecycle.record(event)
        if row is not None and row.status in ("QUEUED", "PROVISIONING"):
            await lifecycle.set_status(row.id, "TRAINING")

    @subs.on(ev.TRAINING_CHECKPOINT_SAVED)
    async def checkpoint(event: Event[ev.TrainingCheckpointSaved]) -> None:
        row = await lifecycle.record(event)
        if row is not None:
            await asyncio.to_thread(lifecycle.store.add_checkpoint, row.id, event.data.model_dump())

    @subs.on(ev.TRAINING_FAILED)
    async def failed(event: Event[ev.TrainingFailed]) -> None:
        row = await lifecycle.record(event)
        if row is not None and row.status != "DEPLOYED":
            await lifecycle.set_status(row.id, "ERROR", event.data.error_message)

    @subs.on(ev.TRAINING_COMPLETED)
    async def completed(event: Event[ev.TrainingCompleted]) -> None:
        row = await lifecycle.record(event)
        if row is not None and row.status != "DEPLOYED":
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
    return kind
