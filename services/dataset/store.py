"""The dataset service's state: an event store plus SQL projections, one transaction per change.

Each dataset is an aggregate with consecutive event versions. Every write appends its events,
updates the projections and fills the outbox in one transaction (SQLite embedded, PostgreSQL
in production), so a crash either keeps a change whole or not at all. Writers are serialised
in-process: one dataset service owns this database.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from refinery.events import datasets as ev
from refinery.events.envelope import Envelope
from refinery.stores import eventstore
from refinery.wire.entries import Entry, entry_to_dict, parse_entry, stable_split
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

projections = MetaData()

datasets_table = Table(
    "datasets", projections,
    Column("id", String(64), primary_key=True),
    Column("project_id", String(64), nullable=False, index=True),
    Column("name", String(500), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("entry_count", Integer, nullable=False, default=0),
    Column("train_count", Integer, nullable=False, default=0),
    Column("test_count", Integer, nullable=False, default=0),
    Column("fine_tune_count", Integer, nullable=False, default=0),
    Column("deleted", Boolean, nullable=False, default=False),
)

entries_table = Table(
    "entries", projections,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("dataset_id", String(64), nullable=False),
    Column("split", String(8), nullable=False),
    Column("body", LargeBinary, nullable=False),  # the entry without split and metadata, JSON
    Column("meta", JSON, nullable=False),
    Column("source", String(16), nullable=False),
    Column("source_log_id", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("dataset_id", "source_log_id", name="uq_entries_dataset_log"),
    Index("ix_entries_dataset_seq", "dataset_id", "seq"),
)

pruning_rules_table = Table(
    "pruning_rules", projections,
    Column("id", String(64), primary_key=True),
    Column("dataset_id", String(64), nullable=False, index=True),
    Column("text", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
)

import_rules_table = Table(
    "import_rules", projections,
    Column("id", String(64), primary_key=True),
    Column("dataset_id", String(64), nullable=False, index=True),
    Column("project_id", String(64), nullable=False, index=True),
    Column("filters", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("imported", Integer, nullable=False, default=0),
)

uploads_table = Table(
    "uploads", projections,
    Column("id", String(64), primary_key=True),
    Column("dataset_id", String(64), nullable=False, index=True),
    Column("project_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("filename", String(500), nullable=False),
    Column("object_key", String(500), nullable=False),
    Column("bytes_total", Integer, nullable=False, default=0),
    Column("bytes_processed", Integer, nullable=False, default=0),
    Column("lines_processed", Integer, nullable=False, default=0),
    Column("entries_created", Integer, nullable=False, default=0),
    Column("error_count", Integer, nullable=False, default=0),
    Column("errors", JSON, nullable=False),
    Column("error_message", String(2000), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=False, default=0.0),
)

relabel_jobs_table = Table(
    "relabel_jobs", projections,
    Column("id", String(64), primary_key=True),
    Column("dataset_id", String(64), nullable=False, index=True),
    Column("project_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("model", String(300), nullable=False),
    Column("keep_rejected", Boolean, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("done", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("errors", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=False, default=0.0),
)

relabel_items_table = Table(
    "relabel_items", projections,
    Column("job_id", String(64), primary_key=True),
    Column("entry_id", String(64), primary_key=True),
    Column("state", String(8), nullable=False),  # PENDING, DONE, FAILED
)

snapshots_table = Table(
    "snapshots", projections,
    Column("id", String(64), primary_key=True),
    Column("dataset_id", String(64), primary_key=True),
    Column("object_key", String(500), nullable=False),
    Column("entry_count", Integer, nullable=False),
    Column("train_count", Integer, nullable=False),
    Column("test_count", Integer, nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("pruning_rules", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)

seen_events_table = Table(
    "seen_events", projections,
    Column("event_id", String(64), primary_key=True),
)

EVENT_BYTES = 256 * 1024  # one entries event stays well under the bus's message limit
MAX_STORED_ERRORS = 1000


class NotFound(KeyError):
    """No such dataset (in this project), entry, rule, upload, job or snapshot."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class Invalid(ValueError):
    """The change is not allowed as asked (names the problem)."""


@dataclass(frozen=True)
class DatasetRow:
    id: str
    project_id: str
    name: str
    created_at: float
    updated_at: float
    entry_count: int
    train_count: int
    test_count: int
    fine_tune_count: int


@dataclass(frozen=True)
class NewEntry:
    entry: Entry
    source_log_id: str | None = None


@dataclass(frozen=True)
class AddResult:
    created: int
    duplicates: int
    ids: list[str]


def _now_ms() -> float:
    return time.time() * 1000.0


def _entry_body(entry: Entry) -> bytes:
    d = entry_to_dict(entry)
    d.pop("split", None)
    d.pop("metadata", None)
    return orjson.dumps(d)


def row_to_entry(row: Any) -> dict[str, Any]:
    """An entry as the API shows it: the export fields plus id, split, source and times."""
    body = orjson.loads(row.body)
    out: dict[str, Any] = {"object": "dataset.entry", "id": row.id, "dataset_id": row.dataset_id}
    out.update(body)
    out["split"] = row.split
    out["metadata"] = dict(row.meta or {})
    out["source"] = row.source
    out["created_at"] = row.created_at
    out["updated_at"] = row.updated_at
    return out


def row_to_export(row: Any) -> dict[str, Any]:
    """One line of the documented dataset export (messages, tools, tool_choice, split, ...)."""
    out = orjson.loads(row.body)
    out["split"] = row.split
    if row.meta:
        out["metadata"] = dict(row.meta)
    return out


def entry_of_row(row: Any) -> Entry:
    return parse_entry(row_to_export(row))


class DatasetStore:
    def __init__(self, db_url: str) -> None:
        sqlite = db_url.startswith("sqlite")
        connect_args = {"check_same_thread": False, "timeout": 30} if sqlite else {}
        self.engine: Engine = create_engine(db_url, connect_args=connect_args)
        if sqlite:
            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _record) -> None:  # WAL: readers never wait for the writer
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()
        eventstore.metadata.create_all(self.engine)
        projections.create_all(self.engine)
        self._lock = threading.RLock()
        self.on_change: Callable[[], None] = lambda: None

    # ---- helpers ------------------------------------------------------------------------

    def _dataset(self, conn: Connection, project_id: str, dataset_id: str) -> DatasetRow:
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

    def _append(self, conn: Connection, project_id: str, dataset_id: str, items: list[tuple[str, Any]]) -> None:
        version = eventstore.current_version(conn, dataset_id)
        envs: list[Envelope] = []
        for event_type, data in items:
            version += 1
            envs.append(ev.dataset_event(project_id, dataset_id, version, event_type, data))
        eventstore.append(conn, envs)
        conn.execute(update(datasets_table).where(datasets_table.c.id == dataset_id).values(updated_at=_now_ms()))

    def _write(self, fn: Callable[[Connection], Any]) -> Any:
        with self._lock, self.engine.begin() as conn:
            result = fn(conn)
        self.on_change()
        return result

    # ---- datasets -----------------------------------------------------------------------

    def create_dataset(self, project_id: str, name: str) -> DatasetRow:
        name = name.strip()
        if not name:
            raise Invalid("name must not be empty")
        dataset_id = str(uuid.uuid4())
        now = _now_ms()

        def run(conn: Connection) -> DatasetRow:
            conn.execute(insert(datasets_table).values(
                id=dataset_id, project_id=project_id, name=name, created_at=now, updated_at=now,
                entry_count=0, train_count=0, test_count=0, fine_tune_count=0, deleted=False,
            ))
            self._append(conn, project_id, dataset_id, [(ev.DATASET_CREATED, ev.DatasetCreated(name=name))])
            return self._dataset(conn, project_id, dataset_id)

        return self._write(run)

    def list_datasets(self, project_id: str) -> list[DatasetRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(datasets_table.c.id).where(
                    datasets_table.c.project_id == project_id, datasets_table.c.deleted.is_(False)
                ).order_by(datasets_table.c.created_at.desc())
            ).all()
            return [self._dataset(conn, project_id, r.id) for r in rows]

    def get_dataset(self, project_id: str, dataset_id: str) -> DatasetRow:
        with self.engine.connect() as conn:
            return self._dataset(conn, project_id, dataset_id)

    def delete_dataset(self, project_id: str, dataset_id: str) -> None:
        def run(conn: Connection) -> None:
            self._dataset(conn, project_id, dataset_id)
            self._append(conn, project_id, dataset_id, [(ev.DATASET_DELETED, ev.DatasetDeleted())])
            conn.execute(update(datasets_table).where(datasets_table.c.id == dataset_id).values(deleted=True))
            conn.execute(delete(entries_table).where(entries_table.c.dataset_id == dataset_id))
            conn.execute(delete(import_rules_table).where(import_rules_table.c.dataset_id == dataset_id))

        self._write(run)

    # ---- entries ------------------------------------------------------------------------

    def add_entries(
        self, project_id: str, dataset_id: str, new: list[NewEntry], source: ev.EntrySource, *,
        upload_id: str | None = None, rule_id: str | None = None,
        also: Callable[[Connection], None] | None = None,
    ) -> AddResult:
        """Add entries (skipping logs already imported into this dataset) in one transaction.

        `also` runs in the same transaction: upload progress, consumer offsets.
        """
        def run(conn: Connection) -> AddResult:
            self._dataset(conn, project_id, dataset_id)
            log_ids = [n.source_log_id for n in new if n.source_log_id]
            seen: set[str] = set()
            if log_ids:
                for i in range(0, len(log_ids), 500):
                    seen.update(r[0] for r in conn.execute(
                        select(entries_table.c.source_log_id).where(
                            entries_table.c.dataset_id == dataset_id,
                            entries_table.c.source_log_id.in_(log_ids[i:i + 500]),
                        )
                    ))
            now = _now_ms()
            rows: list[dict[str, Any]] = []
            payloads: list[dict[str, Any]] = []
            duplicates = 0
            train = test = 0
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
                    "id": entry_id, "dataset_id": dataset_id, "split": split, "body": _entry_body(n.entry),
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
                items: list[tuple[str, Any]] = []
                batch: list[dict[str, Any]] = []
                size = 0
                for p in payloads:
                    n_bytes = len(orjson.dumps(p))
                    if batch and size + n_bytes > EVENT_BYTES:
                        items.append((ev.ENTRIES_ADDED, ev.EntriesAdded(
                            source=source, entries=batch, upload_id=upload_id, rule_id=rule_id)))
                        batch, size = [], 0
                    batch.append(p)
                    size += n_bytes
                items.append((ev.ENTRIES_ADDED, ev.EntriesAdded(
                    source=source, entries=batch, upload_id=upload_id, rule_id=rule_id)))
                self._append(conn, project_id, dataset_id, items)
            if also is not None:
                also(conn)
            return AddResult(len(rows), duplicates, [r["id"] for r in rows])

        return self._write(run)

    def list_entries(
        self, project_id: str, dataset_id: str, split: str = "", metadata: dict[str, str] | None = None,
        limit: int = 100, offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        t = entries_table
        with self.engine.connect() as conn:
            self._dataset(conn, project_id, dataset_id)
            where = [t.c.dataset_id == dataset_id]
            if split:
                where.append(t.c.split == split)
            for key, value in (metadata or {}).items():
                where.append(t.c.meta[key].as_string() == value)
            total = conn.execute(select(func.count()).select_from(t).where(*where)).scalar_one()
            rows = conn.execute(select(t).where(*where).order_by(t.c.seq).limit(limit).offset(offset)).all()
        return [row_to_entry(r) for r in rows], int(total)

    def iter_entry_rows(self, project_id: str, dataset_id: str, split: str = "", page: int = 1000) -> Iterator[Any]:
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

    def _entry_row(self, conn: Connection, project_id: str, dataset_id: str, entry_id: str) -> Any:
        self._dataset(conn, project_id, dataset_id)
        row = conn.execute(
            select(entries_table).where(entries_table.c.id == entry_id, entries_table.c.dataset_id == dataset_id)
        ).first()
        if row is None:
            raise NotFound(f"entry {entry_id} not found in dataset {dataset_id}")
        return row

    def get_entry(self, project_id: str, dataset_id: str, entry_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return row_to_entry(self._entry_row(conn, project_id, dataset_id, entry_id))

    def entry(self, project_id: str, dataset_id: str, entry_id: str) -> Entry:
        with self.engine.connect() as conn:
            return entry_of_row(self._entry_row(conn, project_id, dataset_id, entry_id))

    def update_entry(self, project_id: str, dataset_id: str, entry_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Replace the given fields, revalidate the whole entry (EntryError if now invalid)."""
        allowed = {"messages", "tools", "tool_choice", "response_format", "rejected_message", "split", "metadata"}
        unknown = set(patch) - allowed
        if unknown:
            raise Invalid(f"cannot update {sorted(unknown)}: updatable fields are {sorted(allowed)}")

        def run(conn: Connection) -> dict[str, Any]:
            row = self._entry_row(conn, project_id, dataset_id, entry_id)
            merged = row_to_export(row)
            merged.update(patch)
            entry = parse_entry({k: v for k, v in merged.items() if v is not None})
            return self._replace_entry(conn, project_id, dataset_id, row, entry,
                                       (ev.ENTRY_UPDATED, None))

        return self._write(run)

    def _replace_entry(
        self, conn: Connection, project_id: str, dataset_id: str, row: Any, entry: Entry,
        event_item: tuple[str, Any],
    ) -> dict[str, Any]:
        split = entry.split or row.split
        now = _now_ms()
        conn.execute(update(entries_table).where(entries_table.c.seq == row.seq).values(
            body=_entry_body(entry), meta=dict(entry.metadata), split=split, updated_at=now,
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

    def delete_entry(self, project_id: str, dataset_id: str, entry_id: str) -> None:
        def run(conn: Connection) -> None:
            row = self._entry_row(conn, project_id, dataset_id, entry_id)
            conn.execute(delete(entries_table).where(entries_table.c.seq == row.seq))
            col = "test_count" if row.split == "TEST" else "train_count"
            conn.execute(update(datasets_table).where(datasets_table.c.id == dataset_id).values(
                entry_count=datasets_table.c.entry_count - 1,
                **{col: getattr(datasets_table.c, col) - 1},
            ))
            self._append(conn, project_id, dataset_id, [(ev.ENTRY_DELETED, ev.EntryDeleted(entry_id=entry_id))])

        self._write(run)

    def relabel_entry(
        self, project_id: str, dataset_id: str, entry_id: str, job_id: str, model: str,
        output: dict[str, Any], keep_rejected: bool,
    ) -> None:
        """Replace the entry's output; optionally keep the old one as `rejected_message` (DPO)."""
        def run(conn: Connection) -> None:
            row = self._entry_row(conn, project_id, dataset_id, entry_id)
            current = row_to_export(row)
            old_output = current["messages"][-1]
            current["messages"] = [*current["messages"][:-1], output]
            if keep_rejected:
                current["rejected_message"] = old_output
            entry = parse_entry(current)
            self._replace_entry(conn, project_id, dataset_id, row, entry, (ev.ENTRY_RELABELED, ev.EntryRelabeled(
                entry_id=entry_id, model=model, output=entry.messages[-1], job_id=job_id,
                rejected_message=old_output if keep_rejected else None,
            )))
            conn.execute(update(relabel_items_table).where(
                relabel_items_table.c.job_id == job_id, relabel_items_table.c.entry_id == entry_id,
            ).values(state="DONE"))
            conn.execute(update(relabel_jobs_table).where(relabel_jobs_table.c.id == job_id).values(
                done=relabel_jobs_table.c.done + 1))

        self._write(run)

    # ---- pruning rules ------------------------------------------------------------------

    def add_pruning_rule(self, project_id: str, dataset_id: str, text: str) -> dict[str, Any]:
        if not text:
            raise Invalid("a pruning rule needs non-empty text")
        rule_id = str(uuid.uuid4())
        now = _now_ms()

        def run(conn: Connection) -> dict[str, Any]:
            self._dataset(conn, project_id, dataset_id)
            conn.execute(insert(pruning_rules_table).values(
                id=rule_id, dataset_id=dataset_id, text=text.encode(), created_at=now))
            self._append(conn, project_id, dataset_id, [
                (ev.PRUNING_RULE_ADDED, ev.PruningRuleAdded(rule_id=rule_id, text=text))])
            return {"id": rule_id, "text": text, "created_at": now}

        return self._write(run)

    def pruning_rules(self, project_id: str, dataset_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            self._dataset(conn, project_id, dataset_id)
            rows = conn.execute(select(pruning_rules_table).where(
                pruning_rules_table.c.dataset_id == dataset_id).order_by(pruning_rules_table.c.created_at)).all()
        return [{"id": r.id, "text": r.text.decode(), "created_at": r.created_at} for r in rows]

    def delete_pruning_rule(self, project_id: str, dataset_id: str, rule_id: str) -> None:
        def run(conn: Connection) -> None:
            self._dataset(conn, project_id, dataset_id)
            n = conn.execute(delete(pruning_rules_table).where(
                pruning_rules_table.c.id == rule_id, pruning_rules_table.c.dataset_id == dataset_id)).rowcount
            if not n:
                raise NotFound(f"pruning rule {rule_id} not found")
            self._append(conn, project_id, dataset_id, [
                (ev.PRUNING_RULE_DELETED, ev.PruningRuleDeleted(rule_id=rule_id))])

        self._write(run)

    # ---- import rules (standing imports from request logs) --------------------------------

    def add_import_rule(self, project_id: str, dataset_id: str, filters: list[dict[str, str]]) -> str:
        rule_id = str(uuid.uuid4())

        def run(conn: Connection) -> str:
            self._dataset(conn, project_id, dataset_id)
            conn.execute(insert(import_rules_table).values(
                id=rule_id, dataset_id=dataset_id, project_id=project_id, filters=filters, created_at=_now_ms(),
                imported=0))
            self._append(conn, project_id, dataset_id, [
                (ev.IMPORT_RULE_CREATED, ev.ImportRuleCreated(rule_id=rule_id, filters=filters))])
            return rule_id

        return self._write(run)

    def import_rules(self, project_id: str, dataset_id: str | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            where = [import_rules_table.c.project_id == project_id]
            if dataset_id is not None:
                self._dataset(conn, project_id, dataset_id)
                where.append(import_rules_table.c.dataset_id == dataset_id)
            rows = conn.execute(select(import_rules_table).where(*where).order_by(
                import_rules_table.c.created_at)).all()
        return [{"id": r.id, "dataset_id": r.dataset_id, "filters": r.filters, "created_at": r.created_at,
                 "imported": r.imported} for r in rows]

    def all_import_rules(self) -> dict[str, list[dict[str, Any]]]:
        """Every standing rule by project: what the log consumer matches against."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(select(import_rules_table)).all():
                out.setdefault(r.project_id, []).append(
                    {"id": r.id, "dataset_id": r.dataset_id, "filters": r.filters})
        return out

    def delete_import_rule(self, project_id: str, dataset_id: str, rule_id: str) -> None:
        def run(conn: Connection) -> None:
            self._dataset(conn, project_id, dataset_id)
            n = conn.execute(delete(import_rules_table).where(
                import_rules_table.c.id == rule_id, import_rules_table.c.dataset_id == dataset_id)).rowcount
            if not n:
                raise NotFound(f"import rule {rule_id} not found")
            self._append(conn, project_id, dataset_id, [
                (ev.IMPORT_RULE_DELETED, ev.ImportRuleDeleted(rule_id=rule_id))])

        self._write(run)

    @staticmethod
    def count_rule_imports(conn: Connection, rule_id: str, n: int) -> None:
        conn.execute(update(import_rules_table).where(import_rules_table.c.id == rule_id).values(
            imported=import_rules_table.c.imported + n))

    # ---- fine-tunes (from model-registry's events) --------------------------------------

    def count_fine_tune(self, event_id: str, dataset_id: str, delta: int) -> None:
        """A model trained on (or deleted from) this dataset; counted once per event."""
        with self._lock, self.engine.begin() as conn:
            if conn.execute(select(seen_events_table).where(seen_events_table.c.event_id == event_id)).first():
                return
            conn.execute(insert(seen_events_table).values(event_id=event_id))
            conn.execute(update(datasets_table).where(datasets_table.c.id == dataset_id).values(
                fine_tune_count=func.max(datasets_table.c.fine_tune_count + delta, 0)
                if self.engine.dialect.name == "sqlite"
                else func.greatest(datasets_table.c.fine_tune_count + delta, 0)))

    # ---- consumer offsets (stored with the entries they produced) --------------------------

    def load_offsets(self, topic: str) -> dict[int, int]:
        with self.engine.connect() as conn:
            return eventstore.load_offsets(conn, topic)

    save_offsets = staticmethod(eventstore.save_offsets)

    def save_offsets_now(self, topic: str, offsets: dict[int, int]) -> None:
        with self._lock, self.engine.begin() as conn:
            self.save_offsets(conn, topic, offsets)

    # ---- uploads ------------------------------------------------------------------------

    def create_upload(self, project_id: str, dataset_id: str, filename: str) -> dict[str, Any]:
        upload_id = str(uuid.uuid4())
        key = f"uploads/{project_id}/{dataset_id}/{upload_id}.jsonl"

        def run(conn: Connection) -> None:
            self._dataset(conn, project_id, dataset_id)
            conn.execute(insert(uploads_table).values(
                id=upload_id, dataset_id=dataset_id, project_id=project_id, status="RECEIVING",
                filename=filename[:500], object_key=key, errors=[], created_at=_now_ms(),
            ))

        self._write(run)
        return self.get_upload(project_id, dataset_id, upload_id)

    def get_upload(self, project_id: str, dataset_id: str, upload_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(uploads_table).where(
                uploads_table.c.id == upload_id, uploads_table.c.project_id == project_id,
                uploads_table.c.dataset_id == dataset_id)).first()
        if row is None:
            raise NotFound(f"upload {upload_id} not found")
        return dict(row._mapping)

    def uploads_in(self, status: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(uploads_table).where(uploads_table.c.status == status)).all()]

    def set_upload(self, upload_id: str, **values: Any) -> None:
        with self._lock, self.engine.begin() as conn:
            conn.execute(update(uploads_table).where(uploads_table.c.id == upload_id).values(**values))

    @staticmethod
    def upload_progress(
        conn: Connection, upload_id: str, *, bytes_processed: int, lines_processed: int, created: int,
        errors: list[dict[str, Any]],
    ) -> None:
        t = uploads_table
        row = conn.execute(select(t.c.errors, t.c.error_count).where(t.c.id == upload_id)).one()
        kept = list(row.errors)
        if errors and len(kept) < MAX_STORED_ERRORS:
            kept.extend(errors[: MAX_STORED_ERRORS - len(kept)])
        conn.execute(update(t).where(t.c.id == upload_id).values(
            bytes_processed=bytes_processed, lines_processed=lines_processed,
            entries_created=t.c.entries_created + created, error_count=t.c.error_count + len(errors), errors=kept,
        ))

    def finish_upload(self, upload_id: str) -> dict[str, Any]:
        def run(conn: Connection) -> dict[str, Any]:
            row = conn.execute(select(uploads_table).where(uploads_table.c.id == upload_id)).one()
            conn.execute(update(uploads_table).where(uploads_table.c.id == upload_id).values(
                status="DONE", finished_at=_now_ms()))
            self._append(conn, row.project_id, row.dataset_id, [(ev.UPLOAD_FINISHED, ev.UploadFinished(
                upload_id=upload_id, object_key=row.object_key, lines=row.lines_processed,
                entries_created=row.entries_created, error_count=row.error_count, errors=row.errors[:100],
            ))])
            return dict(row._mapping)

        return self._write(run)

    # ---- relabel jobs -------------------------------------------------------------------

    def create_relabel_job(
        self, project_id: str, dataset_id: str, model: str, entry_ids: list[str], split: str,
        keep_rejected: bool, concurrency: int,
    ) -> dict[str, Any]:
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
                created_at=_now_ms(), finished_at=0.0,
            ))
            if ids:
                conn.execute(insert(relabel_items_table), [
                    {"job_id": job_id, "entry_id": e, "state": "PENDING"} for e in ids])

        self._write(run)
        return self.get_relabel_job(project_id, dataset_id, job_id)

    def get_relabel_job(self, project_id: str, dataset_id: str, job_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(relabel_jobs_table).where(
                relabel_jobs_table.c.id == job_id, relabel_jobs_table.c.project_id == project_id,
                relabel_jobs_table.c.dataset_id == dataset_id)).first()
        if row is None:
            raise NotFound(f"relabel job {job_id} not found")
        return dict(row._mapping)

    def running_relabel_jobs(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(relabel_jobs_table).where(relabel_jobs_table.c.status == "RUNNING")).all()]

    def pending_relabel_items(self, job_id: str) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(relabel_items_table.c.entry_id).where(
                relabel_items_table.c.job_id == job_id, relabel_items_table.c.state == "PENDING"))]

    def relabel_failed(self, job_id: str, entry_id: str, message: str) -> None:
        with self._lock, self.engine.begin() as conn:
            conn.execute(update(relabel_items_table).where(
                relabel_items_table.c.job_id == job_id, relabel_items_table.c.entry_id == entry_id,
            ).values(state="FAILED"))
            row = conn.execute(select(relabel_jobs_table.c.errors).where(relabel_jobs_table.c.id == job_id)).one()
            errors = list(row.errors)
            if len(errors) < MAX_STORED_ERRORS:
                errors.append({"entry_id": entry_id, "message": message[:500]})
            conn.execute(update(relabel_jobs_table).where(relabel_jobs_table.c.id == job_id).values(
                failed=relabel_jobs_table.c.failed + 1, errors=errors))

    def finish_relabel_job(self, job_id: str, status: str) -> None:
        with self._lock, self.engine.begin() as conn:
            conn.execute(update(relabel_jobs_table).where(relabel_jobs_table.c.id == job_id).values(
                status=status, finished_at=_now_ms()))

    # ---- snapshots ----------------------------------------------------------------------

    def record_snapshot(self, project_id: str, dataset_id: str, snap: ev.SnapshotCreated) -> dict[str, Any]:
        def run(conn: Connection) -> dict[str, Any]:
            self._dataset(conn, project_id, dataset_id)
            existing = conn.execute(select(snapshots_table).where(
                snapshots_table.c.id == snap.snapshot_id, snapshots_table.c.dataset_id == dataset_id)).first()
            if existing is None:
                conn.execute(insert(snapshots_table).values(
                    id=snap.snapshot_id, dataset_id=dataset_id, object_key=snap.object_key,
                    entry_count=snap.entry_count, train_count=snap.train_count, test_count=snap.test_count,
                    size_bytes=snap.size_bytes, pruning_rules=snap.pruning_rules, created_at=_now_ms()))
                self._append(conn, project_id, dataset_id, [(ev.SNAPSHOT_CREATED, snap)])
            row = conn.execute(select(snapshots_table).where(
                snapshots_table.c.id == snap.snapshot_id, snapshots_table.c.dataset_id == dataset_id)).one()
            return dict(row._mapping)

        return self._write(run)

    def snapshots(self, project_id: str, dataset_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            self._dataset(conn, project_id, dataset_id)
            return [dict(r._mapping) for r in conn.execute(select(snapshots_table).where(
                snapshots_table.c.dataset_id == dataset_id).order_by(snapshots_table.c.created_at)).all()]

    def snapshot(self, project_id: str, dataset_id: str, snapshot_id: str) -> dict[str, Any]:
        for s in self.snapshots(project_id, dataset_id):
            if s["id"] == snapshot_id:
                return s
        raise NotFound(f"snapshot {snapshot_id} not found")
