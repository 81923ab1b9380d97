"""A dataset's entries: add (deduped by source log), page through, read, edit, delete.

The dataset row keeps its entry, train and test counts in step with every change here, in the
same transaction, so a dataset's counters never need a count over its entries.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from refinery.events import datasets as ev
from refinery.wire.entries import Entry, entry_to_dict, parse_entry, stable_split
from sqlalchemy import ColumnElement, delete, exists, func, insert, select, update
from sqlalchemy.engine import Connection

from dataset.store.entry_rows import entry_body, entry_of_row, row_to_entry, row_to_export
from dataset.store.errors import Invalid, NotFound
from dataset.store.part import StorePart
from dataset.store.tables import datasets_table, entries_table, now_ms

EVENT_BYTES = 256 * 1024  # one entries event stays well under the bus's message limit
UPDATABLE = {"messages", "tools", "tool_choice", "response_format", "rejected_message", "split", "metadata"}


@dataclass(frozen=True)
class NewEntry:
    entry: Entry
    source_log_id: str | None = None


@dataclass(frozen=True)
class AddResult:
    created: int
    duplicates: int
    ids: list[str]


def _entries_added(payloads: list[dict[str, Any]], source: ev.EntrySource, upload_id: str | None,
                   rule_id: str | None) -> list[tuple[str, Any]]:
    """The added entries as `entries_added` events, each under EVENT_BYTES (one entry per event at least)."""
    def added(chunk: list[dict[str, Any]]) -> tuple[str, Any]:
        return ev.ENTRIES_ADDED, ev.EntriesAdded(source=source, entries=chunk, upload_id=upload_id, rule_id=rule_id)

    items: list[tuple[str, Any]] = []
    batch: list[dict[str, Any]] = []
    size = 0
    for p in payloads:
        n_bytes = len(orjson.dumps(p))
        if batch and size + n_bytes > EVENT_BYTES:
            items.append(added(batch))
            batch, size = [], 0
        batch.append(p)
        size += n_bytes
    items.append(added(batch))
    return items


def metadata_equals(dialect: str, key: str, value: str) -> ColumnElement[bool]:
    """An entry whose metadata holds `key` with `value`, for any key a string can be.

    The key is always a bound parameter, never part of a JSON path: SQLite's path syntax cannot
    quote every key (a `"` breaks it; backslashes and non-ASCII keys silently miss), so there the
    metadata's pairs are matched through `json_each`. PostgreSQL's `->>` takes the key as a
    parameter already.
    """
    meta = entries_table.c.meta
    if dialect == "sqlite":
        pairs = func.json_each(meta).table_valued("key", "value", joins_implicitly=True)
        return exists(select(1).select_from(pairs).where(pairs.c.key == key, pairs.c.value == value))
    return meta[key].as_string() == value


def _imported_logs(conn: Connection, dataset_id: str, log_ids: list[str]) -> set[str]:
    """Which of these request logs the dataset already holds an entry of."""
    seen: set[str] = set()
    for i in range(0, len(log_ids), 500):
        seen.update(r[0] for r in conn.execute(select(entries_table.c.source_log_id).where(
            entries_table.c.dataset_id == dataset_id, entries_table.c.source_log_id.in_(log_ids[i:i + 500]))))
    return seen


class Entries(StorePart):
    def add(
        self, project_id: str, dataset_id: str, new: list[NewEntry], source: ev.EntrySource, *,
        upload_id: str | None = None, rule_id: str | None = None,
        also: Callable[[Connection], None] | None = None,
    ) -> AddResult:
        """Add entries (skipping logs already imported into this dataset) in one transaction.

        `also` runs in the same transaction: upload progress, rule counters, consumer offsets.
        """
        def run(conn: Connection) -> AddResult:
            self._dataset(conn, project_id, dataset_id)
            log_ids = [n.source_log_id for n in new if n.source_log_id]
            seen = _imported_logs(conn, dataset_id, log_ids) if log_ids else set()
            now = now_ms()
            rows: list[dict[str, Any]] = []
            payloads: list[dict[str, Any]] = []
            duplicates = train = test = 0
            for n in new:
                if n.source_log_id:
                    if n.source_log_id in seen:
                        duplicates += 1
                        continue
                    seen.add(n.source_log_id)
                entry_id = str(uuid.uuid4())
                split = n.entry.split or stable_split(entry_id)
                if split == "TEST":
                    test += 1
                else:
                    train += 1
                rows.append({
                    "id": entry_id, "dataset_id": dataset_id, "split": split, "body": entry_body(n.entry),
                    "meta": dict(n.entry.metadata), "source": source, "source_log_id": n.source_log_id,
                    "created_at": now, "updated_at": now,
                })
                payload = entry_to_dict(n.entry)
                payload["id"] = entry_id
                payload["split"] = split
                if n.source_log_id:
                    payload["source_log_id"] = n.source_log_id
                payloads.append(payload)
            if rows:
                conn.execute(insert(entries_table), rows)
                conn.execute(update(datasets_table).where(datasets_table.c.id == dataset_id).values(
                    entry_count=datasets_table.c.entry_count + len(rows),
                    train_count=datasets_table.c.train_count + train,
                    test_count=datasets_table.c.test_count + test,
                ))
                self._append(conn, project_id, dataset_id, _entries_added(payloads, source, upload_id, rule_id))
            if also is not None:
                also(conn)
            return AddResult(len(rows), duplicates, [r["id"] for r in rows])

        return self._write(run)

    def page(
        self, project_id: str, dataset_id: str, split: str = "", metadata: dict[str, str] | None = None,
        limit: int = 100, offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of entries in insertion order, and how many match in all."""
        t = entries_table
        with self.engine.connect() as conn:
            self._dataset(conn, project_id, dataset_id)
            where = [t.c.dataset_id == dataset_id]
            if split:
                where.append(t.c.split == split)
            where.extend(metadata_equals(conn.dialect.name, key, value) for key, value in (metadata or {}).items())
            total = conn.execute(select(func.count()).select_from(t).where(*where)).scalar_one()
            rows = conn.execute(select(t).where(*where).order_by(t.c.seq).limit(limit).offset(offset)).all()
        return [row_to_entry(r) for r in rows], int(total)

    def iter_rows(self, project_id: str, dataset_id: str, split: str = "", page: int = 1000) -> Iterator[Any]:
        """Every entry in insertion order, a page at a time (never the whole dataset in memory)."""
        t = entries_table
        with self.engine.connect() as conn:
            self._dataset(conn, project_id, dataset_id)
        last = 0
        while True:
            with self.engine.connect() as conn:
                where = [t.c.dataset_id == dataset_id, t.c.seq > last]
                if split:
                    where.append(t.c.split == split)
                rows = conn.execute(select(t).where(*where).order_by(t.c.seq).limit(page)).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].seq

    def row(self, conn: Connection, project_id: str, dataset_id: str, entry_id: str) -> Any:
        """The entry's row, inside the caller's transaction (NotFound outside this dataset)."""
        self._dataset(conn, project_id, dataset_id)
        row = conn.execute(
            select(entries_table).where(entries_table.c.id == entry_id, entries_table.c.dataset_id == dataset_id)
        ).first()
        if row is None:
            raise NotFound(f"entry {entry_id} not found in dataset {dataset_id}")
        return row

    def get(self, project_id: str, dataset_id: str, entry_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return row_to_entry(self.row(conn, project_id, dataset_id, entry_id))

    def entry(self, project_id: str, dataset_id: str, entry_id: str) -> Entry:
        with self.engine.connect() as conn:
            return entry_of_row(self.row(conn, project_id, dataset_id, entry_id))

    def update(self, project_id: str, dataset_id: str, entry_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Replace the given fields, revalidate the whole entry (EntryError if now invalid)."""
        unknown = set(patch) - UPDATABLE
        if unknown:
            raise Invalid(f"cannot update {sorted(unknown)}: updatable fields are {sorted(UPDATABLE)}")

        def run(conn: Connection) -> dict[str, Any]:
            row = self.row(conn, project_id, dataset_id, entry_id)
            merged = row_to_export(row)
            merged.update(patch)
            entry = parse_entry({k: v for k, v in merged.items() if v is not None})
            return self.replace(conn, project_id, dataset_id, row, entry, (ev.ENTRY_UPDATED, None))

        return self._write(run)

    def replace(
        self, conn: Connection, project_id: str, dataset_id: str, row: Any, entry: Entry,
        event_item: tuple[str, Any],
    ) -> dict[str, Any]:
        """Store `entry` in place of `row` with its event (data None: `entry_updated` carrying the
        whole entry), moving the dataset's split counters when the split changed."""
        split = entry.split or row.split
        now = now_ms()
        conn.execute(update(entries_table).where(entries_table.c.seq == row.seq).values(
            body=entry_body(entry), meta=dict(entry.metadata), split=split, updated_at=now,
        ))
        if split != row.split:
            delta = 1 if split == "TEST" else -1
            conn.execute(update(datasets_table).where(datasets_table.c.id == dataset_id).values(
                test_count=datasets_table.c.test_count + delta, train_count=datasets_table.c.train_count - delta,
            ))
        event_type, data = event_item
        if data is None:
            payload = entry_to_dict(entry)
            payload["id"] = row.id
            payload["split"] = split
            data = ev.EntryUpdated(entry=payload)
        self._append(conn, project_id, dataset_id, [(event_type, data)])
        new_row = conn.execute(select(entries_table).where(entries_table.c.seq == row.seq)).one()
        return row_to_entry(new_row)

    def delete(self, project_id: str, dataset_id: str, entry_id: str) -> None:
        def run(conn: Connection) -> None:
            row = self.row(conn, project_id, dataset_id, entry_id)
            conn.execute(delete(entries_table).where(entries_table.c.seq == row.seq))
            col = "test_count" if row.split == "TEST" else "train_count"
            conn.execute(update(datasets_table).where(datasets_table.c.id == dataset_id).values(
                entry_count=datasets_table.c.entry_count - 1,
                **{col: getattr(datasets_table.c, col) - 1},
            ))
            self._append(conn, project_id, dataset_id, [(ev.ENTRY_DELETED, ev.EntryDeleted(entry_id=entry_id))])

        self._write(run)
