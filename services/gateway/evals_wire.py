"""The REST shape of evaluations: request bodies checked into eval's typed requests, and its typed
answers rendered as the API's camelCase JSON.

Every answer is built through the models below, so what the OpenAPI document says a route returns
is what it returns. The gateway checks shapes (types, lengths, which fields go with which eval
type, a model listed twice); what needs the service's state (an unknown dataset, model or
criterion, an empty TEST split, a grader that does not compile) is eval's to refuse.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from refinery.rpc import evals_pb2

from gateway.error_mapping import InvalidInput
from gateway.rendering import iso

EvalType = Literal["head_to_head", "criterion", "code"]
Status = Literal["QUEUED", "RUNNING", "COMPLETED", "ERROR"]
MAX_MODELS = 20
ModelName = Annotated[str, Field(min_length=1, max_length=300, pattern=r"\S")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# ---- requests -----------------------------------------------------------------------------


_MODELS_DESCRIPTION = ("Any model the proxy serves (`openpipe:<slug>`, `gpt-*`, `anthropic:...`, ...) and the "
                       "pseudo-model `dataset`, the rows' own outputs")


class CreateEvalIn(_In):
    name: str = Field(min_length=1, max_length=200)
    dataset_id: str = Field(min_length=1, max_length=200, description="Its TEST split is what is evaluated")
    models: list[ModelName] = Field(min_length=1, max_length=MAX_MODELS, description=_MODELS_DESCRIPTION)
    type: EvalType
    judge_model: str | None = Field(default=None, min_length=1, max_length=300,
                                    description="head_to_head: the judge; default: the service's judge model")
    instructions: str | None = Field(default=None, min_length=1, max_length=20_000,
                                     description="head_to_head: what the judge should prefer")
    criterion: str | None = Field(default=None, min_length=1, max_length=300,
                                  description="criterion: the criterion `name` or `name@vN`")
    grader: str | None = Field(default=None, min_length=1, max_length=200_000,
                               description="code: TypeScript source defining `function grader(args): number`")
    auto_add_models: bool = Field(default=False,
                                  description="Add each model trained on this dataset once it is DEPLOYED")


class AddModelsIn(_In):
    models: list[ModelName] = Field(min_length=1, max_length=MAX_MODELS, description=_MODELS_DESCRIPTION)


_NEEDS: dict[str, tuple[str, ...]] = {"head_to_head": (), "criterion": ("criterion",), "code": ("grader",)}
_ALLOWED: dict[str, frozenset[str]] = {
    "head_to_head": frozenset({"judgeModel", "instructions"}),
    "criterion": frozenset({"criterion"}),
    "code": frozenset({"grader"}),
}


def _check_models(models: list[str], field: str = "models") -> None:
    seen: set[str] = set()
    for name in models:
        if name in seen:
            raise InvalidInput(f"{field}: {name} is listed twice")
        seen.add(name)


def create_request(project_id: str, body: CreateEvalIn) -> evals_pb2.CreateEvalRequest:
    """eval's request for a create body; InvalidInput when its fields do not fit its type."""
    _check_models(body.models)
    given = {name for name, value in (("judgeModel", body.judge_model), ("instructions", body.instructions),
                                      ("criterion", body.criterion), ("grader", body.grader)) if value is not None}
    stray = sorted(given - _ALLOWED[body.type])
    if stray:
        raise InvalidInput(f"{', '.join(stray)} cannot be given for a {body.type} eval (judgeModel and instructions "
                           "are for head_to_head, criterion for criterion, grader for code)")
    for needed in _NEEDS[body.type]:
        if needed not in given:
            raise InvalidInput(f"{needed} is required for a {body.type} eval")
    if body.type == "head_to_head" and len(body.models) < 2:
        raise InvalidInput("models: a head_to_head eval compares at least 2 models")
    return evals_pb2.CreateEvalRequest(
        project_id=project_id, name=body.name, dataset_id=body.dataset_id, models=body.models, type=body.type,
        judge_model=body.judge_model or "", instructions=body.instructions or "", criterion=body.criterion or "",
        grader=body.grader or "", auto_add_models=body.auto_add_models)


def add_models_request(project_id: str, eval_id: str, body: AddModelsIn) -> evals_pb2.AddModelsRequest:
    _check_models(body.models)
    return evals_pb2.AddModelsRequest(project_id=project_id, eval_id=eval_id, models=body.models)


# ---- answers ------------------------------------------------------------------------------


class ProgressOut(_Out):
    done: int = Field(description="Units of work finished: outputs, comparisons, judgements, grades")
    total: int


class ModelResultOut(_Out):
    model: str
    score: float | None = Field(description="Win rate, pass rate or mean grade in [0, 1]; null until scored")
    errors: int = Field(description="Rows whose output, judgement or grade failed")
    cost_usd: float = Field(description="What generating its outputs cost")
    latency_ms_p50: float | None = Field(description="Median latency of its outputs; null for `dataset`")
    comparisons: int | None = Field(default=None, description="head_to_head only: comparisons it took part in")


class EvalOut(_Out):
    id: str
    object: Literal["eval"] = "eval"
    name: str
    dataset_id: str
    type: EvalType
    models: list[str] = Field(description="In the order they were added")
    status: Status
    progress: ProgressOut
    rows: int = Field(description="TEST rows evaluated")
    results: list[ModelResultOut] = Field(description="One per model, in `models` order")
    comparisons: int | None = Field(default=None, description="head_to_head only: finished comparisons")
    matrix: dict[str, dict[str, float | None]] | None = Field(
        default=None, description="head_to_head only: `matrix[a][b]` is a's win rate against b (ties count 0.5); "
                                  "null where they have not been compared yet")
    judge_model: str | None
    instructions: str | None
    criterion: str | None
    grader: str | None
    auto_add_models: bool
    error: str | None = Field(description="Why the eval is ERROR")
    created_at: str
    updated_at: str


class EvalListOut(_Out):
    object: Literal["list"] = "list"
    data: list[EvalOut]


class EvalDeletedOut(_Out):
    id: str
    object: Literal["eval"] = "eval"
    deleted: bool


class OutputOut(_Out):
    output: dict[str, Any] | None = Field(description="The assistant message; null while pending or on error")
    error: str | None
    latency_ms: float | None = Field(description="null while pending, and for `dataset`")
    cost_usd: float | None = Field(description="null while pending")
    done: bool


class JudgementOut(_Out):
    model: str = Field(description="criterion/code: the judged model; head_to_head: the first of the pair")
    opponent: str | None = Field(description="head_to_head: the second of the pair")
    score: float | None = Field(description="criterion: 1 PASS / 0 FAIL; code: the grade; head_to_head: `model`'s "
                                            "share (1, 0.5 or 0)")
    winner: str | None = Field(description="head_to_head: the winning model; null for a tie or while pending")
    reasoning: str = Field(description="The judge's explanation (both orders for head_to_head), or the grader's")
    error: str | None
    done: bool


class EvalRowOut(_Out):
    id: str = Field(description="The dataset entry's id")
    input: dict[str, Any] = Field(description="`messages`, and `tools`, `tool_choice` where the entry has them")
    dataset_output: dict[str, Any] | None
    outputs: dict[str, OutputOut] = Field(description="By model")
    judgements: list[JudgementOut]


class EvalRowsOut(_Out):
    object: Literal["list"] = "list"
    data: list[EvalRowOut]
    total: int


def _object(raw: bytes) -> dict[str, Any] | None:
    if not raw:
        return None
    value = orjson.loads(raw)
    return value if isinstance(value, dict) else {"value": value}


def _matrix(e: evals_pb2.Eval) -> dict[str, dict[str, float | None]]:
    """Every ordered pair of the eval's models; a direction the service did not send is the complement of
    the other (each comparison's shares add up to 1)."""
    rates: dict[tuple[str, str], float] = {
        (c.model, c.opponent): c.win_rate for c in e.matrix if c.HasField("win_rate")}
    matrix: dict[str, dict[str, float | None]] = {}
    for a in e.models:
        row: dict[str, float | None] = {}
        for b in e.models:
            if a == b:
                continue
            rate = rates.get((a, b))
            if rate is None and (b, a) in rates:
                rate = 1.0 - rates[(b, a)]
            row[b] = rate
        matrix[a] = row
    return matrix


def _result(r: evals_pb2.ModelResult, head_to_head: bool) -> ModelResultOut:
    fields: dict[str, Any] = {
        "model": r.model, "score": r.score if r.HasField("score") else None, "errors": r.errors,
        "cost_usd": r.cost_usd, "latency_ms_p50": r.latency_ms_p50 if r.HasField("latency_ms_p50") else None}
    if head_to_head:
        fields["comparisons"] = r.comparisons
    return ModelResultOut(**fields)


def eval_out(e: evals_pb2.Eval) -> EvalOut:
    head_to_head = e.type == "head_to_head"
    fields: dict[str, Any] = {
        "id": e.id, "name": e.name, "dataset_id": e.dataset_id, "type": e.type, "models": list(e.models),
        "status": e.status, "progress": ProgressOut(done=e.done, total=e.total), "rows": e.rows,
        "results": [_result(r, head_to_head) for r in e.results], "judge_model": e.judge_model or None,
        "instructions": e.instructions or None, "criterion": e.criterion or None, "grader": e.grader or None,
        "auto_add_models": e.auto_add_models, "error": e.error or None, "created_at": iso(e.created_at),
        "updated_at": iso(e.updated_at)}
    if head_to_head:
        fields["comparisons"] = e.comparisons
        fields["matrix"] = _matrix(e)
    return EvalOut(**fields)


def eval_json(e: evals_pb2.Eval) -> dict[str, Any]:
    """The eval object as answered: the head-to-head fields only on head-to-head evals."""
    if e.type == "head_to_head":
        return eval_out(e).model_dump(by_alias=True)
    return eval_out(e).model_dump(by_alias=True, exclude={"comparisons": True, "matrix": True,
                                                          "results": {"__all__": {"comparisons"}}})


def _output(o: evals_pb2.ModelOutput) -> OutputOut:
    return OutputOut(output=_object(o.output_json), error=o.error or None,
                     latency_ms=o.latency_ms if o.done and o.latency_ms > 0 else None,
                     cost_usd=o.cost_usd if o.done else None, done=o.done)


def _judgement(j: evals_pb2.RowJudgement) -> JudgementOut:
    return JudgementOut(model=j.model, opponent=j.opponent or None, score=j.score if j.HasField("score") else None,
                        winner=j.winner or None, reasoning=j.reasoning, error=j.error or None, done=j.done)


def row_out(r: evals_pb2.EvalRow) -> EvalRowOut:
    return EvalRowOut(id=r.id, input=_object(r.input_json) or {}, dataset_output=_object(r.dataset_output_json),
                      outputs={o.model: _output(o) for o in r.outputs},
                      judgements=[_judgement(j) for j in r.judgements])
