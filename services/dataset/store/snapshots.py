"""Snapshots: a dataset's JSONL frozen in the object store under its content hash.

The servicer writes the file; the store records it. The id is the hash, so recording the same
content twice returns the first record and appends no second event.
"""

from __future__ import annotations

from typing import Any

from refinery.events import datasets as ev
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from dataset.store.errors import NotFound
from dataset.store.part import StorePart
from dataset.store.tables import now_ms, snapshots_table


class Snapshots(StorePart):
    def record(self, project_id: str, dataset_id: str, snap: ev.SnapshotCreated) -> dict[str, Any]:
        def run(conn: Connection) -> dict[str, Any]:
            self._dataset(conn, project_id, dataset_id)
            existing = conn.execute(select(snapshots_table).where(
                snapshots_table.c.id == snap.snapshot_id, snapshots_table.c.dataset_id == dataset_id)).first()
            if existing is None:
                conn.execute(insert(snapshots_table).values(
                    id=snap.snapshot_id, dataset_id=dataset_id, object_key=snap.object_key,
                    entry_count=snap.entry_count, train_count=snap.train_count, test_count=snap.test_count,
                    size_bytes=snap.size_bytes, pruning_rules=snap.pruning_rules, created_at=now_ms()))
                self._append(conn, project_id, dataset_id, [(ev.SNAPSHOT_CREATED, snap)])
            row = conn.execute(select(snapshots_table).where(
                snapshots_table.c.id == snap.snapshot_id, snapshots_table.c.dataset_id == dataset_id)).one()
            return dict(row._mapping)

        return self._write(run)

    def for_dataset(self, project_id: str, dataset_id: str) -> list[dict[str, Any]]:
        """The dataset's snapshots, oldest first."""
        with self.engine.connect() as conn:
            self._dataset(conn, project_id, dataset_id)
            return [dict(r._mapping) for r in conn.execute(select(snapshots_table).where(
                snapshots_table.c.dataset_id == dataset_id).order_by(snapshots_table.c.created_at)).all()]

    def get(self, project_id: str, dataset_id: str, snapshot_id: str) -> dict[str, Any]:
        for s in self.for_dataset(project_id, dataset_id):
            if s["id"] == snapshot_id:
                return s
        raise NotFound(f"snapshot {snapshot_id} not found")
