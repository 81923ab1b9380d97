from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Position(_message.Message):
    __slots__ = ("partition", "offset")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    partition: int
    offset: int
    def __init__(self, partition: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("field", "value", "value_type", "op")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_TYPE_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    field: str
    value: str
    value_type: str
    op: str
    def __init__(self, field: _Optional[str] = ..., value: _Optional[str] = ..., value_type: _Optional[str] = ..., op: _Optional[str] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("project_id", "after", "filters", "limit", "offset")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    after: _containers.RepeatedCompositeFieldContainer[Position]
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    limit: int
    offset: int
    def __init__(self, project_id: _Optional[str] = ..., after: _Optional[_Iterable[_Union[Position, _Mapping]]] = ..., filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("logs_json", "total")
    LOGS_JSON_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    logs_json: bytes
    total: int
    def __init__(self, logs_json: _Optional[bytes] = ..., total: _Optional[int] = ...) -> None: ...

class LatestRequest(_message.Message):
    __slots__ = ("project_id", "after")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    after: _containers.RepeatedCompositeFieldContainer[Position]
    def __init__(self, project_id: _Optional[str] = ..., after: _Optional[_Iterable[_Union[Position, _Mapping]]] = ...) -> None: ...

class LatestResponse(_message.Message):
    __slots__ = ("log_json",)
    LOG_JSON_FIELD_NUMBER: _ClassVar[int]
    log_json: bytes
    def __init__(self, log_json: _Optional[bytes] = ...) -> None: ...

class UpdateMetadataRequest(_message.Message):
    __slots__ = ("project_id", "after", "filters", "patch_json")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    PATCH_JSON_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    after: _containers.RepeatedCompositeFieldContainer[Position]
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    patch_json: bytes
    def __init__(self, project_id: _Optional[str] = ..., after: _Optional[_Iterable[_Union[Position, _Mapping]]] = ..., filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ..., patch_json: _Optional[bytes] = ...) -> None: ...

class UpdateMetadataResponse(_message.Message):
    __slots__ = ("matched_logs",)
    MATCHED_LOGS_FIELD_NUMBER: _ClassVar[int]
    matched_logs: int
    def __init__(self, matched_logs: _Optional[int] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("project_id", "after", "filters", "view")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    after: _containers.RepeatedCompositeFieldContainer[Position]
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    view: str
    def __init__(self, project_id: _Optional[str] = ..., after: _Optional[_Iterable[_Union[Position, _Mapping]]] = ..., filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ..., view: _Optional[str] = ...) -> None: ...

class ExportChunk(_message.Message):
    __slots__ = ("jsonl",)
    JSONL_FIELD_NUMBER: _ClassVar[int]
    jsonl: bytes
    def __init__(self, jsonl: _Optional[bytes] = ...) -> None: ...

class UsageRequest(_message.Message):
    __slots__ = ("project_id", "after", "filters")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    after: _containers.RepeatedCompositeFieldContainer[Position]
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    def __init__(self, project_id: _Optional[str] = ..., after: _Optional[_Iterable[_Union[Position, _Mapping]]] = ..., filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ...) -> None: ...

class UsageRow(_message.Message):
    __slots__ = ("day", "model", "calls", "errors", "prompt_tokens", "completion_tokens", "cost_usd")
    DAY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    day: str
    model: str
    calls: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    def __init__(self, day: _Optional[str] = ..., model: _Optional[str] = ..., calls: _Optional[int] = ..., errors: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class UsageResponse(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    def __init__(self, rows: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ...) -> None: ...

class ProgressRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PartitionProgress(_message.Message):
    __slots__ = ("partition", "done", "high_water")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    HIGH_WATER_FIELD_NUMBER: _ClassVar[int]
    partition: int
    done: int
    high_water: int
    def __init__(self, partition: _Optional[int] = ..., done: _Optional[int] = ..., high_water: _Optional[int] = ...) -> None: ...

class FollowerProgress(_message.Message):
    __slots__ = ("name", "partitions", "set_aside")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    SET_ASIDE_FIELD_NUMBER: _ClassVar[int]
    name: str
    partitions: _containers.RepeatedCompositeFieldContainer[PartitionProgress]
    set_aside: int
    def __init__(self, name: _Optional[str] = ..., partitions: _Optional[_Iterable[_Union[PartitionProgress, _Mapping]]] = ..., set_aside: _Optional[int] = ...) -> None: ...
