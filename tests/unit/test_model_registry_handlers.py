"""model-registry's handlers of the trainer's events, driven through the in-memory bus: a model
moves QUEUED → PROVISIONING → TRAINING → DEPLOYED, a redelivered event changes nothing, a failure
ends in ERROR with its reason, and the status changes go out through the outbox."""

from __future__ import annotations

import asyncio

from model_registry.lifecycle import Lifecycle, subscriptions
from model_registry.servicer import model_message
from model_registry.store import RegistryStore
from refinery.config import MODELS_TOPIC
from refinery.events import models as ev
from refinery.runtime.memory_bus import MemoryBus


class FakeInference:
    def __init__(self) -> None:
        self.loaded: list[str] = []

    async def LoadAdapter(self, deployment, **call_options):  # the stub's name and call
        self.loaded.append(deployment.adapter_key)


def _model(store: RegistryStore, slug: str, kind: str = "openpipe"):
    created = ev.ModelCreated(slug=slug, dataset_id="d1", base_model="base", training_config={})
    request = ev.TrainingRequested(slug=slug, kind=kind, base_model="base", snapshot_key="k", snapshot_id="s")
    return store.create("p1", created, request, kind, {})


def _trainer(model_id: str, version: int, event_type: str, data):
    return ev.model_event("p1", f"training-{model_id}", version, event_type, data)


async def _settled(lifecycle: Lifecycle) -> None:
    for _ in range(100):
        if not lifecycle._tasks:
            return
        await asyncio.sleep(0.01)


async def test_training_events_move_a_model_to_deployed_once(tmp_path) -> None:
    store = RegistryStore(f"sqlite:///{tmp_path / 'registry.db'}")
    inference = FakeInference()
    lifecycle = Lifecycle(store, inference, 5.0, 900.0)  # type: ignore[arg-type]
    bus = MemoryBus()
    bus.subscribe(MODELS_TOPIC, subscriptions(lifecycle))
    model = _model(store, "m")
    started = _trainer(model.id, 1, ev.TRAINING_STARTED, ev.TrainingStarted(
        attempt=1, train_rows=9, test_rows=1, phase="sft"))
    await bus.publish(MODELS_TOPIC, started)
    assert store.by_id(model.id).status == "PROVISIONING"
    await bus.publish(MODELS_TOPIC, _trainer(model.id, 2, ev.TRAINING_PROGRESSED, ev.TrainingProgressed(
        phase="sft", step=1, total_steps=3, epoch=0.3, train_loss=1.5)))
    assert store.by_id(model.id).status == "TRAINING"
    await bus.publish(MODELS_TOPIC, started)  # redelivered: no step back to PROVISIONING
    assert store.by_id(model.id).status == "TRAINING"
    await bus.publish(MODELS_TOPIC, _trainer(model.id, 3, ev.TRAINING_COMPLETED, ev.TrainingCompleted(
        adapter_key="adapters/m", metrics={"train_loss": 0.2})))
    await _settled(lifecycle)
    row = store.by_id(model.id)
    assert (row.status, row.adapter_key, row.metrics) == ("DEPLOYED", "adapters/m", {"train_loss": 0.2})
    assert inference.loaded == ["adapters/m"]
    messages = [e.message for e in store.training_events("p1", "m")]
    assert messages == ["sft started (attempt 1): 9 training rows, 1 test rows",
                        "sft step 1/3, train loss 1.5000", "training completed; deploying"]
    await bus.flush_outbox(MODELS_TOPIC, store)
    statuses = [e.data["status"] for e in bus.events(MODELS_TOPIC) if e.type == ev.MODEL_STATUS_CHANGED]
    assert statuses == ["PROVISIONING", "TRAINING", "DEPLOYED"]


async def test_a_failed_job_ends_in_error_and_a_deleted_model_ignores_its_events(tmp_path) -> None:
    store = RegistryStore(f"sqlite:///{tmp_path / 'registry.db'}")
    lifecycle = Lifecycle(store, None, 5.0, 900.0)
    bus = MemoryBus()
    bus.subscribe(MODELS_TOPIC, subscriptions(lifecycle))
    failing, deleted = _model(store, "f"), _model(store, "d")
    await bus.publish(MODELS_TOPIC, _trainer(failing.id, 1, ev.TRAINING_FAILED, ev.TrainingFailed(
        error_message="out of memory")))
    row = store.by_id(failing.id)
    assert (model_message(row).status, row.error_message) == ("ERROR", "out of memory")
    store.delete("p1", "d")
    await bus.publish(MODELS_TOPIC, _trainer(deleted.id, 1, ev.TRAINING_STARTED, ev.TrainingStarted(
        attempt=1, train_rows=1, test_rows=0, phase="sft")))
    assert store.by_id(deleted.id).status != "PROVISIONING"
