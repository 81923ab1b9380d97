"""What every part of the dataset store shares: the one event store behind it.

The store is split by aggregate and concern (datasets, entries, rules, uploads, relabel jobs,
snapshots), but a change to any of them is one transaction of the same database, under the
same lock, notifying the same outbox. A part therefore holds the `DatasetStore` rather than
an engine of its own, and the two helpers every part needs are defined here, once: the
dataset lookup that scopes a call to its project, and the append that also moves the
dataset's `updated_at`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel
from refinery.events.envelope import Envelope
from refinery.stores.eventstore import EventSourcedStore
from sqlalchemy import Table, select, update
from sqlalchemy.engine import Connection, Engine

from dataset.store.errors import NotFound
from dataset.store.tables import DatasetRow, datasets_table, now_ms

T = TypeVar("T")


class StorePart:
    """A slice of the dataset store's methods over the engine, lock and outbox of `store`."""

    def __init__(self, store: EventSourcedStore) -> None:
        self._store = store

    @property
    def engine(self) -> Engine:
        return self._store.engine

    def _write(self, fn: Callable[[Connection], T]) -> T:
        """One write transaction that may append events: the outbox is notified once it committed."""
        return self._store._write(fn)

    @contextlib.contextmanager
    def _projection_write(self) -> Iterator[Connection]:
        """A write transaction that appends no event: serialised with every other write, but
        with nothing for the outbox to publish (progress counters, statuses)."""
        with self._store._lock, self.engine.begin() as conn:
            yield conn

    @staticmethod
    def _dataset(conn: Connection, project_id: str, dataset_id: str) -> DatasetRow:
        """The live dataset, only within its project: NotFound for another project's id too."""
        row = conn.execute(
            select(datasets_table).where(
                datasets_table.c.id == dataset_id, datasets_table.c.project_id == project_id,
                datasets_table.c.deleted.is_(False),
            )
        ).first()
        if row is None:
            raise NotFound(f"dataset {dataset_id} not found")
        return DatasetRow(row.id, row.project_id, row.name, row.created_at, row.updated_at, row.entry_count,
                          row.train_count, row.test_count, row.fine_tune_count)

    def _owned(self, table: Table, what: str, row_id: str, project_id: str, dataset_id: str) -> dict[str, Any]:
        """A row of a table keyed by id that names its project and dataset (an upload, a relabel
        job), only within them: NotFound for another project's or dataset's id too."""
        with self.engine.connect() as conn:
            row = conn.execute(select(table).where(
                table.c.id == row_id, table.c.project_id == project_id, table.c.dataset_id == dataset_id)).first()
        if row is None:
            raise NotFound(f"{what} {row_id} not found")
        return dict(row._mapping)

    def _append(self, conn: Connection, project_id: str, dataset_id: str,
                items: Sequence[tuple[str, BaseModel]]) -> list[Envelope]:
        """Append `items` as the dataset's next event versions; every event is a change of the
        dataset, so its `updated_at` moves with it."""
        envs = self._store._append(conn, project_id, dataset_id, items)
        conn.execute(update(datasets_table).where(datasets_table.c.id == dataset_id).values(updated_at=now_ms()))
        return envs
