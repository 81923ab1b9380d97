"""criteria-judge's settings."""

from __future__ import annotations

from pydantic import Field
from refinery.config import CRITERIA_TOPIC, ServiceSettings

from criteria_judge.definitions import MAX_ALIGNMENT_ROWS


class CriteriaSettings(ServiceSettings):
    grpc_host: str = Field(default="127.0.0.1", description="Interface criteria-judge's gRPC server binds")
    grpc_port: int = Field(default=50101, alias="REFINERY_CRITERIA_GRPC_PORT", description="criteria-judge's gRPC port")
    database_url: str | None = Field(
        default=None, alias="REFINERY_CRITERIA_DATABASE_URL",
        description="SQLAlchemy URL; default SQLite in <data_dir>/criteria-judge")
    criteria_topic: str = Field(default=CRITERIA_TOPIC, description="Topic of criteria, alignment sets and verdicts")
    proxy_router_url: str = Field(
        default="http://127.0.0.1:8101", description="proxy-router HTTP base: every LLM judge call goes through it")
    registry_grpc: str = Field(default="127.0.0.1:50071", description="model-registry, to find reward models")
    dataset_grpc: str = Field(default="127.0.0.1:50061", description="the dataset service, for alignment samples")
    inference_grpc: str | None = Field(default=None, description="inference, to score with reward models")
    default_judge_model: str = Field(default="gpt-4o", description="Judge model of a criterion that names none")
    judge_concurrency: int = Field(
        default=8, ge=1, le=256, description="Judgements of one op-criteria call run at once")
    judge_timeout_s: float = Field(default=60.0, gt=0, description="Longest wait for one judgement")
    alignment_concurrency: int = Field(
        default=4, ge=1, le=256, description="Alignment rows judged at once in the background")
    alignment_max_line_bytes: int = Field(
        default=1024 * 1024, ge=1024,
        description="Longest line of an alignment-set JSONL file, in bytes (the file itself is at most 10 MB)")
    alignment_max_rows: int = Field(
        default=MAX_ALIGNMENT_ROWS, ge=1,
        description="Rows one criterion's alignment set may hold (every version judges every row)")

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.service_dir('criteria-judge') / 'criteria.db'}"
