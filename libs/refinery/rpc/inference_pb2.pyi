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

class RewardRequest(_message.Message):
    __slots__ = ("model_id", "messages_json", "tools_json")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_JSON_FIELD_NUMBER: _ClassVar[int]
    TOOLS_JSON_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    messages_json: bytes
    tools_json: bytes
    def __init__(self, model_id: _Optional[str] = ..., messages_json: _Optional[bytes] = ..., tools_json: _Optional[bytes] = ...) -> None: ...

class RewardResponse(_message.Message):
    __slots__ = ("reward", "score", "tokens")
    REWARD_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    reward: float
    score: float
    tokens: int
    def __init__(self, reward: _Optional[float] = ..., score: _Optional[float] = ..., tokens: _Optional[int] = ...) -> None: ...
