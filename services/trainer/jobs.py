"""The trainer's own state: jobs (one per model), their events (outbox to the bus), offsets."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel
from refinery.stores.eventstore import EventSourcedStore
from sqlalchemy import JSON, Boolean, Column, Float, Integer, MetaData, String, Table, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.engine import Connection

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


class JobStore(EventSourcedStore):
    def __init__(self, db_url: str) -> None:
        super().__init__(db_url, projections)

    def enqueue(self, model_id: str, project_id: str, request: dict[str, Any]) -> bool:
        def run(conn: Connection) -> bool:
            if conn.execute(select(jobs_table.c.model_id).where(jobs_table.c.model_id == model_id)).first():
                return False  # a redelivered request
            conn.execute(insert(jobs_table).values(model_id=model_id, project_id=project_id, request=request,
                                                   status="QUEUED", attempt=0, cancel=False, updated_at=time.time()))
            return True

        return self._write(run)

    def request_cancel(self, model_id: str) -> None:
        self._write(lambda conn: conn.execute(
            sql_update(jobs_table).where(jobs_table.c.model_id == model_id).values(cancel=True)))

    def cancelled(self, model_id: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs_table.c.cancel).where(jobs_table.c.model_id == model_id)).first()
        return bool(row and row.cancel)

    def get(self, model_id: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(jobs_table).where(jobs_table.c.model_id == model_id)).first()

    def next_job(self) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(jobs_table).where(jobs_table.c.status == "QUEUED").order_by(
                jobs_table.c.updated_at).limit(1)).first()

    def interrupted(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(jobs_table).where(jobs_table.c.status == "RUNNING")))

    def set(self, model_id: str, **values: Any) -> None:
        self._write(lambda conn: conn.execute(sql_update(jobs_table).where(jobs_table.c.model_id == model_id).values(
            updated_at=time.time(), **values)))

    def emit(self, project_id: str, model_id: str, event_type: str, data: BaseModel, **job_values: Any) -> None:
        """Record a training event (published through the outbox) and the job change in one transaction."""

        def run(conn: Connection) -> None:
            # The job's own stream (`training-<model id>`), on its model's partition.
            self._append(conn, project_id, training_aggregate(model_id), [(event_type, data)], bus_key=model_id)
            if job_values:
                conn.execute(sql_update(jobs_table).where(jobs_table.c.model_id == model_id).values(
                    updated_at=time.time(), **job_values))

        self._write(run)

