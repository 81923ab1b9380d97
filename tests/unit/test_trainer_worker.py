"""The trainer's worker on a tiny random Llama: a job that crashes in any phase is retried a bounded
number of times and then fails with the reason, while the other jobs train; a trainer killed
mid-load retries the job at its next start; a trainer asked to stop hands its job back, and the
job trains at the next start without losing an attempt."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from refinery.events import models as ev
from trainer.jobs import JobStore
from trainer.worker import Worker

from tests.unit.dir_objects import DirObjects
from tests.unit.test_ml_training_tiny import _row, _tiny_base

SNAPSHOT = b"\n".join(orjson.dumps(_row(i)) for i in range(12))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_base(tmp_path_factory.mktemp("tiny-base"))


class PausingJobs(JobStore):
    """Holds the training thread at its first progress event until told to go on, so a test can
    act while training is certainly under way."""

    def __init__(self, db_url: str) -> None:
        super().__init__(db_url)
        self.progressed = threading.Event()
        self.resume = threading.Event()

    def emit(self, project_id: str, model_id: str, event_type: str, data: Any, **job_values: Any) -> None:
        super().emit(project_id, model_id, event_type, data, **job_values)
        if event_type == ev.TRAINING_PROGRESSED and not self.progressed.is_set():
            self.progressed.set()
            self.resume.wait(120)


class Setup:
    def __init__(self, tmp_path: Path, base: Path, jobs: JobStore | None = None) -> None:
        self.base = base
        self.tmp = tmp_path
        self.jobs = jobs or JobStore(f"sqlite:///{tmp_path / 'trainer.db'}")
        self.datasets = DirObjects(tmp_path / "datasets")
        self.models = DirObjects(tmp_path / "models")
        (tmp_path / "work").mkdir(exist_ok=True)

    def worker(self) -> Worker:
        return Worker(self.jobs, self.models, self.datasets, self.tmp / "work", 3, self.tmp / "cache")  # type: ignore[arg-type]

    def queue(self, model_id: str, epochs: int = 1, batch_size: int = 4) -> None:
        key = f"snapshots/{model_id}.jsonl"
        self.datasets.put_bytes(key, SNAPSHOT)
        request = ev.TrainingRequested(slug=model_id, kind="openpipe", base_model=str(self.base), snapshot_key=key,
                                       snapshot_id="s", sft={"num_epochs": epochs, "batch_size": batch_size})
        assert self.jobs.enqueue(model_id, "p1", request.model_dump())

    def events(self, model_id: str) -> list[tuple[str, dict]]:
        return [(e.type, e.data) for e in self.jobs.events(f"training-{model_id}")]

    async def until_done(self, *model_ids: str) -> None:
        for _ in range(3000):
            if all(self.jobs.get(m).status in ("DONE", "FAILED") for m in model_ids):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"jobs never finished: {[(m, self.jobs.get(m).status) for m in model_ids]}")


async def test_a_job_crashing_before_training_fails_after_three_attempts_and_others_train(
        tmp_path: Path, base: Path) -> None:
    s = Setup(tmp_path, base)
    s.queue("crashy")
    s.queue("fine")
    s.datasets.failing["snapshots/crashy.jsonl"] = MemoryError("cannot allocate the snapshot")
    worker = s.worker()
    await worker.start()
    try:
        await s.until_done("crashy", "fine")
    finally:
        await worker.stop()
    assert s.datasets.reads.count("snapshots/crashy.jsonl") == 3  # bounded: never a loop
    crashy = s.events("crashy")
    assert [t for t, _ in crashy] == [ev.TRAINING_REQUEUED, ev.TRAINING_REQUEUED, ev.TRAINING_FAILED]
    assert [d["attempt"] for _, d in crashy[:2]] == [1, 2]
    message = crashy[-1][1]["error_message"]
    assert "after 3 attempts" in message and "MemoryError: cannot allocate the snapshot" in message
    assert crashy[-1][1]["cancelled"] is False
    fine = s.events("fine")
    assert fine[-1][0] == ev.TRAINING_COMPLETED
    assert (s.models.root / fine[-1][1]["adapter_key"] / "adapter_config.json").is_file()


async def test_a_request_that_cannot_train_fails_at_once(tmp_path: Path, base: Path) -> None:
    s = Setup(tmp_path, base)
    s.datasets.put_bytes("snapshots/small.jsonl", b"\n".join(orjson.dumps(_row(i)) for i in range(3)))
    request = ev.TrainingRequested(slug="small", kind="openpipe", base_model=str(base),
                                   snapshot_key="snapshots/small.jsonl", snapshot_id="s")
    s.jobs.enqueue("small", "p1", request.model_dump())
    worker = s.worker()
    await worker.start()
    try:
        await s.until_done("small")
    finally:
        await worker.stop()
    assert [t for t, _ in s.events("small")] == [ev.TRAINING_STARTED, ev.TRAINING_FAILED]
    assert "at least 10 training examples are needed" in s.events("small")[-1][1]["error_message"]


async def test_a_trainer_killed_while_loading_retries_at_its_next_start_then_gives_up(
        tmp_path: Path, base: Path) -> None:
    s = Setup(tmp_path, base)
    s.queue("killed-once")
    s.queue("killed-thrice")
    # What a trainer killed while loading leaves behind: the job RUNNING, its attempt counted.
    s.jobs.set("killed-once", status="RUNNING", attempt=1)
    s.jobs.set("killed-thrice", status="RUNNING", attempt=3)
    worker = s.worker()
    await worker.start()
    try:
        await s.until_done("killed-once", "killed-thrice")
    finally:
        await worker.stop()
    thrice = s.events("killed-thrice")
    assert [t for t, _ in thrice] == [ev.TRAINING_FAILED]
    assert "the trainer process ended during attempt 3" in thrice[0][1]["error_message"]
    once = s.events("killed-once")
    assert once[0] == (ev.TRAINING_REQUEUED, {
        "attempt": 1, "max_attempts": 3,
        "reason": "the trainer process ended during attempt 1 (killed, for example for lack of memory)"})
    assert [d["attempt"] for t, d in once if t == ev.TRAINING_STARTED] == [2]
    assert once[-1][0] == ev.TRAINING_COMPLETED


async def test_a_stopped_trainer_hands_its_job_back_and_resumes_it_on_restart(tmp_path: Path, base: Path) -> None:
    jobs = PausingJobs(f"sqlite:///{tmp_path / 'trainer.db'}")
    s = Setup(tmp_path, base, jobs)
    s.queue("long", epochs=3, batch_size=1)
    first = s.worker()
    await first.start()
    await asyncio.to_thread(jobs.progressed.wait, 300)
    stopping = asyncio.create_task(first.stop())  # what SIGTERM does
    await asyncio.sleep(0)  # stop() has begun: the worker is stopping
    jobs.resume.set()
    await stopping
    job = jobs.get("long")
    assert (job.status, job.attempt) == ("QUEUED", 0)  # handed back, the attempt not counted
    types = [t for t, _ in s.events("long")]
    assert ev.TRAINING_FAILED not in types and ev.TRAINING_COMPLETED not in types
    assert s.events("long")[-1] == (ev.TRAINING_REQUEUED, {
        "attempt": 1, "max_attempts": 3, "reason": "the trainer was stopped; the job runs again when it starts"})

    second = s.worker()
    await second.start()
    try:
        await s.until_done("long")
    finally:
        await second.stop()
    events = s.events("long")
    assert [d["attempt"] for t, d in events if t == ev.TRAINING_STARTED] == [1, 1]
    assert events[-1][0] == ev.TRAINING_COMPLETED
