"""The trainer's handlers, driven through the in-memory bus: requests queue jobs, once; deletes cancel."""

from __future__ import annotations

from refinery.events import models as ev
from refinery.runtime.memory_bus import MemoryBus
from trainer.handlers import subscriptions
from trainer.jobs import JobStore

TOPIC = "refinery.models"


def _requested(model_id: str) -> ev.TrainingRequested:
    return ev.TrainingRequested(slug=f"slug-{model_id}", kind="openpipe", base_model="base", snapshot_key="k",
                                snapshot_id="s", sft={"num_epochs": 2})


async def test_a_training_request_queues_one_job_and_a_redelivery_is_ignored(tmp_path) -> None:
    jobs = JobStore(f"sqlite:///{tmp_path / 'trainer.db'}")
    bus = MemoryBus()
    bus.subscribe(TOPIC, subscriptions(jobs))
    request = ev.model_event("p1", "m1", 2, ev.TRAINING_REQUESTED, _requested("m1"))
    await bus.publish(TOPIC, request)
    await bus.publish(TOPIC, request)  # at-least-once delivery
    job = jobs.next_job()
    assert (job.model_id, job.project_id, job.status) == ("m1", "p1", "QUEUED")
    assert ev.TrainingRequested.model_validate(job.request) == _requested("m1")
    jobs.set("m1", status="RUNNING")
    assert jobs.next_job() is None  # only one job was queued


async def test_a_cancel_or_a_delete_marks_the_job_cancelled(tmp_path) -> None:
    jobs = JobStore(f"sqlite:///{tmp_path / 'trainer.db'}")
    bus = MemoryBus()
    bus.subscribe(TOPIC, subscriptions(jobs))
    for model_id in ("m1", "m2"):
        await bus.publish(TOPIC, ev.model_event("p1", model_id, 2, ev.TRAINING_REQUESTED, _requested(model_id)))
    await bus.publish(TOPIC, ev.model_event("p1", "m1", 3, ev.TRAINING_CANCEL_REQUESTED, ev.TrainingCancelRequested()))
    await bus.publish(TOPIC, ev.model_event("p1", "m2", 3, ev.MODEL_DELETED, ev.ModelDeleted(slug="slug-m2")))
    assert jobs.cancelled("m1") and jobs.cancelled("m2")


async def test_training_events_go_out_through_the_outbox_on_the_models_key(tmp_path) -> None:
    jobs = JobStore(f"sqlite:///{tmp_path / 'trainer.db'}")
    bus = MemoryBus()
    jobs.emit("p1", "m1", ev.TRAINING_STARTED, ev.TrainingStarted(attempt=1, train_rows=9, test_rows=1, phase="sft"))
    jobs.emit("p1", "m1", ev.TRAINING_FAILED, ev.TrainingFailed(error_message="boom"))
    assert await bus.flush_outbox(TOPIC, jobs) == 2
    events = bus.events(TOPIC)
    assert [(e.type, e.aggregate_id, e.version) for e in events] == [
        (ev.TRAINING_STARTED, "training-m1", 1), (ev.TRAINING_FAILED, "training-m1", 2)]
    assert {r.key for r in bus.records(TOPIC)} == {b"m1"}  # the job's stream rides on its model's partition


async def test_an_outbox_event_too_large_for_the_bus_is_set_aside_and_the_rest_go_on(tmp_path) -> None:
    from refinery.runtime.memory_bus import MemoryProducer
    from refinery.stores.eventstore import OutboxRelay

    jobs = JobStore(f"sqlite:///{tmp_path / 'trainer.db'}")
    jobs.emit("p1", "m1", ev.TRAINING_FAILED, ev.TrainingFailed(error_message="x" * 5000))  # too large below
    jobs.emit("p1", "m1", ev.TRAINING_FAILED, ev.TrainingFailed(error_message="short"))
    bus = MemoryBus()
    producer = MemoryProducer(bus, TOPIC, max_event_bytes=1000)
    assert await OutboxRelay(jobs.engine, producer).flush() == 2  # type: ignore[arg-type]
    assert [e.data["error_message"] for e in bus.events(TOPIC)] == ["short"]
    [(key, value, reason)] = producer.dead_letters
    assert key == b"m1" and b"x" * 5000 in value and "at most 1000" in reason
    assert await OutboxRelay(jobs.engine, producer).flush() == 0  # nothing left to retry forever
