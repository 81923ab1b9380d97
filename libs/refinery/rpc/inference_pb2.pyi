from refinery.rpc import models_pb2 as _models_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class LoadResult(_message.Message):
    __slots__ = ("load_seconds",)
    LOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    load_seconds: float
    def __init__(self, load_seconds: _Optional[float] = ...) -> None: ...

class AdapterRef(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class Unloaded(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
