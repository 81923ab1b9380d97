"""`POST /models` bodies: checked whole before anything is looked up, so every mistake is a 400.

The SDK's own tests expect a 400 (never a 404) for a bad training config, an unknown dataset
or an unknown base model, so the registry validates the shape first and looks things up after.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

SLUG = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
PROVIDERS = ("openpipe", "openpipeReward", "openai", "gemini")
VARIANTS = ("DPO", "APO Zero")


class InvalidModel(ValueError):
    """The body cannot train a model; the message names the field."""


@dataclass
class TrainingSpec:
    slug: str
    dataset_id: str
    kind: str  # openpipe | openpipeReward
    base_model: str
    enable_sft: bool = True
    enable_preference_tuning: bool = False
    sft: dict[str, Any] = field(default_factory=dict)
    preference: dict[str, Any] = field(default_factory=dict)
    pruning_rule_ids: list[str] | None = None
    default_temperature: float | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # as shown on the model object
    training_config: dict[str, Any] = field(default_factory=dict)


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


def parse_create_model(body: Any) -> TrainingSpec:
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
    spec = TrainingSpec(slug=slug, dataset_id=dataset_id, kind=provider, base_model=base.strip(),
                        training_config=config)
    if provider == "openpipeReward":
        _known(config, {"provider", "baseModel", "hyperparameters"}, "trainingConfig")
        hp = _obj(config.get("hyperparameters"), "trainingConfig.hyperparameters")
        _known(hp, {"batch_size", "learning_rate_multiplier", "num_epochs"}, "trainingConfig.hyperparameters")
        spec.sft = {"batch_size": _batch(hp, "hyperparameters"),
                    "learning_rate_multiplier": _number(hp, "learning_rate_multiplier", "hyperparameters",
                                                        lo=1e-4, hi=100),
                    "num_epochs": _number(hp, "num_epochs", "hyperparameters", lo=1, hi=50, integer=True)}
        spec.enable_sft = False
        spec.hyperparameters = {k: v for k, v in spec.sft.items() if v is not None}
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
        merged_sft = {**{k: legacy[k] for k in ("batch_size", "learning_rate_multiplier", "num_epochs")
                         if k in legacy}, **sft_in}
        spec.sft = {"batch_size": _batch(merged_sft, "sft_hyperparameters"),
                    "learning_rate_multiplier": _number(merged_sft, "learning_rate_multiplier",
                                                        "sft_hyperparameters", lo=1e-4, hi=100),
                    "num_epochs": _number(merged_sft, "num_epochs", "sft_hyperparameters", lo=1, hi=50,
                                          integer=True)}
        merged_pref = {**{k.removeprefix("preference_tuning_"): v for k, v in legacy.items()
                          if k.startswith("preference_tuning_")}, **pref_in}
        variant = merged_pref.get("variant", "DPO")
        if variant not in VARIANTS:
            raise InvalidModel(f"preference_hyperparameters.variant must be one of {', '.join(VARIANTS)}")
        spec.preference = {
            "variant": variant,
            "learning_rate_multiplier": _number(merged_pref, "learning_rate_multiplier",
                                                "preference_hyperparameters", lo=1e-4, hi=100),
            "num_epochs": _number(merged_pref, "num_epochs", "preference_hyperparameters", lo=1, hi=50,
                                  integer=True),
            "training_beta": _number(merged_pref, "training_beta", "preference_hyperparameters", lo=1e-4, hi=10),
            "adapter_weight": _number(merged_pref, "adapter_weight", "preference_hyperparameters", lo=0, hi=10),
        }
        spec.enable_sft, spec.enable_preference_tuning = enable_sft, enable_pref
        shown = {k: v for k, v in merged_sft.items()}
        if enable_pref:
            shown.update({f"preference_tuning_{k}": v for k, v in merged_pref.items()})
        spec.hyperparameters = shown
    rules = body.get("pruningRuleIds")
    if rules is not None:
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            raise InvalidModel("pruningRuleIds must be a list of pruning rule ids")
        spec.pruning_rule_ids = rules
    temp = body.get("defaultTemperature")
    if temp is not None:
        if isinstance(temp, bool) or not isinstance(temp, (int, float)) or not 0 <= temp <= 2:
            raise InvalidModel("defaultTemperature must be a number between 0 and 2")
        spec.default_temperature = float(temp)
    return spec
