"""The dataset service's projection tables: what its read side looks like in SQL.

The names of tables and columns are the on-disk schema of every existing database (SQLite
embedded, PostgreSQL in production); they change only with a migration. Times are epoch
milliseconds (`now_ms`). Every part of the store reads and writes these through the one
`DatasetStore`, so they share one `MetaData` and are created together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

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
)

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

# The model-registry events already counted into `fine_tune_count`: a redelivery counts once.
seen_events_table = Table(
    "seen_events", projections,
    Column("event_id", String(64), primary_key=True),
)

MAX_STORED_ERRORS = 1000  # what an `errors` column keeps (uploads, relabel jobs); the count goes on


def now_ms() -> float:
    return time.time() * 1000.0


@dataclass(frozen=True)
class DatasetRow:
    """A live dataset as the API shows it: its name, times and counters."""

    id: str
    project_id: str
    name: str
    created_at: float
    updated_at: float
    entry_count: int
    train_count: int
    test_count: int
    fine_tune_count: int
