"""What an eval is allowed to be: its type, its name, its models and what each type needs.

Pure checks with no I/O, shared by the servicer (which refuses bad requests with INVALID_ARGUMENT
before anything is read or written) and the store. Messages name the field; the NOT_FOUND messages
are the ones the proto promises ("Eval <id> not found", ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

from refinery.events.evals import EvalType

TYPES: tuple[EvalType, ...] = ("head_to_head", "criterion", "code")
DATASET_MODEL = "dataset"  # the pseudo-model whose output is the row's own dataset output
OPENPIPE_PREFIX = "openpipe:"
MAX_NAME_CHARS = 200
MAX_MODEL_CHARS = 300
MAX_INSTRUCTIONS_CHARS = 20_000
MAX_GRADER_CHARS = 100_000
MAX_MODELS = 20

Status = Literal["QUEUED", "RUNNING", "COMPLETED", "ERROR"]
AddReason = Literal["request", "auto"]  # asked for, or added on reaching DEPLOYED
OPEN: tuple[Status, ...] = ("QUEUED", "RUNNING")


class Invalid(ValueError):
    """The request is not a valid eval (the message names the field)."""


class NotFound(KeyError):
    """No such eval, dataset, model or criterion in the project (the message is what the caller sees)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class Unavailable(Exception):
    """A service the request needs (dataset, model-registry, criteria-judge, the sandbox) did not answer."""


def eval_not_found(eval_id: str) -> NotFound:
    return NotFound(f"Eval {eval_id} not found")


def dataset_not_found(dataset_id: str) -> NotFound:
    return NotFound(f"Dataset {dataset_id} not found")


def model_not_found(slug: str) -> NotFound:
    return NotFound(f"Model {slug} not found")


def check_type(value: str) -> EvalType:
    if value not in TYPES:
        shown = repr(value) if value else "missing"
        raise Invalid(f"type must be head_to_head, criterion or code (got {shown})")
    return cast(EvalType, value)


def check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise Invalid("name is required")
    if len(name) > MAX_NAME_CHARS:
        raise Invalid(f"name is longer than {MAX_NAME_CHARS} characters")
    return name


def check_models(models: Sequence[str], *, already: Sequence[str] = ()) -> list[str]:
    """The models as given (stripped), each once and none already in the eval."""
    out: list[str] = []
    for raw in models:
        model = raw.strip()
        if not model:
            raise Invalid("models must not contain an empty name")
        if len(model) > MAX_MODEL_CHARS:
            raise Invalid(f"model {model[:40]}... is longer than {MAX_MODEL_CHARS} characters")
        if model == OPENPIPE_PREFIX:
            raise Invalid(f"model {model!r} names no model after 'openpipe:'")
        if model in out:
            raise Invalid(f"model {model} is listed twice")
        if model in already:
            raise Invalid(f"model {model} is already in this eval")
        out.append(model)
    if len(out) + len(already) > MAX_MODELS:
        raise Invalid(f"an eval compares at most {MAX_MODELS} models")
    return out


def openpipe_slug(model: str) -> str | None:
    """The slug of a model fine-tuned in the project (`openpipe:<slug>`); None for any other model,
    external providers' `openpipe:<provider>/<model>` included."""
    if not model.startswith(OPENPIPE_PREFIX):
        return None
    rest = model[len(OPENPIPE_PREFIX):]
    return rest if rest and "/" not in rest else None


@dataclass(frozen=True)
class Spec:
    """A checked eval definition, before its rows are read."""

    name: str
    dataset_id: str
    type: EvalType
    models: list[str]
    judge_model: str
    instructions: str
    criterion: str
    grader: str
    auto_add_models: bool


def check_spec(*, name: str, dataset_id: str, type_: str, models: Sequence[str], judge_model: str,
               instructions: str, criterion: str, grader: str, auto_add_models: bool,
               default_judge_model: str) -> Spec:
    """Everything about a new eval that needs no other service; Invalid naming the first bad field."""
    kind = check_type(type_)
    checked_name = check_name(name)
    dataset_id = dataset_id.strip()
    if not dataset_id:
        raise Invalid("datasetId is required")
    if not models:
        raise Invalid("models must name at least one model")
    listed = check_models(models)
    if kind == "head_to_head" and len(listed) < 2:
        raise Invalid("a head_to_head eval needs at least 2 models")
    judge_model, criterion = judge_model.strip(), criterion.strip()
    if kind != "head_to_head" and (judge_model or instructions.strip()):
        raise Invalid("judgeModel and instructions apply to head_to_head evals only")
    if kind != "criterion" and criterion:
        raise Invalid("criterion applies to criterion evals only")
    if kind != "code" and grader.strip():
        raise Invalid("grader applies to code evals only")
    if kind == "head_to_head":
        judge_model = judge_model or default_judge_model
        if len(judge_model) > MAX_MODEL_CHARS:
            raise Invalid(f"judgeModel is longer than {MAX_MODEL_CHARS} characters")
        if len(instructions) > MAX_INSTRUCTIONS_CHARS:
            raise Invalid(f"instructions are longer than {MAX_INSTRUCTIONS_CHARS} characters")
    if kind == "criterion" and not criterion:
        raise Invalid("criterion is required for a criterion eval (a criterion name or name@vN)")
    if kind == "code":
        if not grader.strip():
            raise Invalid("grader is required for a code eval (TypeScript defining `function grader(args)`)")
        if len(grader) > MAX_GRADER_CHARS:
            raise Invalid(f"grader is longer than {MAX_GRADER_CHARS} characters")
    return Spec(checked_name, dataset_id, kind, listed, judge_model, instructions if kind == "head_to_head" else "",
                criterion, grader if kind == "code" else "", auto_add_models)


def pairs(models: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair of models once, the earlier-added first: what a head-to-head row compares."""
    return [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]
