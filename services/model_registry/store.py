"""The registry's state: model events plus projections (models, training events, checkpoints)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel
from refinery.events import models as ev
from refinery.stores.eventstore import EventSourcedStore
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection

from model_registry.states import (
    RUNNING_STATES,
    TRAINING_STATES,
    ModelState,
    check,
    state_of,
    wire_status,
)

projections = MetaData()

models_table = Table(
    "models", projections,
    Column("id", String(64), primary_key=True),
    Column("project_id", String(64), nullable=False, index=True),
    Column("slug", String(64), nullable=False),
    Column("dataset_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("base_model", String(300), nullable=False),
    Column("training_config", JSON, nullable=False),
    Column("hyperparameters", JSON, nullable=False),
    Column("status", String(32), nullable=False),
    Column("error_message", String(4000), nullable=True),
    Column("default_temperature", Float, nullable=True),
    Column("pruning_rules", JSON, nullable=False),
    Column("adapter_key", String(500), nullable=True),
    Column("snapshot_id", String(64), nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("last_event_at", Float, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
)

training_events_table = Table(
    "training_events", projections,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("model_id", String(64), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("level", String(8), nullable=False),
    Column("message", String(2000), nullable=False),
    Column("data", JSON, nullable=False),
)

checkpoints_table = Table(
    "checkpoints", projections,
    Column("model_id", String(64), primary_key=True),
    Column("checkpoint_key", String(500), primary_key=True),
    Column("phase", String(16), nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("step", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
)

# States whose row carries an error message (the API's ERROR).
_ENDS_WITH_ERROR = frozenset({ModelState.FAILED, ModelState.CANCELLED, ModelState.TIMED_OUT})


class NotFound(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class Conflict(ValueError):
    """The slug is taken in this project."""


def _now() -> float:
    return time.time() * 1000.0


class RegistryStore(EventSourcedStore):
    def __init__(self, db_url: str) -> None:
        super().__init__(db_url, projections)

    def _row(self, conn: Connection, project_id: str, slug: str) -> Any:
        row = conn.execute(select(models_table).where(
            models_table.c.project_id == project_id, models_table.c.slug == slug,
            models_table.c.deleted.is_(False))).first()
        if row is None:
            raise NotFound(f"model {slug!r} not found")
        return row

    def by_id(self, model_id: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(models_table).where(models_table.c.id == model_id)).first()

    def get(self, project_id: str, slug: str) -> Any:
        with self.engine.connect() as conn:
            return self._row(conn, project_id, slug)

    def in_project(self, project_id: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(models_table).where(
                models_table.c.project_id == project_id, models_table.c.deleted.is_(False),
            ).order_by(models_table.c.created_at.desc())))

    def create(self, project_id: str, created: ev.ModelCreated, request: ev.TrainingRequested, kind: str,
               hyperparameters: dict[str, Any]) -> Any:
        model_id = str(uuid.uuid4())
        now = _now()

        def run(conn: Connection) -> Any:
            taken = conn.execute(select(models_table.c.id).where(
                models_table.c.project_id == project_id, models_table.c.slug == created.slug,
                models_table.c.deleted.is_(False))).first()
            if taken:
                raise Conflict(f"a model with slug {created.slug!r} already exists in this project")
            conn.execute(insert(models_table).values(
                id=model_id, project_id=project_id, slug=created.slug, dataset_id=created.dataset_id, kind=kind,
                base_model=created.base_model, training_config=created.training_config,
                hyperparameters=hyperparameters, status="QUEUED", error_message=None,
                default_temperature=created.default_temperature, pruning_rules=created.pruning_rules,
                adapter_key=None, snapshot_id=request.snapshot_id, metrics={}, created_at=now, updated_at=now,
                last_event_at=now, deleted=False))
            self._append(conn, project_id, model_id, [(ev.MODEL_CREATED, created), (ev.TRAINING_REQUESTED, request)])
            return conn.execute(select(models_table).where(models_table.c.id == model_id)).one()

        return self._write(run)

    def state(self, model_id: str) -> ModelState | None:
        row = self.by_id(model_id)
        return None if row is None else state_of(row.status, row.deleted)

    def _move(self, conn: Connection, row: Any, target: ModelState, error: str | None = None,
              adapter_key: str | None = None) -> bool:
        """Move `row` to `target` inside the caller's transaction, with the events that tell the
        others: the status the API shows (when it changed), the cancel the trainer acts on, the
        deployment inference and eval follow, the deletion. False when already there; raises
        IllegalTransition, writing nothing, when the lifecycle forbids the move."""
        current = state_of(row.status, row.deleted)
        if not check(current, target):
            return False
        now = _now()
        message = error if target in _ENDS_WITH_ERROR else None
        values: dict[str, Any] = {"status": target.value, "updated_at": now, "last_event_at": now}
        if target != ModelState.DELETED:
            values["error_message"] = message
        else:
            values["deleted"] = True
        if adapter_key is not None:
            values["adapter_key"] = adapter_key
        conn.execute(update(models_table).where(models_table.c.id == row.id).values(**values))
        items: list[tuple[str, BaseModel]] = []
        if current in TRAINING_STATES and target in (ModelState.CANCELLED, ModelState.TIMED_OUT, ModelState.DELETED):
            items.append((ev.TRAINING_CANCEL_REQUESTED, ev.TrainingCancelRequested()))
        if target == ModelState.DELETED:
            items.append((ev.MODEL_DELETED, ev.ModelDeleted(slug=row.slug, dataset_id=row.dataset_id)))
        elif wire_status(current) != wire_status(target):
            items.append((ev.MODEL_STATUS_CHANGED, ev.ModelStatusChanged(status=wire_status(target),
                                                                         error_message=message)))
        if target == ModelState.DEPLOYED:
            items.append((ev.MODEL_DEPLOYED, ev.ModelDeployed(adapter_key=adapter_key or row.adapter_key or "",
                                                              base_model=row.base_model, slug=row.slug,
                                                              dataset_id=row.dataset_id)))
        self._append(conn, row.project_id, row.id, items)
        return True

    def transition(self, model_id: str, target: ModelState, error: str | None = None,
                   adapter_key: str | None = None) -> bool:
        """Move the model to `target` (see `_move`); NotFound when there is no such model."""
        def run(conn: Connection) -> bool:
            row = conn.execute(select(models_table).where(models_table.c.id == model_id)).first()
            if row is None:
                raise NotFound(f"model {model_id!r} not found")
            return self._move(conn, row, target, error, adapter_key)

        return self._write(run)

    def delete(self, project_id: str, slug: str) -> Any:
        def run(conn: Connection) -> Any:
            row = self._row(conn, project_id, slug)
            self._move(conn, row, ModelState.DELETED)
            return row

        return self._write(run)

    def request_cancel(self, project_id: str, slug: str) -> Any:
        """Cancel training under way (the model is CANCELLED at once, the trainer stops its job);
        a model past training is left as it is."""
        def run(conn: Connection) -> Any:
            row = self._row(conn, project_id, slug)
            if state_of(row.status) in TRAINING_STATES:
                self._move(conn, row, ModelState.CANCELLED, "training was cancelled")
            return row

        return self._write(run)

    def record_training_event(self, model_id: str, event_id: str, message: str, data: dict[str, Any],
                              level: str = "info") -> bool:
        """Store a trainer event once (redeliveries are skipped); False when already seen."""
        with self._lock, self.engine.begin() as conn:
            if conn.execute(select(training_events_table.c.seq).where(
                    training_events_table.c.event_id == event_id)).first():
                return False
            conn.execute(insert(training_events_table).values(
                event_id=event_id, model_id=model_id, created_at=_now(), level=level, message=message[:2000],
                data=data))
            conn.execute(update(models_table).where(models_table.c.id == model_id).values(last_event_at=_now()))
            return True

    def add_checkpoint(self, model_id: str, data: dict[str, Any]) -> None:
        with self._lock, self.engine.begin() as conn:
            exists = conn.execute(select(checkpoints_table.c.model_id).where(
                checkpoints_table.c.model_id == model_id,
                checkpoints_table.c.checkpoint_key == data["checkpoint_key"])).first()
            if not exists:
                conn.execute(insert(checkpoints_table).values(
                    model_id=model_id, checkpoint_key=data["checkpoint_key"], phase=data["phase"],
                    epoch=data["epoch"], step=data["step"], created_at=_now()))

    def set_metrics(self, model_id: str, metrics: dict[str, Any]) -> None:
        with self._lock, self.engine.begin() as conn:
            conn.execute(update(models_table).where(models_table.c.id == model_id).values(metrics=metrics))

    def training_events(self, project_id: str, slug: str) -> list[Any]:
        """The model's training events (rows: event_id, created_at, level, message, data), in order."""
        with self.engine.connect() as conn:
            row = self._row(conn, project_id, slug)
            return list(conn.execute(select(training_events_table).where(
                training_events_table.c.model_id == row.id).order_by(training_events_table.c.seq)))

    def checkpoints(self, project_id: str, slug: str) -> list[Any]:
        """The model's checkpoints (rows: checkpoint_key, phase, epoch, step, created_at), oldest first."""
        with self.engine.connect() as conn:
            row = self._row(conn, project_id, slug)
            return list(conn.execute(select(checkpoints_table).where(
                checkpoints_table.c.model_id == row.id).order_by(checkpoints_table.c.created_at)))

    def in_states(self, states: frozenset[ModelState]) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(models_table).where(
                models_table.c.status.in_([s.value for s in states]), models_table.c.deleted.is_(False))))

    def running(self) -> list[Any]:
        """Models whose training the trainer is running (queued ones are waiting, not running)."""
        return self.in_states(RUNNING_STATES)

    def all_deployed(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(models_table).where(
                models_table.c.status == "DEPLOYED", models_table.c.deleted.is_(False))))
