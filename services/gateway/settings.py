"""gateway's settings."""

from __future__ import annotations

from pydantic import Field
from refinery.config import ServiceSettings


class GatewaySettings(ServiceSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int = Field(default=50050, description="Internal gRPC (provider settings for proxy-router).")
    log_ingest_grpc: str = "127.0.0.1:50051"
    proxy_router_url: str | None = Field(default=None, description="proxy-router HTTP base, e.g. http://127.0.0.1:8101")
    proxy_router_grpc: str | None = None
    registry_grpc: str | None = Field(default=None, description="model-registry gRPC; model routes need it")
    trainer_grpc: str | None = Field(default=None, description="trainer gRPC health, for /health")
    inference_grpc: str | None = Field(default=None, description="inference gRPC health, for /health")
    dataset_grpc: str | None = Field(default=None, description="dataset service gRPC; dataset routes need it")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in the data dir")
    admin_token: str | None = Field(default=None, description="Token of the admin API; default kept in the data dir")
    init_api_key: str | None = None
    init_openai_base_url: str | None = None
    init_openai_api_key: str | None = None
    init_anthropic_base_url: str | None = None
    init_anthropic_api_key: str | None = None
    init_gemini_base_url: str | None = None
    init_gemini_api_key: str | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    max_upload_bytes: int = Field(default=5 * 1024**3, description="Largest JSONL upload (streamed, not buffered)")
    read_wait_s: float = 5.0

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.service_dir('gateway') / 'gateway.db'}"
