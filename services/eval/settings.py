"""eval's settings."""

from __future__ import annotations

from pydantic import Field
from refinery.config import EVALS_TOPIC, ServiceSettings


class EvalSettings(ServiceSettings):
    """Settings that criteria-judge has too (judge model, concurrency, timeout) are prefixed `REFINERY_EVAL_`, so
    one environment can set each service apart."""

    grpc_host: str = Field(default="127.0.0.1", description="Interface eval's gRPC server binds")
    grpc_port: int = Field(default=50111, alias="REFINERY_EVAL_GRPC_PORT", description="eval's gRPC port")
    database_url: str | None = Field(
        default=None, alias="REFINERY_EVAL_DATABASE_URL",
        description="SQLAlchemy URL; default SQLite in <data_dir>/eval")
    evals_topic: str = Field(default=EVALS_TOPIC, description="Topic of evals, their outputs, judgements and results")
    proxy_router_url: str = Field(
        default="http://127.0.0.1:8101",
        description="proxy-router HTTP base: every model output and head-to-head judgement goes through it")
    dataset_grpc: str = Field(default="127.0.0.1:50061", description="the dataset service, for the TEST entries")
    registry_grpc: str = Field(
        default="127.0.0.1:50071", description="model-registry, to check `openpipe:` models and follow deployments")
    criteria_grpc: str = Field(default="127.0.0.1:50101", description="criteria-judge, to judge criterion evals")
    default_judge_model: str = Field(default="gpt-4o",
        alias="REFINERY_EVAL_DEFAULT_JUDGE_MODEL", description="Judge of a head-to-head eval that names none")
    output_concurrency: int = Field(
        default=4, ge=1, le=256, description="Model outputs generated at once, over all evals")
    judge_concurrency: int = Field(
        default=4, alias="REFINERY_EVAL_JUDGE_CONCURRENCY", ge=1, le=256,
        description="Judgements (comparisons, criterion verdicts, grader batches) run at once")
    output_timeout_s: float = Field(default=120.0, gt=0, description="Longest wait for one model output")
    judge_timeout_s: float = Field(default=60.0,
        alias="REFINERY_EVAL_JUDGE_TIMEOUT_S", gt=0, description="Longest wait for one judgement")
    grader_timeout_s: float = Field(default=5.0, gt=0, description="Longest run of a code grader on one row")
    grader_memory_mb: int = Field(default=128, ge=16, description="Memory a code grader's sandbox may use, in MB")
    grader_concurrency: int = Field(default=2, ge=1, le=64, description="Code grader sandboxes running at once")
    max_rows: int = Field(default=5000,
        alias="REFINERY_EVAL_MAX_ROWS", ge=1, description="Most TEST rows one eval covers; larger splits are refused")

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.service_dir('eval') / 'eval.db'}"
