"""Dataset events (owned by the dataset service), keyed by dataset id on `refinery.datasets`.

A dataset is one aggregate: its events carry consecutive versions, so a consumer sees a
dataset's history in order. Entries travel whole (in batches for uploads and imports), so
downstream consumers never need the dataset service's tables.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from refinery.events.envelope import Envelope

DATASET_CREATED = "dataset.created"
DATASET_DELETED = "dataset.deleted"
ENTRIES_ADDED = "dataset.entries_added"
ENTRY_UPDATED = "dataset.entry_updated"
ENTRY_DELETED = "dataset.entry_deleted"
ENTRY_RELABELED = "dataset.entry_relabeled"
PRUNING_RULE_ADDED = "dataset.pruning_rule_added"
PRUNING_RULE_DELETED = "dataset.pruning_rule_deleted"
IMPORT_RULE_CREATED = "dataset.import_rule_created"
IMPORT_RULE_DELETED = "dataset.import_rule_deleted"
UPLOAD_FINISHED = "dataset.upload_finished"
SNAPSHOT_CREATED = "dataset.snapshot_created"

EntrySource = Literal["api", "upload", "logs", "rule"]


class DatasetCreated(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str


class DatasetDeleted(BaseModel):
    model_config = ConfigDict(frozen=True)


class EntriesAdded(BaseModel):
    """Entries in the documented export shape plus their ids; `source_log_ids` align with
    `entries` when they came from request logs."""

    model_config = ConfigDict(frozen=True)
    source: EntrySource
    entries: list[dict[str, Any]]
    upload_id: str | None = None
    rule_id: str | None = None


class EntryUpdated(BaseModel):
    model_config = ConfigDict(frozen=True)
    entry: dict[str, Any]


class EntryDeleted(BaseModel):
    model_config = ConfigDict(frozen=True)
    entry_id: str


class EntryRelabeled(BaseModel):
    model_config = ConfigDict(frozen=True)
    entry_id: str
    model: str
    output: dict[str, Any]
    rejected_message: dict[str, Any] | None = None
    job_id: str


class PruningRuleAdded(BaseModel):
    model_config = ConfigDict(frozen=True)
    rule_id: str
    text: str


class PruningRuleDeleted(BaseModel):
    model_config = ConfigDict(frozen=True)
    rule_id: str


class ImportRuleCreated(BaseModel):
    model_config = ConfigDict(frozen=True)
    rule_id: str
    filters: list[dict[str, str]]


class ImportRuleDeleted(BaseModel):
    model_config = ConfigDict(frozen=True)
    rule_id: str


class UploadFinished(BaseModel):
    model_config = ConfigDict(frozen=True)
    upload_id: str
    object_key: str
    lines: int
    entries_created: int
    error_count: int
    errors: list[dict[str, Any]] = Field(default_factory=list, description="the first errors, by line number")


class SnapshotCreated(BaseModel):
    """An immutable JSONL copy of the dataset, named by the SHA-256 of its bytes."""

    model_config = ConfigDict(frozen=True)
    snapshot_id: str
    object_key: str
    entry_count: int
    train_count: int
    test_count: int
    size_bytes: int
    pruning_rules: list[str]


def dataset_event(project_id: str, dataset_id: str, version: int, event_type: str, data: BaseModel) -> Envelope:
    return Envelope(
        type=event_type, aggregate_id=dataset_id, version=version, project_id=project_id, data=data.model_dump()
    )
