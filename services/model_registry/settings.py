"""model-registry's settings."""

from __future__ import annotations

from pydantic import Field
from refinery.config import ServiceSettings


class RegistrySettings(ServiceSettings):
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50071, alias="REFINERY_REGISTRY_GRPC_PORT")
    database_url: str | None = Field(default=None, alias="REFINERY_REGISTRY_DATABASE_URL")
    dataset_grpc: str = "127.0.0.1:50061"
    inference_grpc: str | None = Field(default=None, description="inference control API; deploys need it")
    deploy_timeout_s: float = 600.0
    stall_timeout_s: float = Field(default=900.0, description="A job with no event for this long is failed")

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.service_dir('model-registry') / 'registry.db'}"
