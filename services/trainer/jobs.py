"""The trainer's own state: jobs (one per model), their events (outbox to the bus), offsets."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from refinery.events import models as ev
from refinery.stores import eventstore
from sqlalchemy import JSON, Boolean, Column, Float, Integer, MetaData, String, Table, create_engine, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.engine import Engine

projections = MetaData()

jobs_table = Table(
    "jobs", projections,
    Column("model_id", String(64), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("request", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # QUEUED RUNNING DONE FAILED
    Column("attempt", Integer, nullable=False),
    Column("cancel", Boolean, nullable=False, default=False),
    Column("updated_at", Float, nullable=False),
)

def training_aggregate(model_id: str) -> str:
    return f"training-{model_id}"


class JobStore:
    def __init__(self, db_url: str) -> None:
        connect_args = {"check_same_thread": False, "timeout": 30} if db_url.startswith("sqlite") else {}
        self.engine: Engine = create_engine(db_url, connect_args=connect_args)
        eventstore.metadata.create_all(self.engine)
        projections.create_all(self.engine)
        self._lock = threading.RLock()
        self.on_change: Callable[[], None] = lambda: None

    def enqueue(self, model_id: str, project_id: str, request: dict[str, Any]) -> bool:
        with self._lock, self.engine.begin() as conn:
            if conn.execute(select(jobs_table.c.model_id).where(jobs_table.c.model_id == model_id)).first():
                return False  # a redelivered request
            conn.execute(insert(jobs_table).values(model_id=model_id, project_id=project_id, request=request,
                                                   status="QUEUED", attempt=0, cancel=False, updated_at=time.time()))
            return True

    def request_cancel(self, model_id: str) -> None:
        with self._lock, self.engine.begin() as conn:
            conn.execute(sql_update(jobs_table).where(jobs_table.c.model_id == model_id).values(cancel=True))

    def cancelled(self, model_id: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs_table.c.cancel).where(jobs_table.c.model_id == model_id)).first()
        return bool(row and row.cancel)

    def next_job(self) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(jobs_table).where(jobs_table.c.status == "QUEUED").order_by(
                jobs_table.c.updated_at).limit(1)).first()

    def interrupted(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(jobs_table).where(jobs_table.c.status == "RUNNING")))

    def set(self, model_id: str, **values: Any) -> None:
        with self._lock, self.engine.begin() as conn:
            conn.execute(sql_update(jobs_table).where(jobs_table.c.model_id == model_id).values(
                updated_at=time.time(), **values))

    def emit(self, project_id: str, model_id: str, event_type: str, data: BaseModel, **job_values: Any) -> None:
        """Record a training event (published through the outbox) and the job change in one transaction."""
        with self._lock, self.engine.begin() as conn:
            # The job's own stream (`training-<model id>`), on its model's partition.
            aggregate = training_aggregate(model_id)
            version = eventstore.current_version(conn, aggregate) + 1
            env = ev.model_event(project_id, aggregate, version, event_type, data)
            eventstore.append(conn, [env], bus_key=model_id)
            if job_values:
                conn.execute(sql_update(jobs_table).where(jobs_table.c.model_id == model_id).values(
                    updated_at=time.time(), **job_values))
        self.on_change()

    def load_offsets(self, topic: str) -> dict[int, int]:
        with self.engine.connect() as conn:
            return eventstore.load_offsets(conn, topic)

    def save_offsets(self, topic: str, offsets: dict[int, int]) -> None:
        with self._lock, self.engine.begin() as conn:
            eventstore.save_offsets(conn, topic, offsets)

