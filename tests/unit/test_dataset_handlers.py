"""The dataset service's handlers, driven through the in-memory bus: a dataset counts the models
trained on it, once per event however often the event is delivered."""

from __future__ import annotations

from dataset.handlers import model_subscriptions
from dataset.store import DatasetStore
from refinery.config import MODELS_TOPIC
from refinery.events import models as ev
from refinery.runtime.memory_bus import MemoryBus


def _created(model_id: str, dataset_id: str):
    return ev.model_event("p1", model_id, 1, ev.MODEL_CREATED, ev.ModelCreated(
        slug=model_id, dataset_id=dataset_id, base_model="base", training_config={}))


async def test_models_created_and_deleted_move_the_fine_tune_count_once(tmp_path) -> None:
    store = DatasetStore(f"sqlite:///{tmp_path / 'dataset.db'}")
    dataset = store.datasets.create("p1", "d")
    bus = MemoryBus()
    bus.subscribe(MODELS_TOPIC, model_subscriptions(store))
    first, second = _created("m1", dataset.id), _created("m2", dataset.id)
    await bus.publish(MODELS_TOPIC, first)
    await bus.publish(MODELS_TOPIC, first)  # redelivered: counted once
    await bus.publish(MODELS_TOPIC, second)
    assert store.datasets.get("p1", dataset.id).fine_tune_count == 2
    await bus.publish(MODELS_TOPIC, ev.model_event("p1", "m1", 2, ev.MODEL_DELETED,
                                                   ev.ModelDeleted(slug="m1", dataset_id=dataset.id)))
    await bus.publish(MODELS_TOPIC, ev.model_event("p1", "m0", 2, ev.MODEL_DELETED,
                                                   ev.ModelDeleted(slug="old")))  # no dataset named: ignored
    assert store.datasets.get("p1", dataset.id).fine_tune_count == 1
    store.close()
