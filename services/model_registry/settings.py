"""model-registry's settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from refinery.config import ServiceSettings


class RegistrySettings(ServiceSettings):
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50071, alias="REFINERY_REGISTRY_GRPC_PORT")
    database_url: str | None = Field(default=None, alias="REFINERY_REGISTRY_DATABASE_URL")
    dataset_grpc: str = "127.0.0.1:50061"
    inference_grpc: str | None = Field(default=None, description="inference control API; deploys need it")
    deploy_timeout_s: float = 600.0
    stall_timeout_s: float = Field(
        default=900.0, description="Running training with no event for this long is timed out (queued jobs wait)")
    base_model_roots: list[Path] = Field(
        default_factory=list,
        description="Directories a baseModel path may point into (JSON list); default the model cache dir")

    def allowed_base_model_roots(self) -> list[Path]:
        return list(self.base_model_roots) or [self.models_dir()]

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.service_dir('model-registry') / 'registry.db'}"
