"""Evaluation events (owned by eval), keyed by eval id on `refinery.evals`.

An eval is one aggregate: its creation (with the TEST rows it covers, in batches), the models added
to it, every output generated, every judgement or grade, and its completion or failure carry
consecutive versions of the eval's stream, so a downstream consumer can rebuild every result table
(win rates, pass rates, grades, costs, latencies) without eval's tables.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EVAL_CREATED = "eval.created"
EVAL_ROWS_ADDED = "eval.rows_added"
EVAL_MODELS_ADDED = "eval.models_added"
EVAL_OUTPUT_GENERATED = "eval.output_generated"
EVAL_JUDGEMENT_RECORDED = "eval.judgement_recorded"
EVAL_COMPLETED = "eval.completed"
EVAL_FAILED = "eval.failed"
EVAL_DELETED = "eval.deleted"

EvalType = Literal["head_to_head", "criterion", "code"]


class EvalCreated(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    dataset_id: str
    type: EvalType
    models: list[str] = Field(description="`dataset` is the rows' own outputs")
    judge_model: str = Field(default="", description="head_to_head: the judge")
    instructions: str = Field(default="", description="head_to_head: instructions to the judge")
    criterion: str = Field(default="", description="criterion: `name` or `name@vN`")
    grader: str = Field(default="", description="code: the TypeScript grader's source")
    auto_add_models: bool = False
    row_count: int = Field(description="TEST rows the eval covers (they follow in eval.rows_added)")


class EvalRow(BaseModel):
    """One TEST row: the dataset entry's id, its input (`messages`, `tools`?, `tool_choice`?) and output."""

    model_config = ConfigDict(frozen=True)
    row_id: str
    input: dict[str, Any]
    dataset_output: dict[str, Any]


class EvalRowsAdded(BaseModel):
    """TEST rows of the eval, whole, in batches small enough for one event each."""

    model_config = ConfigDict(frozen=True)
    rows: list[EvalRow]


class EvalModelsAdded(BaseModel):
    model_config = ConfigDict(frozen=True)
    models: list[str]
    reason: Literal["request", "auto"] = Field(default="request", description="auto: it reached DEPLOYED")


class EvalOutputGenerated(BaseModel):
    """One model's output for one row (or why there is none)."""

    model_config = ConfigDict(frozen=True)
    row_id: str
    model: str
    output: dict[str, Any] | None = Field(description="the assistant message; null on error")
    error: str | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None


class EvalJudgementRecorded(BaseModel):
    """A judgement of one row: one output (criterion, code) or one pair of outputs (head_to_head)."""

    model_config = ConfigDict(frozen=True)
    row_id: str
    model: str = Field(description="criterion/code: the judged model; head_to_head: the first of the pair")
    opponent: str | None = Field(default=None, description="head_to_head: the second of the pair")
    score: float | None = Field(
        description="criterion: 1 PASS / 0 FAIL; code: the grade; head_to_head: `model`'s share (1, 0.5 or 0); "
                    "null on error")
    winner: str | None = Field(default=None, description="head_to_head: the winning model; null for a tie")
    reasoning: str = ""
    error: str | None = None
    cost_usd: float | None = Field(default=None, description="what the judgement cost")


class EvalCompleted(BaseModel):
    model_config = ConfigDict(frozen=True)
    results: list[dict[str, Any]] = Field(description="one per model: model, score, errors, costUsd, latencyMsP50")


class EvalFailed(BaseModel):
    model_config = ConfigDict(frozen=True)
    error: str


class EvalDeleted(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
