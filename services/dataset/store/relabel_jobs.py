"""Relabel jobs: which entries a job regenerates, and how far it got.

A job's row and its per-entry items are progress, not events; each relabeled entry is the
dataset's `entry_relabeled` event, committed with its item marked DONE, so a restarted
service resumes a running job with exactly the entries still pending.
"""

from __future__ import annotations

import uuid
from typing import Any

from refinery.events import datasets as ev
from refinery.stores.eventstore import EventSourcedStore
from refinery.wire.entries import parse_entry
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from dataset.store.entries import Entries
from dataset.store.entry_rows import row_to_export
from dataset.store.errors import NotFound
from dataset.store.part import StorePart
from dataset.store.tables import (
    MAX_STORED_ERRORS,
    entries_table,
    now_ms,
    relabel_items_table,
    relabel_jobs_table,
)


class RelabelJobs(StorePart):
    def __init__(self, store: EventSourcedStore, entries: Entries) -> None:
        super().__init__(store)
        self._entries = entries

    def create(
        self, project_id: str, dataset_id: str, model: str, entry_ids: list[str], split: str,
        keep_rejected: bool, concurrency: int,
    ) -> dict[str, Any]:
        """A RUNNING job over `entry_ids` (all in the dataset, or NotFound), or else over every
        entry of `split` (every entry when empty), each item PENDING."""
        job_id = str(uuid.uuid4())

        def run(conn: Connection) -> None:
            self._dataset(conn, project_id, dataset_id)
            if entry_ids:
                found = {r[0] for r in conn.execute(select(entries_table.c.id).where(
                    entries_table.c.dataset_id == dataset_id, entries_table.c.id.in_(entry_ids)))}
                missing = [e for e in entry_ids if e not in found]
                if missing:
                    raise NotFound(f"entries not in dataset {dataset_id}: {', '.join(missing[:5])}")
                ids = list(dict.fromkeys(entry_ids))
            else:
                where = [entries_table.c.dataset_id == dataset_id]
                if split:
                    where.append(entries_table.c.split == split)
                ids = [r[0] for r in conn.execute(select(entries_table.c.id).where(*where).order_by(
                    entries_table.c.seq))]
            conn.execute(insert(relabel_jobs_table).values(
                id=job_id, dataset_id=dataset_id, project_id=project_id, status="RUNNING", model=model,
                keep_rejected=keep_rejected, concurrency=concurrency, total=len(ids), done=0, failed=0, errors=[],
                created_at=now_ms(), finished_at=0.0,
            ))
            if ids:
                conn.execute(insert(relabel_items_table), [
                    {"job_id": job_id, "entry_id": e, "state": "PENDING"} for e in ids])

        self._write(run)
        return self.get(project_id, dataset_id, job_id)

    def get(self, project_id: str, dataset_id: str, job_id: str) -> dict[str, Any]:
        return self._owned(relabel_jobs_table, "relabel job", job_id, project_id, dataset_id)

    def running(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(relabel_jobs_table).where(relabel_jobs_table.c.status == "RUNNING")).all()]

    def pending_entries(self, job_id: str) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(relabel_items_table.c.entry_id).where(
                relabel_items_table.c.job_id == job_id, relabel_items_table.c.state == "PENDING"))]

    def relabeled(
        self, project_id: str, dataset_id: str, entry_id: str, job_id: str, model: str,
        output: dict[str, Any], keep_rejected: bool,
    ) -> None:
        """Replace the entry's output; optionally keep the old one as `rejected_message` (DPO)."""
        def run(conn: Connection) -> None:
            row = self._entries.row(conn, project_id, dataset_id, entry_id)
            current = row_to_export(row)
            old_output = current["messages"][-1]
            current["messages"] = [*current["messages"][:-1], output]
            if keep_rejected:
                current["rejected_message"] = old_output
            entry = parse_entry(current)
            self._entries.replace(conn, project_id, dataset_id, row, entry, (ev.ENTRY_RELABELED, ev.EntryRelabeled(
                entry_id=entry_id, model=model, output=entry.messages[-1], job_id=job_id,
                rejected_message=old_output if keep_rejected else None,
            )))
            conn.execute(update(relabel_items_table).where(
                relabel_items_table.c.job_id == job_id, relabel_items_table.c.entry_id == entry_id,
            ).values(state="DONE"))
            conn.execute(update(relabel_jobs_table).where(relabel_jobs_table.c.id == job_id).values(
                done=relabel_jobs_table.c.done + 1))

        self._write(run)

    def failed(self, job_id: str, entry_id: str, message: str) -> None:
        """The entry could not be relabeled: the item is FAILED, the message kept (up to MAX_STORED_ERRORS)."""
        with self._projection_write() as conn:
            conn.execute(update(relabel_items_table).where(
                relabel_items_table.c.job_id == job_id, relabel_items_table.c.entry_id == entry_id,
            ).values(state="FAILED"))
            row = conn.execute(select(relabel_jobs_table.c.errors).where(relabel_jobs_table.c.id == job_id)).one()
            errors = list(row.errors)
            if len(errors) < MAX_STORED_ERRORS:
                errors.append({"entry_id": entry_id, "message": message[:500]})
            conn.execute(update(relabel_jobs_table).where(relabel_jobs_table.c.id == job_id).values(
                failed=relabel_jobs_table.c.failed + 1, errors=errors))

    def finish(self, job_id: str, status: str) -> None:
        with self._projection_write() as conn:
            conn.execute(update(relabel_jobs_table).where(relabel_jobs_table.c.id == job_id).values(
                status=status, finished_at=now_ms()))
