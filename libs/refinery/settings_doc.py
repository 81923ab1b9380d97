"""The table of every `REFINERY_*` setting, generated from the services' settings classes.

The README's settings table is this module's output (`python -m refinery.settings_doc`); a unit
test fails when the two differ, so the table cannot drift from what the services read.
"""

from __future__ import annotations

import importlib
import sys

from pydantic_settings import BaseSettings

# (service, module, class): every settings object a Refinery process reads.
SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("refinery (CLI)", "refinery.cli", "CliSettings"),
    ("gateway", "gateway.settings", "GatewaySettings"),
    ("proxy-router", "proxy_router.settings", "ProxyRouterSettings"),
    ("log-ingest", "log_ingest.settings", "LogIngestSettings"),
    ("dataset", "dataset.settings", "DatasetSettings"),
    ("model-registry", "model_registry.settings", "RegistrySettings"),
    ("trainer", "trainer.settings", "TrainerSettings"),
    ("inference", "inference.settings", "InferenceSettings"),
    ("criteria-judge", "criteria_judge.settings", "CriteriaSettings"),
    ("eval", "eval.settings", "EvalSettings"),
    ("retention", "refinery.bus.retention", "RetentionSettings"),
    ("torch (trainer, inference)", "refinery.ml.base_models", "TorchSettings"),
)
COMMON = "refinery.config:ServiceSettings"


def _env_name(cls: type[BaseSettings], name: str) -> str:
    field = cls.model_fields[name]
    if field.alias:
        return field.alias
    return f"{cls.model_config.get('env_prefix', '')}{name}".upper()


def _default(cls: type[BaseSettings], name: str) -> str:
    field = cls.model_fields[name]
    if field.default_factory is not None or field.is_required():
        return "—" if not field.is_required() else "required"
    value = field.default
    return "—" if value is None or value == "" else f"`{value}`"


def _rows(cls: type[BaseSettings], skip: set[str]) -> list[tuple[str, str, str]]:
    return [(_env_name(cls, n), _default(cls, n), (f.description or "").replace("|", "\\|"))
            for n, f in cls.model_fields.items() if n not in skip]


def table() -> str:
    module, _, name = COMMON.partition(":")
    common: type[BaseSettings] = getattr(importlib.import_module(module), name)
    lines = ["| setting | read by | default | what it is |", "|---|---|---|---|"]
    for env, default, text in _rows(common, set()):
        lines.append(f"| `{env}` | every service | {default} | {text} |")
    for service, module, name in SETTINGS:
        cls: type[BaseSettings] = getattr(importlib.import_module(module), name)
        skip = set(common.model_fields) if issubclass(cls, common) else set()
        for env, default, text in _rows(cls, skip):
            lines.append(f"| `{env}` | {service} | {default} | {text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
