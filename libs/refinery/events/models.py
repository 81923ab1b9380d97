"""Model and training events, keyed by model id on `refinery.models`.

The registry writes `model.*` and `training.requested` / `training.cancel_requested`; the
trainer answers with `training.*` progress and outcome events. One topic keeps a model's whole
life in order on one partition.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from refinery.events.envelope import Envelope

MODEL_CREATED = "model.created"
MODEL_STATUS_CHANGED = "model.status_changed"
MODEL_DEPLOYED = "model.deployed"
MODEL_DELETED = "model.deleted"
TRAINING_REQUESTED = "training.requested"
TRAINING_CANCEL_REQUESTED = "training.cancel_requested"
TRAINING_STARTED = "training.started"
TRAINING_PROGRESSED = "training.progressed"
TRAINING_CHECKPOINT_SAVED = "training.checkpoint_saved"
TRAINING_COMPLETED = "training.completed"
TRAINING_FAILED = "training.failed"
TRAINING_REQUEUED = "training.requeued"


class ModelCreated(BaseModel):
    model_config = ConfigDict(frozen=True)
    slug: str
    dataset_id: str
    base_model: str
    training_config: dict[str, Any]
    default_temperature: float | None = None
    pruning_rules: list[str] = Field(default_factory=list)


class ModelStatusChanged(BaseModel):
    model_config = ConfigDict(frozen=True)
    status: str
    error_message: str | None = None


class ModelDeployed(BaseModel):
    model_config = ConfigDict(frozen=True)
    adapter_key: str
    base_model: str
    # Added later (absent in older events): which model it is, for consumers that keep no model table.
    slug: str | None = None
    dataset_id: str | None = None


class ModelDeleted(BaseModel):
    model_config = ConfigDict(frozen=True)
    slug: str
    dataset_id: str | None = None  # the dataset it was trained on (absent in events before this field)


class TrainingRequested(BaseModel):
    """Everything the trainer needs, so it never reads another service's tables."""

    model_config = ConfigDict(frozen=True)
    slug: str
    kind: str  # "openpipe" (SFT and/or DPO) or "openpipeReward"
    base_model: str  # a Hugging Face id or local path
    init_adapter_key: str | None = None  # when the base is a model trained here
    snapshot_key: str
    snapshot_id: str
    pruning_rules: list[str] = Field(default_factory=list)
    enable_sft: bool = True
    enable_preference_tuning: bool = False
    sft: dict[str, Any] = Field(default_factory=dict)
    preference: dict[str, Any] = Field(default_factory=dict)
    attempt: int = 1


class TrainingCancelRequested(BaseModel):
    model_config = ConfigDict(frozen=True)


class TrainingStarted(BaseModel):
    model_config = ConfigDict(frozen=True)
    attempt: int
    train_rows: int
    test_rows: int
    phase: str  # sft, dpo, reward


class TrainingProgressed(BaseModel):
    """One optimiser step (or an evaluation): the shape of OpenAI's fine-tuning metrics."""

    model_config = ConfigDict(frozen=True)
    phase: str
    step: int
    total_steps: int
    epoch: float
    train_loss: float | None = None
    token_accuracy: float | None = None
    valid_loss: float | None = None


class TrainingCheckpointSaved(BaseModel):
    model_config = ConfigDict(frozen=True)
    phase: str
    epoch: int
    step: int
    checkpoint_key: str


class TrainingCompleted(BaseModel):
    model_config = ConfigDict(frozen=True)
    adapter_key: str
    metrics: dict[str, Any] = Field(default_factory=dict)


class TrainingFailed(BaseModel):
    model_config = ConfigDict(frozen=True)
    error_message: str
    cancelled: bool = False


class TrainingRequeued(BaseModel):
    """An attempt ended without an outcome (the trainer crashed or was stopped) and the job waits
    to run again; `attempt` is the one that ended, of at most `max_attempts`."""

    model_config = ConfigDict(frozen=True)
    attempt: int
    max_attempts: int
    reason: str


def model_event(project_id: str, model_id: str, version: int, event_type: str, data: BaseModel) -> Envelope:
    return Envelope(type=event_type, aggregate_id=model_id, version=version, project_id=project_id,
                    data=data.model_dump())
