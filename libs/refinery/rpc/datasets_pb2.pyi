from refinery.rpc import logs_pb2 as _logs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Dataset(_message.Message):
    __slots__ = ("id", "name", "created_at", "updated_at", "entry_count", "fine_tune_count", "train_count", "test_count")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ENTRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    FINE_TUNE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TRAIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    TEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    created_at: float
    updated_at: float
    entry_count: int
    fine_tune_count: int
    train_count: int
    test_count: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., entry_count: _Optional[int] = ..., fine_tune_count: _Optional[int] = ..., train_count: _Optional[int] = ..., test_count: _Optional[int] = ...) -> None: ...

class DatasetRef(_message.Message):
    __slots__ = ("project_id", "dataset_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    dataset_id: str
    def __init__(self, project_id: _Optional[str] = ..., dataset_id: _Optional[str] = ...) -> None: ...

class CreateDatasetRequest(_message.Message):
    __slots__ = ("project_id", "name")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    name: str
    def __init__(self, project_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ...) -> None: ...

class DeleteDatasetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AddEntriesRequest(_message.Message):
    __slots__ = ("project_id", "dataset_id", "entries_json")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_JSON_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    dataset_id: str
    entries_json: bytes
    def __init__(self, project_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., entries_json: _Optional[bytes] = ...) -> None: ...

class EntryError(_message.Message):
    __slots__ = ("index", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    message: str
    def __init__(self, index: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class AddEntriesResponse(_message.Message):
    __slots__ = ("entries_created", "errors")
    ENTRIES_CREATED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    entries_created: int
    errors: _containers.RepeatedCompositeFieldContainer[EntryError]
    def __init__(self, entries_created: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[EntryError, _Mapping]]] = ...) -> None: ...

class MetadataFilter(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class ListEntriesRequest(_message.Message):
    __slots__ = ("project_id", "dataset_id", "split", "metadata", "limit", "offset")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    dataset_id: str
    split: str
    metadata: _containers.RepeatedCompositeFieldContainer[MetadataFilter]
    limit: int
    offset: int
    def __init__(self, project_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., split: _Optional[str] = ..., metadata: _Optional[_Iterable[_Union[MetadataFilter, _Mapping]]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListEntriesResponse(_message.Message):
    __slots__ = ("entries_json", "total")
    ENTRIES_JSON_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    entries_json: bytes
    total: int
    def __init__(self, entries_json: _Optional[bytes] = ..., total: _Optional[int] = ...) -> None: ...

class EntryRef(_message.Message):
    __slots__ = ("project_id", "dataset_id", "entry_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    dataset_id: str
    entry_id: str
    def __init__(self, project_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., entry_id: _Optional[str] = ...) -> None: ...

class EntryResponse(_message.Message):
    __slots__ = ("entry_json",)
    ENTRY_JSON_FIELD_NUMBER: _ClassVar[int]
    entry_json: bytes
    def __init__(self, entry_json: _Optional[bytes] = ...) -> None: ...

class UpdateEntryRequest(_message.Message):
    __slots__ = ("project_id", "dataset_id", "entry_id", "patch_json")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    PATCH_JSON_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    dataset_id: str
    entry_id: str
    patch_json: bytes
    def __init__(self, project_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., entry_id: _Optional[str] = ..., patch_json: _Optional[bytes] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("project_id", "dataset_id", "filename", "data")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    dataset_id: str
    filename: str
    data: bytes
    def __init__(self, project_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., filename: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadRef(_message.Message):
    __slots__ = ("project_id", "dataset_id", "upload_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    dataset_id: str
    upload_id: str
    def __init__(self, project_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., upload_id: _Optional[str] = ...) -> None: ...

class Upload(_message.Message):
    __slots__ = ("id", "dataset_id", "status", "filename", "bytes_total", "bytes_processed", "lines_processed", "entries_created", "error_count", "errors_json", "error_message", "created_at", "finished_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    LINES_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_CREATED_FIELD_NUMBER: _ClassVar[int]
    ERROR_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    dataset_id: str
    status: str
    filename: str
    bytes_total: int
    bytes_processed: int
    lines_processed: int
    entries_created: int
    error_count: int
    errors_json: bytes
    error_message: str
    created_at: float
    finished_at: float
    def __init__(self, id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., status: _Optional[str] = ..., filename: _Optional[str] = ..., bytes_total: _Optional[int] = ..., bytes_processed: _Optional[int] = ..., lines_processed: _Optional[int] = ..., entries_created: _Optional[int] = ..., error_count: _Optional[int] = ..., errors_json: _Optional[bytes] = ..., error_message: _Optional[str] = ..., created_at: _Optional[float] = ..., finished_at: _Optional[float] = ...) -> None: ...

class ImportLogsRequest(_message.Message):
    __slots__ = ("project_id", "dataset_id", "filters", "after", "standing")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    STANDING_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    dataset_id: str
    filters: _containers.RepeatedCompositeFieldContainer[_logs_pb2.Filter]
    after: _containers.RepeatedCompositeFieldContainer[_logs_pb2.Position]
    standing: bool
    def __init__(self, project_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., filters: _Optional[_Iterable[_Union[_logs_pb2.Filter, _Mapping]]] = ..., after: _Optional[_Iterable[_Union[_logs_pb2.Position, _Mapping]]] = ..., standing: _Optional[bool] = ...) -> None: ...

class ImportLogsResponse(_message.Message):
    __slots__ = ("imported", "skipped_errored", "skipped_duplicates", "skipped_invalid", "rule_id")
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_ERRORED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_INVALID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    imported: int
    skipped_errored: int
    skipped_duplicates: int
    skipped_invalid: int
    rule_id: str
    def __init__(self, imported: _Optional[int] = ..., skipped_errored: _Optional[int] = ..., skipped_duplicates: _Optional[int] = ..., skipped_invalid: _Optional[int] = ..., rule_id: _Optional[str] = ...) -> None: ...

class ImportRule(_message.Message):
    __slots__ = ("id", "dataset_id", "filters", "created_at", "imported")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    id: str
    dataset_id: str
    filters: _containers.RepeatedCompositeFieldContainer[_logs_pb2.Filter]
    created_at: float
    imported: int
    def __init__(self, id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., filters: _Optional[_Iterable[_Union[_logs_pb2.Filter, _Mapping]]] = ..., created_at: _Optional[float] = ..., imported: _Optional[int] = ...) -> None: ...

class ImportRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[ImportRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[ImportRule, _Mapping]]] = ...) -> None: ...

class RuleRef(_message.Message):
    __slots__ = ("project_id", "dataset_id", "rule_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    dataset_id: str
    rule_id: str
    def __init__(self, project_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., rule_id: _Optional[str] = ...) -> None: ...

class ExportEntriesRequest(_message.Message):
    __slots__ = ("project_id", "dataset_id", "split")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    dataset_id: str
    split: str
    def __init__(self, project_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., split: _Optional[str] = ...) -> None: ...

class JsonlChunk(_message.Message):
    __slots__ = ("jsonl",)
    JSONL_FIELD_NUMBER: _ClassVar[int]
    jsonl: bytes
    def __init__(self, jsonl: _Optional[bytes] = ...) -> None: ...

class PruningRule(_message.Message):
    __slots__ = ("id", "text", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    created_at: float
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., created_at: _Optional[float] = ...) -> None: ...

class AddPruningRuleRequest(_message.Message):
    __slots__ = ("project_id", "dataset_id", "text")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    dataset_id: str
    text: str
    def __init__(self, project_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class PruningRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[PruningRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[PruningRule, _Mapping]]] = ...) -> None: ...

class RelabelRequest(_message.Message):
    __slots__ = ("project_id", "dataset_id", "model", "entry_ids", "split", "keep_original_as_rejected", "concurrency")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENTRY_IDS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    KEEP_ORIGINAL_AS_REJECTED_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    dataset_id: str
    model: str
    entry_ids: _containers.RepeatedScalarFieldContainer[str]
    split: str
    keep_original_as_rejected: bool
    concurrency: int
    def __init__(self, project_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., model: _Optional[str] = ..., entry_ids: _Optional[_Iterable[str]] = ..., split: _Optional[str] = ..., keep_original_as_rejected: _Optional[bool] = ..., concurrency: _Optional[int] = ...) -> None: ...

class RelabelJob(_message.Message):
    __slots__ = ("id", "dataset_id", "status", "model", "total", "done", "failed", "errors_json", "created_at", "finished_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    dataset_id: str
    status: str
    model: str
    total: int
    done: int
    failed: int
    errors_json: bytes
    created_at: float
    finished_at: float
    def __init__(self, id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., status: _Optional[str] = ..., model: _Optional[str] = ..., total: _Optional[int] = ..., done: _Optional[int] = ..., failed: _Optional[int] = ..., errors_json: _Optional[bytes] = ..., created_at: _Optional[float] = ..., finished_at: _Optional[float] = ...) -> None: ...

class RelabelJobRef(_message.Message):
    __slots__ = ("project_id", "dataset_id", "job_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    dataset_id: str
    job_id: str
    def __init__(self, project_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("id", "dataset_id", "object_key", "entry_count", "train_count", "test_count", "size_bytes", "pruning_rules", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    TRAIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    TEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PRUNING_RULES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    dataset_id: str
    object_key: str
    entry_count: int
    train_count: int
    test_count: int
    size_bytes: int
    pruning_rules: _containers.RepeatedScalarFieldContainer[str]
    created_at: float
    def __init__(self, id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., object_key: _Optional[str] = ..., entry_count: _Optional[int] = ..., train_count: _Optional[int] = ..., test_count: _Optional[int] = ..., size_bytes: _Optional[int] = ..., pruning_rules: _Optional[_Iterable[str]] = ..., created_at: _Optional[float] = ...) -> None: ...

class SnapshotsResponse(_message.Message):
    __slots__ = ("snapshots",)
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[Snapshot]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ...) -> None: ...

class SnapshotRef(_message.Message):
    __slots__ = ("project_id", "dataset_id", "snapshot_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    dataset_id: str
    snapshot_id: str
    def __init__(self, project_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., snapshot_id: _Optional[str] = ...) -> None: ...
