"""proxy-router's settings."""

from __future__ import annotations

from pydantic import Field
from refinery.config import ServiceSettings


class ProxyRouterSettings(ServiceSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=8101, alias="REFINERY_PROXY_PORT")
    grpc_port: int = Field(default=50052, alias="REFINERY_PROXY_GRPC_PORT")
    gateway_grpc: str = "127.0.0.1:50050"
    openai_base_url: str = Field(default="https://api.openai.com/v1", description="Used when a project sets none")
    provider_cache_s: float = 2.0
    # Logs are published after the answer, off the caller's path: waiting a little longer to
    # fill a producer batch means fewer broker writes (one object each on the embedded bus).
    # A stream's final chunk and a project's next read wait for its log, so keep it small.
    log_linger_ms: int = Field(default=5, ge=0, le=100)
    upstream_timeout_s: float = 600.0
    registry_grpc: str | None = Field(default=None, description="model-registry, to route openpipe:<slug>")
    inference_url: str | None = Field(default=None, description="inference HTTP base, serving fine-tuned models")
    redis_url: str | None = Field(default=None, description="Response cache; embedded SQLite when unset")
    criteria_grpc: str | None = Field(default=None, description="criteria-judge gRPC; `op-criteria` needs it")
    criteria_timeout_s: float = Field(
        default=120.0, gt=0, description="How long a call with `op-criteria` waits for its choices to be judged; "
                                         "past it each result is an error and the call still answers")
