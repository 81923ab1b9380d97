"""The REST shape of models: `POST /models` bodies checked into typed `CreateModelRequest`s, and
model-registry's typed messages rendered as the API's JSON (the OpenPipe model object, OpenAI's
fine-tuning events and checkpoints, the deprecated `unstable/finetune` object).

A body is checked whole before anything is looked up, so every mistake in it is a 400 (the SDK's own
tests expect a 400, never a 404, for a bad training config); the first mistake found is the message,
naming the field, and the SDK's tests match words of those messages. So the checks are written out in
the order they run rather than left to a schema library, whose messages and order differ. What needs
the registry's state (the dataset, the base model, a taken slug) is the registry's to refuse.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from refinery.rpc import models_pb2

from gateway.error_mapping import InvalidInput
from gateway.rendering import iso

SLUG = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
PROVIDERS = ("openpipe", "openpipeReward", "openai", "gemini")
VARIANTS = ("DPO", "APO Zero")

# The body of POST /models, for the OpenAPI document.
CREATE_SCHEMA = {
    "type": "object",
    "required": ["datasetId", "slug", "trainingConfig"],
    "properties": {
        "datasetId": {"type": "string"},
        "slug": {"type": "string"},
        "pruningRuleIds": {"type": "array", "items": {"type": "string"}},
        "defaultTemperature": {"type": "number"},
        "trainingConfig": {"type": "object", "required": ["provider", "baseModel"], "properties": {
            "provider": {"type": "string", "enum": list(PROVIDERS)},
            "baseModel": {"type": "string"},
            "enable_sft": {"type": "boolean"},
            "enable_preference_tuning": {"type": "boolean"},
            "sft_hyperparameters": {"type": "object"},
            "preference_hyperparameters": {"type": "object"},
            "hyperparameters": {"type": "object"},
        }},
    },
}


class InvalidModel(InvalidInput):
    """The body cannot train a model; the message names the field."""


# ---- requests -----------------------------------------------------------------------------


def _obj(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidModel(f"{name} must be an object")
    return value


def _number(d: dict[str, Any], key: str, name: str, *, lo: float, hi: float, integer: bool = False) -> Any:
    if key not in d or d[key] is None:
        return None
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidModel(f"{name}.{key} must be a number")
    if integer and float(v) != int(v):
        raise InvalidModel(f"{name}.{key} must be a whole number")
    if not lo <= v <= hi:
        raise InvalidModel(f"{name}.{key} must be between {lo:g} and {hi:g}")
    return int(v) if integer else float(v)


def _batch(d: dict[str, Any], name: str) -> Any:
    v = d.get("batch_size")
    if v is None or v == "auto":
        return "auto" if v == "auto" else None
    return _number(d, "batch_size", name, lo=1, hi=1024, integer=True)


def _known(d: dict[str, Any], allowed: set[str], name: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise InvalidModel(f"{name} has unknown fields: {', '.join(unknown)}")


def _sft(d: dict[str, Any], name: str) -> tuple[models_pb2.SftHyperparameters, dict[str, Any]]:
    """The checked SFT parameters, typed and as a dict of those given."""
    given = {"batch_size": _batch(d, name),
             "learning_rate_multiplier": _number(d, "learning_rate_multiplier", name, lo=1e-4, hi=100),
             "num_epochs": _number(d, "num_epochs", name, lo=1, hi=50, integer=True)}
    given = {k: v for k, v in given.items() if v is not None}
    batch = given.get("batch_size")
    return models_pb2.SftHyperparameters(
        batch_size=None if batch in (None, "auto") else batch, auto_batch_size=batch == "auto",
        learning_rate_multiplier=given.get("learning_rate_multiplier"), num_epochs=given.get("num_epochs"),
    ), given


def _preference(d: dict[str, Any]) -> models_pb2.PreferenceHyperparameters:
    name = "preference_hyperparameters"
    variant = d.get("variant", "DPO")
    if variant not in VARIANTS:
        raise InvalidModel(f"{name}.variant must be one of {', '.join(VARIANTS)}")
    return models_pb2.PreferenceHyperparameters(
        variant=variant,
        learning_rate_multiplier=_number(d, "learning_rate_multiplier", name, lo=1e-4, hi=100),
        num_epochs=_number(d, "num_epochs", name, lo=1, hi=50, integer=True),
        training_beta=_number(d, "training_beta", name, lo=1e-4, hi=10),
        adapter_weight=_number(d, "adapter_weight", name, lo=0, hi=10),
    )


def create_request(project_id: str, body: Any) -> models_pb2.CreateModelRequest:
    """The registry's request for a `POST /models` body (JSON as parsed); InvalidModel naming the
    first field that is wrong."""
    if not isinstance(body, dict):
        raise InvalidModel("the body must be a JSON object")
    dataset_id = body.get("datasetId")
    if not isinstance(dataset_id, str) or not dataset_id:
        raise InvalidModel("datasetId is required")
    slug = body.get("slug")
    if not isinstance(slug, str) or not SLUG.match(slug):
        raise InvalidModel("slug must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit")
    config = body.get("trainingConfig")
    if not isinstance(config, dict):
        raise InvalidModel("trainingConfig is required")
    provider = config.get("provider")
    if provider not in PROVIDERS:
        raise InvalidModel(f"trainingConfig.provider must be one of {', '.join(PROVIDERS)}")
    if provider in ("openai", "gemini"):
        raise InvalidModel(f"trainingConfig.provider {provider!r} fine-tunes on a hosted service this "
                           "installation does not use; train an open model with provider 'openpipe'")
    base = config.get("baseModel")
    if not isinstance(base, str) or not base.strip():
        raise InvalidModel("trainingConfig.baseModel is required")
    req = models_pb2.CreateModelRequest(project_id=project_id, slug=slug, dataset_id=dataset_id, kind=provider,
                                        base_model=base.strip(), training_config_json=orjson.dumps(config))
    if provider == "openpipeReward":
        _known(config, {"provider", "baseModel", "hyperparameters"}, "trainingConfig")
        hp = _obj(config.get("hyperparameters"), "trainingConfig.hyperparameters")
        _known(hp, {"batch_size", "learning_rate_multiplier", "num_epochs"}, "trainingConfig.hyperparameters")
        sft, shown = _sft(hp, "hyperparameters")
        req.sft.CopyFrom(sft)
    else:
        _known(config, {"provider", "baseModel", "enable_sft", "enable_preference_tuning", "sft_hyperparameters",
                        "preference_hyperparameters", "hyperparameters"}, "trainingConfig")
        legacy = _obj(config.get("hyperparameters"), "trainingConfig.hyperparameters")
        _known(legacy, {"is_sft_enabled", "batch_size", "learning_rate_multiplier", "num_epochs",
                        "is_preference_tuning_enabled", "preference_tuning_variant",
                        "preference_tuning_learning_rate_multiplier", "preference_tuning_num_epochs",
                        "preference_tuning_training_beta", "preference_tuning_adapter_weight"},
               "trainingConfig.hyperparameters")
        enable_sft = config.get("enable_sft", legacy.get("is_sft_enabled", True))
        enable_pref = config.get("enable_preference_tuning", legacy.get("is_preference_tuning_enabled", False))
        if not isinstance(enable_sft, bool) or not isinstance(enable_pref, bool):
            raise InvalidModel("enable_sft and enable_preference_tuning must be booleans")
        sft_in = _obj(config.get("sft_hyperparameters"), "trainingConfig.sft_hyperparameters")
        _known(sft_in, {"batch_size", "learning_rate_multiplier", "num_epochs"}, "sft_hyperparameters")
        pref_in = _obj(config.get("preference_hyperparameters"), "trainingConfig.preference_hyperparameters")
        _known(pref_in, {"variant", "learning_rate_multiplier", "num_epochs", "training_beta", "adapter_weight"},
               "preference_hyperparameters")
        if pref_in and not enable_pref:
            raise InvalidModel("preference_hyperparameters were given but enable_preference_tuning is false")
        if sft_in and not enable_sft:
            raise InvalidModel("sft_hyperparameters were given but enable_sft is false")
        if not enable_sft and not enable_pref:
            raise InvalidModel("enable_sft and enable_preference_tuning are both false: nothing to train")
        legacy_sft: dict[str, Any] = {k: legacy[k] for k in ("batch_size", "learning_rate_multiplier", "num_epochs")
                                      if k in legacy}
        merged_sft = {**legacy_sft, **sft_in}
        sft, _ = _sft(merged_sft, "sft_hyperparameters")
        legacy_pref = {k.removeprefix("preference_tuning_"): v for k, v in legacy.items()
                       if k.startswith("preference_tuning_")}
        merged_pref: dict[str, Any] = {**legacy_pref, **pref_in}
        req.sft.CopyFrom(sft)
        req.preference.CopyFrom(_preference(merged_pref))
        req.enable_sft, req.enable_preference_tuning = enable_sft, enable_pref
        shown = dict(merged_sft)  # as the caller wrote them
        if enable_pref:
            shown.update({f"preference_tuning_{k}": v for k, v in merged_pref.items()})
    req.hyperparameters_json = orjson.dumps(shown)
    rules = body.get("pruningRuleIds")
    if rules is not None:
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            raise InvalidModel("pruningRuleIds must be a list of pruning rule ids")
        req.pruning_rule_ids.ids.extend(rules)
        req.pruning_rule_ids.SetInParent()  # given, even when empty: no rules rather than the dataset's
    temp = body.get("defaultTemperature")
    if temp is not None:
        if isinstance(temp, bool) or not isinstance(temp, (int, float)) or not 0 <= temp <= 2:
            raise InvalidModel("defaultTemperature must be a number between 0 and 2")
        req.default_temperature = float(temp)
    return req


def finetune_create_body(body: Any) -> dict[str, Any]:
    """A deprecated `unstable/finetune/create` body as a `POST /models` body."""
    if not isinstance(body, dict):
        body = {}
    overrides = body.get("overrides") or {}
    return {"datasetId": body.get("datasetId"), "slug": body.get("slug"), "trainingConfig": {
        "provider": "openpipe", "baseModel": body.get("baseModel"),
        **({"hyperparameters": overrides} if isinstance(overrides, dict) and overrides else {})}}


# ---- responses ----------------------------------------------------------------------------


def _optional(message: Any, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


def model_out(m: models_pb2.Model) -> dict[str, Any]:
    """The documented model object (id = slug), plus Refinery's own details under `refinery`."""
    return {
        "id": m.slug, "name": m.slug, "object": "model", "description": None,
        "created": iso(m.created_at), "updated": iso(m.updated_at),
        "openpipe": {"baseModel": m.base_model, "hyperparameters": orjson.Fragment(m.hyperparameters_json or b"{}"),
                     "status": m.status, "datasetId": m.dataset_id, "errorMessage": _optional(m, "error_message")},
        "contextWindow": 8192, "maxCompletionTokens": 2048, "capabilities": ["chat", "tools", "json"],
        "pricing": {"chatIn": 0.0, "chatOut": 0.0}, "owned_by": "refinery",
        "refinery": {"modelId": m.id, "trainingConfig": orjson.Fragment(m.training_config_json or b"{}"),
                     "defaultTemperature": _optional(m, "default_temperature"), "pruningRules": list(m.pruning_rules),
                     "snapshotId": m.snapshot_id, "metrics": orjson.Fragment(m.metrics_json or b"{}")},
    }


def event_out(e: models_pb2.TrainingEvent) -> dict[str, Any]:
    """A training event in the shape of OpenAI's fine-tuning job events."""
    return {"object": "fine_tuning.job.event", "id": e.id, "created_at": int(e.created_at / 1000), "level": e.level,
            "message": e.message, "type": e.type, "data": orjson.Fragment(e.data_json or b"{}")}


def checkpoint_out(slug: str, c: models_pb2.Checkpoint) -> dict[str, Any]:
    """A checkpoint in the shape of OpenAI's fine-tuning job checkpoints."""
    return {"object": "fine_tuning.job.checkpoint", "id": c.checkpoint_key, "created_at": int(c.created_at / 1000),
            "fine_tuned_model_checkpoint": f"{slug}:{c.phase}:epoch-{c.epoch}", "step_number": c.step,
            "phase": c.phase, "epoch": c.epoch}


_UNSTABLE_STATUS = {"QUEUED": "PENDING", "PROVISIONING": "TRANSFERRING_TRAINING_DATA"}


def finetune_out(m: models_pb2.Model) -> dict[str, Any]:
    """The deprecated `unstable/finetune` object (id = the model id)."""
    return {"id": m.id, "status": _UNSTABLE_STATUS.get(m.status, m.status), "slug": m.slug,
            "baseModel": m.base_model, "errorMessage": _optional(m, "error_message"), "datasetId": m.dataset_id,
            "createdAt": iso(m.created_at)}
