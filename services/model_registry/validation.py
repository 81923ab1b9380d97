"""What the registry checks of a typed `CreateModelRequest` itself, and the training parameters it
hands the trainer.

The REST body is the gateway's to validate (`gateway.models_wire`: every mistake in it a 400 naming
the field); what arrives here is typed and shaped. The registry still refuses a request it could
not train, whoever sent it, and keeps the rules that need its state (the dataset, the base model, a
taken slug) in the servicer.
"""

from __future__ import annotations

from typing import Any

from refinery.rpc import models_pb2

KINDS = ("openpipe", "openpipeReward")


class InvalidModel(ValueError):
    """The request cannot train a model; the message says why."""


def check_create(request: models_pb2.CreateModelRequest) -> None:
    if request.kind not in KINDS:
        raise InvalidModel(f"kind must be one of {', '.join(KINDS)}")
    if not request.slug or not request.dataset_id or not request.base_model:
        raise InvalidModel("slug, dataset_id and base_model are required")
    if request.kind == "openpipe" and not (request.enable_sft or request.enable_preference_tuning):
        raise InvalidModel("enable_sft and enable_preference_tuning are both false: nothing to train")


def sft_params(s: models_pb2.SftHyperparameters) -> dict[str, Any]:
    """The SFT parameters given, as the trainer's event carries them (`batch_size` may be "auto")."""
    out: dict[str, Any] = {}
    if s.auto_batch_size:
        out["batch_size"] = "auto"
    elif s.HasField("batch_size"):
        out["batch_size"] = s.batch_size
    for name in ("learning_rate_multiplier", "num_epochs"):
        if s.HasField(name):
            out[name] = getattr(s, name)
    return out


def preference_params(request: models_pb2.CreateModelRequest) -> dict[str, Any]:
    """The preference-tuning parameters given (with their variant), as the trainer's event carries
    them; none for a reward model."""
    if not request.HasField("preference"):
        return {}
    p = request.preference
    out: dict[str, Any] = {"variant": p.variant or "DPO"}
    for name in ("learning_rate_multiplier", "num_epochs", "training_beta", "adapter_weight"):
        if p.HasField(name):
            out[name] = getattr(p, name)
    return out
