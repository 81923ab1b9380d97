"""The REST shape of criteria: request bodies checked into criteria-judge's typed requests, and its
typed answers rendered as the API's JSON.

Refinery's own routes (`/criteria`, alignment sets, stats) speak camelCase like the console; the
judge route speaks the public OpenAPI's snake_case (`criterion_id`, `total_tokens`), since the SDK
parses it. Every answer is built through the models below, so what the OpenAPI document says a
route returns is what it returns.

The gateway checks shapes (types, the name's form, which fields go together); what needs the
service's state or rules (a taken name, an unknown reward model, a prompt too long, a reserved
name) is criteria-judge's to refuse.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from refinery.rpc import criteria_pb2

from gateway.error_mapping import InvalidInput
from gateway.rendering import input_json, iso

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
Variable = Literal["messages", "tools", "tool_choice", "output"]
Label = Literal["PASS", "FAIL", "SKIP"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# ---- requests -----------------------------------------------------------------------------


class CreateCriterionIn(_In):
    name: str = Field(pattern=NAME_PATTERN, description="The criterion id: lowercase letters, digits and '-'")
    prompt: str | None = Field(default=None, min_length=1, max_length=100_000,
                               description="What the judge checks (LLM-judge criteria)")
    judge_model: str | None = Field(default=None, min_length=1, max_length=300,
                                    description="Any model the proxy serves; default: the service's judge model")
    templated_variables: list[Variable] | None = Field(
        default=None, max_length=4, description="What the judge sees of the call; `output` is required; default all")
    reward_model: str | None = Field(default=None, min_length=1, max_length=300,
                                     description="Instead of a prompt: the slug of a DEPLOYED openpipeReward model")


class UpdateCriterionIn(_In):
    prompt: str | None = Field(default=None, min_length=1, max_length=100_000)
    judge_model: str | None = Field(default=None, min_length=1, max_length=300)
    templated_variables: list[Variable] | None = Field(default=None, max_length=4)
    reward_model: str | None = Field(default=None, min_length=1, max_length=300)


class DatasetSampleIn(_In):
    dataset_id: str = Field(min_length=1, max_length=200)
    count: int = Field(ge=1, le=10_000, description="How many entries to sample at random")
    output_model: str | None = Field(default=None, min_length=1, max_length=300,
                                     description="Regenerate the sampled outputs with this model; default: copy them")


class LabelIn(_In):
    human_judgement: Label | None = Field(description="The human label; null clears it")


def _slug(reward_model: str) -> str:
    return reward_model.removeprefix("openpipe:")


def create_request(project_id: str, body: CreateCriterionIn) -> criteria_pb2.CreateCriterionRequest:
    """criteria-judge's request for a create body; InvalidInput when its fields do not go together."""
    llm = [name for name, value in (("prompt", body.prompt), ("judgeModel", body.judge_model),
                                    ("templatedVariables", body.templated_variables)) if value is not None]
    if body.reward_model is not None:
        if llm:
            raise InvalidInput(f"rewardModel cannot be combined with {', '.join(llm)}: a criterion is judged "
                               "either by a reward model or by an LLM with a prompt")
        return criteria_pb2.CreateCriterionRequest(project_id=project_id, name=body.name,
                                                   reward_model=_slug(body.reward_model))
    if body.prompt is None:
        raise InvalidInput("prompt is required (or rewardModel, for a reward-model criterion)")
    return criteria_pb2.CreateCriterionRequest(
        project_id=project_id, name=body.name, prompt=body.prompt, judge_model=body.judge_model or "",
        templated_variables=body.templated_variables or [],
        templated_variables_given=body.templated_variables is not None)


def update_request(project_id: str, name: str, body: UpdateCriterionIn) -> criteria_pb2.UpdateCriterionRequest:
    """criteria-judge's request for a PATCH body: only the given fields change."""
    llm = [field for field, value in (("prompt", body.prompt), ("judgeModel", body.judge_model),
                                      ("templatedVariables", body.templated_variables)) if value is not None]
    if body.reward_model is None and not llm:
        raise InvalidInput("give at least one of prompt, judgeModel, templatedVariables, rewardModel to change")
    if body.reward_model is not None and llm:
        raise InvalidInput(f"rewardModel cannot be combined with {', '.join(llm)}")
    req = criteria_pb2.UpdateCriterionRequest(project_id=project_id, name=name)
    if body.prompt is not None:
        req.prompt = body.prompt
    if body.judge_model is not None:
        req.judge_model = body.judge_model
    if body.templated_variables is not None:
        req.templated_variables.extend(body.templated_variables)
        req.templated_variables_given = True
    if body.reward_model is not None:
        req.reward_model = _slug(body.reward_model)
    return req


# ---- the judge route (the public OpenAPI's shape, snake_case) -----------------------------


class JudgeInputIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, Any]] = Field(max_length=10_000, description="All messages sent to the model")
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=1_000)
    tool_choice: str | dict[str, Any] | None = None


class JudgeOutputIn(BaseModel):
    """The completion message judged; fields past the documented ones are kept for the judge."""

    model_config = ConfigDict(extra="allow")

    role: Literal["assistant"]
    content: str | None = None


class JudgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    criterion_id: str = Field(min_length=1, max_length=300, description="`name`, `name@vN`, or a reward model")
    input: JudgeInputIn | None = None
    output: JudgeOutputIn


def judge_request(project_id: str, body: JudgeIn) -> criteria_pb2.JudgeRequest:
    judged = body.input.model_dump(exclude_none=True) if body.input is not None else None
    return criteria_pb2.JudgeRequest(
        project_id=project_id, criterion_id=body.criterion_id,
        input_json=input_json(judged, "input") if judged is not None else b"",
        output_json=input_json(body.output.model_dump(exclude_none=True), "output"))


class JudgeUsageOut(BaseModel):
    total_tokens: float


class JudgeOut(BaseModel):
    score: float = Field(description="0: failed, 1: passed; between: the likelihood that it passed")
    explanation: str | None = Field(description="The judge's reasoning; null for reward models")
    usage: JudgeUsageOut


def judge_out(resp: criteria_pb2.JudgeResponse) -> JudgeOut:
    return JudgeOut(score=resp.score, explanation=resp.explanation if resp.HasField("explanation") else None,
                    usage=JudgeUsageOut(total_tokens=resp.usage.total_tokens))


# ---- answers ------------------------------------------------------------------------------


class CriterionVersionOut(_Out):
    version: int
    ref: str = Field(description="How to call this version: `name@vN`")
    prompt: str | None
    judge_model: str | None
    templated_variables: list[str]
    reward_model: str | None
    created_at: str


class CriterionOut(_Out):
    id: str
    object: Literal["criterion"] = "criterion"
    name: str
    created_at: str
    updated_at: str
    latest_version: int
    alignment_rows: int
    versions: list[CriterionVersionOut] = Field(description="Oldest first")


class CriteriaListOut(_Out):
    object: Literal["list"] = "list"
    data: list[CriterionOut]


class CriterionDeletedOut(_Out):
    name: str
    object: Literal["criterion"] = "criterion"
    deleted: bool


class LineErrorOut(_Out):
    line: int = Field(description="1-based line number in the JSONL")
    message: str


class RowsAddedOut(_Out):
    added: int
    errors: list[LineErrorOut]


class VerdictOut(_Out):
    judgement: str = Field(description="PASS, FAIL or ERROR")
    score: float
    explanation: str | None
    error: str | None


class AlignmentRowOut(_Out):
    id: str
    input: dict[str, Any]
    output: dict[str, Any]
    human_judgement: Label | None
    judge: VerdictOut | None = Field(description="This version's verdict; null until judged")
    created_at: str


class AlignmentRowsOut(_Out):
    object: Literal["list"] = "list"
    version: int
    total: int
    data: list[AlignmentRowOut]


class StatsOut(_Out):
    version: int
    precision: float | None
    recall: float | None
    f1: float | None
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int
    pending: int
    labeled: int
    total: int


def criterion_out(c: criteria_pb2.Criterion) -> CriterionOut:
    versions = [CriterionVersionOut(
        version=v.version, ref=f"{c.name}@v{v.version}", prompt=v.prompt or None, judge_model=v.judge_model or None,
        templated_variables=list(v.templated_variables), reward_model=v.reward_model or None,
        created_at=iso(v.created_at)) for v in c.versions]
    return CriterionOut(id=c.id, name=c.name, created_at=iso(c.created_at), updated_at=iso(c.updated_at),
                        latest_version=versions[-1].version if versions else 0, alignment_rows=c.alignment_rows,
                        versions=versions)


def _label(value: str) -> Label | None:
    if value in ("PASS", "FAIL", "SKIP"):
        return value  # type: ignore[return-value]
    return None


def _object(raw: bytes) -> dict[str, Any]:
    value = orjson.loads(raw) if raw else {}
    return value if isinstance(value, dict) else {"value": value}


def row_out(r: criteria_pb2.AlignmentRow) -> AlignmentRowOut:
    judge = None
    if r.HasField("judge"):
        judge = VerdictOut(judgement=r.judge.judgement, score=r.judge.score,
                           explanation=r.judge.explanation if r.judge.HasField("explanation") else None,
                           error=r.judge.error if r.judge.HasField("error") else None)
    return AlignmentRowOut(id=r.id, input=_object(r.input_json), output=_object(r.output_json),
                           human_judgement=_label(r.human_judgement), judge=judge, created_at=iso(r.created_at))


def stats_out(s: criteria_pb2.StatsResponse) -> StatsOut:
    def ratio(name: str) -> float | None:
        return getattr(s, name) if s.HasField(name) else None

    return StatsOut(version=s.version, precision=ratio("precision"), recall=ratio("recall"), f1=ratio("f1"),
                    true_positives=s.true_positives, false_positives=s.false_positives,
                    false_negatives=s.false_negatives, true_negatives=s.true_negatives, pending=s.pending,
                    labeled=s.labeled, total=s.total)
