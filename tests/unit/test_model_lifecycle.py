"""The model lifecycle: every legal move, every illegal one refused, and what that means for a
user: a cancelled, failed, timed-out or deleted model never becomes DEPLOYED, whatever the trainer
reports late; a requeued job waits in QUEUED; the watchdog times out running work only; the API
shows the statuses it always showed."""

from __future__ import annotations

import asyncio
from itertools import product

import pytest
from model_registry.lifecycle import Lifecycle, subscriptions
from model_registry.servicer import model_message
from model_registry.states import TRANSITIONS, IllegalTransition, ModelState, check, state_of, wire_status
from model_registry.store import RegistryStore
from refinery.config import MODELS_TOPIC
from refinery.events import models as ev
from refinery.runtime.memory_bus import MemoryBus

S = ModelState
LEGAL = [(a, b) for a, targets in TRANSITIONS.items() for b in sorted(targets)]
ILLEGAL = [(a, b) for a, b in product(S, S) if b not in TRANSITIONS[a] and not (a == b and a != S.DELETED)]


@pytest.mark.parametrize(("current", "target"), LEGAL, ids=[f"{a}->{b}" for a, b in LEGAL])
def test_every_legal_transition_is_allowed(current: ModelState, target: ModelState) -> None:
    assert check(current, target) is True


@pytest.mark.parametrize(("current", "target"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_every_other_transition_is_refused(current: ModelState, target: ModelState) -> None:
    with pytest.raises(IllegalTransition, match=f"a {current.value} model cannot become {target.value}"):
        check(current, target)


def test_the_ends_that_must_never_deploy() -> None:
    for end in (S.CANCELLED, S.FAILED, S.TIMED_OUT, S.DELETED):
        with pytest.raises(IllegalTransition):
            check(end, S.DEPLOYED)
    for target in S:
        with pytest.raises(IllegalTransition):
            check(S.DELETED, target)
    assert TRANSITIONS[S.DELETED] == frozenset()
    assert not check(S.TRAINING, S.TRAINING)  # a redelivered event is no change, not an error


def test_the_api_shows_the_statuses_it_always_showed() -> None:
    shown = {wire_status(s) for s in S if s != S.DELETED}
    assert shown == {"QUEUED", "PROVISIONING", "TRAINING", "DEPLOYED", "ERROR"}
    assert {wire_status(s) for s in (S.FAILED, S.CANCELLED, S.TIMED_OUT)} == {"ERROR"}
    assert wire_status(S.DEPLOYING) == "TRAINING"
    assert state_of("ERROR") == S.FAILED  # rows stored before the lifecycle had its own states
    assert state_of("DEPLOYED", deleted=True) == S.DELETED


# ---------------------------------------------------------------------------------------- through the bus


class FakeInference:
    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.unloaded: list[str] = []
        self.gate: asyncio.Event | None = None

    async def LoadAdapter(self, deployment, **call_options):  # the stub's name and call
        if self.gate is not None:
            await self.gate.wait()
        self.loaded.append(deployment.adapter_key)

    async def UnloadAdapter(self, ref, **call_options):
        self.unloaded.append(ref.model_id)


def _model(store: RegistryStore, slug: str):
    created = ev.ModelCreated(slug=slug, dataset_id="d1", base_model="base", training_config={})
    request = ev.TrainingRequested(slug=slug, kind="openpipe", base_model="base", snapshot_key="k", snapshot_id="s")
    return store.create("p1", created, request, "openpipe", {})


class Trainer:
    """Publishes a model's trainer events with consecutive versions."""

    def __init__(self, bus: MemoryBus, model_id: str) -> None:
        self.bus, self.model_id, self.version = bus, model_id, 0

    async def send(self, event_type: str, data):
        self.version += 1
        env = ev.model_event("p1", f"training-{self.model_id}", self.version, event_type, data)
        await self.bus.publish(MODELS_TOPIC, env)
        return env

    async def started(self, attempt: int = 1):
        return await self.send(ev.TRAINING_STARTED, ev.TrainingStarted(
            attempt=attempt, train_rows=10, test_rows=0, phase="sft"))

    async def progressed(self):
        return await self.send(ev.TRAINING_PROGRESSED, ev.TrainingProgressed(
            phase="sft", step=1, total_steps=2, epoch=0.5, train_loss=1.0))

    async def completed(self):
        return await self.send(ev.TRAINING_COMPLETED, ev.TrainingCompleted(adapter_key=f"adapters/{self.model_id}"))


@pytest.fixture
def setup(tmp_path):
    store = RegistryStore(f"sqlite:///{tmp_path / 'registry.db'}")
    inference = FakeInference()
    lifecycle = Lifecycle(store, inference, 5.0, 900.0, deploy_retry_s=0.0)  # type: ignore[arg-type]
    bus = MemoryBus()
    bus.subscribe(MODELS_TOPIC, subscriptions(lifecycle))
    return store, inference, lifecycle, bus


async def _settled(lifecycle: Lifecycle) -> None:
    for _ in range(500):
        if not lifecycle._tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("deployments still running")


def _shown(store: RegistryStore, model_id: str) -> tuple[str, str | None]:
    m = model_message(store.by_id(model_id))
    return m.status, (m.error_message if m.HasField("error_message") else None)


async def test_a_cancelled_model_stays_cancelled_when_training_completes_late(setup) -> None:
    store, inference, lifecycle, bus = setup
    model = _model(store, "c")
    trainer = Trainer(bus, model.id)
    await trainer.started()
    await trainer.progressed()
    store.request_cancel("p1", "c")
    assert _shown(store, model.id) == ("ERROR", "training was cancelled")
    completed = await trainer.completed()  # the trainer finished before it saw the cancel
    await bus.publish(MODELS_TOPIC, completed)  # and it is delivered again
    await _settled(lifecycle)
    assert store.by_id(model.id).status == S.CANCELLED and inference.loaded == []
    assert _shown(store, model.id) == ("ERROR", "training was cancelled")
    messages = [e.message for e in store.training_events("p1", "c")]
    assert messages.count("ignored: a CANCELLED model cannot become DEPLOYING") == 1
    await bus.flush_outbox(MODELS_TOPIC, store)
    types = [e.type for e in bus.events(MODELS_TOPIC) if e.aggregate_id == model.id]
    assert ev.TRAINING_CANCEL_REQUESTED in types and ev.MODEL_DEPLOYED not in types


async def test_a_failed_model_never_deploys_and_a_deleted_one_never_moves(setup) -> None:
    store, inference, lifecycle, bus = setup
    failed, deleted = _model(store, "f"), _model(store, "d")
    t = Trainer(bus, failed.id)
    await t.started()
    await t.send(ev.TRAINING_FAILED, ev.TrainingFailed(error_message="out of memory"))
    await t.completed()
    await t.started(attempt=2)
    await _settled(lifecycle)
    assert _shown(store, failed.id) == ("ERROR", "out of memory")
    d = Trainer(bus, deleted.id)
    await d.started()
    store.delete("p1", "d")
    await d.progressed()
    await d.completed()
    await _settled(lifecycle)
    assert store.state(deleted.id) == S.DELETED and inference.loaded == []
    with pytest.raises(IllegalTransition):
        store.transition(deleted.id, S.QUEUED)


async def test_a_requeued_job_waits_in_queued_then_trains_and_deploys(setup) -> None:
    store, inference, lifecycle, bus = setup
    model = _model(store, "r")
    t = Trainer(bus, model.id)
    await t.started()
    await t.progressed()
    await t.send(ev.TRAINING_REQUEUED, ev.TrainingRequeued(attempt=1, max_attempts=3, reason="MemoryError: "))
    assert _shown(store, model.id) == ("QUEUED", None)
    await t.started(attempt=2)
    await t.progressed()
    await t.completed()
    await _settled(lifecycle)
    assert _shown(store, model.id) == ("DEPLOYED", None)
    assert inference.loaded == [f"adapters/{model.id}"]
    assert "attempt 1 of 3 ended: MemoryError: ; the job is queued to run again" in [
        e.message for e in store.training_events("p1", "r")]
    await bus.flush_outbox(MODELS_TOPIC, store)
    statuses = [e.data["status"] for e in bus.events(MODELS_TOPIC) if e.type == ev.MODEL_STATUS_CHANGED]
    assert statuses == ["PROVISIONING", "TRAINING", "QUEUED", "PROVISIONING", "TRAINING", "DEPLOYED"]
    # model.deployed says which model it is, for consumers that keep no model table of their own.
    [deployed] = [e for e in bus.events(MODELS_TOPIC) if e.type == ev.MODEL_DEPLOYED]
    assert deployed.data == {"adapter_key": f"adapters/{model.id}", "base_model": "base", "slug": "r",
                             "dataset_id": "d1"}


async def test_the_watchdog_times_out_running_work_only_and_that_never_deploys(setup) -> None:
    store, inference, _, bus = setup
    lifecycle = Lifecycle(store, inference, 5.0, stall_timeout_s=0.0)  # type: ignore[arg-type]
    bus = MemoryBus()
    bus.subscribe(MODELS_TOPIC, subscriptions(lifecycle))
    queued, running = _model(store, "waiting"), _model(store, "stalled")
    t = Trainer(bus, running.id)
    await t.started()
    await t.progressed()
    await asyncio.sleep(0.01)  # both last heard of longer ago than the (zero) stall timeout
    await lifecycle.expire_stalled()
    assert _shown(store, queued.id) == ("QUEUED", None)  # waiting its turn behind other jobs
    status, error = _shown(store, running.id)
    assert status == "ERROR" and error is not None and "no progress from the trainer" in error
    await t.completed()  # a trainer that comes back late
    await _settled(lifecycle)
    assert store.state(running.id) == S.TIMED_OUT and inference.loaded == []
    await bus.flush_outbox(MODELS_TOPIC, store)
    assert [e.type for e in bus.events(MODELS_TOPIC) if e.aggregate_id == running.id].count(
        ev.TRAINING_CANCEL_REQUESTED) == 1  # the trainer is told to drop the job


async def test_a_model_deleted_while_its_adapter_loads_is_unloaded_not_deployed(setup) -> None:
    store, inference, lifecycle, bus = setup
    inference.gate = asyncio.Event()
    model = _model(store, "gone")
    t = Trainer(bus, model.id)
    await t.started()
    await t.completed()
    assert _shown(store, model.id) == ("TRAINING", None)  # deploying: still TRAINING to the API
    store.delete("p1", "gone")
    inference.gate.set()
    await _settled(lifecycle)
    assert store.state(model.id) == S.DELETED and inference.unloaded == [model.id]


async def test_a_deployment_left_half_way_is_resumed_at_start(setup) -> None:
    store, inference, lifecycle, _ = setup
    model = _model(store, "half")
    store.transition(model.id, S.DEPLOYING, adapter_key="adapters/half")  # the registry stopped here
    await lifecycle.resume_deployments()
    await _settled(lifecycle)
    assert _shown(store, model.id) == ("DEPLOYED", None) and inference.loaded == ["adapters/half"]
