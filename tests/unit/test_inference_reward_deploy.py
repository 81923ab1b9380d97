"""A reward model deploys the way a chat model does: the registry asks inference to load it and
shows DEPLOYED only once inference has (so a reward-model criterion never names a model nothing
can score with); if inference cannot load it, the model ends in ERROR with the reason."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from model_registry.lifecycle import Lifecycle, subscriptions
from model_registry.states import ModelState
from model_registry.store import RegistryStore
from refinery.config import MODELS_TOPIC
from refinery.events import models as ev
from refinery.runtime.memory_bus import MemoryBus

from tests.unit.test_model_lifecycle import FakeInference, Trainer, _settled, _shown


@pytest.fixture
def store(tmp_path: Path) -> RegistryStore:
    return RegistryStore(f"sqlite:///{tmp_path / 'registry.db'}")


def _reward_model(store: RegistryStore, slug: str):
    created = ev.ModelCreated(slug=slug, dataset_id="d1", base_model="base", training_config={})
    request = ev.TrainingRequested(slug=slug, kind="openpipeReward", base_model="base", snapshot_key="k",
                                   snapshot_id="s")
    return store.create("p1", created, request, "openpipeReward", {})


async def test_a_reward_model_is_deployed_only_once_inference_loaded_it(store: RegistryStore) -> None:
    inference = FakeInference()
    lifecycle = Lifecycle(store, inference, 5.0, 900.0, deploy_retry_s=0.0)  # type: ignore[arg-type]
    bus = MemoryBus()
    bus.subscribe(MODELS_TOPIC, subscriptions(lifecycle))
    model = _reward_model(store, "reward-v1")
    inference.gate = asyncio.Event()
    trainer = Trainer(bus, model.id)
    await trainer.started()
    await trainer.completed()
    assert store.state(model.id) == ModelState.DEPLOYING and _shown(store, model.id) == ("TRAINING", None)
    inference.gate.set()
    await _settled(lifecycle)
    assert inference.loaded == [f"adapters/{model.id}"]
    assert _shown(store, model.id) == ("DEPLOYED", None)


class RefusingInference(FakeInference):
    async def LoadAdapter(self, deployment, **call_options):
        raise grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                   "loading the adapter failed: the artifact is not a reward model of this base")


async def test_a_reward_model_inference_cannot_load_is_an_error_not_deployed(store: RegistryStore) -> None:
    lifecycle = Lifecycle(store, RefusingInference(), 5.0, 900.0, deploy_retry_s=0.0)  # type: ignore[arg-type]
    model = _reward_model(store, "reward-broken")
    store.transition(model.id, ModelState.DEPLOYING, adapter_key="adapters/broken")
    await lifecycle.deploy(model.id, "adapters/broken")
    status, error = _shown(store, model.id)
    assert status == "ERROR" and error is not None
    assert "deployment failed: INTERNAL" in error and "not a reward model" in error


async def test_without_inference_a_reward_model_is_not_shown_deployed(store: RegistryStore) -> None:
    lifecycle = Lifecycle(store, None, 5.0, 900.0, deploy_retry_s=0.0)
    model = _reward_model(store, "reward-orphan")
    store.transition(model.id, ModelState.DEPLOYING, adapter_key="adapters/orphan")
    await lifecycle.deploy(model.id, "adapters/orphan")
    assert _shown(store, model.id) == ("ERROR", "trained, but no inference service is configured to deploy it")
