"""JSONL uploads' progress rows: what was received, how far processing got, what failed.

An upload row is not an event stream of its own: only its end is an event of the dataset
(`upload_finished`). Progress is committed with the entries each batch created (`progress`
inside `entries.add`), which is what lets a restarted service resume after the last batch.
"""

from __future__ import annotations

import uuid
from typing import Any

from refinery.events import datasets as ev
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from dataset.store.part import StorePart
from dataset.store.tables import MAX_STORED_ERRORS, now_ms, uploads_table


class Uploads(StorePart):
    def create(self, project_id: str, dataset_id: str, filename: str) -> dict[str, Any]:
        """A new upload, RECEIVING, with the object key its file streams to."""
        upload_id = str(uuid.uuid4())
        key = f"uploads/{project_id}/{dataset_id}/{upload_id}.jsonl"

        def run(conn: Connection) -> None:
            self._dataset(conn, project_id, dataset_id)
            conn.execute(insert(uploads_table).values(
                id=upload_id, dataset_id=dataset_id, project_id=project_id, status="RECEIVING",
                filename=filename[:500], object_key=key, errors=[], created_at=now_ms(),
            ))

        self._write(run)
        return self.get(project_id, dataset_id, upload_id)

    def get(self, project_id: str, dataset_id: str, upload_id: str) -> dict[str, Any]:
        return self._owned(uploads_table, "upload", upload_id, project_id, dataset_id)

    def by_id(self, upload_id: str) -> dict[str, Any]:
        """An upload the processor was handed (by this store, so it exists): no project scope."""
        with self.engine.connect() as conn:
            return dict(conn.execute(select(uploads_table).where(uploads_table.c.id == upload_id)).one()._mapping)

    def in_status(self, status: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(uploads_table).where(uploads_table.c.status == status)).all()]

    def set(self, upload_id: str, **values: Any) -> None:
        """Change the upload's row (status, size, error message): no event, nothing to publish."""
        with self._projection_write() as conn:
            conn.execute(update(uploads_table).where(uploads_table.c.id == upload_id).values(**values))

    @staticmethod
    def progress(
        conn: Connection, upload_id: str, *, bytes_processed: int, lines_processed: int, created: int,
        errors: list[dict[str, Any]],
    ) -> None:
        """Record a processed batch inside the transaction that added its entries; errors beyond
        MAX_STORED_ERRORS are counted, not kept."""
        t = uploads_table
        row = conn.execute(select(t.c.errors, t.c.error_count).where(t.c.id == upload_id)).one()
        kept = list(row.errors)
        if errors and len(kept) < MAX_STORED_ERRORS:
            kept.extend(errors[: MAX_STORED_ERRORS - len(kept)])
        conn.execute(update(t).where(t.c.id == upload_id).values(
            bytes_processed=bytes_processed, lines_processed=lines_processed,
            entries_created=t.c.entries_created + created, error_count=t.c.error_count + len(errors), errors=kept,
        ))

    def finish(self, upload_id: str) -> dict[str, Any]:
        """DONE, with the dataset's `upload_finished` event summing it up."""
        def run(conn: Connection) -> dict[str, Any]:
            row = conn.execute(select(uploads_table).where(uploads_table.c.id == upload_id)).one()
            conn.execute(update(uploads_table).where(uploads_table.c.id == upload_id).values(
                status="DONE", finished_at=now_ms()))
            self._append(conn, row.project_id, row.dataset_id, [(ev.UPLOAD_FINISHED, ev.UploadFinished(
                upload_id=upload_id, object_key=row.object_key, lines=row.lines_processed,
                entries_created=row.entries_created, error_count=row.error_count, errors=row.errors[:100],
            ))])
            return dict(row._mapping)

        return self._write(run)
