"""Criteria events (owned by criteria-judge), keyed by criterion id on `refinery.criteria`.

A criterion is one aggregate: its versions, its alignment set (rows whole, with the human labels)
and the judge's verdicts on those rows all carry consecutive versions of the criterion's stream, so
a downstream consumer can rebuild precision and recall per version without criteria-judge's tables.
Judgements made through the judge API or `op-criteria` are not events: they answer a call and are
logged by proxy-router with the judged completion.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CRITERION_CREATED = "criterion.created"
CRITERION_VERSION_PUBLISHED = "criterion.version_published"
CRITERION_DELETED = "criterion.deleted"
ALIGNMENT_ROWS_ADDED = "alignment_set.rows_added"
ALIGNMENT_ROW_LABELED = "alignment_row.labeled"
JUDGEMENT_RECORDED = "judgement.recorded"

HumanJudgement = Literal["PASS", "FAIL", "SKIP"]
Verdict = Literal["PASS", "FAIL", "ERROR"]


class CriterionVersionSpec(BaseModel):
    """What one version judges with: an LLM judge (prompt + judge model) or a reward model."""

    model_config = ConfigDict(frozen=True)
    version: int = Field(description="1, 2, ...: callable as `name@v<version>`")
    prompt: str = Field(default="", description="empty for reward-model criteria")
    judge_model: str = Field(default="", description="any model the proxy serves; empty for reward-model criteria")
    templated_variables: list[str] = Field(
        default_factory=list, description="subset of messages, tools, tool_choice, output")
    reward_model: str = Field(default="", description="slug of a DEPLOYED openpipeReward model; empty for LLM judges")


class CriterionCreated(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    first_version: CriterionVersionSpec


class CriterionVersionPublished(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    spec: CriterionVersionSpec


class CriterionDeleted(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str


class AlignmentRow(BaseModel):
    """One judged example: the input (`messages`, `tools`?, `tool_choice`?) and the assistant output."""

    model_config = ConfigDict(frozen=True)
    row_id: str
    input: dict[str, Any]
    output: dict[str, Any]
    human_judgement: HumanJudgement | None = None


class AlignmentRowsAdded(BaseModel):
    """Rows appended to the alignment set, whole, in batches small enough for one event each."""

    model_config = ConfigDict(frozen=True)
    source: Literal["jsonl", "dataset"]
    rows: list[AlignmentRow]
    dataset_id: str | None = None
    output_model: str | None = Field(default=None, description="the model that regenerated the outputs, if any")


class AlignmentRowLabeled(BaseModel):
    model_config = ConfigDict(frozen=True)
    row_id: str
    human_judgement: HumanJudgement | None = Field(description="null: the label was cleared")


class JudgementRecorded(BaseModel):
    """The judge's verdict on one alignment row under one criterion version."""

    model_config = ConfigDict(frozen=True)
    row_id: str
    version: int
    judgement: Verdict
    score: float = Field(description="in [0, 1]; PASS when >= 0.5; 0 for ERROR")
    explanation: str | None = None
    error: str | None = Field(default=None, description="why judging failed (judgement ERROR)")
