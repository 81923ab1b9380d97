from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SftHyperparameters(_message.Message):
    __slots__ = ("batch_size", "auto_batch_size", "learning_rate_multiplier", "num_epochs")
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    AUTO_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    NUM_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    auto_batch_size: bool
    learning_rate_multiplier: float
    num_epochs: int
    def __init__(self, batch_size: _Optional[int] = ..., auto_batch_size: _Optional[bool] = ..., learning_rate_multiplier: _Optional[float] = ..., num_epochs: _Optional[int] = ...) -> None: ...

class PreferenceHyperparameters(_message.Message):
    __slots__ = ("variant", "learning_rate_multiplier", "num_epochs", "training_beta", "adapter_weight")
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    NUM_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_BETA_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    variant: str
    learning_rate_multiplier: float
    num_epochs: int
    training_beta: float
    adapter_weight: float
    def __init__(self, variant: _Optional[str] = ..., learning_rate_multiplier: _Optional[float] = ..., num_epochs: _Optional[int] = ..., training_beta: _Optional[float] = ..., adapter_weight: _Optional[float] = ...) -> None: ...

class PruningRuleIds(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateModelRequest(_message.Message):
    __slots__ = ("project_id", "slug", "dataset_id", "kind", "base_model", "enable_sft", "enable_preference_tuning", "sft", "preference", "pruning_rule_ids", "default_temperature", "hyperparameters_json", "training_config_json")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    ENABLE_SFT_FIELD_NUMBER: _ClassVar[int]
    ENABLE_PREFERENCE_TUNING_FIELD_NUMBER: _ClassVar[int]
    SFT_FIELD_NUMBER: _ClassVar[int]
    PREFERENCE_FIELD_NUMBER: _ClassVar[int]
    PRUNING_RULE_IDS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    TRAINING_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    slug: str
    dataset_id: str
    kind: str
    base_model: str
    enable_sft: bool
    enable_preference_tuning: bool
    sft: SftHyperparameters
    preference: PreferenceHyperparameters
    pruning_rule_ids: PruningRuleIds
    default_temperature: float
    hyperparameters_json: bytes
    training_config_json: bytes
    def __init__(self, project_id: _Optional[str] = ..., slug: _Optional[str] = ..., dataset_id: _Optional[str] = ..., kind: _Optional[str] = ..., base_model: _Optional[str] = ..., enable_sft: _Optional[bool] = ..., enable_preference_tuning: _Optional[bool] = ..., sft: _Optional[_Union[SftHyperparameters, _Mapping]] = ..., preference: _Optional[_Union[PreferenceHyperparameters, _Mapping]] = ..., pruning_rule_ids: _Optional[_Union[PruningRuleIds, _Mapping]] = ..., default_temperature: _Optional[float] = ..., hyperparameters_json: _Optional[bytes] = ..., training_config_json: _Optional[bytes] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("project_id", "slug")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    slug: str
    def __init__(self, project_id: _Optional[str] = ..., slug: _Optional[str] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("id", "slug", "dataset_id", "base_model", "status", "error_message", "default_temperature", "pruning_rules", "snapshot_id", "created_at", "updated_at", "hyperparameters_json", "training_config_json", "metrics_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    PRUNING_RULES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    TRAINING_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    METRICS_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    slug: str
    dataset_id: str
    base_model: str
    status: str
    error_message: str
    default_temperature: float
    pruning_rules: _containers.RepeatedScalarFieldContainer[str]
    snapshot_id: str
    created_at: float
    updated_at: float
    hyperparameters_json: bytes
    training_config_json: bytes
    metrics_json: bytes
    def __init__(self, id: _Optional[str] = ..., slug: _Optional[str] = ..., dataset_id: _Optional[str] = ..., base_model: _Optional[str] = ..., status: _Optional[str] = ..., error_message: _Optional[str] = ..., default_temperature: _Optional[float] = ..., pruning_rules: _Optional[_Iterable[str]] = ..., snapshot_id: _Optional[str] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., hyperparameters_json: _Optional[bytes] = ..., training_config_json: _Optional[bytes] = ..., metrics_json: _Optional[bytes] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class TrainingEvent(_message.Message):
    __slots__ = ("id", "created_at", "level", "message", "type", "data_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    created_at: float
    level: str
    message: str
    type: str
    data_json: bytes
    def __init__(self, id: _Optional[str] = ..., created_at: _Optional[float] = ..., level: _Optional[str] = ..., message: _Optional[str] = ..., type: _Optional[str] = ..., data_json: _Optional[bytes] = ...) -> None: ...

class TrainingEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[TrainingEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[TrainingEvent, _Mapping]]] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("checkpoint_key", "created_at", "phase", "epoch", "step")
    CHECKPOINT_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    checkpoint_key: str
    created_at: float
    phase: str
    epoch: int
    step: int
    def __init__(self, checkpoint_key: _Optional[str] = ..., created_at: _Optional[float] = ..., phase: _Optional[str] = ..., epoch: _Optional[int] = ..., step: _Optional[int] = ...) -> None: ...

class CheckpointsResponse(_message.Message):
    __slots__ = ("checkpoints",)
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    checkpoints: _containers.RepeatedCompositeFieldContainer[Checkpoint]
    def __init__(self, checkpoints: _Optional[_Iterable[_Union[Checkpoint, _Mapping]]] = ...) -> None: ...

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
