from refinery.rpc import logs_pb2 as _logs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PendingLogsRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class PendingLogsResponse(_message.Message):
    __slots__ = ("positions", "spooled")
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    SPOOLED_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedCompositeFieldContainer[_logs_pb2.Position]
    spooled: bool
    def __init__(self, positions: _Optional[_Iterable[_Union[_logs_pb2.Position, _Mapping]]] = ..., spooled: _Optional[bool] = ...) -> None: ...
