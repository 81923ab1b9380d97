"""Runs training jobs one at a time: snapshot in, adapter out, every step reported as an event.

Every attempt is bounded, whatever phase it dies in. A job is marked RUNNING, with its attempt
counted, before anything is loaded, so a trainer killed while reading the snapshot or the model
(out of memory, say) finds it RUNNING at its next start and runs it again, up to `max_attempts`,
then fails it with the reason; an attempt that raises is requeued the same way. A requeued job
goes behind the jobs already waiting, so one job that keeps crashing never blocks the others.
A request that cannot train (too few rows, an unknown base) fails at once: running it again
would fail again. A trainer asked to stop (SIGTERM) hands its job back: the attempt stops at
the next step, is not counted, and the job runs again at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from refinery.events import models as ev
from refinery.stores.objectstore import ObjectStore
from refinery.wire.entries import apply_pruning_rules

from trainer.jobs import JobStore

log = logging.getLogger("refinery.trainer")

POLL_S = 0.5


def _rows(snapshot: bytes, rules: list[str]) -> tuple[list[dict], list[dict]]:
    """TRAIN and TEST rows of a snapshot, with the model's pruning rules applied to the inputs."""
    train: list[dict] = []
    test: list[dict] = []
    for line in snapshot.splitlines():
        if not line.strip():
            continue
        row = orjson.loads(line)
        if rules:
            row["messages"] = apply_pruning_rules(row["messages"][:-1], rules) + row["messages"][-1:]
        (test if row.get("split") == "TEST" else train).append(row)
    return train, test


def _permanent(exc: Exception) -> bool:
    """Errors of the request itself, which another attempt would meet again."""
    from refinery.ml.base_models import UnknownBaseModel

    from trainer.training import TrainingError

    return isinstance(exc, (TrainingError, UnknownBaseModel))


class Worker:
    def __init__(self, jobs: JobStore, models: ObjectStore, datasets: ObjectStore, data_dir: Path,
                 max_attempts: int, models_dir: Path, stop_timeout_s: float = 60.0) -> None:
        self._models_dir = models_dir
        self._jobs = jobs
        self._models = models
        self._datasets = datasets
        self._data_dir = data_dir
        self._max_attempts = max_attempts
        self._stop_timeout_s = stop_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._stopping = threading.Event()
        self.busy = False

    async def start(self) -> None:
        for job in await asyncio.to_thread(self._jobs.interrupted):
            reason = f"the trainer process ended during attempt {job.attempt} (killed, for example for lack of memory)"
            await asyncio.to_thread(self._retry_or_fail, job.project_id, job.model_id, job.attempt, reason)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop taking jobs and hand the running one back, waiting (bounded) for it to let go: a
        job still running when the wait ends stays RUNNING and is retried, counted, at the next start."""
        self._stopping.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self._stop_timeout_s)
        except TimeoutError:
            log.warning("the running job did not stop within %.0f s; it runs again at the next start",
                        self._stop_timeout_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            job = await asyncio.to_thread(self._jobs.next_job)
            if job is None:
                await asyncio.sleep(POLL_S)
                continue
            self.busy = True
            try:
                await asyncio.to_thread(self.run_job, job)
            except Exception:
                # The job's own store failed (it is left RUNNING, so the next start retries it, counted).
                log.exception("job %s could not be run", job.model_id)
                await asyncio.sleep(POLL_S)
            finally:
                self.busy = False

    def _retry_or_fail(self, project_id: str, model_id: str, attempt: int, reason: str) -> None:
        """After attempt `attempt` ended without an outcome: queue the job again, or fail it for good."""
        if attempt >= self._max_attempts:
            self._jobs.emit(project_id, model_id, ev.TRAINING_FAILED, ev.TrainingFailed(error_message=(
                f"training failed after {attempt} attempts; the last: {reason}")[:3000]), status="FAILED")
            return
        log.warning("job %s: attempt %s of %s ended (%s); queued again", model_id, attempt, self._max_attempts,
                    reason)
        self._jobs.emit(project_id, model_id, ev.TRAINING_REQUEUED, ev.TrainingRequeued(
            attempt=attempt, max_attempts=self._max_attempts, reason=reason[:3000]), status="QUEUED")

    def run_job(self, job: Any) -> None:
        model_id, project_id = job.model_id, job.project_id
        req = ev.TrainingRequested.model_validate(job.request)
        attempt = job.attempt + 1
        emit = self._jobs.emit
        if self._jobs.cancelled(model_id):
            emit(project_id, model_id, ev.TRAINING_FAILED, ev.TrainingFailed(
                error_message="cancelled before training started", cancelled=True), status="FAILED")
            return
        self._jobs.set(model_id, status="RUNNING", attempt=attempt)  # counted before anything can crash
        work = Path(tempfile.mkdtemp(prefix=f"job-{model_id[:8]}-", dir=self._data_dir))
        try:
            snapshot = self._datasets.get_bytes(req.snapshot_key)
            train, test = _rows(snapshot, req.pruning_rules)
            phase = "reward" if req.kind == "openpipeReward" else ("sft" if req.enable_sft else "dpo")
            emit(project_id, model_id, ev.TRAINING_STARTED, ev.TrainingStarted(
                attempt=attempt, train_rows=len(train), test_rows=len(test), phase=phase))
            adapter, metrics = self._train(model_id, project_id, req, train, test, work, attempt)
            key = self._models.put_dir(adapter, f"adapters/{model_id}/attempt-{attempt}")
            emit(project_id, model_id, ev.TRAINING_COMPLETED, ev.TrainingCompleted(adapter_key=key, metrics=metrics),
                 status="DONE")
        except Exception as exc:
            self._ended(project_id, model_id, attempt, exc)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _ended(self, project_id: str, model_id: str, attempt: int, exc: Exception) -> None:
        from trainer.training import Cancelled

        emit = self._jobs.emit
        if isinstance(exc, Cancelled) and not self._jobs.cancelled(model_id) and self._stopping.is_set():
            # Handed back, not failed: this attempt does not count against the job.
            emit(project_id, model_id, ev.TRAINING_REQUEUED, ev.TrainingRequeued(
                attempt=attempt, max_attempts=self._max_attempts,
                reason="the trainer was stopped; the job runs again when it starts"),
                status="QUEUED", attempt=attempt - 1)
        elif isinstance(exc, Cancelled):
            emit(project_id, model_id, ev.TRAINING_FAILED, ev.TrainingFailed(
                error_message="training was cancelled", cancelled=True), status="FAILED")
        elif _permanent(exc):
            emit(project_id, model_id, ev.TRAINING_FAILED, ev.TrainingFailed(error_message=str(exc)[:3000]),
                 status="FAILED")
        else:
            log.exception("training %s failed in attempt %s", model_id, attempt, exc_info=exc)
            self._retry_or_fail(project_id, model_id, attempt, f"{type(exc).__name__}: {exc}")

    def _train(self, model_id: str, project_id: str, req: ev.TrainingRequested, train: list[dict],
               test: list[dict], work: Path, attempt: int) -> tuple[Path, dict]:
        from refinery.ml.base_models import resolve_base_model

        from trainer.training import DpoParams, SftParams, TrainEvent, train_dpo, train_reward, train_sft

        base_dir = resolve_base_model(req.base_model, self._models_dir)
        init = None
        if req.init_adapter_key:
            init = self._models.get_dir(req.init_adapter_key, work / "init-adapter")

        def should_stop() -> bool:
            return self._stopping.is_set() or self._jobs.cancelled(model_id)

        def reporter(phase: str):
            last = [0.0]

            def on_event(e: TrainEvent) -> None:
                if e.kind == "epoch" and e.checkpoint_dir:
                    key = self._models.put_dir(Path(e.checkpoint_dir),
                                               f"checkpoints/{model_id}/{phase}-epoch-{round(e.epoch)}")
                    self._jobs.emit(project_id, model_id, ev.TRAINING_CHECKPOINT_SAVED, ev.TrainingCheckpointSaved(
                        phase=phase, epoch=round(e.epoch), step=e.step, checkpoint_key=key))
                    return
                now = time.monotonic()
                # Every step is an event, but not more than ten a second (long jobs stay readable).
                if e.kind == "step" and now - last[0] < 0.1 and e.step != e.total_steps:
                    return
                last[0] = now
                self._jobs.emit(project_id, model_id, ev.TRAINING_PROGRESSED, ev.TrainingProgressed(
                    phase=phase, step=e.step, total_steps=e.total_steps, epoch=e.epoch, train_loss=e.loss,
                    token_accuracy=e.token_accuracy, valid_loss=e.eval_loss))

            return on_event

        metrics: dict[str, Any] = {}
        if req.kind == "openpipeReward":
            reward = DpoParams(epochs=int(req.sft.get("num_epochs", 3)),
                               learning_rate_multiplier=float(req.sft.get("learning_rate_multiplier", 1.0)),
                               batch_size=_batch(req.sft.get("batch_size")))
            metrics["reward"] = train_reward(base_dir, req.base_model, train, _pairs(test), work / "reward", reward,
                                             reporter("reward"), should_stop)
            return work / "reward" / "adapter", metrics
        adapter = init
        if req.enable_sft:
            p = SftParams(epochs=int(req.sft.get("num_epochs", 3)),
                          learning_rate_multiplier=float(req.sft.get("learning_rate_multiplier", 1.0)),
                          batch_size=_batch(req.sft.get("batch_size")))
            metrics["sft"] = train_sft(base_dir, req.base_model, train, test, work / "sft", p, reporter("sft"),
                                       should_stop, init_adapter=adapter)
            adapter = work / "sft" / "adapter"
        if req.enable_preference_tuning:
            pref = req.preference
            dpo = DpoParams(epochs=int(pref.get("num_epochs", 3)),
                            learning_rate_multiplier=float(pref.get("learning_rate_multiplier", 1.0)),
                            beta=float(pref.get("training_beta", 0.1)))
            if req.enable_sft:
                self._jobs.emit(project_id, model_id, ev.TRAINING_STARTED, ev.TrainingStarted(
                    attempt=attempt, train_rows=len(train), test_rows=len(test), phase="dpo"))
            metrics["dpo"] = train_dpo(base_dir, req.base_model, train, _pairs(test), work / "dpo", dpo,
                                       reporter("dpo"), should_stop, init_adapter=adapter)
            adapter = work / "dpo" / "adapter"
        assert adapter is not None
        return adapter, metrics


def _pairs(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("rejected_message")]


def _batch(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
