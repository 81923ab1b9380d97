"""Datasets themselves: create, list, read, delete, and the fine-tune counter.

A dataset is the aggregate: every change to it or to what it holds is one of its events.
Deleting one keeps its row (marked deleted, so its id never comes back) but drops its entries
and standing import rules, so nothing keeps feeding it.
"""

from __future__ import annotations

import uuid

from refinery.events import datasets as ev
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from dataset.store.errors import Invalid
from dataset.store.part import StorePart
from dataset.store.tables import (
    DatasetRow,
    datasets_table,
    entries_table,
    import_rules_table,
    now_ms,
    seen_events_table,
)


class Datasets(StorePart):
    def create(self, project_id: str, name: str) -> DatasetRow:
        name = name.strip()
        if not name:
            raise Invalid("name must not be empty")
        dataset_id = str(uuid.uuid4())
        now = now_ms()

        def run(conn: Connection) -> DatasetRow:
            conn.execute(insert(datasets_table).values(
                id=dataset_id, project_id=project_id, name=name, created_at=now, updated_at=now,
                entry_count=0, train_count=0, test_count=0, fine_tune_count=0, deleted=False,
            ))
            self._append(conn, project_id, dataset_id, [(ev.DATASET_CREATED, ev.DatasetCreated(name=name))])
            return self._dataset(conn, project_id, dataset_id)

        return self._write(run)

    def in_project(self, project_id: str) -> list[DatasetRow]:
        """The project's live datasets, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(datasets_table.c.id).where(
                    datasets_table.c.project_id == project_id, datasets_table.c.deleted.is_(False)
                ).order_by(datasets_table.c.created_at.desc())
            ).all()
            return [self._dataset(conn, project_id, r.id) for r in rows]

    def get(self, project_id: str, dataset_id: str) -> DatasetRow:
        with self.engine.connect() as conn:
            return self._dataset(conn, project_id, dataset_id)

    def delete(self, project_id: str, dataset_id: str) -> None:
        def run(conn: Connection) -> None:
            self._dataset(conn, project_id, dataset_id)
            self._append(conn, project_id, dataset_id, [(ev.DATASET_DELETED, ev.DatasetDeleted())])
            conn.execute(update(datasets_table).where(datasets_table.c.id == dataset_id).values(deleted=True))
            conn.execute(delete(entries_table).where(entries_table.c.dataset_id == dataset_id))
            conn.execute(delete(import_rules_table).where(import_rules_table.c.dataset_id == dataset_id))

        self._write(run)

    def count_fine_tune(self, event_id: str, dataset_id: str, delta: int) -> None:
        """A model trained on (or deleted from) this dataset, from model-registry's events;
        counted once per event, and never below zero."""
        with self._projection_write() as conn:
            if conn.execute(select(seen_events_table).where(seen_events_table.c.event_id == event_id)).first():
                return
            conn.execute(insert(seen_events_table).values(event_id=event_id))
            conn.execute(update(datasets_table).where(datasets_table.c.id == dataset_id).values(
                fine_tune_count=func.max(datasets_table.c.fine_tune_count + delta, 0)
                if self.engine.dialect.name == "sqlite"
                else func.greatest(datasets_table.c.fine_tune_count + delta, 0)))
