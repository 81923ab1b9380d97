"""Runs training jobs one at a time: snapshot in, adapter out, every step reported as an event.

A job records RUNNING before it starts; a trainer that dies mid-job finds it RUNNING at its
next start and runs it again (up to `max_attempts`), or fails it with the reason, so no model
is ever left in TRAINING by a crash.
"""

from __future__ import annotations

import asyncio
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


class Worker:
    def __init__(self, jobs: JobStore, models: ObjectStore, datasets: ObjectStore, data_dir: Path,
                 max_attempts: int, models_dir: Path) -> None:
        self._models_dir = models_dir
        self._jobs = jobs
        self._models = models
        self._datasets = datasets
        self._data_dir = data_dir
        self._max_attempts = max_attempts
        self._task: asyncio.Task[None] | None = None
        self._stopping = threading.Event()
        self.busy = False

    async def start(self) -> None:
        for job in await asyncio.to_thread(self._jobs.interrupted):
            req = ev.TrainingRequested.model_validate(job.request)
            if job.attempt >= self._max_attempts:
                await asyncio.to_thread(self._jobs.emit, job.project_id, job.model_id, ev.TRAINING_FAILED,
                                        ev.TrainingFailed(error_message=(
                                            f"the trainer stopped during attempt {job.attempt} of "
                                            f"{self._max_attempts}; giving up")), status="FAILED")
            else:
                log.warning("retrying %s (%s) after an interrupted attempt %s", req.slug, job.model_id, job.attempt)
                await asyncio.to_thread(self._jobs.set, job.model_id, status="QUEUED")
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self) -> None:
        while True:
            job = await asyncio.to_thread(self._jobs.next_job)
            if job is None:
                await asyncio.sleep(POLL_S)
                continue
            self.busy = True
            try:
                await asyncio.to_thread(self.run_job, job)
            except Exception:
                log.exception("job %s crashed the worker", job.model_id)
            finally:
                self.busy = False

    def run_job(self, job: Any) -> None:
        model_id, project_id = job.model_id, job.project_id
        req = ev.TrainingRequested.model_validate(job.request)
        attempt = job.attempt + 1
        emit = self._jobs.emit
        if self._jobs.cancelled(model_id):
            emit(project_id, model_id, ev.TRAINING_FAILED, ev.TrainingFailed(
                error_message="cancelled before training started", cancelled=True), status="FAILED")
            return
        work = Path(tempfile.mkdtemp(prefix=f"job-{model_id[:8]}-", dir=self._data_dir))
        try:
            snapshot = self._datasets.get_bytes(req.snapshot_key)
            train, test = _rows(snapshot, req.pruning_rules)
            phase = "reward" if req.kind == "openpipeReward" else ("sft" if req.enable_sft else "dpo")
            emit(project_id, model_id, ev.TRAINING_STARTED, ev.TrainingStarted(
                attempt=attempt, train_rows=len(train), test_rows=len(test), phase=phase),
                status="RUNNING", attempt=attempt)
            adapter, metrics = self._train(model_id, project_id, req, train, test, work)
            key = self._models.put_dir(adapter, f"adapters/{model_id}/attempt-{attempt}")
            emit(project_id, model_id, ev.TRAINING_COMPLETED, ev.TrainingCompleted(adapter_key=key, metrics=metrics),
                 status="DONE")
        except Exception as exc:
            from refinery.ml.base_models import UnknownBaseModel

            from trainer.training import Cancelled, TrainingError

            if isinstance(exc, Cancelled):
                message, cancelled = "training was cancelled", True
            elif isinstance(exc, (TrainingError, UnknownBaseModel)):
                message, cancelled = str(exc), False
            else:
                log.exception("training %s failed", model_id)
                message, cancelled = f"training failed: {type(exc).__name__}: {exc}", False
            emit(project_id, model_id, ev.TRAINING_FAILED, ev.TrainingFailed(
                error_message=message[:3000], cancelled=cancelled), status="FAILED")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _train(self, model_id: str, project_id: str, req: ev.TrainingRequested, train: list[dict],
               test: list[dict], work: Path) -> tuple[Path, dict]:
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
                    attempt=1, train_rows=len(train), test_rows=len(test), phase="dpo"))
            metrics["dpo"] = train_dpo(base_dir, req.base_model, train, _pairs(test), work / "dpo", dpo,
                                       reporter("dpo"), should_stop, init_adapter=adapter)
            adapter = work / "dpo" / "adapter"
        assert adapter is not None
        return adapter, metrics


def _pairs(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("rejected_message")]


def _batch(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
