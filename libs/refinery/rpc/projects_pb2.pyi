from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProviderSettingsRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class ModelCost(_message.Message):
    __slots__ = ("model", "input_per_mtok", "output_per_mtok")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    model: str
    input_per_mtok: float
    output_per_mtok: float
    def __init__(self, model: _Optional[str] = ..., input_per_mtok: _Optional[float] = ..., output_per_mtok: _Optional[float] = ...) -> None: ...

class Provider(_message.Message):
    __slots__ = ("name", "base_url", "api_key", "model_costs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    MODEL_COSTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    base_url: str
    api_key: str
    model_costs: _containers.RepeatedCompositeFieldContainer[ModelCost]
    def __init__(self, name: _Optional[str] = ..., base_url: _Optional[str] = ..., api_key: _Optional[str] = ..., model_costs: _Optional[_Iterable[_Union[ModelCost, _Mapping]]] = ...) -> None: ...

class ProviderSettingsResponse(_message.Message):
    __slots__ = ("providers",)
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedCompositeFieldContainer[Provider]
    def __init__(self, providers: _Optional[_Iterable[_Union[Provider, _Mapping]]] = ...) -> None: ...
