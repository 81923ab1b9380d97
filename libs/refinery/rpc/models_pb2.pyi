from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateModelRequest(_message.Message):
    __slots__ = ("project_id", "body_json")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_JSON_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    body_json: bytes
    def __init__(self, project_id: _Optional[str] = ..., body_json: _Optional[bytes] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("project_id", "slug")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    slug: str
    def __init__(self, project_id: _Optional[str] = ..., slug: _Optional[str] = ...) -> None: ...

class ModelResponse(_message.Message):
    __slots__ = ("model_json",)
    MODEL_JSON_FIELD_NUMBER: _ClassVar[int]
    model_json: bytes
    def __init__(self, model_json: _Optional[bytes] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models_json",)
    MODELS_JSON_FIELD_NUMBER: _ClassVar[int]
    models_json: bytes
    def __init__(self, models_json: _Optional[bytes] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class TrainingEventsResponse(_message.Message):
    __slots__ = ("events_json",)
    EVENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    events_json: bytes
    def __init__(self, events_json: _Optional[bytes] = ...) -> None: ...

class CheckpointsResponse(_message.Message):
    __slots__ = ("checkpoints_json",)
    CHECKPOINTS_JSON_FIELD_NUMBER: _ClassVar[int]
    checkpoints_json: bytes
    def __init__(self, checkpoints_json: _Optional[bytes] = ...) -> None: ...

class Resolution(_message.Message):
    __slots__ = ("found", "status", "model_id", "default_temperature", "has_default_temperature")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    HAS_DEFAULT_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    found: bool
    status: str
    model_id: str
    default_temperature: float
    has_default_temperature: bool
    def __init__(self, found: _Optional[bool] = ..., status: _Optional[str] = ..., model_id: _Optional[str] = ..., default_temperature: _Optional[float] = ..., has_default_temperature: _Optional[bool] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("model_id", "project_id", "slug", "base_model", "adapter_key", "pruning_rules")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_KEY_FIELD_NUMBER: _ClassVar[int]
    PRUNING_RULES_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    project_id: str
    slug: str
    base_model: str
    adapter_key: str
    pruning_rules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_id: _Optional[str] = ..., project_id: _Optional[str] = ..., slug: _Optional[str] = ..., base_model: _Optional[str] = ..., adapter_key: _Optional[str] = ..., pruning_rules: _Optional[_Iterable[str]] = ...) -> None: ...

class DeploymentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeploymentsResponse(_message.Message):
    __slots__ = ("deployments",)
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ...) -> None: ...
